"""The one table of history periods and warm-ups (trading.market.periods) and its users."""

from __future__ import annotations

import pytest

from trading.market import periods


@pytest.mark.parametrize("days, shortest, period", [
    (0, "5d", "5d"), (7, "5d", "5d"), (8, "5d", "1mo"), (183, "5d", "6mo"),
    (0, "1y", "1y"), (366, "1y", "1y"), (367, "1y", "2y"), (1827, "1y", "5y"),
    (3653, "1y", "10y"), (3654, "1y", "max"), (9999, "1y", "max"),
])
def test_the_shortest_period_covering_n_days(days, shortest, period):
    assert periods.covering(days, shortest) == period


def test_every_user_reads_the_one_table():
    from trading.handlers import market_data
    from trading.learning import features

    assert market_data.PERIODS is periods.PERIODS
    assert list(periods.PERIODS) == sorted(periods.PERIODS, key=periods.PERIODS.get)
    # The whole record is the last period; the longest fixed span comes just before it.
    assert periods.WHOLE == max(periods.PERIODS, key=periods.PERIODS.get)
    assert list(periods.PERIODS)[-2:] == [periods.LONGEST, periods.WHOLE]
    assert features.history.__kwdefaults__["lookback"] == periods.LOOKBACK_SESSIONS
    # A summary's fetch holds its lookback: 260 sessions are about 380 calendar days.
    assert periods.SUMMARY_DAYS >= periods.LOOKBACK_SESSIONS * 365 / 252
