"""`trading replay --interval 1h` (issue 29): each completed bar of a local intraday file
predicted from the bars up to it and no later one, stored as its own stream, scored at 1 and
5 sessions from the price it was made at, and reported apart from the daily calls."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trading import config
from trading.market import intraday, intraday_summary
from trading.market.reading import read_csv
from trading.market.sources import CsvSource
from trading.signals import ledger, outcomes, replay

DATA = Path(__file__).parent / "data"
INTRADAY = DATA / "asx-intraday"
TODAY = dt.date(2026, 3, 1)


def csv_bars(directory: Path):
    """``get_bars`` over a folder as `trading replay` reads it: daily or intraday files."""
    local = CsvSource(directory)
    source = f"csv:{directory}"

    def get_bars(symbol, period, _source=None, interval="1d"):
        fetched = local.fetch([symbol], dt.date.min, dt.date.max) if interval == "1d" \
            else local.fetch_intraday([symbol], None, None, interval)
        if symbol in fetched.errors:
            raise fetched.errors[symbol]
        return {"symbol": symbol, "bars": fetched.bars[symbol].to_rows(),
                "reading": fetched.readings.get(symbol)}

    return source, get_bars


@pytest.fixture
def folder(tmp_path) -> Path:
    """The intraday fixture with CBA's daily file beside it (and no index file)."""
    d = tmp_path / "bars"
    d.mkdir()
    shutil.copy(INTRADAY / "CBA.AX.1h.csv", d)
    shutil.copy(INTRADAY / "CBA.AX.15m.csv", d)
    shutil.copy(DATA / "asx-daily" / "CBA.AX.csv", d)
    return d


def hourly_bars():
    return read_csv(INTRADAY / "CBA.AX.1h.csv", interval="1h")[0]


def whole_windows(dates: list[str], sessions: int) -> list[int]:
    """The bars whose window holds ``sessions`` sessions since the start or a gap."""
    from trading.market.gaps import gaps

    starts = {i for i, _ in gaps(dates)}
    out, count, day = [], 0, None
    for i, d in enumerate(dates):
        if i in starts:
            count, day = 0, None
        if d[:10] != day:
            count, day = count + 1, d[:10]
        if count >= sessions:
            out.append(i)
    return out


def test_each_completed_bar_after_the_window_fills_is_predicted_from_the_bars_up_to_it(
        store, cfg, folder):
    source, get_bars = csv_bars(folder)
    result = replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, interval="1h",
                           today=TODAY)
    bars = hourly_bars()
    wanted = whole_windows(bars.dates, intraday_summary.WINDOW_SESSIONS["1h"])
    assert result["interval"] == "1h" and result["run_id"] == f"replay:{source}@1h"
    assert result["predictions"] == len(wanted)
    cov = result["coverage"]
    assert cov["sessions"] == len(bars)  # counted in bars on an intraday interval
    assert cov["left_out"] == {"warm-up after a start or a gap": len(bars) - len(wanted)}
    rows = store.query("SELECT interval, created_at, session, price,"
                       " json_extract(inputs, '$.market') AS market FROM predictions"
                       " ORDER BY created_at")
    assert {r["interval"] for r in rows} == {"1h"}
    import json

    markets = [json.loads(r["market"]) for r in rows]
    assert [m["as_of"] for m in markets] == [bars.dates[i] for i in wanted]
    for r, m, i in zip(rows, markets, wanted):
        # Made when the delayed feed had the whole bar, from exactly the bars up to it.
        assert dt.datetime.fromisoformat(r["created_at"]) == intraday.final_at(
            bars.dates[i], "1h")
        assert r["session"] == bars.dates[i][:10]
        expected = intraday_summary.summarize("CBA.AX", bars[:i + 1], [], "1h", cfg)
        assert m["technical"] == expected["technical"] and m["volume"] == expected["volume"]
        assert m["interval"] == "1h"
        assert r["price"] == pytest.approx(float(bars.close[i]), abs=1e-4)
    got = ledger.history(store, interval="1h", limit=5)
    assert [p["bar"] for p in got] == [bars.dates[i] for i in wanted[::-1][:5]]
    assert {p["stream"]["interval"] for p in got} == {"1h"}
    assert ledger.history(store, interval="1d") == []


