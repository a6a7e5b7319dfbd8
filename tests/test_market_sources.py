"""The sources: CSV in both yfinance layouts, the sample generator, and the Yahoo adapter fed
frames in yfinance's real shapes through an injected downloader, or real yfinance with its
HTTP session failing the way it does offline (never the network)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading

import numpy as np
import pandas as pd
import pytest
from curl_cffi.requests.exceptions import ConnectionError as CurlConnectionError
from curl_cffi.requests.exceptions import DNSError
from yfinance.exceptions import YFRateLimitError

from trading.errors import InvalidParams, NotFound, UpstreamUnavailable
from trading.market.sources import (CsvSource, SampleSource, YahooSource, frame_to_bars,
                             parse_csv, resolve, synthetic)

START, END = dt.date(2024, 1, 1), dt.date(2026, 3, 31)


# -- csv -------------------------------------------------------------------------------------
def test_history_layout_keeps_the_sydney_session_date(asx_daily):
    bars = parse_csv(asx_daily / "CBA.AX.csv")
    assert len(bars) == 508
    assert bars.dates[0] == "2024-01-02" and bars.dates[-1] == "2026-01-02"
    # A winter (+10:00) row keeps its own date too.
    assert "2025-06-23" in bars.dates
    i = bars.dates.index("2025-06-23")
    assert bars.close[i] == pytest.approx(181.54783630371094)
    assert bars.open[i] == pytest.approx(179.23355092661032)
    assert bars.volume[i] == 1407371


def test_download_layout_maps_columns_by_name(asx_daily):
    bars = parse_csv(asx_daily / "^AXJO.csv")
    assert bars.dates[0] == "2025-09-08" and bars.dates[-1] == "2026-03-06"
    # Row "2025-09-08,8849.59,8871.20,8826.90,8871.20,592500" is Close,High,Low,Open,Volume.
    assert bars.close[0] == pytest.approx(8849.599609375)
    assert bars.open[0] == pytest.approx(8871.2001953125)
    assert bars.high[0] == pytest.approx(8871.2001953125)
    assert bars.low[0] == pytest.approx(8826.900390625)
    assert (bars.high >= bars.low).all()
    assert (bars.volume == 0).sum() == 1   # the one junk index volume is kept as data


def test_utc_stamps_and_holiday_rows(tmp_path):
    (tmp_path / "X.AX.csv").write_text(
        "Date,Open,High,Low,Close,Volume,Dividends,Stock Splits\n"
        "2025-12-31 13:00:00+00:00,1,2,0.5,1.5,10,0,0\n"      # 00:00 Sydney on Jan 1: closed
        "2026-01-01 13:00:00+00:00,1,2,0.5,1.6,10,0,0\n"      # 00:00 Sydney on Jan 2
        "2026-01-02 00:00:00+11:00,1,2,0.5,1.7,10,0,0\n"      # duplicate of Jan 2: last wins
        "2026-01-05 00:00:00+11:00,1,2,0.5,,10,0,0\n")        # no close: dropped
    bars = parse_csv(tmp_path / "X.AX.csv")
    assert bars.dates == ["2026-01-02"]
    assert bars.close.tolist() == [1.7]


def test_csv_source_errors_per_symbol(asx_daily, tmp_path):
    src = CsvSource(asx_daily)
    got = src.fetch(["CBA.AX", "ZZZ.AX"], START, END)
    assert list(got.bars) == ["CBA.AX"]
    assert isinstance(got.errors["ZZZ.AX"], NotFound)
    (tmp_path / "BAD.AX.csv").write_text("Date,Close\nnot-a-date,1\n")
    bad = CsvSource(tmp_path).fetch(["BAD.AX"], START, END)
    assert isinstance(bad.errors["BAD.AX"], UpstreamUnavailable)
    assert "line 2" in bad.errors["BAD.AX"].message


def test_resolve(asx_daily, tmp_path):
    assert resolve("sample", tmp_path).name == "sample"
    assert resolve("yahoo", tmp_path).name == "yahoo"
    assert resolve(f"csv:{asx_daily}", tmp_path).name == f"csv:{asx_daily.resolve()}"
    for bad in ["csv:relative/dir", f"csv:{tmp_path}/missing", "ftp", ""]:
        with pytest.raises(InvalidParams):
            resolve(bad, tmp_path)


# -- sample ----------------------------------------------------------------------------------
def test_sample_is_deterministic_and_per_symbol():
    dates = SampleSource().sessions(dt.date(2026, 6, 30))
    a1, a2, b = synthetic("CBA.AX", dates), synthetic("CBA.AX", dates), synthetic("NAB.AX", dates)
    assert np.array_equal(a1.close, a2.close) and not np.array_equal(a1.close, b.close)
    assert (a1.high >= np.maximum(a1.open, a1.close)).all()
    assert (a1.low <= np.minimum(a1.open, a1.close)).all() and (a1.low > 0).all()
    # A date's bar does not change when later sessions are generated.
    longer = synthetic("CBA.AX", SampleSource().sessions(dt.date(2026, 9, 30)))
    assert np.array_equal(longer.close[:len(dates)], a1.close)


def test_sample_source_serves_any_symbol_up_to_the_last_closed_session():
    clock = lambda: dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.timezone.utc)  # 23:00 Sydney
    got = SampleSource(clock=clock).fetch(["^AXJO", "ABC.AX"], dt.date(2026, 1, 1),
                                          dt.date(2026, 12, 31))
    idx = got.bars["^AXJO"]
    assert idx.dates[0] == "2026-01-02" and idx.dates[-1] == "2026-11-24"
    assert 3000 < idx.close[-1] < 20000
    assert not got.errors


# -- yahoo -----------------------------------------------------------------------------------
def history_frame(asx_daily, symbol: str) -> pd.DataFrame:
    """``Ticker(symbol).history()``: tz-aware Sydney index, flat columns."""
    df = pd.read_csv(asx_daily / f"{symbol}.csv")
    index = pd.to_datetime(df.pop("Date"), utc=True).dt.tz_convert("Australia/Sydney")
    df.index = pd.DatetimeIndex(index, name="Date")
    return df


def download_frame(asx_daily, symbols: list[str]) -> pd.DataFrame:
    """``yf.download(symbols)``: two-level (Price, Ticker) columns, Close/High/Low/Open/Volume."""
    parts = {}
    for s in symbols:
        h = history_frame(asx_daily, s)[["Close", "High", "Low", "Open", "Volume"]]
        parts[s] = h
    frame = pd.concat(parts, axis=1).swaplevel(0, 1, axis=1).sort_index(axis=1, level=0)
    frame.columns.names = ["Price", "Ticker"]
    return frame


class Fake:
    """A downloader that returns or raises what it is given, one item per call."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, symbols, start, end):
        self.calls.append((list(symbols), start, end))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def yahoo(tmp_path, fake, **kw) -> YahooSource:
    return YahooSource(tmp_path, downloader=fake, sleep=lambda s: None, **kw)


