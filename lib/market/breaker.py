"""The circuit breaker in front of every upstream: how long to leave one alone after a failure.

:class:`UpstreamState` keeps, per upstream name (``yahoo`` for bars, ``yahoo-news`` for news,
``csv:DIR`` ...), the outcome of the last call and how long nobody should call again, in the
store's ``upstream`` table, so a freshly started process honours a backoff another one
recorded. One policy for every name: a rate limit backs off :data:`BACKOFF_S`, doubling with
each rate limit in a row up to :data:`MAX_BACKOFF_S` (Yahoo publishes no limits and wants
minutes); any other failure of the upstream (unreachable, a bug) pauses it :data:`PAUSE_S`,
so an outage costs one call, not one per request; a success clears both.

What a failure *is* (``"rate-limit"``, ``"network"``) is decided where the foreign exception
is met (:mod:`trading.market.yahoo` for Yahoo); this module only stores outcomes and keeps
time. The ``feed`` column (migration 0006) keeps bars' and news' rows apart where they are
listed: market-data's health reports the last call of a bar source, never one of news.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~2 ms of a cold health_check; annotations are strings
if TYPE_CHECKING:
    from typing import Any

from trading.errors import UpstreamUnavailable

__all__ = ["BACKOFF_S", "MAX_BACKOFF_S", "PAUSE_S", "FAILURES", "UpstreamState"]

BACKOFF_S = 300.0            # after a 429; doubled for each 429 in a row ...
MAX_BACKOFF_S = 1800.0       # ... up to this
PAUSE_S = 30.0               # after any other failure of the upstream as a whole
FAILURES = ("rate-limit", "network", "error")  # outcomes that leave the upstream alone a while


class UpstreamState:
    """The ``upstream`` table for one ``feed`` (``"bars"`` or ``"news"``) of a store.

    :meth:`refusal` says whether to call an upstream now, :meth:`record` what a call came to
    (and so how long to leave the upstream alone), :meth:`last` the feed's most recent call.
    """

    def __init__(self, store, feed: str) -> None:
        self.store = store
        self.feed = feed

    def refusal(self, name: str, now: float, **data: Any) -> UpstreamUnavailable | None:
        """The error to answer instead of calling ``name`` while it is left alone, else None.
        ``data`` (a symbol, say) goes into the error's data."""
        rows = self.store.query("SELECT backoff_until, outcome FROM upstream WHERE source = ?",
                                (name,))
        if not rows or now >= rows[0][0]:
            return None
        until, outcome = rows[0]
        wait = int(until - now)
        why = {"rate-limit": "rate limited", "network": "unreachable (network)"}.get(
            outcome, f"failed ({outcome})")
        return UpstreamUnavailable(f"{name} {why}; not asking again for {wait}s",
                                   reason=outcome, retry_after_s=wait, **data)

    def record(self, name: str, outcome: str, message: str, now: float) -> float:
        """Store a call's ``outcome`` (``ok``, ``empty`` or one of :data:`FAILURES`); returns
        when ``name`` may be called again (0 for at once)."""
        with self.store.transaction() as db:
            row = db.execute("SELECT failures FROM upstream WHERE source = ?", (name,)).fetchone()
            failures = (row[0] if row else 0) + 1 if outcome == "rate-limit" else 0
            if outcome == "rate-limit":
                until = now + min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (failures - 1))
            else:
                until = now + PAUSE_S if outcome in FAILURES else 0.0
            db.execute("INSERT OR REPLACE INTO upstream (source, feed, at, outcome, message, "
                       "backoff_until, failures) VALUES (?,?,?,?,?,?,?)",
                       (name, self.feed, now, outcome, message, until, failures))
        return until

    def last(self) -> dict[str, Any] | None:
        """The most recent call of this feed to any upstream (this process or an earlier one)."""
        rows = self.store.query("SELECT * FROM upstream WHERE feed = ? ORDER BY at DESC LIMIT 1",
                                (self.feed,))
        if not rows:
            return None
        r = rows[0]
        return {"source": r["source"], "at": r["at"], "outcome": r["outcome"],
                "message": r["message"], "backoff_until": r["backoff_until"] or None}
