"""How much history: the periods ``get_bars`` accepts, and the sessions a summary needs.

One table for every place that asks market-data for bars or decides how many bars an
indicator needs before it means anything: the market-data service (the periods it accepts,
how far back a summary fetches), training and backtests (how far back they fetch, where a
backtest window may start), outcome scoring and the replay.

A period is **calendar days** counted back from a series' last bar (the ASX has about 252
sessions in 365 days); the lookback and the warm-up are **sessions**, i.e. bars.
"""

from __future__ import annotations

# get_bars period -> the calendar days it covers, shortest first
PERIODS: dict[str, int] = {"5d": 7, "1mo": 31, "3mo": 92, "6mo": 183, "1y": 366, "2y": 731,
                           "5y": 1827, "10y": 3653, "max": 54790}
LONGEST = "10y"   # the longest fixed span
WHOLE = "max"     # everything the source has (150 years): a local folder's whole record

LOOKBACK_SESSIONS = 260  # bars one summary sees: about a year, what market-data summarises
SUMMARY_DAYS = 400       # calendar days fetched for one summary: LOOKBACK_SESSIONS and a margin
# MACD(12, 26, 9)'s signal line and histogram exist from the 34th bar (index 33; see
# trading.market.indicators), the last indicator to warm up; one more bar as a margin.
WARMUP_SESSIONS = 35
HISTORY_YEARS = 3        # how far back training and backtests fetch from a remote source
# Bars before the first one a chart draws: MACD's EMAs take about 200 bars to settle (the
# warm-up above is when they exist, not when they stop depending on where they started).
SETTLE_SESSIONS = 200


def sessions_to_days(sessions: int) -> int:
    """Calendar days that hold about ``sessions`` ASX sessions (252 in 365 days)."""
    return -(-sessions * 365 // 252)


def covering(days: int, shortest: str = "5d") -> str:
    """The shortest period covering ``days`` calendar days, but not shorter than ``shortest``;
    :data:`WHOLE` beyond :data:`LONGEST`."""
    floor = PERIODS[shortest]
    for period, span in PERIODS.items():
        if span >= floor and span >= days:
            return period
    return WHOLE
