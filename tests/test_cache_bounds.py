"""The bar cache is bounded per source: bulk fetches of ever new codes from ``sample`` (any
code is accepted) keep the store file and its rows bounded, evicted series come back when
asked for, and nothing that cannot be fetched again is ever evicted (issue 14).

A real market-data handler on a real socket, and its real SQLite file.
"""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from support.wire import rpc
from trading import config


def _counts(db) -> tuple[int, int, int, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        series = conn.execute("SELECT count(*) FROM bar_series WHERE source = 'sample'").fetchone()[0]
        bars = conn.execute("SELECT count(*) FROM bars WHERE source = 'sample'").fetchone()[0]
        predictions = conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    return series, bars, predictions, events


@pytest.mark.slow
def test_bulk_fetches_of_new_codes_keep_the_store_bounded(activate, monkeypatch):
    monkeypatch.setenv("TRADING_CACHE_MAX_SERIES", "60")
    config.reset()
    db = config.get().db_path
    # Something that cannot be fetched again, in the same store: a prediction and its event.
    from trading.handlers.prediction import Prediction
    from trading.runtime.service import Context
    from trading import handlers

    cfg = config.get()
    pred = Prediction(Context(cfg, peers=handlers.client(cfg, in_process="always")))
    made = pred.generate_predictions(["CBA"], source="sample")
    assert list(made["results"]) == ["CBA.AX"]
    pred.close()

    h = activate("market-data", idle_exit=60)
    sizes, rows = [], []
    for batch in range(6):
        codes = [f"Q{batch}{i:02d}" for i in range(50)]  # 50 codes never seen before
        out = rpc(h.path, "bulk_fetch", {"symbols": codes, "source": "sample"}, timeout=60)
        assert len(out["result"]["results"]) == 50, out
        series, bars, predictions, events = _counts(db)
        assert series <= 60 + 51, series  # the limit, plus one request's own symbols
        assert predictions == 1 and events == 1
        sizes.append(os.path.getsize(db) + os.path.getsize(f"{db}-wal"))
        rows.append(bars)
    # After the cache is full, the file stops growing: freed pages are reused.
    assert max(sizes[2:]) <= sizes[1] * 1.3, sizes
    assert max(rows[2:]) <= rows[1] * 1.3, rows

    # An evicted series is fetched again, transparently and quickly.
    t0 = time.monotonic()
    again = rpc(h.path, "get_market_data", {"symbol": "Q000", "source": "sample"})
    assert again["result"]["symbol"] == "Q000.AX" and again["result"]["stale"] is False
    assert time.monotonic() - t0 < 5
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM bar_series WHERE source = 'sample' AND "
                            "symbol = 'Q000.AX'").fetchone()[0] == 1


def test_the_least_recently_used_series_go_first(tmp_path):
    import datetime as dt

    from trading.market.bars import BarCache
    from trading.market.sources import SampleSource
    from trading.runtime.store import Store

    store = Store(tmp_path / "trading.db")
    now = [time.time()]
    cache = BarCache(store, clock=lambda: now[0], max_series=3)
    src = SampleSource()
    start = dt.date.today() - dt.timedelta(days=60)
    for s in ["A.AX", "B.AX", "C.AX"]:
        cache.ensure(src, [s], start)
        now[0] += 4000  # past TOUCH_S: each use is recorded
    cache.ensure(src, ["A.AX"], start)  # A is used again: B is now the oldest
    now[0] += 4000
    cache.ensure(src, ["D.AX"], start)
    kept = {r[0] for r in store.query("SELECT symbol FROM bar_series")}
    assert kept == {"A.AX", "C.AX", "D.AX"}
    assert store.query("SELECT count(*) FROM bars WHERE symbol = 'B.AX'")[0][0] == 0
    store.close()
