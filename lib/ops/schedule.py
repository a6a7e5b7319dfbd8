"""The market-hours gate of the scheduled jobs: run now, or say in one line why not.

systemd timers (units/trading-*.timer) know weekdays and Sydney wall-clock time, but not the
ASX calendar: a timer fires on Christmas Day and on Good Friday like on any weekday, and a
``Persistent=`` timer catches up at boot whatever the hour. So each job asks :func:`gate`
first; on a holiday or outside the session it prints the reason ("market closed: Christmas
Day") and exits 0, which leaves the unit green and the journal readable.

The gate lives in ``trading job NAME`` (cli/schedule.py), not in ``trading predict``: a person
who runs ``trading predict`` at 20:00 on a Sunday still gets predictions (from the last closed
session), while the timer's run at that hour would be noise.

The clock is an argument; :func:`now` reads ``TRADING_NOW`` (ISO 8601, e.g.
``2026-12-25T11:00+11:00``; a time without an offset is Sydney time) so tests and dry runs can
ask "what would the job do then?" on a real install. Unset, it is the real time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from trading import clock
from trading.market import asx

logger = logging.getLogger(__name__)

# How long after the closing prices reach the free feed (the auction's end plus its 20-minute
# delay: 16:32 on a normal day) a predict run still counts as the day's final run. The timer's
# final run is 16:35 plus at most RandomizedDelaySec= (60 s) and AccuracySec= (1 min) late; a
# cron line firing every half hour (docs/scheduling.md) has its final run at 17:00, 28 minutes after; on
# an early-close day (prices in the feed at 14:42) the 15:00 run is the last, with 10 minutes
# to spare, and 15:30 and 16:35 are turned away.
FINAL_RUN_GRACE = dt.timedelta(minutes=30)

JOBS = ("predict", "outcomes", "train")
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@dataclass(frozen=True)
class Decision:
    """Whether the job runs, and the one line that says why (printed either way)."""

    run: bool
    reason: str


def now(environ: Mapping[str, str] | None = None) -> dt.datetime:
    """The job's clock: ``TRADING_NOW`` if set, else the real time; always Sydney time."""
    moment = clock.pinned(environ)
    return asx.now() if moment is None else moment.astimezone(asx.TZ)


def _hm(t: dt.datetime) -> str:
    return t.strftime("%H:%M")


def closed_because(day: dt.date) -> str | None:
    """Why the ASX does not trade on ``day`` (a holiday's name or the weekday), or None."""
    if day.weekday() >= 5:
        return _DAYS[day.weekday()]
    return asx.holiday_name(day)


def gate(job: str, moment: dt.datetime) -> Decision:
    """May ``job`` run at ``moment``? (``moment`` must be timezone-aware.)

    - predict: on a session, from the open until :data:`FINAL_RUN_GRACE` after the closing
      prices reach the (delayed) feed, so the final run, made from the final close, is kept,
      also on an early close. A run between the close and then is made from prices that will
      still change, and says so.
    - outcomes: on a session once its closing prices are in the feed; a run before that (a
      catch-up at boot in the morning) waits, losing nothing: the next run scores every
      pending prediction.
    - train: always; it fires on Saturday, uses only closed sessions, and a missed week's
      catch-up run is as good as the scheduled one.
    """
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}")
    if moment.tzinfo is None:
        raise ValueError("use a timezone-aware datetime")
    t = moment.astimezone(asx.TZ)
    if job == "train":
        return Decision(True, "weekly training: runs on any day")
    day = t.date()
    closed = closed_because(day)
    if closed is not None:
        return Decision(False, f"market closed: {closed}")
    from trading.market.summary import settles_at

    open_, close = asx.session_hours(day)
    settled = settles_at(day)  # the closing auction's prices, in the 20-minute delayed feed
    early = f" (early close {_hm(close)})" if asx.is_early_close(day) else ""
    if job == "outcomes":
        if t < settled:
            return Decision(False, f"session not over: today's closing prices are final at "
                                   f"{_hm(settled)} Sydney{early}; scoring waits for the next "
                                   "run")
        return Decision(True, f"session closed{early}: scoring outcomes")
    if t < open_:
        return Decision(False, f"market closed: opens at {_hm(open_)} Sydney")
    if t > settled + FINAL_RUN_GRACE:
        return Decision(False, f"market closed: closed at {_hm(close)} Sydney"
                               + (" (early close)" if early else ""))
    if t >= settled:
        return Decision(True, f"after the close{early}: final run of the session")
    if t >= close:
        return Decision(True, f"after the close{early}: prices final at {_hm(settled)} "
                              "Sydney, so this is not the session's final run")
    return Decision(True, "market open")
