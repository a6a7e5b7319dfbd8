"""Intraday bars: which exist on an ASX session, reading them from files, fetching them from a
fake Yahoo, caching them per interval and serving them from market-data.

The fake Yahoo returns what ``yf.download(..., interval=...)`` returns (two-level ``(Price,
Ticker)`` columns, a ``Datetime`` index in Australia/Sydney) or ``Ticker.history()`` (flat
``Open High Low Close Volume Dividends Stock Splits``), cut from the fixture in
``tests/data/asx-intraday`` (see its README) at the moment ``TRADING_NOW`` names: the free
feed is 20 minutes late and the bar that moment falls in is partial. The fixture has a
daylight-saving change each way, the early closes of 24 and 31 December, and a missing hour
(13:00 on 9 April 2024).
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from trading.errors import InvalidParams, NotFound
from trading.handlers.market_data import INTRADAY, MarketData
from trading.market import asx, intraday
from trading.market.bars import BarCache
from trading.market.reading import read_csv
from trading.market.sources import CsvSource, YahooSource, frame_to_intraday, resolve
from trading.runtime.store import Store

from conftest import REPO
from support.intraday_frames import fixture_frame, seen_by_now

DATA = REPO / "tests" / "data" / "asx-intraday"
HOURLY = DATA / "CBA.AX.1h.csv"
QUARTERLY = DATA / "CBA.AX.15m.csv"
SYD = asx.TZ
UTC = dt.timezone.utc


def at(y, m, d, hh=0, mm=0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=SYD)


def hours(stamps) -> list[str]:
    """``10:00+11:00``-style wall times and offsets of stamps or datetimes."""
    out = []
    for s in stamps:
        t = intraday.parse(s)
        out.append(f"{t:%H:%M}{t.isoformat()[-6:]}")
    return out


# -- which bars exist ---------------------------------------------------------------------------
@pytest.mark.parametrize("day, offset", [
    (dt.date(2024, 4, 5), "+11:00"),   # the last Friday of daylight time
    (dt.date(2024, 4, 8), "+10:00"),   # the first Monday of standard time
    (dt.date(2024, 10, 4), "+10:00"),
    (dt.date(2024, 10, 7), "+11:00"),  # NSW Labour Day: a public holiday on which the ASX trades
])
def test_hourly_bars_are_sydney_hours_in_both_seasons(day, offset):
    got = intraday.slots(day, "1h")
    assert hours(got) == [f"{h}:00{offset}" for h in
                          ("10", "11", "12", "13", "14", "15", "16")]
    # The same wall times are different UTC hours in the two seasons.
    first_utc = got[0].astimezone(UTC)
    assert (first_utc.hour, first_utc.date()) == (
        (23, day - dt.timedelta(days=1)) if offset == "+11:00" else (0, day))


@pytest.mark.parametrize("interval, normal, early", [("1h", 7, 5), ("30m", 13, 9),
                                                     ("15m", 25, 17)])
def test_bars_per_session_with_the_auction_bar_last(interval, normal, early):
    day = intraday.slots(dt.date(2024, 4, 10), interval)
    assert len(day) == normal
    assert hours(day[-2:]) == [{"1h": "15:00", "30m": "15:30", "15m": "15:45"}[interval]
                               + "+10:00", "16:00+10:00"]
    for half in (dt.date(2024, 12, 24), dt.date(2024, 12, 31)):
        got = intraday.slots(half, interval)
        assert len(got) == early
        assert hours(got[-1:]) == ["14:00+11:00"]  # the auction bar of an early close
        assert intraday.slots(half, interval, auction=False)[-1] < at(2024, 12, half.day, 14)
    assert intraday.slots(dt.date(2024, 4, 10), interval, auction=False) == day[:-1]


@pytest.mark.parametrize("day", [dt.date(2024, 12, 25), dt.date(2024, 12, 26),
                                 dt.date(2024, 3, 29), dt.date(2024, 4, 1),
                                 dt.date(2024, 4, 6), dt.date(2024, 4, 7)])
def test_no_bars_on_closures_and_weekends(day):
    assert intraday.slots(day, "1h") == [] and intraday.continuous_end(day) is None
    assert intraday.slot_of(at(day.year, day.month, day.day, 11), "1h") is None


@pytest.mark.parametrize("moment, interval, slot", [
    (at(2024, 4, 9, 10, 7), "1h", "10:00+10:00"),
    (at(2024, 4, 9, 9, 59, ) + dt.timedelta(seconds=50), "1h", "10:00+10:00"),  # open at 09:59:45
    (at(2024, 4, 9, 15, 59), "1h", "15:00+10:00"),
    (at(2024, 4, 9, 15, 59), "30m", "15:30+10:00"),
    (at(2024, 4, 9, 12, 44), "15m", "12:30+10:00"),
    (at(2024, 4, 9, 16, 0), "1h", "16:00+10:00"),     # the auction bar...
    (at(2024, 4, 9, 16, 10), "15m", "16:00+10:00"),   # ...holds the auction print at 16:10
    (at(2024, 4, 9, 16, 21), "30m", "16:00+10:00"),   # and the post-close at its price
    (at(2024, 12, 24, 14, 10), "1h", "14:00+11:00"),  # early close: auction at 14:10
    (at(2024, 12, 24, 13, 59), "1h", "13:00+11:00"),
    (dt.datetime(2024, 4, 4, 23, 30, tzinfo=UTC), "1h", "10:00+11:00"),  # UTC in, Sydney out
])
def test_a_moment_falls_in_one_bar(moment, interval, slot):
    assert hours([intraday.slot_of(moment, interval)]) == [slot]


@pytest.mark.parametrize("moment", [at(2024, 4, 9, 9, 58), at(2024, 4, 9, 16, 22),
                                    at(2024, 4, 9, 17, 0), at(2024, 12, 24, 14, 30)])
def test_outside_the_session_is_no_bar(moment):
    assert intraday.slot_of(moment, "1h") is None


def test_a_bar_is_complete_when_the_delayed_feed_has_all_of_it():
    assert intraday.final_at("2024-04-09T10:00:00+10:00", "1h") == at(2024, 4, 9, 11, 20)
    assert intraday.final_at("2024-04-09T15:30:00+10:00", "30m") == at(2024, 4, 9, 16, 20)
    # The auction bar: the auction ends ~16:12 (14:22 on an early close), then 20 minutes.
    assert intraday.final_at("2024-04-09T16:00:00+10:00", "1h") == at(2024, 4, 9, 16, 32)
    assert intraday.final_at("2024-12-24T14:00:00+11:00", "15m") == at(2024, 12, 24, 14, 42)
    # 13:00 on an early close: cut at 14:00, the end of continuous trading.
    assert intraday.final_at("2024-12-24T13:00:00+11:00", "1h") == at(2024, 12, 24, 14, 20)
    assert not intraday.is_final("2024-04-09T10:00:00+10:00", "1h", at(2024, 4, 9, 11, 19))
    assert intraday.is_final("2024-04-09T10:00:00+10:00", "1h", at(2024, 4, 9, 11, 20))


@pytest.mark.parametrize("fetched, last, fresh", [
    (at(2024, 4, 9, 11, 3), None, at(2024, 4, 9, 11, 8)),      # in session: 5 minutes...
    (at(2024, 4, 9, 11, 17), None, at(2024, 4, 9, 11, 20)),    # ...or the next complete bar
    (at(2024, 4, 9, 8, 0), None, at(2024, 4, 9, 10, 0)),       # before the open
    # After Friday's close, the next open is Monday's, an hour later in UTC terms.
    (at(2024, 4, 5, 17, 0), "2024-04-05T16:00:00+11:00", at(2024, 4, 8, 10, 0)),
    # The feed is late with the day's last bar: ask again, for three hours.
    (at(2024, 4, 9, 17, 0), "2024-04-09T14:00:00+10:00", at(2024, 4, 9, 17, 5)),
    (at(2024, 12, 24, 15, 0), "2024-12-24T14:00:00+11:00", at(2024, 12, 27, 10, 0)),
])
def test_fresh_until(fetched, last, fresh):
    got = intraday.fresh_until(fetched, "1h", last)
    assert got == fresh and got.utcoffset() == fresh.utcoffset()


def test_how_far_back_yahoo_keeps_each_interval():
    today = dt.date(2024, 4, 9)
    intraday.check_reach("1h", today - dt.timedelta(days=729), today)
    intraday.check_reach("15m", today - dt.timedelta(days=59), today)
    with pytest.raises(InvalidParams) as info:
        intraday.check_reach("1h", today - dt.timedelta(days=730), today)
    assert "\n" not in info.value.message
    assert info.value.message.startswith("yahoo keeps 1h bars for the last 730 days only")
    with pytest.raises(InvalidParams, match="30m bars for the last 60 days"):
        intraday.check_reach("30m", today - dt.timedelta(days=60), today)


# -- local files --------------------------------------------------------------------------------
def test_the_hourly_fixture_reads_as_sessions_of_hourly_bars():
    bars, report = read_csv(HOURLY, interval="1h")
    assert report["interval"] == "1h" and report["rows"] == report["bars"] == len(bars)
    assert report["dropped"] == {"no close": 0, "not a session": 0, "outside hours": 0,
                                 "duplicate": 0, "truncated": 0}
    assert report["missing_bars"] == 1 and report["missing"] == ["2024-04-09T13:00:00+10:00"]
    assert report["auction_bars"] == report["sessions"]
    days = {}
    for s in bars.dates:
        days.setdefault(s[:10], []).append(s)
    assert hours(days["2024-04-05"])[-1] == "16:00+11:00"
    assert hours(days["2024-04-08"])[0] == "10:00+10:00"
    assert hours(days["2024-04-09"]) == ["10:00+10:00", "11:00+10:00", "12:00+10:00",
                                         "14:00+10:00", "15:00+10:00", "16:00+10:00"]
    assert hours(days["2024-10-04"])[0] == "10:00+10:00"
    assert hours(days["2024-10-07"])[0] == "10:00+11:00"
    assert hours(days["2024-12-24"]) == ["10:00+11:00", "11:00+11:00", "12:00+11:00",
                                         "13:00+11:00", "14:00+11:00"]
    assert "2024-12-25" not in days and "2024-12-26" not in days
    assert bars.dates == sorted(bars.dates)
    # The auction bar closes at the real daily close of that session.
    daily, _ = read_csv(REPO / "tests" / "data" / "asx-daily" / "CBA.AX.csv")
    close = dict(zip(daily.dates, daily.close))
    assert bars.close[bars.dates.index("2024-12-24T14:00:00+11:00")] == \
        pytest.approx(close["2024-12-24"], abs=1e-4)


def test_a_finer_file_folds_into_the_coarser_interval():
    hourly, _ = read_csv(HOURLY, interval="1h")
    folded, report = read_csv(QUARTERLY, interval="1h")
    assert report["merged"] == report["rows"] - report["bars"] > 0
    assert report["missing"] == ["2024-04-09T13:00:00+10:00"]
    at_hour = {d: i for i, d in enumerate(hourly.dates)}
    for i, d in enumerate(folded.dates):
        j = at_hour[d]
        assert [float(getattr(folded, f)[i]) for f in ("open", "high", "low", "close",
                                                        "volume")] == \
            [float(getattr(hourly, f)[j]) for f in ("open", "high", "low", "close", "volume")]
    quarter, report = read_csv(QUARTERLY, interval="15m")
    per_day = pd.Series([d[:10] for d in quarter.dates]).value_counts()
    assert per_day["2024-04-08"] == 25 and per_day["2024-04-09"] == 21
    assert report["missing_bars"] == 4


def test_the_daily_reader_of_an_intraday_file_is_unchanged():
    bars, report = read_csv(HOURLY)
    assert "interval" not in report and bars.dates[0] == "2024-03-25"
    assert report["sessions"] == len(bars) == 33 and report["merged"] == 226 - 33


def test_rows_outside_sessions_are_dropped_and_reported(tmp_path):
    path = tmp_path / "CBA.AX.1h.csv"
    lines = HOURLY.read_text().splitlines()
    path.write_text("\n".join(lines[:15] + [
        "2024-03-23 11:00:00+11:00,1,1,1,1,5,0.0,0.0",    # a Saturday
        "2024-03-29 11:00:00+11:00,1,1,1,1,5,0.0,0.0",    # Good Friday
        "2024-03-26 09:00:00+11:00,1,1,1,1,5,0.0,0.0",    # pre-open
        "2024-03-26 17:00:00+11:00,1,1,1,1,5,0.0,0.0",    # after the post-close
        "2024-03-26 12:00:00+11:00,,,,,,0.0,0.0",         # no close
        lines[3],                                         # a duplicate of a row above
        "2024-03-26 02:30:00+00:00,7,7,7,7,5,0.0,0.0",    # 13:30 Sydney, stamped in UTC
    ]) + "\n")
    bars, report = read_csv(path, interval="1h")
    assert report["dropped"] == {"no close": 1, "not a session": 2, "outside hours": 2,
                                 "duplicate": 1, "truncated": 0}
    assert report["merged"] == 1  # the UTC row is a second row of the 13:00 bar
    i = bars.dates.index("2024-03-26T13:00:00+11:00")
    assert bars.close[i] == 7.0 and bars.high[i] == max(7.0, float(lines[11].split(",")[2]))
    assert report["bars"] == 14 and report["missing_bars"] == 0


def test_csv_source_reads_the_interval_file_and_names_a_missing_one(tmp_path):
    src = CsvSource(DATA)
    got = src.fetch_intraday(["CBA.AX", "NAB.AX"], at(2024, 1, 1), at(2025, 1, 1), "1h")
    assert len(got.bars["CBA.AX"]) == 226 and got.readings["CBA.AX"]["missing_bars"] == 1
    assert isinstance(got.errors["NAB.AX"], NotFound)
    assert "no file NAB.AX.1h.csv" in got.errors["NAB.AX"].message
    assert "CBA.AX.30m.csv" in src.fetch_intraday(["CBA.AX"], at(2024, 1, 1), at(2025, 1, 1),
                                                  "30m").errors["CBA.AX"].message


# -- a fake Yahoo ---------------------------------------------------------------------------------
class FakeYahoo:
    """``yf.download(tickers, start, end, interval=...)`` over the fixture, at the moment
    ``TRADING_NOW`` names: bars starting from ``start`` that the 20-minute-late feed has
    begun, the last of them partial. CBA.AX is the fixture; NAB.AX the same at a third of the
    price. ``shape``: "download" (two-level columns), "history" (one symbol, flat) or "utc"
    (download's index in UTC, as yfinance before 1.4 gave it)."""

    def __init__(self, shape: str = "download"):
        self.shape = shape
        self.calls: list[tuple[list[str], dt.datetime, dt.datetime, str]] = []
        self.frames = {"1h": fixture_frame(HOURLY), "15m": fixture_frame(QUARTERLY)}

    def __call__(self, symbols, start, end, interval="1d"):
        self.calls.append((list(symbols), start, end, interval))
        self.returned: list[list[str]] = getattr(self, "returned", [])
        f = seen_by_now(self.frames[interval], start, interval)
        self.returned.append([t.isoformat() for t in f.index])
        if self.shape == "history":
            return f
        parts = {s: f[["Close", "High", "Low", "Open", "Volume"]] * (1 if s == "CBA.AX" else
                 pd.Series({"Close": 1 / 3, "High": 1 / 3, "Low": 1 / 3, "Open": 1 / 3,
                            "Volume": 1})) for s in symbols if s in ("CBA.AX", "NAB.AX")}
        if not parts:
            return pd.DataFrame()
        frame = pd.concat(parts, axis=1).swaplevel(0, 1, axis=1).sort_index(axis=1, level=0)
        frame.columns.names = ["Price", "Ticker"]
        if self.shape == "utc":
            frame.index = frame.index.tz_convert("UTC")
        return frame


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "trading.db")
    yield s
    s.close()


