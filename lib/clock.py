"""The wall clock of every service and job, which ``TRADING_NOW`` pins.

Whatever asks "what time is it?" of the world (the market calendar, the bar cache's
freshness, the sample source's last session, the training window, outcome scoring, the job
gate, the dashboard's "5 min ago", the time a prediction or an alert is stamped with) asks
this module. With ``TRADING_NOW`` set (ISO 8601, e.g. ``2026-12-24T11:00+11:00``; a time
without an offset is Sydney time) that is the answer, in every process that has the
variable, so a dry run ("what would the 11:00 job have done on Christmas Eve?") and the tests
give the same result on any day they run. Durations and timeouts are not wall-clock time:
they use ``time.monotonic`` and keep moving.

A process reads ``TRADING_NOW`` from its own environment: for the services of an installed
stack, set it in the manager (``systemctl --user set-environment TRADING_NOW=...``) and
restart them; ``unset-environment`` ends the dry run.
"""

from __future__ import annotations

import datetime as dt
import os
import time as _time

from trading.errors import ConfigError

__all__ = ["pinned", "now", "time", "today"]

VARIABLE = "TRADING_NOW"


def pinned(environ: os._Environ | dict[str, str] | None = None) -> dt.datetime | None:
    """The moment ``TRADING_NOW`` names (timezone-aware), or None when it is unset or empty.

    Raises :class:`~trading.errors.ConfigError` when it is not an ISO 8601 date-time."""
    text = (os.environ if environ is None else environ).get(VARIABLE, "").strip()
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{VARIABLE}={text!r} is not an ISO 8601 date-time "
                          "(e.g. 2026-12-24T11:00+11:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=sydney())
    return moment


def now(tz: dt.tzinfo = dt.timezone.utc) -> dt.datetime:
    """The current moment in ``tz`` (UTC by default), timezone-aware."""
    moment = pinned()
    return dt.datetime.fromtimestamp(_time.time(), tz) if moment is None else moment.astimezone(tz)


def time() -> float:
    """The current moment as seconds since the epoch, like ``time.time()``."""
    moment = pinned()
    return _time.time() if moment is None else moment.timestamp()


def today() -> dt.date:
    """Today's date in Sydney, the exchange's calendar day."""
    return now(sydney()).date()


def sydney() -> dt.tzinfo:
    """Australia/Sydney, the exchange's time zone (zoneinfo, ~3 ms to import, is loaded on
    first use: not on a cold start that never needs it)."""
    from zoneinfo import ZoneInfo

    return ZoneInfo("Australia/Sydney")  # ZoneInfo keeps one instance per key
