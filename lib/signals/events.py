"""The event log: every prediction and outcome appends an event; Redis gets a copy if configured.

The ``events`` table (``0001_core.sql``) is the record: ordered by ``id``, durable, written in
the same transaction as the thing it announces, so an event exists exactly when its prediction
does. ``trading events`` reads it.

Redis is the plan's message bus and only a convenience on top: when ``redis_url`` (or
``TRADING_REDIS_URL``) is set, each event is published on ``trading:<type>`` *after* the
transaction commits, as ``{"id", "type", "created_at", "payload"}``. A Redis that is down, slow
or refusing never fails the caller: the failure is logged once (with the password masked) and
publishing pauses for :data:`RETRY_AFTER_S`, so a dead bus costs one short timeout, not one per
event. Subscribers that missed messages catch up from the table by ``id``.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from typing import Any

from trading import clock
from trading.errors import InvalidParams
from trading.runtime.store import Store

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
CHANNEL_PREFIX = "trading:"
REDIS_TIMEOUT_S = 0.5   # connect and socket timeout: a prediction never waits long for the bus
RETRY_AFTER_S = 30.0    # after a failure, skip publishing this long
MAX_LIMIT = 1000
MAX_ID = 2**63 - 1      # SQLite integers are 64-bit signed: a larger after_id cannot be bound
TYPES = ("prediction", "outcome")  # what the ledger and outcome scoring append


def now_iso() -> str:
    """UTC now as ISO 8601 with microseconds (sorts as text)."""
    return clock.now().isoformat(timespec="microseconds")


def _split(url: str) -> tuple[str, str | None, str, str]:
    """``(scheme://, userinfo or None, "@" or "", the rest)``, for a URL that may be malformed.

    Generated passwords carry raw ``/``, ``#``, ``?``, ``@`` and ``:``, which ``urlsplit``
    reads as the start of a path, a fragment or a query, leaving the password in plain view.
    A host never contains ``@``, so the userinfo is everything between ``scheme://`` and the
    *last* ``@``. A URL whose authority is no host (``redis://:PW``, ``redis://user:PW``,
    written without ``@host``; or what follows its last ``@`` is no host, which a raw ``@``
    in such a password makes) is all userinfo, with no ``@``: redis-py reads no host there
    either, and its error quotes the password as a bad port.
    """
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*://)(.*)\Z", url, re.S)
    prefix, rest = (m.group(1), m.group(2)) if m else ("", url)
    userinfo, at, tail = rest.rpartition("@")
    if at and (_HOST.match(tail) or _QUERY_PASSWORD.search(userinfo)):
        return prefix, userinfo, at, tail
    word, after = re.match(r"(\S*)(.*)\Z", rest, re.S).groups()  # the URL, then any text
    if prefix and not _PLAIN.match(word):
        return prefix, word, "", after
    return prefix, None, "", rest


# A host and port as a URL's authority has them (``cache``, ``10.0.0.5``, ``[::1]``, each
# with or without ``:6379``, at most 65535), or no authority at all (``unix:///run/r.sock``).
_HOST = re.compile(r"(?:(?:\[[0-9A-Fa-f:.]*\]|[^:/?#@\[\]\s]+)"
                   r"(?::(?:6553[0-5]|655[0-2]\d|65[0-4]\d\d|6[0-4]\d{3}|[1-5]?\d{1,4}))?"
                   r"(?=[/?#]|\Z)|(?=/|\Z))")
# A whole URL after ``scheme://`` with no ``@``, as people write one without a password: a
# host, a path without ``:`` and a query of ``name=value`` pairs, no fragment. Anything else
# (``:PW``, ``user:PW``, ``host:1?x/y#z``) may be a password written without its ``@host``.
_PLAIN = re.compile(_HOST.pattern + r"(?:/[^?#:\s]*)?(?:\?[^=&#/\s]+=[^&#\s]*"
                    r"(?:&[^=&#/\s]+=[^&#\s]*)*)?\Z")


# A query password runs to the next "&name=" (a raw "#" or "&" may be its own), else to the end.
_QUERY_VALUE = r"(?:(?!&[A-Za-z_][A-Za-z0-9_]*=).)*"
_QUERY_PASSWORD = re.compile(r"(?is)([?&;]password=)" + _QUERY_VALUE)


def redact(url: str) -> str:
    """The URL with any password (``user:PASSWORD@``, ``?password=``, or ``user:PASSWORD``
    and ``:PASSWORD`` with no ``@host``) replaced by ``***``.

    Robust to passwords that are not percent-encoded (see :func:`_split`): a userinfo with
    no ``:`` is masked whole (redis-py may take it as the password), and so is one that
    holds a ``?password=`` (the ``@`` was then the query password's own)."""
    prefix, userinfo, at, tail = _split(url)
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        if _QUERY_PASSWORD.search(userinfo):
            tail = re.sub(r"(?s)^" + _QUERY_VALUE, "***", tail)
        masked = f"{user}:***" if colon and not re.search(r"[/?#=&@]", user) else "***"
        tail = f"{masked}{at}{tail}"
    return prefix + _QUERY_PASSWORD.sub(r"\1***", tail)


def _secrets(url: str) -> set[str]:
    """Every password in ``url`` as written and percent-decoded, and every run of it between
    two of ``/?#@:&=`` (what a parser that split it there may echo) longer than two
    characters."""
    from urllib.parse import unquote

    found = set()
    _, userinfo, at, tail = _split(url)
    if userinfo is not None:
        found.add(userinfo.partition(":")[2] if ":" in userinfo else userinfo)
    found.update(m.group(0).partition("=")[2] for m in _QUERY_PASSWORD.finditer(
        tail if userinfo is None else f"{userinfo}{at}{tail}"))
    found |= {unquote(s) for s in found}
    pieces = set()
    for s in found:
        cuts = [0, *(m.start() for m in re.finditer(r"[/?#@:&=]", s)), len(s)]
        for i, a in enumerate(cuts):
            for b in cuts[i + 1:]:
                piece = s[a:b].strip("/?#@:&=")
                if len(piece) > 2:
                    pieces.add(piece)
    return {s for s in found | pieces if s}


def append(db: sqlite3.Connection, type: str, payload: Any, *,
           created_at: str | None = None) -> JSON:
    """Append one event inside the caller's transaction; returns it with its ``id``."""
    created_at = created_at or now_iso()
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    cur = db.execute("INSERT INTO events (type, created_at, payload) VALUES (?, ?, ?)",
                     (type, created_at, body))
    return {"id": cur.lastrowid, "type": type, "created_at": created_at, "payload": payload}


def read(store: Store, after_id: int = 0, type: str | None = None, limit: int = 100,
         latest: bool = False) -> list[JSON]:
    """Events with ``id > after_id`` (oldest first), optionally of one type.

    ``latest`` returns the last ``limit`` events instead of the first, still oldest first.
    """
    if isinstance(after_id, bool) or not isinstance(after_id, int) \
            or not 0 <= after_id <= MAX_ID:
        raise InvalidParams(f"after_id must be an integer from 0 to {MAX_ID}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidParams(f"limit must be an integer from 1 to {MAX_LIMIT}")
    if type is not None and type not in TYPES:
        # A typo would otherwise read as "no events yet", which looks like a broken job.
        raise InvalidParams(f"type must be one of {', '.join(TYPES)}", type=str(type)[:40])
    where, params = ["id > ?"], [after_id]
    if type:
        where.append("type = ?")
        params.append(type)
    order = "DESC" if latest else "ASC"
    rows = store.query(f"SELECT id, type, created_at, payload FROM events "
                       f"WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT ?",
                       (*params, limit))
    out = [{"id": r["id"], "type": r["type"], "created_at": r["created_at"],
            "payload": json.loads(r["payload"])} for r in rows]
    return out[::-1] if latest else out


class Publisher:
    """Publishes committed events to Redis; never raises. One per process is enough."""

    def __init__(self, url: str | None) -> None:
        self.url = url or ""
        self._client = None
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self.published = 0
        self.failures = 0

    @classmethod
    def from_config(cls, cfg: Any) -> Publisher:
        try:
            url = cfg["redis_url"]
        except (KeyError, TypeError):
            url = ""
        return cls(url)

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def publish(self, events: Iterable[JSON]) -> int:
        """Publish ``events`` on ``trading:<type>``; returns how many went out (0 on failure)."""
        events = list(events)
        if not events or not self.url or time.monotonic() < self._paused_until:
            return 0
        with self._lock:
            try:
                client = self._connect()
                pipe = client.pipeline(transaction=False)
                for e in events:
                    pipe.publish(CHANNEL_PREFIX + e["type"],
                                 json.dumps(e, separators=(",", ":"), ensure_ascii=False,
                                            default=str))
                pipe.execute()
            except Exception as exc:  # noqa: BLE001 - the bus is optional; the table has the event
                self.failures += 1
                self._paused_until = time.monotonic() + RETRY_AFTER_S
                self._reset()
                logger.warning("publishing %d event(s) to %s failed (%s: %s); they stay in the "
                               "events table; retrying in %gs", len(events), redact(self.url),
                               type(exc).__name__, _masked(str(exc), self.url), RETRY_AFTER_S)
                return 0
            self.published += len(events)
            return len(events)

    def _connect(self):
        if self._client is None:
            import redis  # only processes that publish pay for the import

            self._client = redis.Redis.from_url(
                self.url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S,
                health_check_interval=0)
        return self._client

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken client may fail too
                pass

    def close(self) -> None:
        with self._lock:
            self._reset()


def _masked(text: str, url: str) -> str:
    """An error message with the URL's password removed, in case the library echoed it."""
    for secret in sorted(_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