def yahoo(tmp_path, fake) -> YahooSource:
    return YahooSource(tmp_path, downloader=fake, sleep=lambda s: None)


@pytest.mark.parametrize("shape", ["download", "history", "utc"])
def test_yahoo_frames_of_every_shape_give_the_same_bars(tmp_path, now, shape):
    now(at(2024, 4, 12, 18))
    fake = FakeYahoo(shape)
    got = yahoo(tmp_path, fake).fetch_intraday(["CBA.AX"], at(2024, 4, 2), at(2024, 4, 12, 18),
                                               "1h")
    bars = got.bars["CBA.AX"]
    expected, _ = read_csv(HOURLY, interval="1h")
    keep = [i for i, d in enumerate(expected.dates) if "2024-04-02" <= d[:10] <= "2024-04-12"]
    assert bars.dates == [expected.dates[i] for i in keep]
    assert list(bars.close) == pytest.approx([expected.close[i] for i in keep])
    assert fake.calls == [(["CBA.AX"], at(2024, 4, 2), at(2024, 4, 12, 18), "1h")]


def test_rows_of_a_finer_frame_fold_and_rows_outside_hours_drop():
    index = pd.DatetimeIndex(["2024-04-08 09:30", "2024-04-08 10:00", "2024-04-08 10:30",
                              "2024-04-08 10:59", "2024-04-08 16:10", "2024-04-08 16:40"],
                             name="Datetime").tz_localize("Australia/Sydney")
    frame = pd.DataFrame({"Open": [1, 2, 3, 4, 5, 6], "High": [1, 2, 9, 4, 5, 6],
                          "Low": [1, 2, 3, 1, 5, 6], "Close": [1, 2, 3, 4, 5, 6],
                          "Volume": [10, 20, 30, 40, 50, 60], "Dividends": 0.0,
                          "Stock Splits": 0.0}, index=index)
    bars = frame_to_intraday(frame, ["CBA.AX"], "1h")["CBA.AX"]
    assert bars.dates == ["2024-04-08T10:00:00+10:00", "2024-04-08T16:00:00+10:00"]
    assert (bars.open[0], bars.high[0], bars.low[0], bars.close[0], bars.volume[0]) == \
        (2, 9, 1, 4, 90)
    assert (bars.close[1], bars.volume[1]) == (5, 50)


