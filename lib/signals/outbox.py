"""The alert outbox: one row per message and URL in ``notifications`` (migrations 0009, 0015).

Where a message comes from. A prediction run of the alert stream (``trading job predict``, or
``trading predict --notify``: :func:`trading.ops.notify.queue_run`) is recorded in
``alert_runs`` (:func:`record_run`), and :func:`plan_run` asks :mod:`trading.signals.alerts`,
per URL and symbol, whether the run's prediction is a net change against the last alert sent
for the symbol; it writes each message as a ``pending`` row, and marks any message for the same
URL and symbol still waiting ``superseded`` (never sent: a newer run has spoken), in one
transaction. No other prediction (a hand-run ``trading predict``, a replay) is ever planned.
A run whose planning was lost (the job died after the service stored it) costs nothing for
good: the next run is compared with the last alert *sent*, so its net change still goes out.

How a row is delivered (:mod:`trading.ops.notify` does the sending):

1. :func:`claim` turns one due row into ``sending`` with a fresh claim token, counting the
   attempt, in its own committed transaction *before* the send. Two senders cannot both claim
   it (the UPDATE is conditional on the status).
2. The message goes out carrying :func:`ref` (``trading-p<event>-<url hash>``): in the text,
   and as an ``Idempotency-Key`` header where the service takes headers (json://, form://,
   xml://).
3. :func:`mark_sent` (``sent``, for good: nothing sends a ``sent`` row again) or
   :func:`mark_failed` (``pending`` again with a backoff, or ``failed`` for good after
   :data:`MAX_ATTEMPTS` or when older than :data:`MAX_AGE_S`).

The guarantee, exactly: a row that reached ``sent`` is never sent again; a row is never lost
(it stays ``pending`` or ``sending`` until it is sent or given up, which ``trading notify
status`` shows with its last error). A process that dies between the send and step 3 leaves
the row ``sending``; once the claim is older than :func:`claim_expiry` a later run sends it
again with the *same* ref. So a crash in that window (one SQLite commit after the service
accepted the message) can deliver a message twice, and the two copies carry one ref a
receiver can drop the second by; no other path sends twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

from trading import clock
from trading.runtime.store import Store
from trading.signals import alerts as _alerts

JSON = dict[str, Any]
MAX_ATTEMPTS = 8
MAX_AGE_S = 24 * 3600                  # an alert a day late is noise: give up, say so
BACKOFF_S = (0, 300, 900, 1800, 3600)  # after the 1st, 2nd, ... failure (the next run first)
STATUSES = ("pending", "sending", "sent", "failed", "superseded")


def now_iso(now: datetime | None = None) -> str:
    return (now or clock.now()).astimezone(timezone.utc).isoformat(
        timespec="microseconds")


def _after(now: str, seconds: float) -> str:
    return now_iso(datetime.fromisoformat(now) + timedelta(seconds=seconds))


def claim_expiry(timeout: float) -> float:
    """Seconds after which a ``sending`` claim is taken to be a dead process's: well past
    the longest a live sender holds one (one send, bounded by twice the timeout)."""
    return 2 * timeout + 60.0


def ref(kind: str, key: str, url_hash: str) -> str:
    """The message's idempotency key: the same on every attempt, different per URL
    (``trading-pr<prediction id>-...`` for an alert, ``trading-d<date>-...`` for a digest)."""
    return f"trading-{'p' if kind == 'prediction' else 'd'}{key}-{url_hash[:8]}"


# -- planning ---------------------------------------------------------------------------------
def record_run(store: Store, run_id: str, kind: str, predictor: str | None, *,
               now: str | None = None) -> None:
    """Put a prediction run in the alert stream (``kind``: ``job`` or ``notify``)."""
    with store.transaction() as db:
        db.execute("INSERT OR IGNORE INTO alert_runs (run_id, kind, predictor, created_at) "
                   "VALUES (?, ?, ?, ?)", (run_id, kind, predictor, now or now_iso()))


def plan_run(store: Store, targets: Sequence[tuple[str, Any]], rules: _alerts.Rules,
             prediction_ids: Iterable[int], *, now: str | None = None) -> int:
    """Write a pending row per URL for each of the run's predictions (live ones only) that the
    rules alert on against the last alert sent to that URL for its symbol; a row still waiting
    for the same URL and symbol is superseded. Returns the rows written. ``targets``:
    ``(url_hash, masked)`` pairs, where ``masked`` is a string or a callable giving it (only
    called when a row is written)."""
    now = now or now_iso()
    written = 0
    ids = sorted({i for i in prediction_ids if isinstance(i, int)})
    with store.transaction() as db:
        masked = {h: m for h, m in targets}
        rows = [r for r in (_alerts.prediction(db, i) for i in ids)
                if r is not None and r["origin"] == "live"]
        for row in rows:
            for url_hash, _ in targets:
                last = _alerts.told(db, url_hash, row["symbol"])
                was = last["call"] if last is not None else "HOLD"
                if rules.symbols and row["symbol"] not in rules.symbols:
                    continue
                db.execute("UPDATE notifications SET status = 'superseded', claim = NULL, "
                           "last_error = ? WHERE url_hash = ? AND symbol = ? AND kind = "
                           "'prediction' AND status = 'pending'",
                           (f"superseded by prediction {row['id']} (a newer run)", url_hash,
                            row["symbol"]))
                if _alerts.decide(row, was, rules) is None:
                    continue
                before = _alerts.prediction(db, last["prediction_id"]) if last else None
                message = _alerts.render(row, None if last is None else was, rules, before)
                written += _insert(db, "prediction", f"r{row['id']}", url_hash,
                                   _shown(masked, url_hash), message, now)
    return written


def _shown(masked: Mapping[str, Any], url_hash: str) -> str:
    value = masked[url_hash]
    if callable(value):
        value = value()
        masked[url_hash] = value  # type: ignore[index]
    return str(value)


def _insert(db, kind: str, key: str, url_hash: str, target: str,
            message: _alerts.Message, now: str) -> int:
    cur = db.execute(
        "INSERT OR IGNORE INTO notifications (kind, ref, url_hash, target, symbol, title, body,"
        " markdown, created_at, next_attempt_at, call, prediction_id, notify_type)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (kind, key, url_hash, target, message.symbol, message.title, message.body,
         message.markdown, now, now, message.call, message.prediction_id, message.notify_type))
    return cur.rowcount


def stream_predictor(store: Store) -> str | None:
    """The predictor of the alert stream's latest run (the digest's hit rates are its)."""
    rows = store.query("SELECT predictor FROM alert_runs ORDER BY created_at DESC LIMIT 1")
    return rows[0]["predictor"] if rows else None


def plan_digest(store: Store, targets: Sequence[tuple[str, Any]], day: date,
                report: Mapping, rules: _alerts.Rules, *, now: str | None = None) -> int:
    """One digest of ``day`` (a Sydney date) per URL; a second call the same day adds none."""
    now = now or now_iso()
    written = 0
    with store.transaction() as db:
        message = _alerts.digest(db, day, report, rules)
        masked = {h: m for h, m in targets}
        for url_hash, _ in targets:
            exists = db.execute("SELECT 1 FROM notifications WHERE kind = 'digest' AND ref = ? "
                                "AND url_hash = ?", (day.isoformat(), url_hash)).fetchone()
            if not exists:
                written += _insert(db, "digest", day.isoformat(), url_hash,
                                   _shown(masked, url_hash), message, now)
    return written


# -- delivering -------------------------------------------------------------------------------
def due(store: Store, url_hashes: Iterable[str], *, timeout: float,
        now: str | None = None) -> list[Any]:
    """Rows to try now for these URLs, oldest first: pending ones whose time has come, and
    ``sending`` ones whose claim has expired (their sender died). Rows too old to be worth
    sending are given up first (``failed``, with the reason)."""
    hashes = list(url_hashes)
    if not hashes:
        return []
    now = now or now_iso()
    stale = _after(now, -MAX_AGE_S)
    with store.transaction() as db:
        db.execute("UPDATE notifications SET status = 'failed', claim = NULL, last_error = "
                   "coalesce(last_error || '; ', '') || 'not delivered within 24 h: given up' "
                   "WHERE status IN ('pending', 'sending') AND created_at < ?", (stale,))
    marks = ",".join("?" * len(hashes))
    return store.query(
        f"SELECT * FROM notifications WHERE url_hash IN ({marks}) AND ("
        "(status = 'pending' AND next_attempt_at <= ?) OR "
        "(status = 'sending' AND claimed_at < ?)) ORDER BY id",
        (*hashes, now, _after(now, -claim_expiry(timeout))))


def claim(store: Store, row_id: int, token: str, *, timeout: float,
          now: str | None = None) -> Any | None:
    """Take the row for sending (committed before the send); None when another process has
    it or it is no longer due. Returns the claimed row (``attempts`` already counted)."""
    now = now or now_iso()
    with store.transaction() as db:
        cur = db.execute(
            "UPDATE notifications SET status = 'sending', claim = ?, claimed_at = ?, "
            "attempts = attempts + 1 WHERE id = ? AND ("
            "(status = 'pending' AND next_attempt_at <= ?) OR "
            "(status = 'sending' AND claimed_at < ?))",
            (token, now, row_id, now, _after(now, -claim_expiry(timeout))))
        if cur.rowcount != 1:
            return None
        return db.execute("SELECT * FROM notifications WHERE id = ?", (row_id,)).fetchone()


def new_token() -> str:
    return uuid.uuid4().hex


def mark_sent(store: Store, row_id: int, token: str, *, now: str | None = None) -> bool:
    with store.transaction() as db:
        cur = db.execute("UPDATE notifications SET status = 'sent', sent_at = ?, claim = NULL "
                         "WHERE id = ? AND claim = ?", (now or now_iso(), row_id, token))
        return cur.rowcount == 1


def mark_failed(store: Store, row_id: int, token: str, error: str, *,
                now: str | None = None) -> str | None:
    """Record a failed attempt (``error`` already redacted): pending again after the backoff,
    or failed for good. Returns the new status (None if the claim was lost meanwhile)."""
    now = now or now_iso()
    with store.transaction() as db:
        row = db.execute("SELECT attempts, created_at FROM notifications WHERE id = ? AND "
                         "claim = ?", (row_id, token)).fetchone()
        if row is None:
            return None
        attempts = row["attempts"]
        give_up = attempts >= MAX_ATTEMPTS or row["created_at"] < _after(now, -MAX_AGE_S)
        status = "failed" if give_up else "pending"
        wait = BACKOFF_S[min(attempts, len(BACKOFF_S)) - 1]
        db.execute("UPDATE notifications SET status = ?, claim = NULL, last_error = ?, "
                   "next_attempt_at = ? WHERE id = ?",
                   (status, error[:500], _after(now, wait), row_id))
        return status


def release(store: Store, row_id: int, token: str) -> None:
    """Hand a claimed row back untried (its attempt is not counted)."""
    with store.transaction() as db:
        db.execute("UPDATE notifications SET status = 'pending', claim = NULL, "
                   "attempts = attempts - 1 WHERE id = ? AND claim = ?", (row_id, token))


# -- reading ----------------------------------------------------------------------------------
def status(store: Store, *, sent_limit: int = 20) -> JSON:
    """The outbox for ``trading notify status``: counts, every row still open or given up,
    and the latest done (sent, or superseded by a newer run before it could be sent)."""
    counts = {s: 0 for s in STATUSES}
    for r in store.query("SELECT status, count(*) AS n FROM notifications GROUP BY status"):
        counts[r["status"]] = r["n"]
    cols = ("id, kind, ref, target, symbol, title, notify_type, status, attempts, created_at, "
            "next_attempt_at, claimed_at, sent_at, last_error")
    open_rows = store.query(f"SELECT {cols} FROM notifications WHERE status NOT IN "
                            "('sent', 'superseded') ORDER BY id")
    done = store.query(f"SELECT {cols} FROM notifications WHERE status IN ('sent', "
                       "'superseded') ORDER BY id DESC LIMIT ?", (sent_limit,))
    return {"counts": counts,
            "rows": [dict(r) for r in open_rows] + [dict(r) for r in done]}
