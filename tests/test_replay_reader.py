"""The replay's reader process (trading.signals.replay._packages): the same calls, outcomes and
calibration as one process, and a reader that fails says so in one line.

``trading replay`` reads and predicts in a forked reader while it writes; these tests run the
library's replay both ways on the same files and compare every stored row.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from trading.errors import TradingError
from trading.market.sources import CsvSource
from trading.runtime.store import Store
from trading.signals import replay

SYMBOLS = ["CBA.AX", "BHP.AX", "NAB.AX", "WBC.AX"]
TODAY = dt.date(2026, 3, 1)


def file_bars(folder, fail=None):
    """A get_bars that reads the files, as the command's does (safe in a fork); ``fail``:
    ``{symbol: what}`` to do instead for that symbol."""
    local = CsvSource(folder)
    source = f"csv:{folder}"

    def get_bars(symbol, period, _source=None):
        if fail and symbol in fail:
            fail[symbol]()
        fetched = local.fetch([symbol], dt.date.min, dt.date.max)
        if symbol in fetched.errors:
            raise fetched.errors[symbol]
        return {"symbol": symbol, "source": source, "bars": fetched.bars[symbol].to_rows()}

    return source, get_bars


def stored(path) -> tuple[list, list, list]:
    s = Store(path)
    try:
        calls = [(*r[:-1], json.loads(r[-1])) for r in s.tuples(
            "SELECT symbol, session, action, confidence, probability_1, probability_5, strength,"
            " created_at, prediction FROM predictions ORDER BY symbol, session")]
        outs = list(s.tuples(
            "SELECT p.symbol, p.session, o.horizon, o.end_session, o.forward_return, o.correct"
            " FROM outcomes o JOIN predictions p ON p.id = o.prediction_id"
            " ORDER BY p.symbol, p.session, o.horizon"))
        cals = list(s.tuples("SELECT fitted_on, through, record FROM calibrations"))
        return calls, outs, cals
    finally:
        s.close()


def run(tmp_path, name, cfg, asx_daily, *, reader, fail=None):
    path = tmp_path / name / "trading.db"
    path.parent.mkdir()
    source, get_bars = file_bars(asx_daily, fail)
    s = Store(path)
    try:
        result = replay.replay(s, cfg, get_bars, SYMBOLS, source=source, start="2025-06-01",
                               today=TODAY, reader=reader)
    finally:
        s.close()
    return path, result


def test_the_reader_process_stores_what_one_process_does(tmp_path, cfg, asx_daily):
    one, alone = run(tmp_path, "one", cfg, asx_daily, reader=False)
    two, paired = run(tmp_path, "two", cfg, asx_daily, reader=True)
    for key in ("predictions", "by_action", "outcomes", "coverage", "errors"):
        assert paired[key] == alone[key], key
    assert alone["predictions"] > 300
    a, b = stored(one), stored(two)
    assert len(a[0]) == alone["predictions"] and a[1] and a[2]
    assert a == b  # every call, JSON included, every outcome and the stored calibration


def test_a_reader_that_dies_is_one_line_and_the_symbols_before_stay_whole(
        tmp_path, cfg, asx_daily):
    path, _ = run(tmp_path, "whole", cfg, asx_daily, reader=False)
    whole = stored(path)[0]
    with pytest.raises(TradingError) as info:
        run(tmp_path, "died", cfg, asx_daily, reader=True,
            fail={"NAB.AX": lambda: os._exit(3)})  # as if killed: no exception, no goodbye
    assert "the process reading the bars ended (exit code 3) at NAB.AX" in info.value.message
    calls = stored(tmp_path / "died" / "trading.db")[0]
    assert {c[0] for c in calls} == {"CBA.AX", "BHP.AX"}
    # each stored whole (uncalibrated: the run stopped before its calibration)
    assert [c[:3] for c in calls] == [c[:3] for c in whole if c[0] in ("CBA.AX", "BHP.AX")]


def test_a_reader_that_raises_has_its_exception_raised_here(tmp_path, cfg, asx_daily):
    def broken():
        raise ValueError("a bug in reading")

    with pytest.raises(ValueError, match="a bug in reading"):
        run(tmp_path, "raised", cfg, asx_daily, reader=True, fail={"BHP.AX": broken})