def test_cache_fetches_only_the_bars_it_lacks_and_marks_the_bar_in_progress(tmp_path, now,
                                                                            store):
    fake = FakeYahoo()
    src = yahoo(tmp_path, fake)
    cache = BarCache(store)
    first = dt.date(2024, 3, 25)
    hourly, _ = read_csv(HOURLY, interval="1h")
    close = dict(zip(hourly.dates, hourly.close))

    now(at(2024, 4, 9, 11, 30))  # the feed has to 11:10: 10:00 complete, 11:00 in progress
    entries, errors = cache.ensure(src, ["CBA.AX"], first, "1h")
    assert not errors and fake.calls[-1][1] == at(2024, 3, 25)  # a new series: all of it
    bars, finals = cache.bars_final("yahoo", "CBA.AX", "2024-04-09", "1h")
    assert hours(bars.dates) == ["10:00+10:00", "11:00+10:00"] and finals == [True, False]
    in_progress = float(bars.close[-1])
    assert in_progress != pytest.approx(close["2024-04-09T11:00:00+10:00"])
    # Indicators are computed over complete bars only: the summary ends at 10:00.
    summary = entries["CBA.AX"].summary
    assert summary["as_of"] == "2024-04-09T10:00:00+10:00"
    assert summary["technical"]["current_price"] == pytest.approx(
        close["2024-04-09T10:00:00+10:00"], abs=1e-4)
    assert summary["volume"]["volume_through"] == "2024-04-09T10:00:00+10:00"

    now(at(2024, 4, 9, 11, 33))  # fresh for 5 minutes: nothing is asked
    cache.ensure(src, ["CBA.AX"], first, "1h")
    assert len(fake.calls) == 1

    now(at(2024, 4, 9, 12, 45))  # stale: only from the end of the last complete bar
    cache.ensure(src, ["CBA.AX"], first, "1h")
    assert len(fake.calls) == 2 and fake.calls[-1][1] == at(2024, 4, 9, 11)
    bars, finals = cache.bars_final("yahoo", "CBA.AX", "2024-04-09", "1h")
    assert hours(bars.dates) == ["10:00+10:00", "11:00+10:00", "12:00+10:00"]
    assert finals == [True, True, False]
    assert bars.close[1] == pytest.approx(close["2024-04-09T11:00:00+10:00"])  # now whole

    now(at(2024, 4, 9, 17, 0))  # after the auction settled; Yahoo never sent 13:00
    entries, _ = cache.ensure(src, ["CBA.AX"], first, "1h")
    assert fake.calls[-1][1] == at(2024, 4, 9, 12)
    bars, finals = cache.bars_final("yahoo", "CBA.AX", "2024-04-09", "1h")
    assert hours(bars.dates) == ["10:00+10:00", "11:00+10:00", "12:00+10:00", "14:00+10:00",
                                 "15:00+10:00", "16:00+10:00"]
    assert all(finals)
    e = entries["CBA.AX"]
    assert e.interval == "1h" and e.summary["as_of"] == "2024-04-09T16:00:00+10:00"
    assert e.fresh_until == at(2024, 4, 10, 10).timestamp()  # complete: until the next open
    # Each refresh got the bars after the last complete one: the bar in progress again,
    # then the new ones (and asked for 13:00 until a later bar was complete).
    assert [hours(r) for r in fake.returned[1:]] == [
        ["11:00+10:00", "12:00+10:00"],
        ["12:00+10:00", "14:00+10:00", "15:00+10:00", "16:00+10:00"]]
    assert store.query("SELECT count(*) FROM bars WHERE interval = '1h'")[0][0] == \
        sum(1 for d in hourly.dates if d < "2024-04-10")


