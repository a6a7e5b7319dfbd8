"""Intraday bars on the ASX: which bars exist for an interval, when each is complete, how
far back Yahoo keeps them. Pure calendar arithmetic over :mod:`trading.market.asx`; no I/O,
no clock unless given one, no pandas.

Intervals: ``1h``, ``30m`` and ``15m`` (:data:`INTERVALS`); ``1d`` is the daily series of
:mod:`trading.market.bars` and is not handled here.

**Which bars exist on a session** (times Australia/Sydney, whatever the UTC offset: +11:00
from early October to early April, +10:00 the rest of the year; a daylight-saving change is
always on a Sunday, so it never falls inside a session):

- continuous trading 10:00-16:00, no lunch break, cut into bars that start at 10:00 and
  every interval after it while the start is before 16:00: six ``1h`` bars (10:00 ... 15:00),
  twelve ``30m``, twenty-four ``15m``;
- then **one auction bar stamped 16:00**, holding the closing single price auction
  (~16:10-16:11) and the post-close session at its price (to ~16:21). This is how Yahoo
  presents the ASX: its hourly intervals for ``.AX`` are 10:00-11:00 ... 15:00-16:00 plus
  16:00-16:11 (yfinance-cache's ASX tests: "only ASX does this"); the 1-minute data has the
  auction print at 16:10. yfinance drops a bar stamped at or after the end Yahoo gives for
  the session on some exchanges, so the auction bar can be absent from a fetch: it is kept
  when it comes, and its absence is not a missing bar;
- an **early close** (the last session before Christmas, 31 December: the ASX "closes at
  14:10", i.e. continuous trading to 14:00, then the closing auction at ~14:10): bars from
  10:00 while the start is before 14:00 (four ``1h``, eight ``30m``, sixteen ``15m``), then
  the auction bar stamped 14:00. (:func:`trading.market.asx.session_hours` gives 14:10 as
  that day's close: the daily series only needs to know when the day's bar settles.)
- no bar at all on a weekend or an ASX closure (the calendar of :mod:`trading.market.asx`).

A bar stamped ``s`` covers ``[s, s + interval)`` cut at the end of continuous trading; the
auction bar ends when the auction does (:func:`trading.market.asx.final_at`, 16:12 or 14:22).
A bar is **complete** (final) when the free feed, delayed :data:`DATA_DELAY`, has all of it:
its end plus 20 minutes. Until then it is the bar in progress: stored and served, flagged
``final: false``, and never used for an indicator.

**How far back** (:data:`YAHOO_REACH_DAYS`): Yahoo serves ``1h`` bars for the last 730 days
and ``30m``/``15m`` for the last 60; a request reaching further is refused by Yahoo (which
yfinance only logs), so it is refused here first, in one line (:func:`check_reach`). A local
file has no such limit.

Bars are keyed by their start as ISO 8601 with the Sydney offset
(``2024-04-05T10:00:00+11:00``, :func:`stamp`): in one exchange time zone these strings sort
as the moments do, and their first ten characters are the session date, which is what
:mod:`trading.market.gaps` reads.
"""

from __future__ import annotations

import datetime as dt

from trading.market import asx

__all__ = ["INTERVALS", "YAHOO_REACH_DAYS", "is_intraday", "step", "continuous_end", "slots",
           "auction_slot", "bar_end", "final_at", "is_final", "slot_of", "stamp", "parse",
           "fresh_until", "earliest", "check_reach", "reach_days"]

INTERVALS: dict[str, int] = {"1h": 60, "30m": 30, "15m": 15}  # interval -> minutes
YAHOO_REACH_DAYS: dict[str, int] = {"1h": 730, "30m": 60, "15m": 60}
CONTINUOUS_END = dt.time(16, 0)
EARLY_CONTINUOUS_END = dt.time(14, 0)
# A trade stamped this long after the end of continuous trading still belongs to the auction
# bar: the auction (~+10 min) and the post-close session at its price (to ~+21.5 min).
AUCTION_SPAN = dt.timedelta(minutes=22)
# Since 23 June 2025 continuous trading may start at 09:59:45, after the opening auction: a
# row stamped in the last minute before 10:00 belongs to the first bar.
OPEN_LEAD = dt.timedelta(minutes=1)
DATA_DELAY = dt.timedelta(minutes=20)  # free ASX prices (trading.market.summary.DATA_DELAY)
LIVE_TTL = dt.timedelta(minutes=5)     # how often a bar in progress is asked again
LATE_BAR_WINDOW = dt.timedelta(hours=3)


def is_intraday(interval: str) -> bool:
    return interval in INTERVALS


def step(interval: str) -> dt.timedelta:
    """The length of one bar of ``interval``; ValueError for one that is not intraday."""
    try:
        return dt.timedelta(minutes=INTERVALS[interval])
    except KeyError:
        raise ValueError(f"interval {interval!r} is not intraday; use "
                         f"{', '.join(INTERVALS)}") from None


def continuous_end(day: dt.date) -> dt.datetime | None:
    """When continuous trading ends on ``day`` (16:00, 14:00 on an early close); None on a
    day without a session."""
    if not asx.is_session(day):
        return None
    end = EARLY_CONTINUOUS_END if asx.is_early_close(day) else CONTINUOUS_END
    return dt.datetime.combine(day, end, asx.TZ)


