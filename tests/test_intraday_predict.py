"""The live path of an intraday predictor interval (issue 29): the setting, market-data's
intraday summary, the prediction service feeding a monolith predictor from hourly bars and
storing the interval, and the half-hourly timer that stores nothing twice.

The one fake is Yahoo: ``yf.download(..., interval="1h")`` over the fixture in
``tests/data/asx-intraday`` (see its README: a daylight-saving change each way, the early
closes of 24 and 31 December and a missing hour, 13:00 on 9 April 2024), cut at the moment
``TRADING_NOW`` names, the bar that moment's 20-minute-late feed is in partial. The index
(^AXJO) is the same path at 60 times the price; NAB.AX at a third.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import REPO
from support.intraday_frames import fixture_frame, seen_by_now
from trading import config
from trading.errors import ConfigError, InvalidParams, ServiceUnavailable
from trading.handlers.market_data import MarketData
from trading.handlers.prediction import Prediction
from trading.market import asx, intraday, intraday_summary
from trading.market.reading import read_csv
from trading.market.sources import YahooSource
from trading.runtime.service import Context
from trading.runtime.store import Store
from trading.signals import ledger

DATA = REPO / "tests" / "data" / "asx-intraday"
HOURLY = DATA / "CBA.AX.1h.csv"
EXAMPLE = REPO / "examples" / "predictors" / "momentum.py"
MOMENTUM = "momentum:EnhancedMarketAwarePredictor"
FAKE_YFINANCE = REPO / "tests" / "support" / "fake_yahoo" / "yfinance" / "__init__.py"
SCALE = {"CBA.AX": 1.0, "NAB.AX": 1 / 3, "^AXJO": 60.0}
SYD = asx.TZ


def at(y, m, d, hh=0, mm=0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=SYD)


class FakeYahoo:
    """``yf.download(tickers, start, end, interval=...)`` over the hourly fixture at the
    moment ``TRADING_NOW`` names: the bars the 20-minute-late feed has begun, the last one
    partial (part of its move and of its volume)."""

    def __init__(self):
        self.frame = fixture_frame(HOURLY)
        self.calls: list[tuple[list[str], dt.datetime, str]] = []

    def __call__(self, symbols, start, end, interval="1d"):
        assert interval == "1h", interval
        self.calls.append((list(symbols), start, interval))
        f = seen_by_now(self.frame, start, interval)
        cols = ["Close", "High", "Low", "Open", "Volume"]
        parts = {s: f[cols] * pd.Series({c: (1 if c == "Volume" else SCALE[s]) for c in cols})
                 for s in symbols if s in SCALE}
        if not parts:
            return pd.DataFrame()
        frame = pd.concat(parts, axis=1).swaplevel(0, 1, axis=1).sort_index(axis=1, level=0)
        frame.columns.names = ["Price", "Ticker"]
        return frame


@pytest.fixture
def fake():
    return FakeYahoo()


@pytest.fixture
def market(tmp_path, fake):
    svc = MarketData()
    svc._sources["yahoo"] = YahooSource(tmp_path, downloader=fake, sleep=lambda s: None)
    yield svc
    svc.close()


def hourly_bars():
    bars, _ = read_csv(HOURLY, interval="1h")
    return bars


def complete_window(through: str, sessions: int):
    """The fixture's hourly bars through the stamp ``through``, of its last ``sessions``
    sessions: what the summary must be computed over."""
    bars = hourly_bars()
    upto = [i for i, d in enumerate(bars.dates) if d <= through]
    bars = bars[:upto[-1] + 1]
    days = sorted({d[:10] for d in bars.dates})[-sessions:]
    first = next(i for i, d in enumerate(bars.dates) if d[:10] >= days[0])
    return bars[first:]


def scaled(bars, k: float):
    from trading.market.summary import Bars

    return Bars(bars.dates, bars.open * k, bars.high * k, bars.low * k, bars.close * k,
                bars.volume)


# -- the setting ---------------------------------------------------------------------------------
def test_the_intervals_are_declared_once_and_agree_with_the_intraday_ones():
    assert config.PREDICTOR_INTERVALS == ("1d", *intraday.INTERVALS)
    assert ledger.INTERVALS == config.PREDICTOR_INTERVALS
    assert set(intraday_summary.WINDOW_SESSIONS) == set(intraday.INTERVALS)


def test_predictor_interval_defaults_to_daily_and_reads_the_file_and_environment():
    assert config.load()["predictor_interval"] == "1d"
    Path(os.environ["TRADING_CONFIG"]).write_text('predictor_interval = "30m"\n')
    assert config.load()["predictor_interval"] == "30m"
    cfg = config.load({**os.environ, "TRADING_PREDICTOR_INTERVAL": "1H"})
    assert cfg["predictor_interval"] == "1h"
    assert cfg.source_of("predictor_interval") == "env TRADING_PREDICTOR_INTERVAL"


def test_a_bad_predictor_interval_is_one_line_naming_the_key_and_the_choices():
    with pytest.raises(ConfigError) as info:
        config.load({**os.environ, "TRADING_PREDICTOR_INTERVAL": "2h"})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("predictor_interval = '2h'")
    assert "1d, 1h, 30m, 15m" in message


def test_trading_predict_refuses_a_bad_interval_in_one_line_exit_2():
    from trading.cli.main import app

    r = CliRunner().invoke(app, ["predict", "CBA", "--interval", "2h"])
    assert r.exit_code == 2
    assert r.stderr.strip().count("\n") == 0 and "1d, 1h, 30m, 15m" in r.stderr


# -- the ledger -----------------------------------------------------------------------------------
def _call(symbol: str, created_at: str, as_of: str, interval: str | None = None) -> tuple:
    p = {"symbol": symbol, "action": "HOLD", "confidence": 0.5, "created_at": created_at,
         "reasons": [], "predictor": {"name": MOMENTUM}}
    market = {"symbol": symbol, "as_of": as_of, "source": "yahoo"}
    if interval:
        market["interval"] = interval
    return p, {"market": market}


def test_the_ledger_stores_the_interval_and_streams_tell_them_apart(tmp_path):
    store = Store(tmp_path / "t.db")
    daily, daily_in = _call("CBA.AX", "2024-04-09T01:00:00+00:00", "2024-04-08")
    hourly, hourly_in = _call("CBA.AX", "2024-04-09T01:30:00+00:00",
                              "2024-04-09T10:00:00+10:00", "1h")
    ledger.record(store, [daily], {"CBA.AX": daily_in}, source=None, run_id="a")
    ledger.record(store, [hourly], {"CBA.AX": hourly_in}, source=None, run_id="b")
    rows = store.query("SELECT interval, as_of FROM predictions ORDER BY id")
    assert [tuple(r) for r in rows] == [("1d", "2024-04-08"), ("1h", "2024-04-09")]
    got = ledger.history(store, interval="1h")
    assert [p["stream"]["interval"] for p in got] == ["1h"]
    assert got[0]["bar"] == "2024-04-09T10:00:00+10:00" and got[0]["interval"] == "1h"
    assert [p["stream"]["interval"] for p in ledger.history(store, interval="1d")] == ["1d"]
    assert {s["interval"] for s in ledger.streams(store)} == {"1d", "1h"}
    assert ledger.latest(store, "CBA.AX")["stream"]["interval"] == "1h"
    assert ledger.last_bar(store, "CBA.AX", origin="live", source="yahoo", predictor=MOMENTUM,
                           interval="1h") == "2024-04-09T10:00:00+10:00"
    assert ledger.last_bar(store, "CBA.AX", origin="live", source="yahoo", predictor=MOMENTUM,
                           interval="30m") is None
    with pytest.raises(InvalidParams, match="interval"):
        ledger.history(store, interval="2h")
    store.close()


def test_migration_0017_keeps_old_predictions_daily(tmp_path):
    import sqlite3

    from trading.runtime.store import migrations

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for number, sql in migrations():
        if number < 17:
            conn.executescript(Path(sql).read_text())
    conn.execute("INSERT INTO predictions (symbol, created_at, session, action, confidence,"
                 " run_id, prediction, inputs) VALUES ('CBA.AX', '2024-04-08T06:00:00+00:00',"
                 " '2024-04-08', 'HOLD', 0.5, 'r', '{}', '{}')")
    conn.execute("PRAGMA user_version = 16")
    conn.commit()
    conn.close()
    store = Store(path)
    assert store.query("SELECT interval FROM predictions")[0][0] == "1d"
    assert ledger.history(store, interval="1d")[0]["stream"]["interval"] == "1d"
    store.close()


# -- market-data serves the intraday summary ----------------------------------------------------
def test_market_data_summarises_the_complete_hourly_bars_and_marks_the_one_in_progress(
        market, now):
    now(at(2024, 4, 9, 12, 45))  # the feed has to 12:25: 11:00 complete, 12:00 in progress
    r = market.get_market_data("cba", source="yahoo", interval="1h")
    sessions = intraday_summary.WINDOW_SESSIONS["1h"]
    assert r["interval"] == "1h" and r["as_of"] == "2024-04-09T11:00:00+10:00"
    assert r["in_progress"]["time"] == "2024-04-09T12:00:00+10:00"
    assert r["in_progress"]["final"] is False
    bars = complete_window("2024-04-09T11:00:00+10:00", sessions)
    index = scaled(bars, SCALE["^AXJO"])
    expected = intraday_summary.summarize("CBA.AX", bars, index, "1h", config.get())
    assert r["technical"] == expected["technical"] and r["volume"] == expected["volume"]
    assert r["market_context"] == expected["market_context"]
    assert r["market_context"]["fallback"] is False  # the index's hourly bars were there
    assert r["window"] == {"sessions": sessions, "bars": len(bars), "first": bars.dates[0],
                           "last": bars.dates[-1]}
    # The in-progress close is not the price the indicators saw.
    assert r["technical"]["current_price"] == pytest.approx(float(bars.close[-1]), abs=1e-4)
    json.dumps(r)


def test_a_refresh_asks_only_for_the_bars_after_the_last_complete_one(market, fake, now):
    now(at(2024, 4, 9, 11, 30))
    market.bulk_fetch(["CBA", "NAB"], source="yahoo", interval="1h")
    assert len(fake.calls) == 1 and set(fake.calls[0][0]) == {"CBA.AX", "NAB.AX", "^AXJO"}
    now(at(2024, 4, 9, 11, 32))  # fresh: nothing asked
    market.bulk_fetch(["CBA", "NAB"], source="yahoo", interval="1h")
    assert len(fake.calls) == 1
    now(at(2024, 4, 9, 12, 30))
    r = market.bulk_fetch(["CBA", "NAB", "nope!"], source="yahoo", interval="1h")
    assert len(fake.calls) == 2 and fake.calls[-1][1] == at(2024, 4, 9, 11)
    assert r["interval"] == "1h" and set(r["results"]) == {"CBA.AX", "NAB.AX"}
    assert r["errors"]["nope!"]["problem"] == "invalid-symbol"
    assert r["results"]["NAB.AX"]["as_of"] == "2024-04-09T11:00:00+10:00"
    assert r["results"]["NAB.AX"]["technical"]["current_price"] == pytest.approx(
        r["results"]["CBA.AX"]["technical"]["current_price"] / 3, abs=1e-3)


def test_across_the_daylight_saving_change_the_window_holds_both_offsets(market, now):
    now(at(2024, 4, 8, 12, 45))  # Monday, the first session of standard time
    r = market.get_market_data("CBA", source="yahoo", interval="1h")
    assert r["as_of"] == "2024-04-08T11:00:00+10:00"
    assert r["window"]["first"].endswith("+11:00") and r["window"]["last"].endswith("+10:00")
    bars = complete_window("2024-04-08T11:00:00+10:00", intraday_summary.WINDOW_SESSIONS["1h"])
    assert r["window"]["bars"] == len(bars)


def test_a_half_day_ends_with_its_auction_bar_at_1400(market, now):
    now(at(2024, 12, 24, 14, 30))  # the early close: the 14:00 auction bar is in progress
    r = market.get_market_data("CBA", source="yahoo", interval="1h")
    assert r["as_of"] == "2024-12-24T13:00:00+11:00"
    assert r["in_progress"]["time"] == "2024-12-24T14:00:00+11:00"
    now(at(2024, 12, 24, 15, 0))  # settled at 14:42
    r = market.get_market_data("CBA", source="yahoo", interval="1h")
    assert r["as_of"] == "2024-12-24T14:00:00+11:00" and r["in_progress"] is None


def test_a_missing_hour_leaves_the_last_complete_bar_before_it(market, now):
    now(at(2024, 4, 9, 14, 30))  # 13:00 never came; 14:00 is in progress
    r = market.get_market_data("CBA", source="yahoo", interval="1h")
    assert r["as_of"] == "2024-04-09T12:00:00+10:00"
    assert r["in_progress"]["time"] == "2024-04-09T14:00:00+10:00"
    bars = complete_window("2024-04-09T12:00:00+10:00", intraday_summary.WINDOW_SESSIONS["1h"])
    assert "2024-04-09T13:00:00+10:00" not in bars.dates
    assert r["window"]["bars"] == len(bars)


def test_market_data_refuses_an_unknown_interval_in_one_line(market):
    for bad in ("2h", "1wk", 60):
        with pytest.raises(InvalidParams) as info:
            market.get_market_data("CBA", source="yahoo", interval=bad)
        assert "\n" not in info.value.message
    with pytest.raises(InvalidParams):
        market.bulk_fetch(["CBA"], source="yahoo", interval="5m")


# -- the prediction service -------------------------------------------------------------------------
class Peers:
    """market-data built here (with the fake Yahoo); sentiment down (no evidence)."""

    def __init__(self, market: MarketData):
        self.market = market
        self.calls: list[tuple[str, str, dict]] = []

    def call(self, service, method, params=None, *, timeout=None):
        self.calls.append((service, method, dict(params or {})))
        if service == "sentiment":
            raise ServiceUnavailable("sentiment is switched off in this test")
        return getattr(self.market, method)(**(params or {}))

    def close(self):
        pass


@pytest.fixture
def momentum(monkeypatch):
    folder = Path(os.environ["TRADING_CONFIG"]).parent / "predictors"
    folder.mkdir(exist_ok=True)
    shutil.copy(EXAMPLE, folder)
    Path(os.environ["TRADING_CONFIG"]).write_text(
        f'predictor = "{MOMENTUM}"\npredictor_interval = "1h"\nsymbols = ["CBA", "NAB"]\n')
    config.reset()
    return config.get()


@pytest.fixture
def service(momentum, market):
    peers = Peers(market)
    svc = Prediction(Context(momentum, peers=peers))
    yield svc
    svc.close()


def test_the_monolith_is_fed_from_hourly_bars_and_the_call_says_1h(service, now):
    now(at(2024, 4, 9, 12, 45))
    out = service.generate_predictions(source="yahoo")
    assert out["interval"] == "1h" and not out["errors"], out["errors"]
    assert set(out["results"]) == {"CBA.AX", "NAB.AX"}
    assert service.peers.calls[0][2]["interval"] == "1h"
    stored = ledger.history(service.store, inputs=True)
    assert {p["stream"]["interval"] for p in stored} == {"1h"}
    cba = next(p for p in stored if p["symbol"] == "CBA.AX")
    assert cba["predictor"]["name"] == MOMENTUM and cba["bar"] == "2024-04-09T11:00:00+10:00"
    # What the monolith got as tech_data is the summary of the hourly window: the example's
    # own arithmetic, redone here from those bars, gives its stored answer.
    bars = complete_window("2024-04-09T11:00:00+10:00", intraday_summary.WINDOW_SESSIONS["1h"])
    expected = intraday_summary.summarize("CBA.AX", bars, scaled(bars, SCALE["^AXJO"]), "1h",
                                          config.get())
    assert cba["inputs"]["market"]["technical"] == expected["technical"]
    spec = importlib.util.spec_from_file_location("momentum_direct", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from trading.signals.predictors import monolith_args

    args = monolith_args(cba["inputs"]["market"], None, config.get())
    direct = module.EnhancedMarketAwarePredictor().calculate_confidence(symbol="CBA.AX", **args)
    assert (cba["action"], cba["confidence"]) == (direct["action"],
                                                  pytest.approx(direct["confidence"]))
    assert args["tech_data"]["rsi"] == expected["technical"]["rsi"] is not None


def test_a_run_with_no_new_completed_bar_stores_nothing_twice(service, now):
    now(at(2024, 4, 9, 11, 30))  # 10:00 complete at 11:20
    first = service.generate_predictions(source="yahoo")
    assert set(first["results"]) == {"CBA.AX", "NAB.AX"} and first["unchanged"] == {}
    now(at(2024, 4, 9, 12, 0))  # 11:00 completes at 12:20: nothing new
    again = service.generate_predictions(source="yahoo")
    assert again["results"] == {} and not again["errors"]
    assert again["unchanged"] == {"CBA.AX": "2024-04-09T10:00:00+10:00",
                                  "NAB.AX": "2024-04-09T10:00:00+10:00"}
    assert service.store.query("SELECT count(*) FROM predictions")[0][0] == 2
    now(at(2024, 4, 9, 12, 30))
    third = service.generate_predictions(source="yahoo")
    assert {p["bar"] for p in third["results"].values()} == {"2024-04-09T11:00:00+10:00"}
    # Two runs with a new bar, two symbols each: four calls, each from its own bar.
    assert service.store.query("SELECT count(*), count(DISTINCT symbol || ' ' ||"
                               " json_extract(inputs, '$.market.as_of')) FROM predictions"
                               )[0][:] == (4, 4)


def test_a_call_names_its_interval_and_a_bad_one_is_refused(service, now):
    now(at(2024, 4, 9, 12, 30))
    with pytest.raises(InvalidParams, match="interval"):
        service.generate_predictions(source="yahoo", interval="2h")
    assert service.store.query("SELECT count(*) FROM predictions")[0][0] == 0


# -- the timers: one simulated session --------------------------------------------------------------
# The predict timer's runs (units/trading-predict.timer): every 30 minutes 10:00-15:30, and 16:35.
RUNS = ["10:00", "10:30", "11:00", "11:30", "12:00", "12:30", "13:00", "13:30", "14:00",
        "14:30", "15:00", "15:30", "16:35"]


@pytest.fixture
def fake_yfinance(monkeypatch, tmp_path):
    """The support stand-in for yfinance (what the systemd tests put on a handler's path), in
    this process: the job runs the handlers in-process. Its folder holds the hourly fixture
    and the index at 60 times the price."""
    import sys

    folder = tmp_path / "yahoo"
    folder.mkdir()
    shutil.copy(HOURLY, folder / "CBA.AX.1h.csv")
    frame = pd.read_csv(HOURLY, index_col="Datetime")
    for c in ("Open", "High", "Low", "Close"):
        frame[c] = frame[c] * SCALE["^AXJO"]
    frame.to_csv(folder / "^AXJO.1h.csv")
    mode, log = tmp_path / "mode", tmp_path / "log"
    mode.write_text(f"ok {folder}")
    log.write_text("")
    monkeypatch.setenv("TRADING_TEST_YAHOO_MODE", str(mode))
    monkeypatch.setenv("TRADING_TEST_YAHOO_LOG", str(log))
    spec = importlib.util.spec_from_file_location("yfinance", FAKE_YFINANCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "yfinance", module)
    return log


def session(monkeypatch, day: str, env: dict[str, str]) -> list[str]:
    """Each timer run of ``day`` through `trading job predict`: its last line."""
    from trading.cli.main import app

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = []
    for hm in RUNS:
        monkeypatch.setenv("TRADING_NOW", f"{day}T{hm}")
        config.reset()
        r = CliRunner().invoke(app, ["job", "predict"])
        assert r.exit_code == 0, r.output
        out.append(f"{hm} {r.stdout.strip().splitlines()[-1]}")
    return out


def test_the_timer_on_1h_stores_a_call_per_new_completed_bar_and_says_so_otherwise(
        momentum, fake_yfinance, monkeypatch):
    env = {"TRADING_SYMBOLS": "CBA", "TRADING_NEWS_SOURCE": "sample"}
    lines = session(monkeypatch, "2024-04-09", env)
    stored = [line[:5] for line in lines if " stored 1 1h prediction(s)" in line]
    nothing = [line[:5] for line in lines if "no new completed 1h bar" in line]
    # 10:00 bar complete at 11:20, 11:00 at 12:20, 12:00 at 13:20, 13:00 never came, 14:00
    # at 15:20; 15:00 (16:20) and the auction bar (16:32) by the 16:35 run.
    assert stored == ["10:00", "11:30", "12:30", "13:30", "15:30", "16:35"], lines
    assert nothing == [hm for hm in RUNS if hm not in stored], lines
    store = Store(config.get().db_path)
    bars = [r[0] for r in store.query(
        "SELECT json_extract(inputs, '$.market.as_of') FROM predictions WHERE interval = '1h'"
        " ORDER BY id")]
    assert bars == ["2024-04-08T16:00:00+10:00", "2024-04-09T10:00:00+10:00",
                    "2024-04-09T11:00:00+10:00", "2024-04-09T12:00:00+10:00",
                    "2024-04-09T14:00:00+10:00", "2024-04-09T16:00:00+10:00"]
    assert len(set(bars)) == len(bars)  # nothing stored twice
    store.close()


def test_the_timer_on_1d_stores_a_call_on_every_run(momentum, fake_yfinance, monkeypatch):
    env = {"TRADING_SYMBOLS": "CBA", "TRADING_NEWS_SOURCE": "sample",
           "TRADING_PREDICTOR_INTERVAL": "1d", "TRADING_SOURCE": "sample"}
    lines = session(monkeypatch, "2024-04-09", env)
    assert all(" stored 1 prediction(s)" in line for line in lines), lines
    store = Store(config.get().db_path)
    assert store.query("SELECT count(*), min(interval), max(interval) FROM predictions"
                       )[0][:] == (len(RUNS), "1d", "1d")
    store.close()


# -- the dashboard ------------------------------------------------------------------------------------
def test_the_symbol_page_draws_the_hourly_series_with_each_call_on_its_bar(service, market, now):
    from trading.web.data import Dashboard

    for hm in ((11, 30), (12, 30), (13, 30)):
        now(at(2024, 4, 9, *hm))
        service.generate_predictions(source="yahoo")
    now(at(2024, 4, 9, 15, 0))  # the feed has to 14:40: 14:00 in progress (13:00 never came)
    board = Dashboard(config.get(), client=Peers(market),
                      store=Store(config.get().db_path, readonly=True),
                      now=lambda: at(2024, 4, 9, 15, 0))
    try:
        page = board.symbol("CBA.AX")
    finally:
        board.close()
    chart = page["chart"]
    assert chart["interval"] == "1h" and chart["error"] is None
    times = [b["time"] for b in chart["bars"]]
    assert times[-2:] == ["2024-04-09T12:00:00+10:00", "2024-04-09T14:00:00+10:00"]
    assert chart["bars"][-1]["final"] is False and chart["indicators"]["rsi14"][-1] is None
    assert [m["time"] for m in chart["markers"]] == [
        "2024-04-09T10:00:00+10:00", "2024-04-09T11:00:00+10:00", "2024-04-09T12:00:00+10:00"]
    assert all(m["time"] in times for m in chart["markers"])
    assert [p["stream"]["interval"] for p in page["history"]] == ["1h", "1h", "1h"]


# -- outcomes ---------------------------------------------------------------------------------------
def test_an_intraday_call_is_scored_from_the_price_it_was_made_at(tmp_path):
    """The same horizons (1 and 5 sessions, on the daily closes) as a daily call; the base is
    the price of the bar the call was made from, not the session's close."""
    from trading.signals import outcomes

    store = Store(tmp_path / "t.db")
    for interval, as_of in (("1d", "2024-04-09"), ("1h", "2024-04-09T11:00:00+10:00")):
        p, inputs = _call("CBA.AX", "2024-04-09T02:30:00+00:00", as_of,
                          None if interval == "1d" else interval)
        p.update(action="BUY", price=100.0)
        inputs["market"]["source"] = "sample"
        ledger.record(store, [p], {"CBA.AX": inputs}, source="sample", run_id=interval)
    days = ["2024-04-09", "2024-04-10", "2024-04-11", "2024-04-12", "2024-04-15",
            "2024-04-16"]
    closes = [101.0, 102.0, 99.0, 98.0, 97.0, 103.0]

    def get_bars(symbol, period, src=None):
        return {"bars": [{"date": d, "close": c} for d, c in zip(days, closes)]}

    done = outcomes.evaluate(store, get_bars, index="^AXJO", today=dt.date(2024, 4, 17))
    assert done["evaluated"] == 4
    got = {(r["interval"], r["horizon"]): (r["base_close"], r["end_close"], r["forward_return"])
           for r in store.query("SELECT p.interval, o.* FROM outcomes o JOIN predictions p"
                                " ON p.id = o.prediction_id")}
    assert got[("1h", 1)] == (100.0, 102.0, pytest.approx(0.02))
    assert got[("1d", 1)] == (101.0, 102.0, pytest.approx(102 / 101 - 1))
    assert got[("1h", 5)] == (100.0, 103.0, pytest.approx(0.03))
    store.close()


# -- trading predict --interval ---------------------------------------------------------------------
def test_trading_predict_interval_from_a_folder_of_hourly_files(monkeypatch, tmp_path):
    """`--interval 1h` over csv:DIR in yfinance's intraday layout, the clock pinned on the
    half day of 24 December 2024 (the 13:00 bar complete, the 14:00 auction bar still
    trading): the call is made from 13:00, says which bar was in progress, and a second run
    before a new bar completes stores nothing."""
    from trading.cli.main import app

    folder = tmp_path / "hourly"
    folder.mkdir()
    shutil.copy(HOURLY, folder / "CBA.AX.1h.csv")
    monkeypatch.setenv("TRADING_NEWS_SOURCE", "sample")
    monkeypatch.setenv("TRADING_NOW", "2024-12-24T14:30")
    args = ["predict", "CBA", "--source", f"csv:{folder}", "--interval", "1h"]
    first = CliRunner().invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    body = json.loads(first.stdout)
    assert body["interval"] == "1h" and list(body["results"]) == ["CBA.AX"]
    assert body["results"]["CBA.AX"]["bar"] == "2024-12-24T13:00:00+11:00"
    store = Store(config.get().db_path)
    stored = ledger.history(store, inputs=True)
    assert stored[0]["inputs"]["market"]["in_progress"]["time"] == "2024-12-24T14:00:00+11:00"
    monkeypatch.setenv("TRADING_NOW", "2024-12-24T14:40")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "no new completed 1h bar since the last call of CBA.AX (last bar " \
           "2024-12-24T13:00:00+11:00): nothing stored for it" in again.stdout
    monkeypatch.setenv("TRADING_NOW", "2024-12-24T14:45")  # the auction bar complete at 14:42
    third = CliRunner().invoke(app, [*args, "--json"])
    assert json.loads(third.stdout)["results"]["CBA.AX"]["bar"] == "2024-12-24T14:00:00+11:00"
    assert len(ledger.history(store, interval="1h")) == 2
    store.close()