def test_dst_change_and_half_day_through_the_cache(tmp_path, now, store):
    fake = FakeYahoo()
    cache = BarCache(store)
    now(at(2024, 12, 24, 14, 30))  # the auction of the early close is not settled yet
    cache.ensure(yahoo(tmp_path, fake), ["CBA.AX", "NAB.AX"], dt.date(2024, 3, 25), "1h")
    assert len(fake.calls) == 1  # both symbols in one call
    bars, finals = cache.bars_final("yahoo", "CBA.AX", "2024-04-05", "1h")
    by_day: dict[str, list[str]] = {}
    for d in bars.dates:
        by_day.setdefault(d[:10], []).append(d)
    assert hours(by_day["2024-04-05"])[0] == "10:00+11:00"
    assert hours(by_day["2024-04-08"])[0] == "10:00+10:00"
    assert hours(by_day["2024-10-07"])[0] == "10:00+11:00"
    assert all(len(by_day[d]) == 7 for d in ("2024-04-05", "2024-04-08", "2024-10-04",
                                             "2024-10-07"))
    assert hours(by_day["2024-12-24"]) == ["10:00+11:00", "11:00+11:00", "12:00+11:00",
                                           "13:00+11:00", "14:00+11:00"]
    assert finals[-2:] == [True, False]  # 13:00 is complete, the auction bar is not
    nab = cache.bars("yahoo", "NAB.AX", "2024-12-24", "1h")
    assert nab.close[0] == pytest.approx(bars.close[bars.dates.index(nab.dates[0])] / 3)
    # An hourly series is no daily one: the daily cache of the symbol is untouched.
    assert cache.bars("yahoo", "CBA.AX") .dates == []

    now(at(2024, 12, 24, 15, 0))
    entries, _ = cache.ensure(yahoo(tmp_path, fake), ["CBA.AX"], dt.date(2024, 3, 25), "1h")
    assert fake.calls[-1][1] == at(2024, 12, 24, 14)  # the auction bar, not yet complete
    assert cache.bars_final("yahoo", "CBA.AX", "2024-12-24", "1h")[1][-1] is True
    assert entries["CBA.AX"].fresh_until == at(2024, 12, 27, 10).timestamp()