def test_download_frame_two_level_columns(asx_daily, tmp_path):
    fake = Fake(download_frame(asx_daily, ["CBA.AX", "NAB.AX"]))
    got = yahoo(tmp_path, fake).fetch(["CBA.AX", "NAB.AX"], START, END)
    assert len(fake.calls) == 1 and fake.calls[0][0] == ["CBA.AX", "NAB.AX"]
    cba = got.bars["CBA.AX"]
    ref = parse_csv(asx_daily / "CBA.AX.csv")
    assert cba.dates == ref.dates
    np.testing.assert_allclose(cba.close, ref.close)
    np.testing.assert_allclose(cba.open, ref.open)
    assert not got.errors


def test_download_frame_for_one_ticker_is_still_two_level(asx_daily, tmp_path):
    frame = download_frame(asx_daily, ["BHP.AX"])
    assert frame.columns.nlevels == 2
    got = yahoo(tmp_path, Fake(frame)).fetch(["BHP.AX"], START, END)
    assert len(got.bars["BHP.AX"]) == 508


def test_ticker_first_column_order_works(asx_daily, tmp_path):
    frame = download_frame(asx_daily, ["CBA.AX", "WBC.AX"]).swaplevel(0, 1, axis=1)
    got = frame_to_bars(frame, ["CBA.AX", "WBC.AX"])
    assert set(got) == {"CBA.AX", "WBC.AX"}


def test_history_frame_tz_aware_index_keeps_local_dates(asx_daily):
    got = frame_to_bars(history_frame(asx_daily, "ANZ.AX"), ["ANZ.AX"])
    assert got["ANZ.AX"].dates[0] == "2024-01-02"   # UTC would say 2024-01-01


