"""Sending alerts through Apprise: the one place that imports it and reaches the network.

Apprise (``apprise`` on PyPI) speaks 100+ services from one URL each (``json://``,
``mailto://``, ``tgram://``, ``discord://``, ``ntfy://`` ...), so there is no hand-written
client here. Importing it costs 0.1-0.5 s, so it is imported inside :func:`send` (through
:meth:`Target.plugin`) only, on the path that has something to send: a job with nothing due,
the CLI and the handlers never import it (tests/test_notify.py checks ``sys.modules``).

Who sends: the scheduled jobs (``trading job predict`` and ``trading job outcomes``), after the
prediction service has committed, in the job's own short-lived process (the prediction
service has no network: ``RestrictAddressFamilies=AF_UNIX``), and ``trading predict
--notify`` at once. :func:`queue_run` puts a run's predictions in the alert stream and plans
its messages (:mod:`trading.signals.outbox`); :func:`deliver` sends what is due, one URL at a
time, each send bounded by ``notify.timeout``, with the message's Apprise type (``info``,
``warning``: :func:`trading.signals.alerts.notify_type`). A URL that fails is not tried again
in the same run, so one dead endpoint costs a run at most one timeout; its messages wait for
the next run.

Secrets: a URL is kept in the configuration only; it is never stored or printed as given.
The outbox, the journal and ``trading notify status|test`` name a URL by its label,
:func:`mask_url`: the scheme, a host that looks like one and its port, nothing else
(``json://example.com/***``). Apprise's ``url(privacy=True)`` is no label: it keeps paths and
the ends of tokens, and a path or a query may be the secret (``json://host/hook/TOKEN``,
``ntfy://ntfy.sh/TOPIC``, ``discord://id/TOKEN``, ``...?token=``). Error text is passed
through :func:`scrub`, which removes every part of the URL its label does not show.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from trading.runtime.store import Store
from trading.signals import alerts as _alerts
from trading.signals import outbox as _outbox
from trading.signals.events import redact

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
HEADER_SCHEMES = ("json", "jsons", "form", "forms", "xml", "xmls")  # take an extra header
_HOSTLIKE = re.compile(r"(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:.]+\])")
_SPLIT = re.compile(r"[/:@?&=#+,;\s]+")


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def mask_url(url: str) -> str:
    """A URL with everything that may be secret hidden, without Apprise: the scheme, a host
    that looks like one (``example.com``, ``127.0.0.1``) and its port; user, password, path
    and query become ``***``. (Telegram's and Discord's tokens sit where a host would.)"""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme.isalnum():
        return "***"
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return f"{scheme}://***"
    netloc = ("***@" if "@" in parts.netloc else "") + (
        (parts.netloc.rpartition("@")[2].rsplit(":", 1)[0] if port else
         parts.netloc.rpartition("@")[2])
        if host and _HOSTLIKE.fullmatch(host) else "***")
    if port and host and _HOSTLIKE.fullmatch(host):
        netloc += f":{port}"
    path = "/***" if parts.path.strip("/") else ""
    query = "?***" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def _tokens(text: str) -> set[str]:
    return {t for t in _SPLIT.split(text) if t} | {t for t in _SPLIT.split(unquote(text)) if t}


def scrub(text: str, url: str, shown: str | None = None) -> str:
    """``text`` with every piece of ``url`` that its masked form (``shown``) does not show
    replaced by ``***`` (passwords, tokens, webhook keys), in plain and %-encoded form."""
    visible = _tokens(shown) if shown else set()
    secrets = {t for t in _tokens(url) if len(t) >= 4 and t not in visible}
    secrets |= {quote(t, safe="") for t in secrets}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return redact(text) if "://" in text else text


class Target:
    """One configured URL: its hash (the outbox key) and its label (how it is shown)."""

    def __init__(self, url: str) -> None:
        self.url = url.strip()
        self.hash = url_hash(self.url)
        self.label = mask_url(self.url)  # what the outbox stores and every line prints
        self.place = 0  # in notify.urls, from 1
        self._plugin: Any = None
        self.problem: str | None = None

    def plugin(self) -> Any:
        """Apprise's object for this URL, or None (then :attr:`problem` says why)."""
        if self._plugin is None and self.problem is None:
            import apprise  # the sending path only: see the module docstring

            with _quiet():
                try:
                    self._plugin = apprise.Apprise.instantiate(self.url)
                except Exception as exc:  # noqa: BLE001 - a plugin's own parsing bug
                    self.problem = scrub(f"not a valid Apprise URL ({type(exc).__name__})",
                                         self.url)
            if self._plugin is None and self.problem is None:
                scheme = self.url.partition("://")[0][:20] if "://" in self.url else ""
                self.problem = ("not a valid Apprise URL" +
                                (f" (unknown scheme or bad form for {scheme}://)" if scheme
                                 else " (no scheme://)"))
        return self._plugin

    def scrub(self, text: str) -> str:
        return scrub(text, self.url, self.label)


