"""The market-data service end to end: methods in-process and over a real socket under
systemd-socket-activate, bad input, the cold path's imports, and the CLI."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from trading import config
from trading.market import asx
from trading.market.bars import PAUSE_S
from trading.errors import InvalidParams, InvalidSymbol, UpstreamUnavailable
from trading.handlers.market_data import MarketData
from trading.market.sources import SampleSource

from conftest import REPO, wait_for

TECHNICAL = {"current_price", "rsi", "macd_histogram", "price_vs_sma20", "tech_score",
             "market_price", "volatility_pct"}
VOLUME = {"volume_trend", "price_volume_correlation", "volume_quality_score", "volume_through"}
CONTEXT = {"context", "trend_pct", "confidence_multiplier", "buy_threshold", "fallback"}


class Counting:
    """The sample source, counting calls; can be told to fail (the fake edge)."""

    def __init__(self):
        self.inner = SampleSource()
        self.name = "sample"
        self.calls = []
        self.fail = None

    def fetch(self, symbols, start, end):
        self.calls.append(list(symbols))
        if self.fail:
            raise self.fail
        return self.inner.fetch(symbols, start, end)


@pytest.fixture
def svc():
    s = MarketData()
    s._sources["sample"] = Counting()
    yield s
    s.close()


def test_get_market_data_shape(svc):
    r = svc.get_market_data("cba", source="sample")
    assert set(r) == {"symbol", "interval", "as_of", "source", "stale", "age_s", "days_behind",
                      "technical", "volume", "market_context", "reading"}
    assert r["interval"] == "1d"  # daily by default (issue 29: 1h, 30m, 15m on request)
    assert r["reading"] is None  # generated bars: no file was read
    assert r["symbol"] == "CBA.AX" and r["source"] == "sample" and r["stale"] is False
    assert set(r["technical"]) == TECHNICAL and set(r["volume"]) == VOLUME
    assert set(r["market_context"]) == CONTEXT and r["market_context"]["fallback"] is False
    assert 0 <= r["technical"]["tech_score"] <= 1
    assert svc._sources["sample"].calls == [["CBA.AX", "^AXJO"]]


def test_default_source_is_configuration(monkeypatch):
    monkeypatch.setenv("TRADING_SOURCE", "sample")
    config.reset()
    s = MarketData()
    assert s.get_market_data("NAB")["source"] == "sample"


@pytest.mark.parametrize("bad", ["", "   ", "A" * 13, "../etc/passwd", "CBA.AX;DROP TABLE",
                                 "CBA'--", "x/y", "CBA.NZ", 42, None])
def test_bad_symbols_are_refused_and_nothing_is_fetched_or_stored(svc, bad):
    with pytest.raises(InvalidSymbol) as info:
        svc.get_market_data(bad, source="sample")
    assert info.value.code == -32602
    assert svc._sources["sample"].calls == []
    assert svc.cache.size()["bars"] == 0


def test_bad_source_and_params(svc, tmp_path):
    with pytest.raises(InvalidParams):
        svc.get_market_data("CBA", source="ftp://x")
    with pytest.raises(InvalidParams):
        svc.get_bars("CBA", interval="1m", source="sample")
    with pytest.raises(InvalidParams):
        svc.get_bars("CBA", period="1000y", source="sample")
    with pytest.raises(InvalidParams):
        svc.bulk_fetch([], source="sample")
    with pytest.raises(InvalidParams):
        svc.bulk_fetch(["CBA"] * 1001, source="sample")
    assert svc._sources["sample"].calls == []


def test_bulk_fetch_one_fetch_errors_keyed_as_given(svc):
    symbols = [f"S{i:03d}" for i in range(30)] + ["cba", "CBA.AX", "bad/one", ""]
    out = svc.bulk_fetch(symbols, source="sample")
    assert svc._sources["sample"].calls and len(svc._sources["sample"].calls) == 1
    assert len(svc._sources["sample"].calls[0]) == 32   # 30 + CBA once + the index
    assert "CBA.AX" in out["results"] and len(out["results"]) == 31
    assert set(out["errors"]) == {"bad/one", ""}
    assert out["errors"]["bad/one"]["problem"] == "invalid-symbol"
    assert set(out["errors"]["bad/one"]) == {"code", "message", "problem"}
    assert out["market_context"] == out["results"]["CBA.AX"]["market_context"]
    scores = [r["technical"]["tech_score"] for r in out["results"].values()]
    assert max(scores) - min(scores) > 0.2          # the sample data has a spread


def test_source_down_without_cache_is_an_error_with_cache_is_stale(svc):
    src = svc._sources["sample"]
    src.fail = UpstreamUnavailable("yahoo unreachable", reason="network")
    with pytest.raises(UpstreamUnavailable):
        svc.get_market_data("CBA", source="sample")
    out = svc.bulk_fetch(["CBA"], source="sample")
    assert out["errors"]["CBA"]["problem"] == "upstream-unavailable"
    assert out["market_context"]["fallback"] is True and out["market_context"]["context"] == "NEUTRAL"
    src.fail = None
    clock = svc.cache.clock
    svc.cache.clock = lambda: clock() + PAUSE_S     # past the pause after a failure
    svc.get_market_data("CBA", source="sample")
    svc.cache.clock = lambda: clock() + 7 * 86400   # a week later, the source down again
    src.fail = UpstreamUnavailable("yahoo unreachable", reason="network")
    r = svc.get_market_data("CBA", source="sample")
    assert r["stale"] is True and r["age_s"] >= 7 * 86400 - PAUSE_S
    assert svc.health_check()["last_fetch"]["outcome"] == "network"


def test_context_falls_back_when_the_index_is_missing(svc, asx_daily, tmp_path):
    (tmp_path / "CBA.AX.csv").write_text((asx_daily / "CBA.AX.csv").read_text())
    r = svc.get_market_data("CBA", source=f"csv:{tmp_path}")
    assert r["market_context"]["fallback"] is True
    ctx = svc.get_market_context(source=f"csv:{tmp_path}")
    assert ctx["context"] == "NEUTRAL" and ctx["stale"] is True


def test_a_csv_that_ends_long_ago_says_how_far_behind_it_is(svc, asx_daily):
    """tests/data ends on 2 January 2026: read a moment ago (not stale: nothing failed to
    refresh), but not current data; the rules make a HOLD of it (test_rules)."""
    svc.cache.clock = lambda: dt.datetime(2026, 11, 26, 11, 0, tzinfo=asx.TZ).timestamp()
    r = svc.get_market_data("CBA", source=f"csv:{asx_daily}")
    assert r["as_of"] == "2026-01-02" and r["age_s"] < 60
    assert r["days_behind"] == 328 and r["stale"] is False
    recent = svc.get_market_data("CBA", source="sample")  # its bars end today
    assert recent["days_behind"] == 0 and recent["stale"] is False


def test_the_context_ends_at_the_symbols_own_last_session(svc, asx_daily):
    """The shared CBA file ends 2026-01-02 and the index file runs on into March: CBA's
    context is the index trend up to 2 January, not a market that came later."""
    from trading.market.sources import parse_csv

    index = parse_csv(asx_daily / "^AXJO.csv")
    cba = parse_csv(asx_daily / "CBA.AX.csv")
    assert index.dates[-1] > cba.dates[-1]  # the data this test is about
    n = config.get()["context.sessions"]
    upto = [c for d, c in zip(index.dates, index.close) if d <= cba.dates[-1]]
    expected = (upto[-1] / upto[-1 - n] - 1) * 100
    latest = (index.close[-1] / index.close[-1 - n] - 1) * 100
    assert round(expected, 2) != round(latest, 2)
    source = f"csv:{asx_daily}"
    r = svc.get_market_data("CBA", source=source)
    assert r["as_of"] == cba.dates[-1]
    assert r["market_context"]["trend_pct"] == pytest.approx(expected, abs=1e-3)
    assert r["market_context"]["fallback"] is False
    bulk = svc.bulk_fetch(["CBA", "^AXJO"], source=source)
    assert bulk["results"]["CBA.AX"]["market_context"] == r["market_context"]
    assert bulk["market_context"]["trend_pct"] == pytest.approx(latest, abs=1e-3)
    assert bulk["results"]["^AXJO"]["market_context"] == bulk["market_context"]


def test_an_index_the_source_failed_to_refresh_is_a_fallback(svc):
    svc.get_market_data("CBA", source="sample")
    src = svc._sources["sample"]
    src.fail = UpstreamUnavailable("yahoo unreachable", reason="network")
    clock = svc.cache.clock
    svc.cache.clock = lambda: clock() + 7 * 86400   # everything due; the source is down
    r = svc.get_market_data("CBA", source="sample")
    assert r["stale"] is True and r["market_context"]["fallback"] is True
    assert r["market_context"]["trend_pct"] is not None  # the old trend, flagged


def test_get_bars_and_weekly(svc, asx_daily):
    out = svc.get_bars("CBA", period="1mo", source=f"csv:{asx_daily}")
    assert set(out) == {"symbol", "interval", "source", "stale", "bars", "reading"}
    assert out["reading"]["file"] == "CBA.AX.csv" and out["reading"]["sessions"] == 508
    bars = out["bars"]
    assert bars[-1]["date"] == "2026-01-02" and bars[0]["date"] >= "2025-12-03"
    assert set(bars[0]) == {"date", "open", "high", "low", "close", "volume"}
    week = svc.get_bars("CBA", interval="1wk", period="3mo", source=f"csv:{asx_daily}")["bars"]
    daily = svc.get_bars("CBA", period="3mo", source=f"csv:{asx_daily}")["bars"]
    assert sum(w["volume"] for w in week) == pytest.approx(sum(d["volume"] for d in daily))
    assert week[-1]["close"] == daily[-1]["close"] and len(week) < len(daily) / 4


def test_get_bars_with_indicators_are_the_prediction_rules_own(svc, asx_daily):
    """The dashboard's chart panes come from the same indicator functions as the calls."""
    from trading.market import indicators as ind

    out = svc.get_bars("CBA", period="1y", source=f"csv:{asx_daily}", indicators=True)
    close = [b["close"] for b in out["bars"]]
    series = out["indicators"]
    assert {len(v) for v in series.values()} == {len(close)}
    assert series["sma20"][18] is None and series["sma20"][-1] == pytest.approx(
        float(ind.sma(close, 20)[-1]), abs=1e-6)
    assert series["rsi14"][-1] == pytest.approx(float(ind.rsi(close, 14)[-1]), abs=1e-6)
    assert series["macd_hist"][-1] == pytest.approx(float(ind.macd(close)[2][-1]), abs=1e-6)
    assert "indicators" not in svc.get_bars("CBA", period="1mo", source=f"csv:{asx_daily}")
    with pytest.raises(InvalidParams):
        svc.get_bars("CBA", source=f"csv:{asx_daily}", indicators="yes")