def test_no_lookahead_bars_cut_at_a_moment_give_the_same_calls_up_to_the_cut(
        tmp_path, cfg, folder):
    """As tests/test_predictions.py does for daily bars: the file cut at 12:00 on 10 April
    (bars after it never written) replays to the same calls, bar for bar, as the whole file
    up to the cut."""
    from trading.runtime.store import Store

    cut = tmp_path / "cut"
    cut.mkdir()
    lines = (folder / "CBA.AX.1h.csv").read_text().splitlines(keepends=True)
    moment = dt.datetime(2024, 4, 10, 12, tzinfo=dt.timezone(dt.timedelta(hours=10)))
    kept = [ln for ln in lines[1:] if dt.datetime.fromisoformat(ln.split(",")[0]) <= moment]
    assert 0 < len(kept) < len(lines) - 1
    (cut / "CBA.AX.1h.csv").write_text(lines[0] + "".join(kept))

    def calls(directory: Path, name: str):
        s = Store(tmp_path / f"{name}.db")
        src, get_bars = csv_bars(directory)
        replay.replay(s, cfg, get_bars, ["CBA.AX"], source=src, interval="1h", today=TODAY)
        import json

        out = [(r["bar"], r["action"], r["confidence"], r["score"],
                {k: v for k, v in json.loads(r["market"]).items() if k != "source"})
               for r in s.query("SELECT json_extract(inputs, '$.market.as_of') AS bar, action,"
                                " confidence, score, json_extract(inputs, '$.market') AS market"
                                " FROM predictions ORDER BY created_at")]
        s.close()
        return out

    whole, part = calls(folder, "whole"), calls(cut, "cut")
    upto = [c for c in whole if intraday.parse(c[0]) <= moment]
    assert part and len(part) == len(upto) < len(whole)
    assert part == upto
    assert part[-1][0] == "2024-04-10T12:00:00+10:00"


def test_an_intraday_call_is_scored_from_its_bar_close_against_the_session_closes(
        store, cfg, folder):
    source, get_bars = csv_bars(folder)
    replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, interval="1h",
                  today=TODAY)
    bars = hourly_bars()
    close = {}
    for d, c in zip(bars.dates, bars.close):
        close[d[:10]] = float(c)  # a session's close: its last bar (the closing auction)
    days = sorted(close)
    rows = store.query("SELECT p.price, p.action, json_extract(p.inputs, '$.market.as_of')"
                       " AS bar, o.* FROM outcomes o JOIN predictions p"
                       " ON p.id = o.prediction_id")
    assert rows and {r["horizon"] for r in rows} == {1, 5}
    same_session_prices = set()
    for r in rows:
        assert r["base_session"] == r["bar"][:10]
        assert r["end_session"] == days[days.index(r["base_session"]) + r["horizon"]]
        assert r["base_close"] == pytest.approx(r["price"])  # the price it was made at
        ret = close[r["end_session"]] / r["price"] - 1
        assert r["forward_return"] == pytest.approx(ret, abs=1e-9)
        assert bool(r["correct"]) is outcomes.is_right(r["action"], ret, r["horizon"])
        if r["base_session"] == "2024-04-10" and r["horizon"] == 1:
            same_session_prices.add(round(r["base_close"], 4))
    assert len(same_session_prices) > 1  # each bar of a session from its own price


