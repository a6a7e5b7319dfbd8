"""The bar cache on a real SQLite store: freshness, tail re-fetches, stale on error, backoff.

The clock is the cache's own (a list the test moves); the source is a fake edge that makes
bars for the sessions it is asked for and counts its calls.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from trading.market import asx
from trading.market.bars import BarCache
from trading.market.breaker import BACKOFF_S, PAUSE_S
from trading.errors import NotFound, UpstreamUnavailable
from trading.market.sources import Fetched, synthetic
from trading.runtime.store import Store

SYD = asx.TZ


def ts(y, m, d, hh=0, mm=0) -> float:
    return dt.datetime(y, m, d, hh, mm, tzinfo=SYD).timestamp()


class FakeSource:
    name = "fake"

    def __init__(self, clock):
        self.clock = clock
        self.calls: list[tuple[list[str], dt.date, dt.date]] = []
        self.fail: BaseException | None = None
        self.scale = 1.0          # a re-adjustment multiplies the whole history
        self.last_close: float | None = None  # a late correction of the newest bar
        self.missing: set[str] = set()

    def fetch(self, symbols, start, end):
        self.calls.append((list(symbols), start, end))
        if self.fail is not None:
            raise self.fail
        now = dt.datetime.fromtimestamp(self.clock(), SYD)
        # Sessions so far; today's (partial) bar once the session has opened.
        last = now.date() if asx.is_session(now.date()) and now >= asx.session_hours(
            now.date())[0] else asx.previous_session(now.date())
        dates = [d.isoformat() for d in asx.sessions_between(dt.date(2024, 1, 1), last)]
        out = Fetched()
        for s in symbols:
            if s in self.missing:
                out.errors[s] = NotFound(f"no data for {s}", symbol=s)
                continue
            b = synthetic(s, dates)
            b.close *= self.scale
            if self.last_close is not None:
                b.close[-1] = self.last_close
            first = next(i for i, d in enumerate(dates) if d >= start.isoformat())
            out.bars[s] = b[first:]
        return out


@pytest.fixture
def world(tmp_path):
    clock = [ts(2026, 11, 24, 11, 0)]      # a Tuesday, the market open
    store = Store(tmp_path / "trading.db")
    cache = BarCache(store, clock=lambda: clock[0])
    return clock, FakeSource(lambda: clock[0]), cache, store


START = dt.date(2025, 10, 20)


def test_first_fetch_then_served_from_cache(world):
    clock, src, cache, store = world
    entries, errors = cache.ensure(src, ["CBA.AX", "^AXJO"], START)
    assert not errors and len(src.calls) == 1
    assert src.calls[0] == (["CBA.AX", "^AXJO"], START, dt.date(2026, 11, 24))
    e = entries["CBA.AX"]
    assert e.last_session == "2026-11-24" and e.summary_ok and not e.stale(clock[0])
    assert e.summary["technical"]["rsi"] is not None
    assert len(e.summary["closes"]) == 40
    cache.ensure(src, ["CBA.AX", "^AXJO"], START)
    assert len(src.calls) == 1
    # A new process (fresh memo, same file) answers from the store without asking.
    again = BarCache(Store(store.path), clock=lambda: clock[0])
    assert again.ensure(src, ["CBA.AX"], START)[0]["CBA.AX"].fetched_at == e.fetched_at
    assert len(src.calls) == 1


def test_during_the_session_fresh_for_minutes_then_the_tail_is_refetched(world):
    clock, src, cache, store = world
    cache.ensure(src, ["CBA.AX"], START)
    clock[0] += 4 * 60
    cache.ensure(src, ["CBA.AX"], START)
    assert len(src.calls) == 1
    clock[0] += 2 * 60
    src.last_close = 123.0
    entries, _ = cache.ensure(src, ["CBA.AX"], START)
    assert len(src.calls) == 2
    _, tail_start, _ = src.calls[1]
    assert tail_start == dt.date(2026, 11, 14)          # last session minus TAIL_DAYS
    assert entries["CBA.AX"].summary["technical"]["current_price"] == 123.0
    assert cache.bars("fake", "CBA.AX").close[-1] == 123.0
    # The series still reaches back to the first fetch.
    assert cache.bars("fake", "CBA.AX").dates[0] <= START.isoformat() < "2025-10-22"


def test_today_partial_bar_is_not_final_and_yesterdays_is(world):
    clock, src, cache, store = world
    cache.ensure(src, ["CBA.AX"], START)
    rows = dict(store.query("SELECT session, final FROM bars WHERE symbol = 'CBA.AX' AND "
                            "session >= '2026-11-23'"))
    assert rows == {"2026-11-23": 1, "2026-11-24": 0}


def test_a_partial_bar_is_left_out_of_the_volume_measures(world):
    """At 11:00 a fifth of the day has traded: next to whole days that reads as volume
    collapsing. While today's bar is live the volume measures count up to yesterday; once
    it is final, it counts."""
    from trading.market import summary as market

    clock, src, cache, store = world
    entries, _ = cache.ensure(src, ["CBA.AX"], START)       # Tuesday 24 Nov, in the session
    live = entries["CBA.AX"].summary["volume"]
    assert live["volume_through"] == "2026-11-23"
    bars = cache.bars("fake", "CBA.AX")
    whole_days = market.volume_summary(bars[:-1])
    assert live["volume_trend"] == whole_days["volume_trend"]
    # The same series with today's volume counted, as before, would say otherwise.
    bars.volume[-1] = bars.volume[-2] * 0.2
    assert market.volume_summary(bars)["volume_trend"] < live["volume_trend"]
    # The price direction still uses today's price.
    assert entries["CBA.AX"].summary["technical"]["current_price"] == pytest.approx(
        bars.close[-1], abs=1e-3)
    clock[0] = ts(2026, 11, 24, 18, 0)                        # settled
    final = cache.ensure(src, ["CBA.AX"], START)[0]["CBA.AX"].summary["volume"]
    assert final["volume_through"] == "2026-11-24"


def test_after_the_close_fresh_until_the_next_session(world):
    clock, src, cache, store = world
    clock[0] = ts(2026, 11, 27, 18, 0)               # Friday evening
    cache.ensure(src, ["CBA.AX"], START)
    clock[0] = ts(2026, 11, 30, 9, 59)               # Monday before the open
    cache.ensure(src, ["CBA.AX"], START)
    assert len(src.calls) == 1
    clock[0] = ts(2026, 11, 30, 10, 1)
    cache.ensure(src, ["CBA.AX"], START)
    assert len(src.calls) == 2


def test_source_failure_serves_the_cache_flagged_stale(world):
    clock, src, cache, store = world
    first = cache.ensure(src, ["CBA.AX"], START)[0]["CBA.AX"]
    clock[0] += 3600
    src.fail = UpstreamUnavailable("yahoo unreachable", reason="network")
    entries, errors = cache.ensure(src, ["CBA.AX", "NEW.AX"], START)
    assert entries["CBA.AX"] == first and entries["CBA.AX"].stale(clock[0])
    assert clock[0] - entries["CBA.AX"].fetched_at == pytest.approx(3600)
    assert errors["CBA.AX"].data["reason"] == "network"
    assert "NEW.AX" not in entries and isinstance(errors["NEW.AX"], UpstreamUnavailable)
    assert cache.last_outcome()["outcome"] == "network"


def test_a_source_bug_is_contained(world):
    clock, src, cache, store = world
    src.fail = KeyError("Close")
    entries, errors = cache.ensure(src, ["CBA.AX"], START)
    assert not entries and errors["CBA.AX"].data["reason"] == "error"
    assert "KeyError" in errors["CBA.AX"].message


def test_rate_limit_backoff_survives_a_new_process(world):
    clock, src, cache, store = world
    cache.ensure(src, ["CBA.AX"], START)
    clock[0] += 3600
    src.fail = UpstreamUnavailable("429", reason="rate-limit")
    _, errors = cache.ensure(src, ["CBA.AX"], START)
    assert len(src.calls) == 2 and errors["CBA.AX"].data["reason"] == "rate-limit"
    src.fail = None
    fresh_process = BarCache(Store(store.path), clock=lambda: clock[0])
    clock[0] += 60
    entries, errors = fresh_process.ensure(src, ["CBA.AX"], START)
    assert len(src.calls) == 2                      # did not ask during the backoff
    assert errors["CBA.AX"].data["retry_after_s"] == pytest.approx(BACKOFF_S - 60, abs=1)
    assert entries["CBA.AX"].stale(clock[0])
    clock[0] += BACKOFF_S
    entries, errors = fresh_process.ensure(src, ["CBA.AX"], START)
    assert len(src.calls) == 3 and not errors and not entries["CBA.AX"].stale(clock[0])


def test_repeated_rate_limits_back_off_longer(world):
    clock, src, cache, store = world
    src.fail = UpstreamUnavailable("429", reason="rate-limit")
    cache.ensure(src, ["CBA.AX"], START)
    clock[0] += BACKOFF_S + 1
    cache.ensure(src, ["CBA.AX"], START)
    backoff = store.query("SELECT backoff_until FROM upstream WHERE source = 'fake'")[0][0]
    assert backoff - clock[0] == pytest.approx(2 * BACKOFF_S)


def test_readjusted_history_is_fetched_whole(world):
    clock, src, cache, store = world
    cache.ensure(src, ["CBA.AX"], START)
    before = cache.bars("fake", "CBA.AX")
    clock[0] += 3600
    src.scale = 0.97                                 # a dividend re-adjusted the history
    cache.ensure(src, ["CBA.AX"], START)
    assert len(src.calls) == 3 and src.calls[2][1] == START
    after = cache.bars("fake", "CBA.AX")
    assert after.dates == before.dates
    np.testing.assert_allclose(after.close[:-1], before.close[:-1] * 0.97)


def test_one_call_for_the_lot_and_per_symbol_errors(world):
    clock, src, cache, store = world
    cache.ensure(src, ["CBA.AX"], START)
    clock[0] += 3600
    src.missing = {"ZZZ.AX"}
    entries, errors = cache.ensure(src, ["CBA.AX", "NAB.AX", "ZZZ.AX"], START)
    assert len(src.calls) == 2
    assert src.calls[1][0] == ["CBA.AX", "NAB.AX", "ZZZ.AX"]
    assert src.calls[1][1] == START                  # NAB is new: the full span for all
    assert set(entries) == {"CBA.AX", "NAB.AX"} and isinstance(errors["ZZZ.AX"], NotFound)


def test_a_longer_span_is_a_refetch(world):
    clock, src, cache, store = world
    cache.ensure(src, ["CBA.AX"], START)
    cache.ensure(src, ["CBA.AX"], dt.date(2024, 11, 24))
    assert len(src.calls) == 2 and src.calls[1][1] == dt.date(2024, 11, 24)
    assert cache.bars("fake", "CBA.AX").dates[0] == "2024-11-25"


def test_size(world):
    clock, src, cache, store = world
    cache.ensure(src, ["CBA.AX", "NAB.AX"], START)
    size = cache.size()
    assert size["series"] == 2 and size["bars"] == 2 * len(cache.bars("fake", "CBA.AX"))
    assert size["store_bytes"] > 0


def test_an_all_empty_answer_is_recorded_as_empty(world):
    clock, src, cache, store = world
    src.missing = {"CBA.AX"}
    entries, errors = cache.ensure(src, ["CBA.AX"], START)
    assert not entries and isinstance(errors["CBA.AX"], NotFound)
    assert cache.last_outcome()["outcome"] == "empty"


def test_a_symbol_with_no_data_never_blocks_the_others(world):
    """A typo (``trading chart XYZ``) used to pause the whole source for 30 s: every other
    symbol then failed with "failed (empty); not asking again"."""
    clock, src, cache, store = world
    src.missing = {"XYZ.AX"}
    _, errors = cache.ensure(src, ["XYZ.AX"], START)
    assert isinstance(errors["XYZ.AX"], NotFound)
    assert cache.last_outcome()["backoff_until"] is None
    entries, errors = cache.ensure(src, ["CBA.AX"], START)
    assert not errors and "CBA.AX" in entries and len(src.calls) == 2
    # The bad symbol itself is not asked again at once (no hot loop on a typo) ...
    _, errors = cache.ensure(src, ["XYZ.AX", "CBA.AX"], START)
    assert isinstance(errors["XYZ.AX"], NotFound) and len(src.calls) == 2
    # ... but after the pause it is, on its own.
    clock[0] += PAUSE_S + 1
    src.missing = set()
    entries, errors = cache.ensure(src, ["XYZ.AX"], START)
    assert not errors and "XYZ.AX" in entries and src.calls[-1][0] == ["XYZ.AX"]


def test_a_live_second_bar_leaves_nothing_to_measure_volume_on():
    """A new listing's second day, still trading: no completed volume beyond its first day."""
    from trading.market import summary as market

    bars = market.Bars(["2026-11-23", "2026-11-24"], [1.0, 1.1], [1.2, 1.2], [0.9, 1.0],
                       [1.1, 1.15], [1000.0, 150.0])
    v = market.volume_summary(bars, live=True)
    assert v["volume_through"] == "2026-11-23" and v["volume_trend"] is None
    assert v["volume_quality_score"] == 0.5