def test_a_request_past_yahoos_reach_is_one_line_and_asks_nothing(tmp_path, now, store):
    fake = FakeYahoo()
    cache = BarCache(store)
    now(at(2024, 4, 9, 12))
    with pytest.raises(InvalidParams) as info:
        cache.ensure(yahoo(tmp_path, fake), ["CBA.AX"], dt.date(2022, 4, 1), "1h")
    assert "730 days" in info.value.message and "\n" not in info.value.message
    with pytest.raises(InvalidParams, match="60 days"):
        cache.ensure(yahoo(tmp_path, fake), ["CBA.AX"], dt.date(2024, 1, 1), "15m")
    assert fake.calls == []
    # A local file keeps what it keeps: no limit.
    entries, errors = cache.ensure(CsvSource(DATA), ["CBA.AX"], dt.date(2020, 1, 1), "15m")
    assert not errors and entries["CBA.AX"].bars == 221


def test_a_source_without_intraday_bars_says_so(tmp_path, store):
    with pytest.raises(InvalidParams, match="sample has daily bars only"):
        BarCache(store).ensure(resolve("sample", tmp_path), ["CBA.AX"], dt.date(2024, 1, 1),
                               "1h")


def test_one_budget_counts_every_interval(tmp_path, now, store):
    folder = tmp_path / "prices"
    folder.mkdir()
    (folder / "CBA.AX.csv").write_bytes((REPO / "tests/data/asx-daily/CBA.AX.csv").read_bytes())
    (folder / "CBA.AX.1h.csv").write_bytes(HOURLY.read_bytes())
    now(at(2026, 3, 2, 12))
    cache = BarCache(store, max_series=1)
    src = CsvSource(folder)
    cache.ensure(src, ["CBA.AX"], dt.date(2024, 1, 1))
    now(at(2026, 3, 2, 13))
    cache.ensure(src, ["CBA.AX"], dt.date(2024, 1, 1), "1h")
    left = store.query("SELECT interval FROM bar_series")
    assert [r[0] for r in left] == ["1h"]  # the daily series was the least recently used
    assert store.query("SELECT DISTINCT interval FROM bars")[0][0] == "1h"