def test_a_daily_and_an_hourly_replay_are_two_streams_reported_apart(store, cfg, folder):
    source, get_bars = csv_bars(folder)
    daily = replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, today=TODAY)
    hourly = replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, interval="1h",
                           today=TODAY)
    assert daily["interval"] == "1d" and daily["predictions"] > 0
    # The hourly replay replaced nothing of the daily one.
    counts = dict(store.tuples("SELECT interval, count(*) FROM predictions GROUP BY interval"))
    assert counts == {"1d": daily["predictions"], "1h": hourly["predictions"]}
    rep = outcomes.accuracy(store, "replay")
    assert set(rep["by_interval"]) == {"1d", "1h"}
    for name, run in (("1d", daily), ("1h", hourly)):
        part = rep["by_interval"][name]
        assert part["predictions"] == {"replay": run["predictions"]}
        alone = outcomes.accuracy(store, "replay", interval=name)
        assert alone["horizons"] == part["horizons"]
        # One call per symbol-session and interval: a 1h session's calls fold into its last.
        sessions = {r[0] for r in store.tuples(
            "SELECT p.session FROM predictions p JOIN outcomes o ON o.prediction_id = p.id"
            " AND o.horizon = 1 WHERE p.interval = ?", (name,))}
        assert part["horizons"]["1"]["n"] == len(sessions)
    assert rep["horizons"]["1"]["n"] == sum(rep["by_interval"][n]["horizons"]["1"]["n"]
                                            for n in ("1d", "1h"))
    with pytest.raises(Exception, match="interval"):
        outcomes.accuracy(store, "replay", interval="2h")
    # The stored calibration (what live calls use) maps the rules' daily score: the hourly
    # calls' outcomes are not in it.
    from trading.signals import calibration

    daily_outcomes = dict(store.tuples(
        "SELECT o.horizon, count(*) FROM outcomes o JOIN predictions p ON p.id ="
        " o.prediction_id WHERE p.interval = '1d' GROUP BY o.horizon"))
    assert calibration.fit_store(store).fitted_on == {str(h): n
                                                      for h, n in daily_outcomes.items()}


def test_the_intraday_walk_forward_fits_only_on_sessions_closed_before_the_call(
        store, cfg, folder):
    """Made during its session, an intraday call may not be calibrated on an outcome that
    ends at that session's close; the daily walk-forward (made at the close) may."""
    import json

    from trading.signals import calibration

    source, get_bars = csv_bars(folder)
    replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, interval="1h", today=TODAY)

    def throughs():
        return [(r["session"], json.loads(r["prediction"])["calibration"]["through"])
                for r in store.query("SELECT session, prediction FROM predictions")]

    intraday_fits = [(d, t) for d, t in throughs() if t]
    assert intraday_fits and all(t < d for d, t in intraday_fits)
    calibration.walk_forward(store, f"replay:{source}@1h")  # as if made at the close
    assert any(t == d for d, t in throughs())


def test_cli_replay_interval_defaults_to_the_setting_and_refuses_a_bad_one(
        folder, monkeypatch):
    from trading.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["replay", str(folder), "--symbol", "CBA", "--interval", "2h"])
    assert r.exit_code == 2 and r.stderr.strip().count("\n") == 0
    monkeypatch.setenv("TRADING_PREDICTOR_INTERVAL", "1h")
    config.reset()
    r = runner.invoke(app, ["replay", str(folder), "--symbol", "CBA"])
    assert r.exit_code == 0, r.output
    bars = hourly_bars()
    n = len(whole_windows(bars.dates, 5))
    assert f"rules: replayed {n} predictions" in r.stdout
    assert f"1h bars: {len(bars)} in 1 series" in r.stdout
    r = runner.invoke(app, ["replay", str(folder), "--symbol", "CBA", "--interval", "15m",
                            "--json"])
    assert r.exit_code == 0, r.output
    import json

    got = json.loads(r.stdout)
    assert got["interval"] == "15m" and got["run_id"].endswith("@15m")
    assert got["predictions"] == len(whole_windows(
        read_csv(INTRADAY / "CBA.AX.15m.csv", interval="15m")[0].dates, 5))


