"""Universes of hundreds of symbols (issue 26): a watch list or a file of codes for predict,
replay, backtest and train; the live refresh in batches Yahoo accepts; a local folder's whole
record in training and backtests, and what was left out said with why."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from trading import clock, config
from trading.errors import ConfigError, InvalidParams
from trading.market import asx
from trading.market.bars import REFRESH_CHUNK
from trading.market.universe import read_codes, resolve

# 250 made-up codes of the shape the ASX uses (three letters), and seven real ones.
CODES = [f"{a}{b}{c}" for a in "QXZ" for b in "ABCDEFGHIJ" for c in "KLMNOPQRS"][:243]
CODES += ["CBA", "ANZ", "NAB", "WBC", "MQG", "COL", "BHP"]


def write_config(tmp_path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    import os

    os.environ["TRADING_CONFIG"] = str(path)  # clean_environ restores it after the test
    config.reset()


def codes_file(tmp_path, codes=CODES, name="asx250.txt"):
    """One code a line, a comment, a comma-separated line and a .AX spelling, as a
    spreadsheet export and a hand-edited list mix them."""
    lines = ["# my universe, exported 2026-11-30"] + [c.lower() for c in codes[:100]]
    lines.append(", ".join(codes[100:200]) + "   # the middle hundred")
    lines += [f"{c}.AX" for c in codes[200:]]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_file_of_codes_in_any_layout_gives_each_symbol_once(tmp_path):
    path = codes_file(tmp_path, CODES + ["cba"])
    got = read_codes(str(path))
    assert len(got) == 250 and got[0] == "QAK.AX" and got[-1] == "BHP.AX"
    assert got.count("CBA.AX") == 1


def test_a_bad_code_names_the_file_and_line(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("CBA\nBHP, WBC\n# fine so far\nCSL, BH-P\n")
    with pytest.raises(InvalidParams) as info:
        read_codes(str(path))
    assert str(path) in info.value.message and "line 4" in info.value.message
    assert "BH-P" in info.value.message


def test_watch_lists_from_the_configuration_as_a_list_or_a_file(tmp_path):
    (tmp_path / "lists").mkdir()
    codes_file(tmp_path, name="lists/asx250.txt")
    write_config(tmp_path, '[watchlists]\nbanks = ["cba", "anz", "NAB.AX"]\n'
                           'asx250 = "lists/asx250.txt"\n')
    cfg = config.get()
    assert resolve("banks", cfg) == ["CBA.AX", "ANZ.AX", "NAB.AX"]
    assert len(resolve("asx250", cfg)) == 250  # relative to the configuration file's folder
    with pytest.raises(InvalidParams, match="neither a watch list .* nor a file"):
        resolve("asx300", cfg)
    write_config(tmp_path, "[watchlists]\nbanks = 7\n")
    with pytest.raises(ConfigError, match="watchlists.banks"):
        config.get()


def test_predict_250_symbols_from_a_watch_list_and_from_a_file(tmp_path):
    from trading.cli.main import app

    path = codes_file(tmp_path)
    write_config(tmp_path, f'[watchlists]\nasx250 = {json.dumps(CODES)}\n')
    runner = CliRunner()
    for spec in ("asx250", str(path)):
        res = runner.invoke(app, ["predict", "--symbols-from", spec, "--source", "sample",
                                  "--json"])
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert len(out["results"]) == 250 and not out["errors"]


def test_a_bad_universe_is_one_line_and_a_usage_error(tmp_path):
    from trading.cli.main import app

    bad = tmp_path / "bad.txt"
    bad.write_text("CBA\nnot a code!\n")
    runner = CliRunner()
    for command in (["predict"], ["backtest"], ["train"], ["replay", str(tmp_path)]):
        res = runner.invoke(app, [*command, "--symbols-from", str(bad)])
        assert res.exit_code == 2, (command, res.output)
        assert f"{bad} line 2" in res.output and "Traceback" not in res.output
        res = runner.invoke(app, [*command, "-u", "nowhere"])
        assert res.exit_code == 2 and "neither a watch list" in res.output


def test_more_than_the_bound_is_refused_before_anything_runs(tmp_path):
    from trading.cli.main import app
    from trading.handlers.params import MAX_SYMBOLS

    many = [f"{a}{b}{c}{d}" for a in "QXZ" for b in "ABCDEFGHIJ" for c in "ABCDEFGHIJ"
            for d in "KLMNOP"][:MAX_SYMBOLS + 1]
    path = codes_file(tmp_path, many)
    res = CliRunner().invoke(app, ["backtest", "-u", str(path), "--source", "sample"])
    assert res.exit_code == 2 and f"{MAX_SYMBOLS + 1} symbols; at most {MAX_SYMBOLS}" in res.output


# -- the live path: batches Yahoo accepts ---------------------------------------------------
def download_frame(symbols, start, end):
    """What ``yf.download(symbols)`` returns: (Price, Ticker) columns, here from the sample
    source's bars (only the shape matters)."""
    from trading.market.sources import SampleSource

    got = SampleSource().fetch(list(symbols), start, end)
    parts = {}
    for s, b in got.bars.items():
        index = pd.DatetimeIndex(pd.to_datetime(b.dates), name="Date")
        parts[s] = pd.DataFrame({"Close": b.close, "High": b.high, "Low": b.low,
                                 "Open": b.open, "Volume": b.volume}, index=index)
    frame = pd.concat(parts, axis=1).swaplevel(0, 1, axis=1).sort_index(axis=1, level=0)
    frame.columns.names = ["Price", "Ticker"]
    return frame


