"""Backtests: the replay sees only the past, the arithmetic is right, and the CLI draws it."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from trading.learning import backtest, features
from trading import config
from trading.market.sources import CsvSource

SYMBOLS = ["ANZ.AX", "MQG.AX", "WBC.AX"]
INDEX = "^AXJO"


@pytest.fixture
def bars(asx_daily):
    fetched = CsvSource(asx_daily).fetch([*SYMBOLS, INDEX], dt.date(2000, 1, 1),
                                         dt.date(2100, 1, 1))
    return fetched.bars


def replayed(bars, cfg, **kw):
    hs = {s: features.history(s, bars[s], bars[INDEX], cfg) for s in SYMBOLS}
    return backtest.replay(hs, cfg, **kw)


@pytest.mark.slow
def test_replay_decisions_up_to_a_day_ignore_every_later_bar(bars):
    from tests.test_training import scrambled_after

    cfg = config.get()
    day = "2025-10-20"
    before = replayed(bars, cfg)
    later = {s: scrambled_after(b, day, seed=3) for s, b in bars.items()}
    after = replayed(later, cfg)
    rows_b = [(s, d, a, c) for s, d, a, c in zip(before.symbol, before.date, before.action,
                                                 before.confidence) if d <= day]
    rows_a = [(s, d, a, c) for s, d, a, c in zip(after.symbol, after.date, after.action,
                                                 after.confidence) if d <= day]
    assert rows_b == rows_a and len(rows_b) > 1000
    # the outcome of `day` itself is the next close, which did change: not a decision input
    assert [(s, a) for s, d, a in zip(before.symbol, before.date, before.action) if d > day] != \
        [(s, a) for s, d, a in zip(after.symbol, after.date, after.action) if d > day]


@pytest.mark.slow
def test_same_data_gives_the_same_report(bars):
    cfg = config.get()
    sessions = sorted({d for s in SYMBOLS for d in bars[s].dates})
    nxt = dict(zip(sessions, sessions[1:]))
    idx = dict(zip(bars[INDEX].dates, bars[INDEX].close.tolist()))
    one = backtest.evaluate(replayed(bars, cfg, start="2024-03-01"), idx, next_session=nxt)
    two = backtest.evaluate(replayed(bars, cfg, start="2024-03-01"), idx, next_session=nxt)
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    assert one["start"] == "2024-03-01"
    assert one["index"]["sessions_covered"] + one["index"]["sessions_missing"] == one["sessions"]
    assert 0 < one["index"]["sessions_covered"] < one["sessions"]  # the index file is partial


def test_evaluate_by_hand():
    s = backtest.Signals()
    # symbol A: BUY, BUY, HOLD, SELL over four sessions; B: HOLD throughout
    for d, a, r in (("d1", "BUY", 0.10), ("d2", "BUY", -0.05), ("d3", "HOLD", 0.02),
                    ("d4", "SELL", -0.01)):
        s.add("A", d, a, 0.8, r)
    for d in ("d1", "d2", "d3", "d4"):
        s.add("B", d, "HOLD", 0.5, 0.0)
    nxt = {"d1": "d2", "d2": "d3", "d3": "d4", "d4": "d5"}
    index = {"d1": 100.0, "d2": 101.0, "d4": 99.0, "d5": 99.99}  # d3 missing
    r = backtest.evaluate(s, index, cost_bps=100, next_session=nxt)
    assert r["hits"] == 2 and r["calls"] == 3 and r["hit_rate"] == pytest.approx(0.6667, abs=1e-4)
    assert r["per_action"]["BUY"] == {"count": 2, "mean_forward_pct": 2.5, "up_share": 0.5}
    assert r["trades"] == 2  # one entry (d1), one exit (d3)
    # A's daily returns: 0.10 - 0.01 (entry), -0.05, -0.01 (exit), 0; B's all 0: halved
    want = np.cumprod(1 + np.array([0.09, -0.05, -0.01, 0.0]) / 2)
    assert r["curves"]["strategy"] == pytest.approx(want.round(6).tolist())
    hold = np.cumprod(1 + np.array([0.10, -0.05, 0.02, -0.01]) / 2)
    assert r["curves"]["buy_and_hold"] == pytest.approx(hold.round(6).tolist())
    # the index has no d3: d2->d3 and d3->d4 are missing and flagged, not filled
    curve = r["curves"]["index"]
    assert curve[1:3] == [None, None]
    assert curve[0] == pytest.approx(1.01) and curve[3] == pytest.approx(1.01 * 1.01)
    assert r["index"]["sessions_covered"] == 2 and r["index"]["sessions_missing"] == 2
    assert r["curves"]["dates"] == ["d2", "d3", "d4", "d5"]
    assert r["strategy"]["max_drawdown_pct"] == pytest.approx(
        (1 - want[3] / want[0]) * 100, abs=1e-3)


def test_a_call_is_judged_close_to_close_but_traded_from_the_next_open(bars):
    """The call after d's close cannot be traded at that close: the strategy buys at d+1's
    open and sells at d+2's open, while the hit rate still judges the call close to close."""
    cfg = config.get()
    sig = replayed(bars, cfg, start="2025-06-02", end="2025-06-30")
    b = bars["ANZ.AX"]
    k = b.dates.index("2025-06-10")
    row = next(i for i, (s, d) in enumerate(zip(sig.symbol, sig.date))
               if s == "ANZ.AX" and d == "2025-06-10")
    assert sig.forward[row] == pytest.approx(b.close[k + 1] / b.close[k] - 1)
    assert sig.traded[row] == pytest.approx(b.open[k + 2] / b.open[k + 1] - 1)
    assert sig.traded[row] != pytest.approx(sig.forward[row])

    s = backtest.Signals()
    s.add("A", "d1", "BUY", 0.8, 0.10, traded=-0.02)   # right, but the trade lost
    s.add("A", "d2", "HOLD", 0.5, 0.0, traded=0.0)
    r = backtest.evaluate(s, {}, cost_bps=0, next_session={"d1": "d2", "d2": "d3"})
    assert r["hit_rate"] == 1.0
    assert r["curves"]["strategy"] == pytest.approx([0.98, 0.98])
    assert r["curves"]["buy_and_hold"] == pytest.approx([0.98, 0.98])