# -- market-data serves them ----------------------------------------------------------------------
@pytest.fixture
def svc(tmp_path):
    s = MarketData()
    s._sources["yahoo"] = yahoo(tmp_path, FakeYahoo())
    yield s
    s.close()


def test_the_handler_knows_the_intraday_intervals():
    assert INTRADAY == tuple(intraday.INTERVALS)


def test_get_bars_hourly_from_yahoo(svc, now):
    now(at(2024, 4, 9, 11, 30))
    r = svc.get_bars("cba", interval="1h", period="5d", source="yahoo", indicators=True)
    assert r["interval"] == "1h" and r["source"] == "yahoo" and r["stale"] is False
    rows = r["bars"]
    assert set(rows[0]) == {"time", "date", "open", "high", "low", "close", "volume", "final"}
    assert rows[-1]["time"] == "2024-04-09T11:00:00+10:00" and rows[-1]["final"] is False
    assert rows[-1]["date"] == "2024-04-09" and all(x["final"] for x in rows[:-1])
    assert rows[0]["date"] >= "2024-04-03"  # five days counted back from the last bar
    ind = r["indicators"]
    assert all(len(v) == len(rows) for v in ind.values())
    assert ind["rsi14"][-1] is None and ind["rsi14"][-2] is not None  # complete bars only
    json.dumps(r)