def test_trading_report_prints_each_interval_apart_and_keeps_one_with_interval(
        store, cfg, folder):
    import json

    from trading.cli.main import app

    source, get_bars = csv_bars(folder)
    daily = replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, today=TODAY)
    hourly = replay.replay(store, cfg, get_bars, ["CBA.AX"], source=source, interval="1h",
                           today=TODAY)
    runner = CliRunner()
    r = runner.invoke(app, ["report", "--origin", "replay"])
    assert r.exit_code == 0, r.output
    assert "-- 1d calls (daily bars) --" in r.stdout
    assert "-- 1h calls (completed 1h bars) --" in r.stdout
    assert r.stdout.index("-- 1d calls") < r.stdout.index("-- 1h calls")
    assert f"predictions stored: {hourly['predictions']} replay" in r.stdout
    r = runner.invoke(app, ["report", "--origin", "replay", "--interval", "1h", "--json"])
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert got["interval"] == "1h" and got["predictions"] == {"replay": hourly["predictions"]}
    assert got["horizons"] == outcomes.accuracy(store, "replay", interval="1h")["horizons"]
    r = runner.invoke(app, ["report", "--interval", "1d", "--json"])
    assert json.loads(r.stdout)["predictions"] == {"replay": daily["predictions"]}
    r = runner.invoke(app, ["report", "--interval", "2h"])
    assert r.exit_code == 2 and r.stderr.strip().count("\n") == 0


# -- backtest --interval 1h -------------------------------------------------------------------

def test_an_hourly_backtest_acts_on_each_sessions_last_call_from_the_bars_up_to_it(tmp_path):
    """Issue 29: `trading backtest --interval 1h` computes the predictor's inputs from the
    hourly bars, bar by bar, and acts on the call each session ends with (its closing
    auction bar), as it acts on a daily call; cutting the file after a session changes no
    entry up to that session."""
    import json

    from trading.cli.main import app
    from trading.learning import features

    d = tmp_path / "bars"
    d.mkdir()
    shutil.copy(INTRADAY / "CBA.AX.1h.csv", d)
    cfg = config.get()
    bars = hourly_bars()
    windows = intraday_summary.IndexWindows(None, "1h", cfg)
    h = features.intraday_history("CBA.AX", bars, windows, "1h", cfg)
    days = sorted({s[:10] for s in bars.dates})
    ready = {bars.dates[i][:10] for i in whole_windows(bars.dates, 5)}
    assert h.dates == [day for day in days if day in ready] and len(h.dates) > 10
    for k, day in enumerate(h.dates):
        last = max(s for s in bars.dates if s[:10] == day)
        first = min(i for i, s in enumerate(bars.dates) if s[:10] == day)
        assert h.markets[k]["as_of"] == last  # the session's last complete bar
        assert h.close[k] == bars.close[bars.dates.index(last)]
        assert h.open[k] == bars.open[first]
        assert h.markets[k] == intraday_summary.summarize(
            "CBA.AX", bars[:bars.dates.index(last) + 1], None, "1h", cfg)
    # No lookahead: the file cut after a session gives the same entries up to it.
    cut_day = h.dates[len(h.dates) // 2]
    upto = max(i for i, s in enumerate(bars.dates) if s[:10] == cut_day) + 1
    cut = features.intraday_history("CBA.AX", bars[:upto], windows, "1h", cfg)
    n = h.dates.index(cut_day) + 1
    assert cut.dates == h.dates[:n] and cut.markets == h.markets[:n]

    out = CliRunner().invoke(app, ["backtest", "CBA", "--source", f"csv:{d}", "--interval",
                                   "1h", "--json"])
    assert out.exit_code == 0, out.output
    r = json.loads(out.stdout)
    assert r["interval"] == "1h" and r["symbols"] == ["CBA.AX"]
    assert r["signals"] == len(h.dates) - 1  # each session but the last has a next one
    assert (r["start"], r["end"]) == (h.dates[0], h.dates[-2])
    table = CliRunner().invoke(app, ["backtest", "CBA", "--source", f"csv:{d}", "--interval",
                                     "1h"])
    assert table.exit_code == 0 and "inputs from 1h bars" in table.stdout, table.output
    bad = CliRunner().invoke(app, ["backtest", "CBA", "--source", f"csv:{d}", "--interval",
                                   "2h"])
    assert bad.exit_code == 2 and len(bad.output.strip().splitlines()) == 1, bad.output