def test_swallowed_ticker_failure_is_a_per_symbol_no_data(asx_daily, tmp_path):
    frame = download_frame(asx_daily, ["CBA.AX"])
    frame[("Close", "BAD.AX")] = np.nan      # what download() leaves for a failed ticker
    frame[("Open", "BAD.AX")] = np.nan
    got = yahoo(tmp_path, Fake(frame)).fetch(["CBA.AX", "BAD.AX"], START, END)
    assert "CBA.AX" in got.bars
    assert isinstance(got.errors["BAD.AX"], NotFound)


def test_empty_frame_is_no_data(tmp_path):
    empty = pd.DataFrame(columns=pd.MultiIndex.from_product([["Close", "Open"], ["CBA.AX"]],
                                                            names=["Price", "Ticker"]))
    got = yahoo(tmp_path, Fake(empty)).fetch(["CBA.AX"], START, END)
    assert not got.bars and got.errors["CBA.AX"].data["reason"] == "empty"


def test_rate_limit_is_not_retried(tmp_path):
    fake = Fake(YFRateLimitError())
    with pytest.raises(UpstreamUnavailable) as info:
        yahoo(tmp_path, fake).fetch(["CBA.AX"], START, END)
    assert info.value.data["reason"] == "rate-limit"
    assert isinstance(info.value.__cause__, YFRateLimitError)
    assert len(fake.calls) == 1


def test_network_error_is_retried_once(asx_daily, tmp_path):
    sleeps = []
    fake = Fake(DNSError("Could not resolve host: query2.finance.yahoo.com"),
                download_frame(asx_daily, ["CBA.AX"]))
    src = YahooSource(tmp_path, downloader=fake, sleep=sleeps.append, retry_delay=1.5)
    assert "CBA.AX" in src.fetch(["CBA.AX"], START, END).bars
    assert len(fake.calls) == 2 and sleeps == [1.5]


def test_network_error_twice_is_upstream_unavailable(tmp_path):
    fake = Fake(CurlConnectionError("Failed to connect"), DNSError("Could not resolve host"))
    with pytest.raises(UpstreamUnavailable) as info:
        yahoo(tmp_path, fake).fetch(["CBA.AX"], START, END)
    assert info.value.data["reason"] == "network" and len(fake.calls) == 2


def _curl_session_raising(monkeypatch, exc: Exception) -> list[str]:
    """Every HTTP request real yfinance makes raises ``exc``; returns the URLs it tried."""
    from curl_cffi import requests as curl_requests

    tried = []

    def request(self, method, url, *args, **kwargs):
        tried.append(url)
        raise exc

    monkeypatch.setattr(curl_requests.Session, "request", request)
    return tried


def test_real_yfinance_offline_is_unreachable_not_no_data(tmp_path, monkeypatch):
    # yf.download catches the DNSError per ticker, logs it and returns an empty frame; from
    # its third failure in a process it also calls the tickers "possibly delisted".
    tried = _curl_session_raising(monkeypatch, DNSError(
        "Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com. See "
        "https://curl.se/libcurl/c/libcurl-errors.html first for more details."))
    sleeps = []
    src = YahooSource(tmp_path, sleep=sleeps.append, retry_delay=1.5)
    for _ in range(3):
        with pytest.raises(UpstreamUnavailable) as info:
            src.fetch(["CBA.AX", "BHP.AX"], START, END)
        assert info.value.data["reason"] == "network"
        message = info.value.message
        assert message.startswith("yahoo unreachable: ") and "curl.se" not in message
        assert "Could not resolve host: query2.finance.yahoo.com." in message
    assert tried, "yfinance never reached its HTTP session"
    assert sleeps == [1.5] * 3  # each fetch retried once, like a raised network error


def test_real_yfinance_rate_limited_is_not_retried(tmp_path, monkeypatch):
    _curl_session_raising(monkeypatch, YFRateLimitError())
    sleeps = []
    with pytest.raises(UpstreamUnavailable) as info:
        YahooSource(tmp_path, sleep=sleeps.append).fetch(["CBA.AX"], START, END)
    assert info.value.data["reason"] == "rate-limit" and sleeps == []


def _logging_downloader(frame, line: str, *, thread: bool = False):
    """A downloader that logs ``line`` on yfinance's logger, as yf.download does, then
    returns ``frame``; with ``thread`` the line comes from another thread."""
    def download(symbols, start, end):
        log = lambda: logging.getLogger("yfinance").error(line)  # noqa: E731
        if thread:
            t = threading.Thread(target=log)
            t.start()
            t.join()
        else:
            log()
        return frame
    return download