def test_a_250_symbol_refresh_asks_yahoo_in_batches_of_at_most_100(tmp_path):
    """The prediction service asks market-data for the whole universe in one bulk_fetch;
    market-data asks Yahoo in REFRESH_CHUNK batches: 250 symbols and the index are three
    downloads (100, 100, 51), and a second run within the session asks nothing."""
    from trading.handlers.market_data import MarketData
    from trading.market.sources import YahooSource

    calls = []

    def downloader(symbols, start, end):
        calls.append(list(symbols))
        return download_frame(symbols, start, end)

    svc = MarketData()
    svc._sources["yahoo"] = YahooSource(tmp_path, downloader=downloader, sleep=lambda s: None)
    try:
        symbols = [f"{c}.AX" for c in CODES]
        out = svc.bulk_fetch(symbols, source="yahoo")
        assert len(out["results"]) == 250 and not out["errors"]
        assert [len(c) for c in calls] == [REFRESH_CHUNK, REFRESH_CHUNK, 51]
        assert sorted(s for c in calls for s in c) == sorted(symbols + ["^AXJO"])
        calls.clear()
        svc.bulk_fetch(symbols, source="yahoo")
        assert calls == []  # fresh until the next session
    finally:
        svc.close()


# -- train and backtest over a universe ------------------------------------------------------
def test_backtest_250_symbols_from_a_file_with_the_sample_source(tmp_path):
    from trading.cli.main import app

    path = codes_file(tmp_path)
    start = (clock.today() - dt.timedelta(days=12)).isoformat()
    res = CliRunner().invoke(app, ["backtest", "--symbols-from", str(path), "--source",
                                   "sample", "--start", start, "--no-model", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(r["symbols"]) == 250 and r["start"] >= start and r["signals"] >= 250
    assert not r["skipped"]


def test_train_a_watch_list_where_most_codes_have_no_file(tmp_path, asx_daily):
    """A 250-code watch list over a folder holding seven of them: trained on the seven, the
    243 others skipped and said so (the first ten by name, the rest counted)."""
    from trading.cli.main import app

    write_config(tmp_path, f'[watchlists]\nasx250 = {json.dumps(CODES)}\n')
    res = CliRunner().invoke(app, ["train", "-u", "asx250", "--source", f"csv:{asx_daily}",
                                   "--start", "2025-03-01", "--folds", "2"])
    assert res.exit_code == 0, res.output
    assert "trained on ANZ.AX, BHP.AX, CBA.AX, COL.AX, MQG.AX, NAB.AX, WBC.AX 2025-03-" \
        in res.output
    assert res.output.count("skipped: ") == 11 and "skipped: 233 more" in res.output
    assert "no file QAK.AX.csv" in res.output


@pytest.mark.slow
def test_train_250_symbols_from_a_watch_list_with_the_sample_source(tmp_path):
    from trading.cli.main import app

    write_config(tmp_path, f'[watchlists]\nasx250 = {json.dumps(CODES)}\n')
    start = (clock.today() - dt.timedelta(days=150)).isoformat()
    res = CliRunner().invoke(app, ["train", "-u", "asx250", "--source", "sample", "--start",
                                   start, "--folds", "2", "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout.strip().splitlines()[-1])["metrics"]
    assert len(m["symbols"]) == 250 and m["train_start"] >= start


# -- a local folder's whole record -----------------------------------------------------------
def write_classic(path, symbol: str, days: list[dt.date], seed: int) -> None:
    """``SYMBOL.csv`` in the classic layout (Date,Open,High,Low,Close,Volume,Adj Close)."""
    rng = np.random.default_rng(seed)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.015, len(days))))
    lines = ["Date,Open,High,Low,Close,Volume,Adj Close"]
    for d, c, o in zip(days, close, close * np.exp(rng.normal(0, 0.004, len(days)))):
        lines.append(f"{d},{o:.4f},{max(o, c) * 1.01:.4f},{min(o, c) * 0.99:.4f},{c:.4f},"
                     f"{int(rng.integers(1e5, 1e6))},{c:.4f}")
    (path / f"{symbol}.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture
def old_record(tmp_path):
    """Thirty-one years of record in few sessions: a year from 1995 (as an old download
    kept), then 2025 on; two stocks and the index."""
    folder = tmp_path / "record"
    folder.mkdir()
    days = asx.sessions_between(dt.date(1995, 1, 3), dt.date(1995, 12, 29)) + \
        asx.sessions_between(dt.date(2025, 1, 2), dt.date(2025, 12, 31))
    for i, symbol in enumerate(["RMD.AX", "CSL.AX", "^AXJO"]):
        write_classic(folder, symbol, days, i)
    return folder


def test_training_uses_a_local_folders_whole_record(old_record):
    from trading.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["train", "RMD", "CSL", "--source", f"csv:{old_record}",
                              "--folds", "2", "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.stdout.strip().splitlines()[-1])["metrics"]
    assert m["train_start"].startswith("1995-") and m["train_end"].startswith("2025-12")
    assert m["left_out"] == {} and m["skipped"] == {}


def test_start_and_end_narrow_it_and_say_what_was_left_out(old_record):
    from trading.cli.main import app

    res = CliRunner().invoke(app, ["backtest", "RMD", "CSL", "--source", f"csv:{old_record}",
                                   "--start", "2025-10-01", "--end", "2025-11-28"])
    assert res.exit_code == 0, res.output
    assert "backtest 2025-10-01..2025-11-2" in res.output
    lines = [line for line in res.output.splitlines() if line.startswith("not used: ")]
    assert len(lines) == 2, res.output
    assert "not used: RMD.AX: 1995-01-03..1995-12-29 (before --start 2025-10-01, less 400 " \
        "days of indicator warm-up); 2025-12-01..2025-12-31 (after --end 2025-11-28)" \
        in res.output


def test_backtest_without_start_runs_over_the_whole_record(old_record):
    from trading.handlers.training import Training
    from trading import handlers
    from trading.runtime.service import Context

    svc = Training(Context(peers=handlers.client(in_process="always")))
    try:
        r = svc.backtest(symbols=["RMD", "CSL"], source=f"csv:{old_record}", use_model=False)
    finally:
        svc.close()
    assert r["start"].startswith("1995-") and r["end"].startswith("2025-12")
    assert not r["left_out"] and math.isfinite(r["buy_and_hold"]["total_return_pct"])
