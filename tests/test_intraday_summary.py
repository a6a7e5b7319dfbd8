"""The intraday summary (issue 29): the old service's window of hourly bars, the shape of the
daily summary, and the streaming form a replay uses giving the same values bar by bar."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from trading import config
from trading.market import indicators as ind
from trading.market import intraday, intraday_summary
from trading.market.reading import read_csv
from trading.market.summary import Bars, summarize as daily_summarize

DATA = Path(__file__).parent / "data" / "asx-intraday"


@pytest.fixture(scope="module")
def hourly() -> Bars:
    return read_csv(DATA / "CBA.AX.1h.csv", interval="1h")[0]


@pytest.fixture(scope="module")
def quarter() -> Bars:
    return read_csv(DATA / "CBA.AX.15m.csv", interval="15m")[0]


def index_of(bars: Bars, every: int | None = 3) -> Bars:
    """An index that moves unlike the stock and lacks some of its bars (every ``every``-th;
    None: none)."""
    keep = [i for i in range(len(bars)) if every is None or i % every != 1]
    wave = 7000.0 * (1.0 + 0.01 * np.sin(np.arange(len(bars)) / 5.0))
    return Bars([bars.dates[i] for i in keep], wave[keep], wave[keep], wave[keep], wave[keep],
                np.zeros(len(keep)))


def last_sessions(bars: Bars, n: int) -> Bars:
    days = sorted({d[:10] for d in bars.dates})[-n:]
    return bars[next(i for i, d in enumerate(bars.dates) if d[:10] >= days[0]):]


def test_every_intraday_interval_has_the_old_services_five_day_window():
    assert set(intraday_summary.WINDOW_SESSIONS) == set(intraday.INTERVALS)
    assert set(intraday_summary.WINDOW_SESSIONS.values()) == {5}  # period="5d"
    with pytest.raises(ValueError, match="not intraday"):
        intraday_summary.summarize("CBA.AX", [], [], "1d", config.get())


def test_the_summary_has_the_daily_shape_and_counts_bars_of_the_last_five_sessions(hourly):
    cfg = config.get()
    upto = hourly[:hourly.dates.index("2024-04-05T15:00:00+11:00") + 1]
    s = intraday_summary.summarize("CBA.AX", upto, index_of(hourly), "1h", cfg)
    daily = daily_summarize("CBA.AX", upto, index_of(hourly), cfg)
    assert set(s) == set(daily)
    assert set(s["technical"]) == set(daily["technical"])
    assert set(s["volume"]) == set(daily["volume"])
    assert set(s["market_context"]) == set(daily["market_context"])
    assert s["as_of"] == "2024-04-05T15:00:00+11:00"
    assert s["volume"]["volume_through"] == s["as_of"]
    # The window: 2 April (after Easter Monday) to 5 April, 10:00 to 15:00: 4*7 + 6 bars.
    w = last_sessions(upto, 5)
    assert w.dates[0] == "2024-03-28T10:00:00+11:00" and len(w) == 7 + 3 * 7 + 6
    close = w.close
    assert s["technical"]["rsi"] == round(float(ind.rsi(close, 14)[-1]), 4)
    assert s["technical"]["price_vs_sma20"] == round(
        (close[-1] / close[-20:].mean() - 1) * 100, 4)
    assert s["technical"]["current_price"] == round(float(close[-1]), 4)
    assert s["volume"]["volume_trend"] == round(
        float(w.volume[-5:].mean() / w.volume[-20:].mean() - 1), 4)
    # 34 bars: the MACD histogram's first value (26 + 9 - 1); one bar fewer has none.
    assert s["technical"]["macd_histogram"] == round(float(ind.macd(close)[2][-1]), 6)
    earlier = intraday_summary.summarize("CBA.AX", upto[:-1], [], "1h", cfg)
    assert earlier["technical"]["macd_histogram"] is None
    assert earlier["technical"]["rsi"] is not None


def test_the_window_does_not_change_with_the_history_before_it(hourly):
    cfg = config.get()
    whole = intraday_summary.summarize("CBA.AX", hourly, [], "1h", cfg)
    only = intraday_summary.summarize("CBA.AX", last_sessions(hourly, 5), [], "1h", cfg)
    assert whole == only
    six = intraday_summary.summarize("CBA.AX", last_sessions(hourly, 6)[:-1], [], "1h", cfg)
    assert six["as_of"] != whole["as_of"]


def test_rows_are_read_by_their_stamp_and_the_bar_in_progress_is_left_out(hourly):
    cfg = config.get()
    rows = [{"time": d, "date": d[:10], "open": o, "high": h, "low": lo, "close": c,
             "volume": v, "final": True}
            for d, o, h, lo, c, v in zip(hourly.dates, hourly.open, hourly.high, hourly.low,
                                         hourly.close, hourly.volume)]
    rows[-1]["final"] = False
    got = intraday_summary.summarize("CBA.AX", rows, [], "1h", cfg)
    assert got == intraday_summary.summarize("CBA.AX", hourly[:-1], [], "1h", cfg)
    assert got["as_of"] == hourly.dates[-2]


def test_the_market_context_is_the_index_window_up_to_the_symbols_last_bar(hourly):
    cfg = config.get()
    upto = hourly[:80]  # 2024-04-11 14:00, before the gap to September
    index = index_of(hourly, every=None)
    s = intraday_summary.summarize("CBA.AX", upto, index, "1h", cfg)
    w = last_sessions(index[:80], 5)
    assert w.dates[-1] == upto.dates[-1]
    trend = (w.close[-1] / w.close[0] - 1) * 100
    assert s["market_context"]["trend_pct"] == round(trend, 4)
    assert s["market_context"]["fallback"] is False
    # The index's later bars are not seen; without an index: NEUTRAL, flagged.
    assert s == intraday_summary.summarize("CBA.AX", upto, index[:80], "1h", cfg)
    # Nor across a gap: on the first September bar, the index has one bar since its gap.
    sept = hourly.dates.index("2024-09-30T10:00:00+10:00")
    after = intraday_summary.summarize("CBA.AX", hourly[:sept + 1], index, "1h", cfg)
    assert after["market_context"]["fallback"] is True
    none = intraday_summary.summarize("CBA.AX", upto, [], "1h", cfg)["market_context"]
    assert none["context"] == "NEUTRAL" and none["fallback"] is True


def test_a_window_never_spans_a_gap(hourly):
    cfg = config.get()
    first = hourly.dates.index("2024-09-30T10:00:00+10:00")  # after April: a gap
    at_open = intraday_summary.summarize("CBA.AX", hourly[:first + 1], [], "1h", cfg)
    assert at_open["technical"]["rsi"] is None
    assert at_open["technical"]["price_vs_sma20"] is None
    later = intraday_summary.summarize("CBA.AX", hourly[:first + 15], [], "1h", cfg)
    assert later["technical"]["rsi"] == round(
        float(ind.rsi(hourly.close[first:first + 15], 14)[-1]), 4)


@pytest.mark.parametrize("interval", ["1h", "15m"])
def test_the_streaming_form_equals_summarize_at_every_bar(hourly, quarter, interval):
    cfg = config.get()
    bars = hourly if interval == "1h" else quarter
    index = index_of(bars)
    streamed = dict(intraday_summary.window_summaries("CBA.AX", bars, index, interval, cfg))
    assert sorted(streamed) == list(range(len(bars)))
    for i in range(len(bars)):
        assert streamed[i] == intraday_summary.summarize("CBA.AX", bars[:i + 1], index,
                                                         interval, cfg), bars.dates[i]
    # It can fail: a summary of another bar differs.
    assert streamed[40] != streamed[41]


def test_the_streaming_form_summarises_only_the_bars_kept(hourly):
    cfg = config.get()
    picked = [i for i, _ in intraday_summary.window_summaries(
        "CBA.AX", hourly, [], "1h", cfg, keep=lambda i, stamp: stamp.endswith("T15:00:00+11:00"))]
    assert picked and all(hourly.dates[i].endswith("T15:00:00+11:00") for i in picked)
    assert not any(math.isnan(hourly.close[i]) for i in picked)