def test_a_ticker_lost_to_the_network_is_not_called_no_data(asx_daily, tmp_path):
    frame = download_frame(asx_daily, ["CBA.AX"])
    line = "['NAB.AX']: ConnectionError('Failed to perform, curl: (28) Operation timed out')"
    got = yahoo(tmp_path, _logging_downloader(frame, line)).fetch(["CBA.AX", "NAB.AX"],
                                                                  START, END)
    assert "CBA.AX" in got.bars
    err = got.errors["NAB.AX"]
    assert isinstance(err, UpstreamUnavailable) and err.data["reason"] == "network"
    assert "timed out" in err.message


def test_a_locked_yfinance_cache_is_retried_not_called_no_data(asx_daily, tmp_path):
    # yfinance keeps time zones and cookies in SQLite files of its own; when one is locked
    # it logs the ticker as failed and returns nothing. That says nothing about Yahoo.
    frame = download_frame(asx_daily, ["CBA.AX"])
    locked = _logging_downloader(pd.DataFrame(), "['CBA.AX']: OperationalError('database is "
                                                 "locked')")
    answers = iter([locked, lambda *a: frame])
    calls, sleeps = [], []

    def download(symbols, start, end):
        calls.append(symbols)
        return next(answers)(symbols, start, end)

    src = YahooSource(tmp_path, downloader=download, sleep=sleeps.append, retry_delay=1.5)
    assert "CBA.AX" in src.fetch(["CBA.AX"], START, END).bars
    assert len(calls) == 2 and sleeps == [1.5]
    twice = YahooSource(tmp_path, downloader=locked, sleep=sleeps.append)
    with pytest.raises(UpstreamUnavailable) as info:
        twice.fetch(["CBA.AX"], START, END)
    assert info.value.data["reason"] == "busy" and "locked" in info.value.message


def test_a_delisted_ticker_is_still_no_data(tmp_path):
    line = "['OLD.AX']: YFPricesMissingError('possibly delisted; no price data found')"
    got = yahoo(tmp_path, _logging_downloader(pd.DataFrame(), line)).fetch(["OLD.AX"], START, END)
    assert isinstance(got.errors["OLD.AX"], NotFound)


def test_failures_of_tickers_not_asked_for_are_ignored(tmp_path):
    # another thread's download of another ticker, logged meanwhile
    line = "['WBC.AX']: DNSError('Could not resolve host')"
    got = yahoo(tmp_path, _logging_downloader(pd.DataFrame(), line, thread=True)).fetch(
        ["CBA.AX"], START, END)
    assert isinstance(got.errors["CBA.AX"], NotFound)


def test_the_default_downloader_moves_the_yfinance_cache(tmp_path, monkeypatch):
    import yfinance as yf

    moved = []
    monkeypatch.setattr(yf, "set_tz_cache_location", moved.append)
    monkeypatch.setattr(yf, "download", lambda *a, **k: (_ for _ in ()).throw(
        YFRateLimitError()))
    with pytest.raises(UpstreamUnavailable):
        YahooSource(tmp_path).fetch(["CBA.AX"], START, END)
    assert moved == [str(tmp_path / "yfinance")]
    assert (tmp_path / "yfinance").is_dir()


def test_a_start_before_1970_is_asked_of_yahoo_as_1970(asx_daily, tmp_path):
    """The "max" period reaches back 150 years; yfinance cannot take a pre-epoch date."""
    fake = Fake(download_frame(asx_daily, ["CBA.AX"]))
    got = yahoo(tmp_path, fake).fetch(["CBA.AX"], dt.date(1876, 1, 1), END)
    assert fake.calls == [(["CBA.AX"], dt.date(1970, 1, 1), END)]
    assert len(got.bars["CBA.AX"]) == 508
    later = Fake(download_frame(asx_daily, ["CBA.AX"]))
    yahoo(tmp_path, later).fetch(["CBA.AX"], START, END)
    assert later.calls[0][1] == START


def test_nan_volume_is_kept_as_missing(asx_daily):
    frame = history_frame(asx_daily, "COL.AX").drop(columns=["Volume"])
    bars = frame_to_bars(frame, ["COL.AX"])["COL.AX"]
    assert all(math.isnan(v) for v in bars.volume)