def test_get_bars_validates_interval_and_reach(svc, now):
    now(at(2024, 4, 9, 11, 30))
    for bad in ("2h", "1H", 60, None):
        with pytest.raises(InvalidParams) as info:
            svc.get_bars("CBA", interval=bad, source="yahoo")
        assert info.value.code == -32602
    with pytest.raises(InvalidParams) as info:
        svc.get_bars("CBA", interval="15m", period="3mo", source="yahoo")
    assert info.value.code == -32602 and "60 days" in info.value.message
    with pytest.raises(InvalidParams, match="730 days"):
        svc.get_bars("CBA", interval="1h", period="2y", source="yahoo")
    r = svc.get_bars("CBA", interval="15m", period="max", source="yahoo")  # all it keeps
    assert r["bars"][0]["time"] == "2024-04-02T10:00:00+11:00"


def test_get_bars_from_a_local_intraday_file(svc, now):
    now(at(2025, 1, 6, 9))
    r = svc.get_bars("CBA", interval="1h", period="1mo", source=f"csv:{DATA}")
    assert [x["time"] for x in r["bars"]][-5:] == [
        "2024-12-31T10:00:00+11:00", "2024-12-31T11:00:00+11:00", "2024-12-31T12:00:00+11:00",
        "2024-12-31T13:00:00+11:00", "2024-12-31T14:00:00+11:00"]
    assert all(x["final"] for x in r["bars"])
    assert r["reading"]["missing"] == ["2024-04-09T13:00:00+10:00"]
    daily = svc.get_bars("CBA", source="sample")  # 1d by default, rows as they were
    assert set(daily["bars"][0]) == {"date", "open", "high", "low", "close", "volume"}


