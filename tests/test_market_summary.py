"""The pure market functions: summaries, context bands from configuration, replay on slices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trading import config
from trading.market import indicators, summary as market
from trading.market.summary import Bars
from trading.market.sources import SampleSource, parse_csv, synthetic


def closes_with_trend(pct: float, sessions: int = 5) -> list[float]:
    """Index closes whose last ``sessions``-session change is ``pct`` percent."""
    return [100.0] * 10 + [100.0 * (1 + pct / 100)]


@pytest.mark.parametrize("pct, name, mult, threshold", [
    (-2.0, "BEARISH", 0.7, 0.80),
    (-1.0, "WEAK_BEARISH", 0.9, 0.75),
    (-0.5, "NEUTRAL", 1.0, 0.70),   # "below -0.5" is strict
    (0.0, "NEUTRAL", 1.0, 0.70),
    (0.5, "NEUTRAL", 1.0, 0.70),    # "above 0.5" is strict
    (1.0, "WEAK_BULLISH", 1.05, 0.68),
    (1.6, "BULLISH", 1.1, 0.65),
])
def test_context_bands(pct, name, mult, threshold):
    ctx = market.market_context(closes_with_trend(pct), config.get())
    assert ctx == {"context": name, "trend_pct": pytest.approx(pct, abs=1e-4),
                   "confidence_multiplier": mult, "buy_threshold": threshold, "fallback": False}


def test_bands_come_from_configuration(monkeypatch):
    monkeypatch.setenv("TRADING_CONTEXT_BULLISH", "3.0")
    monkeypatch.setenv("TRADING_MULTIPLIER_WEAK_BULLISH", "1.2")
    monkeypatch.setenv("TRADING_CONTEXT_SESSIONS", "2")
    config.reset()
    ctx = market.market_context(closes_with_trend(2.0), config.get())
    assert (ctx["context"], ctx["confidence_multiplier"]) == ("WEAK_BULLISH", 1.2)


@pytest.mark.parametrize("index", [None, [], [100.0, 101.0], [float("nan")] * 10])
def test_no_index_means_neutral_fallback(index):
    ctx = market.market_context(index, config.get())
    assert ctx["context"] == "NEUTRAL" and ctx["fallback"] is True and ctx["trend_pct"] is None
    assert ctx["buy_threshold"] == 0.70


def test_summary_on_real_bars_matches_the_indicators(asx_daily):
    bars = parse_csv(asx_daily / "CBA.AX.csv")
    index = parse_csv(asx_daily / "^AXJO.csv")
    s = market.summarize("CBA.AX", bars, index, config.get())
    assert s["symbol"] == "CBA.AX" and s["as_of"] == "2026-01-02"
    t = s["technical"]
    assert t["current_price"] == pytest.approx(bars.close[-1], abs=1e-4)
    assert t["rsi"] == pytest.approx(indicators.rsi(bars.close)[-1], abs=1e-4)
    assert t["macd_histogram"] == pytest.approx(indicators.macd(bars.close)[2][-1], abs=1e-6)
    sma20 = bars.close[-20:].mean()
    assert t["price_vs_sma20"] == pytest.approx((bars.close[-1] / sma20 - 1) * 100, abs=1e-4)
    assert t["market_price"] == pytest.approx(round(bars.close[-1], 2))
    assert 0 <= t["tech_score"] <= 1 and 0 <= s["volume"]["volume_quality_score"] <= 1
    trend = (index.close[-1] / index.close[-6] - 1) * 100
    assert s["market_context"]["trend_pct"] == pytest.approx(trend, abs=1e-4)
    assert set(s) == {"symbol", "as_of", "technical", "volume", "market_context"}


def test_replay_on_slices_uses_only_the_past(asx_daily):
    bars = parse_csv(asx_daily / "NAB.AX.csv")
    day = 300
    full = market.technical_summary(bars)
    past = market.technical_summary(bars[:day])
    assert past["current_price"] == pytest.approx(bars.close[day - 1], abs=1e-4)
    assert past["rsi"] == pytest.approx(indicators.rsi(bars.close)[day - 1], abs=1e-4)
    assert past != full
    # The get_bars row shape works as well as Bars.
    rows = bars[:day].to_rows()
    assert market.technical_summary(rows)["rsi"] == pytest.approx(past["rsi"], abs=1e-3)


def test_warm_up_gives_none_not_nan():
    bars = Bars.from_rows([("2026-01-0%d" % (i + 1), 1, 1, 1, 10.0 + i, 100) for i in range(5)])
    t = market.technical_summary(bars)
    assert t["rsi"] is None and t["macd_histogram"] is None and t["price_vs_sma20"] is None
    assert t["tech_score"] == 0.5
    empty = market.summarize("X.AX", [], None, config.get())
    assert empty["as_of"] is None and empty["technical"]["current_price"] is None


def test_scores_spread_across_sample_symbols():
    dates = SampleSource().sessions(__import__("datetime").date(2026, 6, 30))[-300:]
    tech, vol = [], []
    for i in range(60):
        b = synthetic(f"S{i}.AX", dates)
        tech.append(market.technical_summary(b)["tech_score"])
        vol.append(market.volume_summary(b)["volume_quality_score"])
        assert all(math.isfinite(x) for x in (tech[-1], vol[-1]))
    assert min(tech) < 0.35 and max(tech) > 0.65
    assert np.std(vol) > 0.03


def test_volume_quality_rewards_rising_volume_on_a_rising_price():
    n = 40
    close = np.linspace(10, 12, n)
    steady = Bars([f"d{i}" for i in range(n)], close, close, close, close, np.full(n, 1000.0))
    rising = Bars(steady.dates, close, close, close, close,
                  np.concatenate([np.full(n - 5, 1000.0), np.full(5, 3000.0)]))
    assert market.volume_summary(rising)["volume_quality_score"] > \
        market.volume_summary(steady)["volume_quality_score"]
    assert market.volume_summary(steady)["volume_trend"] == 0.0


@pytest.mark.parametrize("price, tick", [(0.0534, 0.053), (1.2345, 1.235), (161.634, 161.63)])
def test_market_price_is_on_the_asx_tick(price, tick):
    assert market.to_tick(price) == pytest.approx(tick)


def test_volatility_is_the_std_of_the_last_twenty_daily_returns():
    import numpy as np

    closes = [100 * 1.01 ** k * (1 + 0.02 * (-1) ** k) for k in range(40)]
    r = np.diff(closes[-21:]) / np.array(closes[-21:-1])
    assert market.volatility_pct(closes) == pytest.approx(float(np.std(r, ddof=1) * 100))
    assert np.isnan(market.volatility_pct(closes[:20]))  # 19 returns: not yet
