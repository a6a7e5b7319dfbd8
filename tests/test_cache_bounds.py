"""The bar cache is bounded per source: bulk fetches of ever new codes from ``sample`` (any
code is accepted) keep the store file and its rows bounded, evicted series come back when
asked for, and nothing that cannot be fetched again is ever evicted (issue 14). All local
folders share one budget, of series and of bars, and an eviction gives the file's space back
(issue 26).

A real market-data handler on a real socket, real CSV files in real folders (and symlinks),
and real SQLite files.
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


# -- local folders: one budget, and the space comes back (issue 26) --------------------------

def _write_csv(path, first: str, last: str) -> int:
    """A daily file in Yahoo's classic download layout, one row a session from ``first`` to
    ``last``, as a trader's folder has them; returns the rows."""
    import datetime as dt
    import random

    from trading.market import asx

    sessions = asx.sessions_between(dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    rnd, px = random.Random(path.name), 10.0
    with open(path, "w") as f:
        f.write("Date,Open,High,Low,Close,Adj Close,Volume\n")
        for d in sessions:
            px *= 1 + rnd.gauss(0, 0.01)
            f.write(f"{d},{px:.4f},{px * 1.01:.4f},{px * 0.99:.4f},{px:.4f},{px:.4f},"
                    f"{rnd.randint(1000, 100000)}\n")
    return len(sessions)


def _series(store, like: str = "csv:%") -> set[tuple[str, str]]:
    rows = store.query("SELECT source, symbol FROM bar_series WHERE source LIKE ?", (like,))
    return {(r[0], r[1]) for r in rows}


def _on_disk(store) -> int:
    """The store's file and WAL after a checkpoint: what the user sees in ``du``."""
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return store.size_bytes()


def test_local_folders_and_symlinks_share_one_budget(tmp_path):
    import datetime as dt

    from trading.market.bars import BarCache
    from trading.market.sources import SampleSource, resolve
    from trading.runtime.store import Store

    a, b, links = tmp_path / "a", tmp_path / "b", tmp_path / "links"
    for folder in (a, b, links):
        folder.mkdir()
    for s in ("A1.AX", "A2.AX"):
        _write_csv(a / f"{s}.csv", "2025-01-02", "2025-06-30")
        (links / f"{s}.csv").symlink_to(a / f"{s}.csv")  # the same files, another folder
    for s in ("B1.AX", "B2.AX", "B3.AX"):
        _write_csv(b / f"{s}.csv", "2025-01-02", "2025-06-30")
    (tmp_path / "a-again").symlink_to(a, target_is_directory=True)
    src = {k: resolve(f"csv:{tmp_path / k}", tmp_path / "cache")
           for k in ("a", "b", "links", "a-again")}
    assert src["a-again"].name == src["a"].name  # a linked folder is the folder itself

    store = Store(tmp_path / "trading.db")
    now = [time.time()]
    cache = BarCache(store, clock=lambda: now[0], max_series=4)
    start = dt.date(2024, 1, 1)

    def ask(folder, symbol):
        entries, errors = cache.ensure(src[folder], [symbol], start)
        assert symbol in entries and not errors, errors
        now[0] += 4000  # past TOUCH_S: each use is recorded
        assert len(_series(store)) <= 4, _series(store)

    sample = SampleSource()
    cache.ensure(sample, ["S1.AX", "S2.AX", "S3.AX"], dt.date.today() - dt.timedelta(days=60))
    ask("a", "A1.AX")
    ask("a", "A2.AX")
    ask("b", "B1.AX")
    ask("b", "B2.AX")
    ask("links", "A1.AX")   # a fifth local series: a/A1, the oldest, goes
    ask("a-again", "A2.AX")  # a/A2 itself, used again
    ask("b", "B3.AX")       # b/B1 is now the oldest
    name = {k: s.name for k, s in src.items()}
    assert _series(store) == {(name["a"], "A2.AX"), (name["b"], "B2.AX"),
                              (name["links"], "A1.AX"), (name["b"], "B3.AX")}
    gone = store.query("SELECT count(*) FROM bars WHERE source = ? AND symbol = 'B1.AX'",
                       (name["b"],))[0][0]
    assert gone == 0
    # Sample has its own budget: the local folders never evicted its series.
    assert {s for _, s in _series(store, "sample")} == {"S1.AX", "S2.AX", "S3.AX"}
    store.close()


def test_a_budget_of_bars_keeps_the_request_s_own_and_the_file_shrinks(tmp_path, monkeypatch):
    """Eight 36-year files (9,112 sessions each) asked at once stay, although they are over
    the budget of bars: they are the request's own. The next request evicts seven of them,
    and the file gives the space back."""
    import datetime as dt

    from trading.market.bars import BarCache
    from trading.market.sources import resolve
    from trading.runtime import store as store_module
    from trading.runtime.store import Store

    monkeypatch.setattr(store_module, "RECLAIM_BYTES", 1 << 20)  # a test-sized store
    big, small = tmp_path / "history", tmp_path / "recent"
    big.mkdir()
    small.mkdir()
    codes = [f"H{i:02d}.AX" for i in range(8)]
    rows = sum(_write_csv(big / f"{s}.csv", "1990-01-02", "2025-12-31") for s in codes)
    _write_csv(small / "NEW.AX.csv", "2025-01-02", "2025-06-30")
    store = Store(tmp_path / "trading.db")
    assert store.query("PRAGMA auto_vacuum")[0][0] == 2  # incremental, from creation
    now = [time.time()]
    cache = BarCache(store, clock=lambda: now[0], max_bars=15_000)
    start = dt.date(1980, 1, 1)

    entries, errors = cache.ensure(resolve(f"csv:{big}", tmp_path), codes, start)
    assert not errors and len(entries) == 8
    assert store.query("SELECT count(*) FROM bars")[0][0] == rows > 70_000
    before = _on_disk(store)

    now[0] += 4000
    entries, errors = cache.ensure(resolve(f"csv:{small}", tmp_path), ["NEW.AX"], start)
    assert not errors and "NEW.AX" in entries
    left = store.query("SELECT count(*), sum(bars) FROM bar_series")[0]
    assert left[0] == 2 and left[1] <= 15_000, tuple(left)  # NEW and one 9,112-bar series
    assert store.query("SELECT count(*) FROM bars")[0][0] == left[1]
    after = _on_disk(store)
    print(f"store {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB ({rows} -> {left[1]} bars)")
    assert after < before * 0.25, (before, after)
    assert store.query("PRAGMA freelist_count")[0][0] * 4096 < 1 << 20
    store.close()


def test_an_older_store_is_converted_once_and_nothing_but_bars_is_touched(tmp_path, monkeypatch):
    """A store made before auto_vacuum was set (its file existed) gets its space back by one
    VACUUM; predictions, outcomes, models, news and events are the same rows after it."""
    import datetime as dt

    from trading.market.bars import BarCache
    from trading.market.sources import resolve
    from trading.runtime import store as store_module
    from trading.runtime.store import Store

    monkeypatch.setattr(store_module, "RECLAIM_BYTES", 1 << 20)
    path = tmp_path / "trading.db"
    with sqlite3.connect(path) as old:  # a file of an earlier release: no auto_vacuum
        old.execute("PRAGMA journal_mode = WAL")
        old.execute("CREATE TABLE notes (x)")
    store = Store(path)
    assert store.query("PRAGMA auto_vacuum")[0][0] == 0
    with store.transaction() as db:
        db.execute("INSERT INTO events (type, created_at, payload) VALUES ('x', '2026-01-01', '{}')")
        db.execute("INSERT INTO predictions (symbol, created_at, session, action, confidence, "
                   "run_id, prediction, inputs) VALUES ('H00.AX', '2026-01-01T00:00:00Z', "
                   "'2026-01-01', 'BUY', 0.8, 'r1', '{}', '{}')")
        db.execute("INSERT INTO outcomes VALUES (1, 5, '2026-01-01', '2026-01-08', 10, 11, "
                   "0.1, 0.02, 1, '2026-01-09')")
        db.execute("INSERT INTO models (version, created_at, kind, symbols, features, horizon, "
                   "train_start, train_end, source, metrics, path, active) VALUES ('m1', "
                   "'2026-01-01', 'logistic-regression', '[]', '[]', 5, '2020-01-01', "
                   "'2025-12-31', 'csv:/x', '{}', '/m1', 1)")
        db.execute("INSERT INTO news (id, title, published, fetched_at) VALUES ('n1', 'CBA up', "
                   "1, 1)")
        db.execute("INSERT INTO news_symbols VALUES ('H00.AX', 'yahoo', 'n1')")
    kept = ("events", "predictions", "outcomes", "models", "news", "news_symbols")

    def others():
        return {t: [tuple(r) for r in store.query(f"SELECT * FROM {t}")] for t in kept}

    was = others()
    folder = tmp_path / "history"
    folder.mkdir()
    codes = [f"H{i:02d}.AX" for i in range(6)]
    for s in codes:
        _write_csv(folder / f"{s}.csv", "1990-01-02", "2025-12-31")
    # In a session (Fri 27 Nov 2026, 11:00 in Sydney), where a cached series goes stale
    # within the hour; at night it stays fresh and nothing is fetched again or evicted.
    now = [dt.datetime(2026, 11, 27, 0, 0, tzinfo=dt.timezone.utc).timestamp()]
    cache = BarCache(store, clock=lambda: now[0], max_bars=10_000)
    src = resolve(f"csv:{folder}", tmp_path)
    cache.ensure(src, codes, dt.date(1980, 1, 1))
    before = _on_disk(store)
    now[0] += 4000
    cache.ensure(src, ["H00.AX"], dt.date(1980, 1, 1))  # H00 is kept: it is asked for
    assert {s for _, s in _series(store)} == {"H00.AX"}
    after = _on_disk(store)
    print(f"older store {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    assert after < before * 0.4, (before, after)
    assert store.query("PRAGMA auto_vacuum")[0][0] == 2  # converted: next time, incremental
    assert others() == was and all(was.values())
    store.close()