def targets(cfg: Any) -> list[Target]:
    """The configured URLs, once each. Two whose labels are the same (two topics on one
    ntfy server) are told apart by their place in ``notify.urls``: ``ntfy://ntfy.sh/*** #2``."""
    seen, out = set(), []
    for place, url in enumerate(cfg["notify.urls"], 1):
        t = Target(url)
        if t.hash not in seen:
            seen.add(t.hash)
            t.place = place
            out.append(t)
    labels = [t.label for t in out]
    for t in out:
        if labels.count(t.label) > 1:
            t.label += f" #{t.place}"
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep Apprise's and its HTTP stack's log records (which print URLs, paths included)
    away from the journal and stderr; the caller reports a scrubbed line instead."""
    names = ("apprise", "urllib3", "requests", "mail.log")
    saved = [(logging.getLogger(n), logging.getLogger(n).propagate) for n in names]
    for lg, _ in saved:
        lg.propagate = False
    try:
        yield
    finally:
        for lg, prop in saved:
            lg.propagate = prop


def send(target: Target, title: str, body: str, markdown: str, *, ref: str | None,
         timeout: float, notify_type: str = "info") -> str | None:
    """Send one message to one URL; None when the service accepted it, else the error in one
    redacted line. Never raises. ``notify_type``: Apprise's ``info``, ``success``, ``warning``
    or ``failure`` (an unknown one is sent as ``info``). The send is bounded by ``timeout``
    (Apprise's connect and read timeouts), and a thread deadline of twice that in case a
    service ignores them."""
    plugin = target.plugin()
    if plugin is None:
        return target.problem or "not a valid Apprise URL"
    import apprise

    fmt = plugin.notify_format
    primary = fmt[0] if isinstance(fmt, (tuple, list)) and fmt else fmt
    rich = primary in (apprise.NotifyFormat.MARKDOWN, apprise.NotifyFormat.HTML)
    text = (markdown if rich else body) + (f"\n\nref {ref}" if ref else "")
    for attr in ("socket_connect_timeout", "socket_read_timeout"):
        if hasattr(plugin, attr):
            setattr(plugin, attr, float(timeout))
    headers = getattr(plugin, "headers", None)
    if ref and isinstance(headers, dict) and target.url.split("://")[0] in HEADER_SCHEMES:
        headers["Idempotency-Key"] = ref
    kind = apprise.NotifyType(notify_type if notify_type in apprise.NOTIFY_TYPES else "info")
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with apprise.LogCapture(level=logging.WARNING) as log:
                outcome["ok"] = plugin.notify(
                    body=text, title=title, notify_type=kind,
                    body_format=apprise.NotifyFormat.MARKDOWN if rich else
                    apprise.NotifyFormat.TEXT)
            outcome["log"] = log.getvalue()
        except Exception as exc:  # noqa: BLE001 - any plugin failure is one failed send
            outcome["error"] = f"{type(exc).__name__}: {exc}"

    with _quiet():
        worker = threading.Thread(target=run, name="notify-send", daemon=True)
        worker.start()
        worker.join(2 * timeout)
    if worker.is_alive():
        return f"no answer within {2 * timeout:g}s (the message may or may not have arrived)"
    if outcome.get("ok"):
        return None
    error = outcome.get("error") or _last_warning(outcome.get("log", "")) or \
        "the service did not accept the message"
    return target.scrub(error)


def _last_warning(log: str) -> str:
    """The last line Apprise logged at WARNING or above, without its timestamp prefix."""
    lines = [ln.split(" - ", 2)[-1].strip() for ln in log.splitlines() if " - " in ln]
    return lines[-1] if lines else ""


# -- one run's alerts -------------------------------------------------------------------------
def queue_run(store: Store, cfg: Any, result: JSON, kind: str = "job", *,
              now: str | None = None) -> int:
    """Put a ``generate_predictions`` answer's run in the alert stream (``kind``: ``job`` for
    ``trading job predict``, ``notify`` for ``trading predict --notify``) and plan its messages
    for every configured URL; returns the messages queued. Only the run's own predictions
    are planned, so a symbol it failed on gets nothing."""
    results = result.get("results") or {}
    ids = [p["id"] for p in results.values()
           if isinstance(p, dict) and isinstance(p.get("id"), int)]
    if not ids:
        return 0
    marks = ",".join("?" * len(ids))
    runs = store.query(f"SELECT DISTINCT run_id FROM predictions WHERE id IN ({marks}) AND "
                       "origin = 'live'", ids)
    predictor = (result.get("predictor") or {}).get("name")
    for r in runs:
        _outbox.record_run(store, r["run_id"], kind, predictor, now=now)
    all_targets = targets(cfg)
    if not all_targets:
        return 0
    return _outbox.plan_run(store, [(t.hash, t.label) for t in all_targets],
                            _alerts.Rules.from_config(cfg), ids, now=now)


def deliver(store: Store, cfg: Any, *, digest_day: date | None = None,
            now: str | None = None) -> JSON | None:
    """Send what is due; None when no ``notify.urls`` are configured.

    ``digest_day``: first queue that day's digest (of the alert stream). Returns ``{"sent",
    "failed", "waiting", "errors": {target: error}, "invalid": {...}}``; never raises for a
    service's failure (a store error does raise)."""
    all_targets = targets(cfg)
    if not all_targets:
        return None
    rules = _alerts.Rules.from_config(cfg)
    timeout = float(cfg["notify.timeout"])
    pairs = [(t.hash, t.label) for t in all_targets]
    if digest_day is not None and cfg["notify.digest"]:
        from trading.signals import outcomes

        try:
            report = outcomes.accuracy(store, "live", predictor=_outbox.stream_predictor(store))
        except Exception as exc:  # noqa: BLE001 - the day's calls still go out without them
            logger.exception("notify: the digest's hit rates failed")
            report = {"error": f"{type(exc).__name__}: {exc}"}
        _outbox.plan_digest(store, pairs, digest_day, report, rules, now=now)
    by_hash = {t.hash: t for t in all_targets}
    result: JSON = {"sent": 0, "failed": 0, "waiting": 0, "errors": {}, "invalid": {}}
    broken: set[str] = set()
    token = _outbox.new_token()
    for row in _outbox.due(store, by_hash, timeout=timeout, now=now):
        target = by_hash[row["url_hash"]]
        if row["url_hash"] in broken:
            result["waiting"] += 1
            continue
        if target.plugin() is None:  # a URL Apprise cannot read: nothing will ever change
            result["invalid"][target.label] = target.problem
            broken.add(row["url_hash"])
            result["waiting"] += 1
            continue
        claimed = _outbox.claim(store, row["id"], token, timeout=timeout, now=now)
        if claimed is None:
            continue  # another run has it
        error = send(target, claimed["title"], claimed["body"], claimed["markdown"],
                     ref=_outbox.ref(claimed["kind"], claimed["ref"], claimed["url_hash"]),
                     timeout=timeout, notify_type=claimed["notify_type"])
        if error is None:
            _outbox.mark_sent(store, claimed["id"], token, now=now)
            result["sent"] += 1
            continue
        status = _outbox.mark_failed(store, claimed["id"], token, error, now=now)
        broken.add(row["url_hash"])
        result["failed" if status == "failed" else "waiting"] += 1
        result["errors"][target.label] = error
        logger.warning("notify: %s to %s failed (attempt %d): %s; %s", claimed["title"],
                       target.label, claimed["attempts"], error,
                       "given up" if status == "failed" else "retried on a later run")
    return result


def summary(result: JSON | None) -> list[str]:
    """One line for the job's journal, and one per failing URL."""
    if result is None:
        return []
    line = f"notify: {result['sent']} sent"
    if result["waiting"]:
        line += f", {result['waiting']} waiting for a later run"
    if result["failed"]:
        line += f", {result['failed']} given up"
    lines = [line]
    lines += [f"notify: {t}: {e}" for t, e in result["errors"].items()]
    lines += [f"notify: {t}: {e}" for t, e in result["invalid"].items()]
    return lines


def test(cfg: Any, *, timeout: float | None = None) -> list[tuple[str, str | None]]:
    """Send a test message to every configured URL: ``[(label, error or None)]``."""
    out = []
    for t in targets(cfg):
        error = send(t, "trading-services: test alert",
                     "A test message from `trading notify test`: alerts reach you here.",
                     "A test message from `trading notify test`: alerts reach you here.",
                     ref=None, timeout=timeout or float(cfg["notify.timeout"]))
        out.append((t.label, error))
    return out