def auction_slot(day: dt.date) -> dt.datetime | None:
    """The stamp of ``day``'s auction bar (the end of continuous trading)."""
    return continuous_end(day)


def slots(day: dt.date, interval: str, *, auction: bool = True) -> list[dt.datetime]:
    """The starts of the bars of ``interval`` on ``day``, in order; the auction bar last
    (unless ``auction`` is false). Empty on a day without a session."""
    end = continuous_end(day)
    if end is None:
        return []
    width = step(interval)
    out, t = [], dt.datetime.combine(day, asx.OPEN, asx.TZ)
    while t < end:
        out.append(t)
        t += width
    if auction:
        out.append(end)
    return out


def parse(when: str | dt.datetime) -> dt.datetime:
    """A bar's stamp (or a datetime) as an aware Sydney datetime."""
    moment = dt.datetime.fromisoformat(when) if isinstance(when, str) else when
    if moment.tzinfo is None:
        return moment.replace(tzinfo=asx.TZ)
    return moment.astimezone(asx.TZ)


def stamp(moment: dt.datetime) -> str:
    """The key of the bar starting at ``moment``: ``2024-04-05T10:00:00+11:00``."""
    return parse(moment).isoformat(timespec="seconds")


def bar_end(start: str | dt.datetime, interval: str) -> dt.datetime:
    """When the bar starting at ``start`` stops trading: ``start + interval`` cut at the end
    of continuous trading; for the auction bar, the end of the closing auction."""
    s = parse(start)
    end = continuous_end(s.date())
    if end is None:
        return s + step(interval)  # a bar on a closure: junk, complete once its span is over
    if s >= end:
        return asx.final_at(s.date())
    return min(s + step(interval), end)


def final_at(start: str | dt.datetime, interval: str) -> dt.datetime:
    """When the free (delayed) feed has all of the bar starting at ``start``."""
    return bar_end(start, interval) + DATA_DELAY


def is_final(start: str | dt.datetime, interval: str, fetched_at: dt.datetime) -> bool:
    """Whether the bar starting at ``start``, fetched at ``fetched_at``, is complete."""
    return fetched_at >= final_at(start, interval)


def slot_of(moment: dt.datetime, interval: str) -> dt.datetime | None:
    """The start of the bar of ``interval`` that a trade at ``moment`` belongs to, or None
    when ``moment`` is outside every bar (a closure, before the open, after the post-close)."""
    t = parse(moment)
    day = t.date()
    end = continuous_end(day)
    if end is None:
        return None
    opening = dt.datetime.combine(day, asx.OPEN, asx.TZ)
    if opening - OPEN_LEAD <= t < end:
        minutes = max(0, int((t - opening).total_seconds() // 60))
        width = INTERVALS[interval]
        return opening + dt.timedelta(minutes=minutes // width * width)
    if end <= t < end + AUCTION_SPAN:
        return end
    return None


def fresh_until(fetched_at: dt.datetime, interval: str, last: str | None = None
                ) -> dt.datetime:
    """How long an intraday series fetched at ``fetched_at`` may be served without asking
    again: during a session (from its open until its auction bar is final) :data:`LIVE_TTL`,
    but never past the moment the next bar becomes complete; before the open, until the
    open; after it, until the next session opens, unless the series (``last``: the stamp of
    its last bar) still lacks the day's last continuous bar: the feed is late, so ask again
    every :data:`LIVE_TTL` for :data:`LATE_BAR_WINDOW`."""
    t = fetched_at.astimezone(asx.TZ)
    day = t.date()
    hours = asx.session_hours(day)
    if hours is not None:
        opening = hours[0]
        if t < opening:
            return opening
        starts = slots(day, interval)
        settled = final_at(starts[-1], interval)
        if t < settled:
            upcoming = [f for f in (final_at(s, interval) for s in starts) if f > t]
            return min(t + LIVE_TTL, upcoming[0])
        if last is not None and last < stamp(starts[-2] if len(starts) > 1 else starts[-1]) \
                and t < settled + LATE_BAR_WINDOW:
            return t + LIVE_TTL
    return asx.session_hours(asx.next_session(day))[0]


# -- how far back ------------------------------------------------------------------------------
def reach_days(interval: str) -> int:
    """Calendar days back from today that Yahoo serves bars of ``interval`` for."""
    return YAHOO_REACH_DAYS[interval]


def earliest(interval: str, today: dt.date) -> dt.date:
    """The first session date whose bars of ``interval`` Yahoo still serves on ``today``
    (the limit is counted in days back from the moment of the request, so the day on the
    limit itself is cut: one day of margin)."""
    return today - dt.timedelta(days=reach_days(interval) - 1)


def check_reach(interval: str, start: dt.date, today: dt.date) -> None:
    """Raise :class:`~trading.errors.InvalidParams` (one line) when bars of ``interval``
    from ``start`` reach back further than Yahoo keeps them."""
    first = earliest(interval, today)
    if start < first:
        from trading.errors import InvalidParams

        raise InvalidParams(
            f"yahoo keeps {interval} bars for the last {reach_days(interval)} days only "
            f"(from {first}); {start} is {(today - start).days} days back: ask for a shorter "
            f"period, or period max for all of them", interval=interval,
            earliest=first.isoformat())