def test_a_csv_series_keeps_its_reading_and_one_cached_without_it_is_read_again(tmp_path):
    """Migration 0010 added the reader's report; a series cached before it has none, and a
    csv folder's series is read again rather than shown without it."""
    import shutil
    from pathlib import Path

    from trading.market.sources import CsvSource

    folder = tmp_path / "feed"
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "data" / "asx-history" / "RMD.AX.csv", folder)
    src = CsvSource(folder)
    clock = [ts(2026, 11, 24, 11, 0)]
    store = Store(tmp_path / "trading.db")
    cache = BarCache(store, clock=lambda: clock[0])
    entries, errors = cache.ensure(src, ["RMD.AX"], dt.date(1990, 1, 1))
    assert not errors and entries["RMD.AX"].reading["sessions"] == 146
    with store.transaction() as db:
        db.execute("UPDATE bar_series SET reading = NULL")
    fresh = BarCache(store, clock=lambda: clock[0])
    assert fresh._load(src.name, ["RMD.AX"])["RMD.AX"].reading is None
    entries, errors = fresh.ensure(src, ["RMD.AX"], dt.date(1990, 1, 1))
    assert entries["RMD.AX"].reading["file"] == "RMD.AX.csv"
    assert store.query("SELECT reading IS NOT NULL FROM bar_series")[0][0] == 1
