"""Reading a trader's own CSV history: old Yahoo downloads (newest row first, unadjusted Close
beside Adj Close, holiday rows, monthly early years), intraday exports, and files that are not
price tables at all, each read the way a user's folder would be (tests/data/asx-history is cut
from real downloads; see its README)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest

from trading.errors import NotFound, UpstreamUnavailable
from trading.market import asx
from trading.market.reading import NotAPriceTable, read_csv
from trading.market.sources import CsvSource

HISTORY = Path(__file__).resolve().parent / "data" / "asx-history"
START, END = dt.date(1980, 1, 1), dt.date(2026, 1, 1)


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- the classic download -----------------------------------------------------------------
def test_a_split_is_not_a_fall_once_adjusted_like_live_yahoo():
    """RMD split 2:1 on 2000-03-08: Close 12.90 -> 6.40, Adj Close 1.46909 -> 1.4577."""
    bars, report = read_csv(HISTORY / "RMD.AX.csv")
    assert report["adjusted"] == "Adj Close" and report["unadjusted"] == 0
    assert bars.dates == sorted(bars.dates)  # the file is newest first
    assert bars.dates[0] == "1999-11-25" and bars.dates[-1] == "2000-06-30"
    i = bars.dates.index("2000-03-08")
    assert bars.close[i - 1] == pytest.approx(1.46909) and bars.close[i] == pytest.approx(1.4577)
    daily = np.diff(bars.close) / bars.close[:-1]
    assert daily.min() > -0.2  # the raw Close fell 50% that day
    # auto_adjust: Open/High/Low times Adj Close / Close of their own row; volume as traded.
    factor = 1.4577 / 6.40  # the row "2000-03-08,6.40,6.40,6.40,6.40,8800,1.4577"
    assert bars.open[i] == pytest.approx(6.40 * factor)
    assert bars.high[i] == pytest.approx(6.40 * factor) and bars.low[i] == pytest.approx(6.40 * factor)
    assert bars.volume[i] == 8800
    first = "1999-11-25,6.50,7.20,6.50,7.10,2042800,0.80857"
    assert bars.high[0] == pytest.approx(7.20 * 0.80857 / 7.10)
    assert bars.low[0] == pytest.approx(6.50 * 0.80857 / 7.10), first


def test_holiday_rows_are_dropped_and_zero_volume_sessions_kept_and_counted():
    bars, report = read_csv(HISTORY / "ABC.AX.csv")
    # 2000's holiday rows repeat the last prices with volume 000.
    for day in ["2000-01-26", "2000-04-21", "2000-04-24", "2000-04-25", "2000-06-12"]:
        assert day not in bars.dates
    assert report["dropped"] == {"no close": 0, "not a session": 5, "duplicate": 0,
                                 "truncated": 0}
    assert report["rows"] == 514 and report["sessions"] == len(bars) == 509
    assert report["zero_volume"] == int((bars.volume == 0).sum()) > 100
    assert all(asx.is_session(dt.date.fromisoformat(d)) for d in bars.dates)
    json.dumps(report)  # stored and sent as it is


def test_monthly_early_years_are_reported_as_gaps_not_bridged():
    bars, report = read_csv(HISTORY / "ABC.AX.csv")
    # One row a month from 1988-01-29 to 1998-12-31: each month after the first is a gap.
    monthly = [d for d in bars.dates if d < "1999-01-01"]
    assert len(monthly) == 132 and report["gaps"] == 131
    assert bars.dates[bars.dates.index("1998-12-31") + 1] == "1999-01-04"  # daily from here
    assert report["longest_gap"] == {"after": "1988-02-29", "before": "1988-03-31",
                                     "sessions": 22}
    assert report["first"] == "1988-01-29" and report["last"] == "2000-06-30"


def test_the_1990s_calendar_matches_the_index_row_for_row():
    """The ASX 200 has a row on every session of 1992-1999 and none on a closure: the
    calendar before 2000 keeps exactly those (bar 1993-01-26, see trading.market.asx)."""
    bars, report = read_csv(HISTORY / "^AXJO.csv")
    sessions = asx.sessions_between(dt.date(1992, 11, 23), dt.date(1999, 12, 31))
    assert bars.dates == [d.isoformat() for d in sessions]
    assert report["dropped"]["not a session"] == 1 and "1993-01-26" not in bars.dates
    assert report["gaps"] == 0 and report["longest_gap"] is None
    assert report["zero_volume"] == len(bars)  # an index has no volume; kept, counted


def test_nulls_any_row_order_and_missing_adj_close(tmp_path):
    path = write(tmp_path, "X.AX.csv",
                 "Date,Open,High,Low,Close,Volume,Adj Close\n"
                 "2016-11-22,2,2,2,2,100,1\n"          # adjusted to half
                 "2016-11-18,null,null,null,null,null,null\n"  # Yahoo's empty day
                 "2016-11-21,4,5,3,4,,\n"              # no volume, no Adj Close: as traded
                 "2016-11-19,1,1,1,1,0,1\n")           # a Saturday
    bars, report = read_csv(path)
    assert bars.dates == ["2016-11-21", "2016-11-22"]
    assert bars.close.tolist() == [4.0, 1.0] and bars.open.tolist() == [4.0, 1.0]
    assert math.isnan(bars.volume[0]) and bars.volume[1] == 100
    assert report["dropped"] == {"no close": 1, "not a session": 1, "duplicate": 0,
                                 "truncated": 0}
    assert report["unadjusted"] == 1 and report["rows"] == 4


def test_download_layout_with_adj_close_is_adjusted(tmp_path):
    """yf.download(auto_adjust=False).to_csv(): three header rows, Adj Close first."""
    path = write(tmp_path, "X.AX.csv",
                 "Price,Adj Close,Close,High,Low,Open,Volume\n"
                 "Ticker,X.AX,X.AX,X.AX,X.AX,X.AX,X.AX\n"
                 "Date,,,,,,\n"
                 "2024-01-02,9,10,11,8,10,500\n")
    bars, report = read_csv(path)
    assert bars.dates == ["2024-01-02"] and report["adjusted"] == "Adj Close"
    assert bars.close[0] == 9 and bars.high[0] == pytest.approx(9.9)
    assert bars.low[0] == pytest.approx(7.2) and bars.volume[0] == 500


# -- one bar a session ----------------------------------------------------------------------
def test_intraday_rows_become_the_daily_bar(tmp_path):
    path = write(tmp_path, "X.AX.csv",
                 "Datetime,Open,High,Low,Close,Volume\n"
                 "2024-01-03 10:01:00+11:00,20,21,19,20.5,5\n"
                 "2024-01-02 10:00:00+11:00,10,11,9,10.5,100\n"
                 "2024-01-02 10:02:00+11:00,10.4,10.6,10.3,10.5,50\n"
                 "2024-01-02 10:01:00+11:00,10.5,12,8,10.4,20\n"
                 "2024-01-02 10:02:00+11:00,10.4,10.6,10.3,10.45,60\n"  # same minute: last wins
                 "2024-01-01 23:03:00+00:00,10.5,10.5,10.5,10.6,7\n")   # 10:03 Sydney, Jan 2
    bars, report = read_csv(path)
    assert bars.dates == ["2024-01-02", "2024-01-03"]
    assert bars.open[0] == 10 and bars.high[0] == 12 and bars.low[0] == 8
    assert bars.close[0] == 10.6 and bars.volume[0] == 100 + 20 + 60 + 7
    assert report["dropped"]["duplicate"] == 1 and report["merged"] == 3
    assert report["sessions"] == 2 and report["rows"] == 6


def test_daily_duplicates_last_in_the_file_wins(tmp_path):
    path = write(tmp_path, "X.AX.csv", "Date,Close\n2024-01-03,2\n2024-01-02,1\n2024-01-02,1.5\n")
    bars, report = read_csv(path)
    assert bars.close.tolist() == [1.5, 2.0]
    assert report["dropped"]["duplicate"] == 1 and report["merged"] == 0


# -- files that are not price tables ----------------------------------------------------------
HTML = b"""<!DOCTYPE html>
<html><head><title>Yahoo</title></head>
<body>Will be right back...</body></html>
"""


@pytest.mark.parametrize("content, why", [
    (HTML, "is an HTML page"),
    (b"", "is empty"),
    (b"\n\n", "is empty"),
    (b'{"chart":{"result":null,"error":{"code":"Not Found"}}}', "is JSON"),
    (b"Symbol,Name,Price\nBHP.AX,BHP Group,45.1\n", "no Date or Close column"),
    (b"Date,Open\n2024-01-02,1\n", "no Close column"),
    (b"Date,Close\n2024-01-02,1\n2024-01-03,abc\n2024-01-04,2\n", "line 3: 'abc' is not a number"),
    (b"Date,Close\n02/01/2024,1\n", "line 2: '02/01/2024' is not a date"),
    (b"Date,Close\n2024-01-02,\xff\xfe\n", "not UTF-8 text"),
    (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb3\x8a", "not UTF-8 text"),  # .xlsx
    (b"Date,Close\n" + b"x" * 200_000, "line 2: not CSV text (field larger than"),
])
def test_not_a_price_table_is_one_line_naming_the_file(tmp_path, content, why):
    path = write(tmp_path, "X.AX.csv", content)
    with pytest.raises(NotAPriceTable) as caught:
        read_csv(path)
    message = str(caught.value)
    assert message.startswith("X.AX.csv: ") and why in message, message
    assert "\n" not in message and len(message) < 200


def test_a_cut_last_line_is_dropped_and_counted(tmp_path):
    whole = (HISTORY / "RMD.AX.csv").read_text()
    cut = whole[:whole.rindex("\n", 0, len(whole) - 1) + 20]  # the oldest row, cut short
    assert not cut.endswith("\n")
    bars, report = read_csv(write(tmp_path, "RMD.AX.csv", cut))
    assert report["dropped"]["truncated"] == 1 and report["rows"] == 146
    assert len(bars) == 145 and bars.dates[0] == "1999-11-26"
    # The same short row with its newline is a row whose missing fields are empty.
    bars, report = read_csv(write(tmp_path, "Y.AX.csv", "Date,Close,Volume\n2024-01-02,1\n"))
    assert report["dropped"]["truncated"] == 0 and math.isnan(bars.volume[0])
    # A last line without a newline that reads whole is just a row.
    bars, report = read_csv(write(tmp_path, "Z.AX.csv", "Date,Close\n2024-01-02,1"))
    assert len(bars) == 1 and report["dropped"]["truncated"] == 0


def test_a_bad_file_is_that_symbols_one_line_error_and_the_others_are_read(tmp_path):
    folder = tmp_path / "feed"
    folder.mkdir()
    write(folder, "RMD.AX.csv", (HISTORY / "RMD.AX.csv").read_bytes())
    write(folder, "CBA.AX.csv", HTML)
    write(folder, "NAB.AX.csv", "Date,Close\n2024-01-06,1\n")  # a Saturday only
    got = CsvSource(folder).fetch(["CBA.AX", "RMD.AX", "NAB.AX", "ZZZ.AX"], START, END)
    assert list(got.bars) == ["RMD.AX"] and list(got.readings) == ["RMD.AX"]
    assert got.readings["RMD.AX"]["sessions"] == len(got.bars["RMD.AX"])
    cba = got.errors["CBA.AX"]
    assert isinstance(cba, UpstreamUnavailable) and cba.data["reason"] == "unreadable"
    assert cba.message == (f"cannot use {folder / 'CBA.AX.csv'}: is an HTML page (or other "
                           "markup), not a price table: it starts '<!DOCTYPE html>'")
    nab = got.errors["NAB.AX"]
    assert isinstance(nab, NotFound) and "1 rows, dropped: 1 not a session" in nab.message
    assert isinstance(got.errors["ZZZ.AX"], NotFound)
    assert all("\n" not in e.message for e in got.errors.values())
