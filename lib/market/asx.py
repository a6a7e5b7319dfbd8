"""The ASX trading calendar: sessions, hours, early closes and holidays, without pandas.

Used by market data (is a bar final, how long is a cache fresh) and by the scheduled jobs
(systemd timers fire on weekdays; the job asks :func:`is_session` and skips holidays).

Facts: times are Australia/Sydney (AEST/AEDT, so UTC offsets move);
continuous trading ~10:00-16:00, closing auction ~16:10, post-close until ~16:21; early close
14:10 on the last trading day before Christmas and on 31 December. Closures come from
``holidays.financial_holidays("XASX")`` (not the NSW public-holiday list, which has days the
ASX trades). The ``holidays`` import costs ~0.1 s, so it happens on first use, not at import.

That table starts in 2000, and a trader's own files go back to the 1980s. Before its first
year (:func:`_early_closures`) the closures are the exchange's holidays taken from
``holidays.Australia(subdiv="NSW")``: Good Friday, Easter Monday, ANZAC Day and the Queen's
Birthday, and not the NSW Bank Holiday or Labour Day, nor an ANZAC Day moved off a Sunday (the
ASX traded on those). New Year's Day, Australia Day, Christmas and Boxing Day fall on the first
weekdays on or after them, as in the XASX table (the NSW list of the 1990s moves only one of
Christmas and Boxing Day off a weekend, and Australia Day not always). Plus the one-off
closure of 31 December 1999 (Y2K). Checked against the rows of twenty ASX stocks and the ASX
200 from 1992 to 1999: every other weekday has a row and every closure has none, except
26 January 1993, on which the back-calculated index has a value.
"""

from __future__ import annotations

import datetime as dt
import threading
from functools import lru_cache
from zoneinfo import ZoneInfo

from trading import clock

TZ = ZoneInfo("Australia/Sydney")
OPEN = dt.time(10, 0)
CLOSE = dt.time(16, 0)
EARLY_CLOSE = dt.time(14, 10)
# The closing auction ends ~16:12 (14:22 on an early close); after this the day's bar is final.
CLOSING_AUCTION = dt.timedelta(minutes=12)

__all__ = ["TZ", "is_session", "holiday_name", "session_hours", "is_open", "session_date",
           "previous_session", "next_session", "sessions_between", "last_closed_session",
           "is_early_close", "final_at", "now"]

_lock = threading.Lock()
_holidays: dict[int, dict[dt.date, str]] = {}

# The NSW public holidays the exchange closes for, before the XASX table starts (names as the
# holidays package spells them; the rest of the closures are placed by _early_closures).
NSW_CLOSURES = frozenset({"Good Friday", "Easter Monday", "ANZAC Day", "Queen's Birthday",
                          "King's Birthday"})
ONE_OFF_CLOSURES = {dt.date(1999, 12, 31): "Y2K closure"}

def now() -> dt.datetime:
    """The current moment, timezone-aware, in Sydney time (``TRADING_NOW`` pins it:
    :mod:`trading.clock`)."""
    return clock.now(TZ)


def _year(year: int) -> dict[dt.date, str]:
    with _lock:
        table = _holidays.get(year)
        if table is None:
            import holidays  # ~0.1 s: only on the paths that need the calendar

            xasx = holidays.financial_holidays("XASX", years=year)
            table = dict(xasx.items()) if year >= xasx.start_year else _early_closures(year)
            _holidays[year] = table
        return table


def _early_closures(year: int) -> dict[dt.date, str]:
    """The closures of a year before the XASX table (see the module docstring)."""
    import holidays

    table = {day: name for day, name in holidays.Australia(subdiv="NSW", years=year).items()
             if name in NSW_CLOSURES}

    def weekdays_from(day: dt.date, count: int) -> list[dt.date]:
        out = []
        while len(out) < count:
            if day.weekday() < 5:
                out.append(day)
            day += dt.timedelta(days=1)
        return out

    table[weekdays_from(dt.date(year, 1, 1), 1)[0]] = "New Year's Day"
    table[weekdays_from(dt.date(year, 1, 26), 1)[0]] = "Australia Day"
    christmas, boxing = weekdays_from(dt.date(year, 12, 25), 2)
    table[christmas], table[boxing] = "Christmas Day", "Boxing Day"
    table.update((day, name) for day, name in ONE_OFF_CLOSURES.items() if day.year == year)
    return table


def holiday_name(day: dt.date) -> str | None:
    """The name of the ASX closure on ``day``, or None (weekends are not holidays)."""
    return _year(day.year).get(day)


def is_session(day: dt.date) -> bool:
    """True when the ASX trades on ``day`` (a weekday that is not an exchange holiday)."""
    return day.weekday() < 5 and day not in _year(day.year)


@lru_cache(maxsize=64)
def is_early_close(day: dt.date) -> bool:
    """The last session before Christmas and 31 December close at 14:10."""
    if not is_session(day):
        return False
    if day.month == 12 and day.day == 31:
        return True
    christmas = dt.date(day.year, 12, 25)
    return day < christmas and next_session(day) > christmas


def session_hours(day: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
    """``(open, close)`` of continuous trading on ``day`` in Sydney time; None on a closure."""
    if not is_session(day):
        return None
    close = EARLY_CLOSE if is_early_close(day) else CLOSE
    return (dt.datetime.combine(day, OPEN, TZ), dt.datetime.combine(day, close, TZ))


def final_at(day: dt.date) -> dt.datetime:
    """When ``day``'s bar stops changing: the end of its closing auction."""
    hours = session_hours(day)
    if hours is None:
        raise ValueError(f"{day} is not an ASX session")
    return hours[1] + CLOSING_AUCTION


def _local(moment: dt.datetime | None) -> dt.datetime:
    if moment is None:
        return now()
    if moment.tzinfo is None:
        raise ValueError("use a timezone-aware datetime")
    return moment.astimezone(TZ)


def is_open(moment: dt.datetime | None = None) -> bool:
    """True during continuous trading (open <= moment < close) on a session."""
    t = _local(moment)
    hours = session_hours(t.date())
    return hours is not None and hours[0] <= t < hours[1]


def session_date(moment: dt.datetime | None = None) -> dt.date:
    """The exchange-local date of ``moment`` (a bar's session date; never the UTC date)."""
    return _local(moment).date()


def previous_session(day: dt.date) -> dt.date:
    """The last session strictly before ``day``."""
    d = day - dt.timedelta(days=1)
    while not is_session(d):
        d -= dt.timedelta(days=1)
    return d


def next_session(day: dt.date) -> dt.date:
    """The first session strictly after ``day``."""
    d = day + dt.timedelta(days=1)
    while not is_session(d):
        d += dt.timedelta(days=1)
    return d


def last_closed_session(moment: dt.datetime | None = None) -> dt.date:
    """The latest session whose bar is final at ``moment``."""
    t = _local(moment)
    day = t.date()
    if is_session(day) and t >= final_at(day):
        return day
    return previous_session(day)


def sessions_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every session with ``start <= day <= end``."""
    out = []
    d = start
    while d <= end:
        if is_session(d):
            out.append(d)
        d += dt.timedelta(days=1)
    return out