def test_the_default_downloader_asks_yfinance_for_the_interval(tmp_path):
    """The real call path (no injected downloader) against the support stand-in for yfinance
    that the systemd tests put on a handler's PYTHONPATH: download() with the interval, the
    moments given, regular hours only."""
    import os
    import subprocess
    import sys

    mode, log = tmp_path / "mode", tmp_path / "log"
    mode.write_text(f"ok {DATA}")
    code = (
        "import datetime as dt, json; from pathlib import Path\n"
        "from trading.market.sources import YahooSource; from trading.market import asx\n"
        "t = lambda *a: dt.datetime(*a, tzinfo=asx.TZ)\n"
        f"got = YahooSource(Path({str(tmp_path)!r})).fetch_intraday(['CBA.AX', 'NAB.AX'], "
        "t(2024, 4, 5, 15), t(2024, 4, 8, 12), '1h')\n"
        "print(json.dumps([got.bars['CBA.AX'].dates, sorted(got.errors)]))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests/support/fake_yahoo"),
           "TRADING_TEST_YAHOO_MODE": str(mode), "TRADING_TEST_YAHOO_LOG": str(log)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    dates, errors = json.loads(out.stdout)
    assert hours(dates) == ["15:00+11:00", "16:00+11:00", "10:00+10:00", "11:00+10:00"]
    assert errors == ["NAB.AX"] and log.read_text().count("\n") == 1


def test_an_unusable_store_still_serves_intraday_bars_from_the_source(tmp_path, now):
    path = tmp_path / "trading.db"
    path.write_bytes(b"not a database, " * 4096)  # corrupt: every query fails
    broken = Store(path)
    try:
        cache = BarCache(broken)
        now(at(2024, 12, 24, 14, 30))
        entries, errors = cache.ensure(CsvSource(DATA), ["CBA.AX"], dt.date(2024, 1, 1), "1h")
        assert not errors and entries["CBA.AX"].interval == "1h"
        assert list(cache._bypassed) == [(CsvSource(DATA).name, "CBA.AX", "1h")]
        # The file runs to 31 December: at 14:30 on the 24th its later bars are not complete.
        assert entries["CBA.AX"].summary["as_of"] == "2024-12-24T13:00:00+11:00"
        bars, finals = cache.bars_final(CsvSource(DATA).name, "CBA.AX", "2024-12-24", "1h")
        assert bars.dates[:5] == [s.isoformat() for s in intraday.slots(dt.date(2024, 12, 24),
                                                                        "1h")]
        assert finals[:5] == [True, True, True, True, False] and not any(finals[5:])
    finally:
        broken.close()