def test_the_index_is_measured_over_the_period_the_positions_are_held():
    """Strategy and buy and hold earn from the next open to the open after; with the index's
    opens the index is measured over exactly that period, not a session earlier."""
    s = backtest.Signals()
    for d in ("d1", "d2", "d3"):
        s.add("A", d, "HOLD", 0.5, 0.0, traded=0.0)
    nxt = {"d1": "d2", "d2": "d3", "d3": "d4"}
    close = {"d1": 100.0, "d2": 110.0, "d3": 121.0, "d4": 133.1}
    opens = {"d2": 105.0, "d3": 0.0, "d4": 126.0}  # d3's open is missing: d2's close stands in
    r = backtest.evaluate(s, close, next_session=nxt, index_open=opens)
    curve = r["curves"]["index"]
    assert curve[0] == pytest.approx(110.0 / 105.0)                # d2 open -> d3 (d2's close)
    assert curve[1] == pytest.approx(curve[0] * 126.0 / 110.0)     # d3 (d2 close) -> d4 open
    assert curve[2] == pytest.approx(curve[1] * 133.1 / 126.0)     # d4 open -> its close: last
    old = backtest.evaluate(s, close, next_session=nxt)            # without opens, as before
    assert old["curves"]["index"][0] == pytest.approx(1.10)


def test_the_last_signal_is_marked_at_the_close_and_a_zero_open_stands_in():
    h = features.History("X", ["a", "b", "c"], np.array([10.0, 11.0, 12.0]), [{}, {}, {}],
                         np.array([9.0, 0.0, 12.5]))
    assert backtest._traded(h, 0) == pytest.approx(12.5 / 10.0 - 1)  # b's open 0: a's close
    assert backtest._traded(h, 1) == pytest.approx(12.0 / 12.5 - 1)  # no d+2: c's close


def test_max_drawdown():
    assert backtest.max_drawdown(np.array([1.0, 1.2, 0.9, 1.3, 1.04])) == pytest.approx(0.25)
    assert backtest.max_drawdown(np.array([1.0, 1.1, 1.2])) == 0.0
    assert backtest.max_drawdown(np.array([np.nan, 1.0, 0.5, np.nan])) == pytest.approx(0.5)


@pytest.mark.slow
def test_cli_backtest_prints_the_table_and_writes_the_chart(asx_daily, tmp_path):
    from trading.cli.main import app

    chart = tmp_path / "bt.png"
    res = CliRunner().invoke(app, ["backtest", "--source", f"csv:{asx_daily}", *SYMBOLS,
                                   "--start", "2025-01-02", "--chart", str(chart)])
    assert res.exit_code == 0, res.output
    assert "hit rate" in res.output and "buy and hold" in res.output
    assert "index covers" in res.output
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_cli_json_and_bad_input(asx_daily):
    from trading.cli.main import main

    runner = CliRunner()
    from trading.cli.main import app

    res = runner.invoke(app, ["backtest", "--source", f"csv:{asx_daily}", "CBA",
                              "--start", "2025-11-01", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["symbols"] == ["CBA.AX"] and report["start"] >= "2025-11-01"
    assert main(["backtest", "--source", f"csv:{asx_daily}", "--start", "yesterday"]) == 2
    assert main(["backtest", "--source", f"csv:{asx_daily}", "--start", "2025-12-01",
                 "--end", "2025-11-01"]) == 2
    assert main(["backtest", "--chart", "/tmp/x.svg"]) == 2


@pytest.mark.slow
def test_active_model_is_used_only_on_sessions_after_its_data(asx_daily):
    from trading.handlers.training import Training

    from trading import handlers
    from trading.runtime.service import Context

    svc = Training(Context(peers=handlers.client(in_process="always")))
    try:
        src = f"csv:{asx_daily}"
        trained = svc.train(symbols=SYMBOLS, source=src, end="2025-06-30", folds=4)
        assert trained["train_end"] == "2025-06-30"
        svc.activate(trained["version"], force=True)  # about lookahead, not its edge
        after = svc.backtest(symbols=SYMBOLS, source=src, start="2025-07-01")
        assert after["model"]["used"] and after["model"]["version"] == trained["version"]
        overlap = svc.backtest(symbols=SYMBOLS, source=src, start="2025-06-30")
        assert not overlap["model"]["used"] and "lookahead" in overlap["model"]["reason"]
        without = svc.backtest(symbols=SYMBOLS, source=src, start="2025-07-01", use_model=False)
        # the model is a real input: its component moves at least one decision's confidence
        assert after["per_action"] != without["per_action"] or \
            after["strategy"] != without["strategy"]
    finally:
        svc.close()