def test_health_check_reports_the_cache(svc):
    svc.get_market_data("CBA", source="sample")
    h = svc.health_check()
    assert h["cache"]["series"] == 2 and h["cache"]["bars"] > 400
    assert h["last_fetch"]["outcome"] == "ok" and h["last_fetch"]["source"] == "sample"


def test_cold_process_from_a_warm_cache_imports_no_numpy_pandas_or_yfinance(svc):
    svc.get_market_data("CBA", source="sample")
    code = ("import json, sys\n"
            "from trading.handlers.market_data import MarketData\n"
            "r = MarketData().get_market_data('CBA', source='sample')\n"
            "print(json.dumps([r['stale'], r['technical']['rsi'],"
            " [m for m in ('numpy', 'pandas', 'yfinance', 'holidays') if m in sys.modules]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    stale, rsi, heavy = json.loads(out.stdout)
    assert stale is False and rsi == svc.get_market_data("CBA", source="sample")["technical"]["rsi"]
    assert heavy == []


def test_a_cold_health_check_imports_no_typing():
    # typing is ~2 ms of import that only annotations (strings here) would use.
    code = ("import sys\n"
            "from trading.handlers.market_data import MarketData\n"
            "MarketData().health_check()\n"
            "print('typing' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _listening(a) -> bool:
    try:
        a.connect().close()
        return True
    except ConnectionRefusedError:
        return False


def test_over_a_real_socket(activate):
    from trading.runtime.client import Client

    a = activate("market-data", idle_exit=5.0)
    # systemd-socket-activate creates the path a moment before it listens.
    wait_for(lambda: _listening(a), what="the socket to listen")
    c = Client(config.get(), in_process="never")
    try:
        r = c.call("market-data", "get_market_data", {"symbol": "bhp", "source": "sample"})
        assert r["symbol"] == "BHP.AX" and r["technical"]["rsi"] is not None
        with pytest.raises(InvalidSymbol):
            c.call("market-data", "get_market_data", {"symbol": "../x", "source": "sample"})
        h = c.call("market-data", "health_check")
        assert h["cache"]["series"] == 2 and h["requests_served"] >= 2
    finally:
        c.close()
        a.stop()


def test_cli_matches_ta(asx_daily):
    import ta

    from trading.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["market", "CBA", "--source", f"csv:{asx_daily}", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    close = pd.read_csv(asx_daily / "CBA.AX.csv")["Close"]
    t = out["results"]["CBA.AX"]["technical"]
    assert t["rsi"] == pytest.approx(ta.momentum.RSIIndicator(close).rsi().iloc[-1], abs=1e-3)
    assert t["macd_histogram"] == pytest.approx(ta.trend.MACD(close).macd_diff().iloc[-1],
                                                abs=1e-5)
    table = runner.invoke(app, ["market", "CBA", "--source", f"csv:{asx_daily}"])
    assert table.exit_code == 0 and f"{t['rsi']:.2f}" in table.stdout


def test_the_reading_of_a_csv_file_is_shown_and_kept_with_the_series(svc):
    from trading.cli.main import app

    history = REPO / "tests" / "data" / "asx-history"  # old Yahoo downloads; see its README
    source = f"csv:{history}"
    out = svc.get_bars("ABC", period="max", source=source)
    reading = out["reading"]
    assert reading["file"] == "ABC.AX.csv" and reading["dropped"]["not a session"] == 5
    assert reading["gaps"] == 131 and reading["sessions"] == len(out["bars"]) == 509
    # Stored with the series: a fresh service answers from the cache with the same report.
    stored = svc.cache.store.query("SELECT reading FROM bar_series WHERE source = ? AND "
                                   "symbol = 'ABC.AX'", (f"csv:{history.resolve()}",))
    assert json.loads(stored[0][0]) == reading
    again = MarketData()
    try:
        assert again.get_bars("ABC", period="1y", source=source)["reading"] == reading
    finally:
        again.close()
    assert svc.get_market_data("ABC", source=source)["reading"] == reading
    res = CliRunner().invoke(app, ["market", "ABC", "RMD", "--source", source, "--json"])
    assert res.exit_code == 0, res.output
    results = json.loads(res.stdout)["results"]
    assert results["ABC.AX"]["reading"] == reading
    assert results["RMD.AX"]["reading"]["adjusted"] == "Adj Close"
    table = CliRunner().invoke(app, ["market", "ABC", "--source", source])
    assert "ABC.AX: ABC.AX.csv: 514 rows, 509 sessions kept; not a session 5, gaps 131 " \
           "(longest 22 sessions, 1988-02-29 to 1988-03-31)" in table.stderr


def test_cli_bad_symbol_is_one_line_and_exit_2(asx_daily):
    from trading.cli.main import app

    res = CliRunner().invoke(app, ["market", "../etc", "--source", f"csv:{asx_daily}"])
    assert res.exit_code == 2
    assert "Traceback" not in res.output and "invalid symbol" in res.output
