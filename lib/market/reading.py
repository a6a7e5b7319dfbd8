"""Reading a price table a trader kept: one CSV file in, daily bars and a report of what was
decided out.

The layouts, columns found by name and rows in any order:

- Yahoo's classic "Download data" file, ``Date,Open,High,Low,Close,Volume,Adj Close``, newest
  row first, ``null`` where Yahoo had no value;
- yfinance ``Ticker.history()``: ``Date`` (``Datetime`` intraday) with a UTC offset, already
  adjusted, plus ``Dividends,Stock Splits``;
- yfinance ``download()``: three header rows (``Price``, ``Ticker``, ``Date``) and its own
  column order (``Adj Close`` too when it was asked not to adjust).

What the reader decides, each counted in the report (:func:`read_csv`), so a trader can see
why the bars differ from the file:

- **Adjusted as live Yahoo is.** With an ``Adj Close`` column, Open, High, Low and Close are
  multiplied by Adj Close / Close of their own row, volume left as is: what yfinance's
  ``auto_adjust=True`` does, so a ``csv:`` folder and Yahoo give the same bars and a 2:1 split
  is not a -50% day. A row without an Adj Close keeps its traded prices ("unadjusted").
- **Only sessions.** A row without a usable close (empty, ``null``, zero) is dropped ("no
  close"); so is a row on a day the ASX calendar (:mod:`trading.market.asx`) has no session,
  a weekend or a closure ("not a session"): old downloads repeat the last prices on holidays.
  A session with zero volume is kept (a stock nobody traded that day; an index has no volume
  at all) and counted ("zero_volume").
- **One bar a session.** Rows with the same timestamp: the last one in the file wins
  ("duplicate"). Rows at different times of one session (a one-minute export) become that
  session's daily bar: first open, highest high, lowest low, last close, summed volume
  ("merged": the rows folded into another).
- **A cut last line** (no newline after it, and too few fields or a value that does not
  parse) is dropped ("truncated"), not an error: a copy interrupted while it was written has
  lost that one row, and the years before it are still good. The same fault on any other
  line is an error, because then the file is not what it claims to be.
- **Gaps are reported, not bridged**: more than :data:`~trading.market.gaps.GAP_SESSIONS`
  sessions missing between two bars (a suspension, a listing not yet traded, an early history
  kept one row a month), their count and the longest.

A file that is not a price table (empty, an HTML or JSON error page saved as .csv, no Date or
Close column, a value that is not a number) raises :class:`NotAPriceTable`: one line naming
the file and what is wrong.

**Intraday files** (``read_csv(path, interval="1h")``, also ``30m`` and ``15m``): yfinance's
intraday layout, ``Datetime`` with the Sydney offset of its day (``2024-04-05
10:00:00+11:00``, ``2024-04-08 10:00:00+10:00`` after the change to standard time; a stamp in
UTC or without an offset, taken as Sydney time, reads the same). Each row goes to the bar of
the interval it falls in (:func:`trading.market.intraday.slot_of`): a row on a day without a
session is dropped ("not a session"), one outside the session's bars ("outside hours": before
09:59, after the post-close), and rows at several moments of one bar fold into it
("merged"), so a 1-minute export read as ``1h`` gives hourly bars. The report also counts the
continuous-trading bars missing on the sessions the file has (a missing hour), and names the
first of them (:func:`_intraday_report`). Which bars exist is :mod:`trading.market.intraday`'s
business.

The module is long because the daily and the intraday readers share one streaming parser and
one fold of rows into bars (:func:`_fold`), which read best next to each other.

Memory: the file is streamed (:func:`trading.market.files.open_bounded`), its values kept in
``array.array`` columns (8 bytes a value) and tidied with numpy. A 19 MiB file peaks well
under 200 MB, where decoding it whole and keeping a tuple per row took about 640 MB.
numpy is imported only when a file is read.
"""

from __future__ import annotations

import datetime as dt
import math
from array import array
from pathlib import Path
from typing import Any

from trading.market import asx
from trading.market.files import open_bounded
from trading.market.summary import Bars

__all__ = ["MAX_CSV_BYTES", "NotAPriceTable", "read_csv", "tidy"]

MAX_CSV_BYTES = 20 << 20  # 20 MiB: a century of daily bars is about 2.5 MB

# Column names as lowercase words without spaces or underscores -> the field they hold.
_COLUMNS = {"date": "date", "datetime": "date", "open": "open", "high": "high", "low": "low",
            "close": "close", "volume": "volume", "adjclose": "adj"}
_NUMBERS = ("open", "high", "low", "close", "volume", "adj")
_MISSING = frozenset({"", "null", "nan", "n/a", "na", "none", "-"})


class NotAPriceTable(ValueError):
    """A file that is not a daily price table; ``why`` says what is wrong, on one line."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path.name}: {why}")
        self.path = path
        self.why = why


def _shown(text: str, limit: int = 40) -> str:
    """A value quoted for a one-line message, cut short."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        if text.strip().lower() in _MISSING:
            return math.nan
        raise ValueError(f"{_shown(text)} is not a number") from None


def _when(text: str) -> tuple[int, int]:
    """``(session, moment)`` of a Date cell: the Sydney date's ordinal, and seconds of Sydney
    wall time (a plain date is its midnight, like yfinance's daily ``00:00:00+10:00``)."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text).toordinal()
            return day, day * 86400
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{_shown(text)} is not a date (YYYY-MM-DD)") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(asx.TZ)
    day = moment.toordinal()
    return day, day * 86400 + moment.hour * 3600 + moment.minute * 60 + moment.second


class _Lines:
    """The lines of a text stream, remembering the last one (did the file end in a newline?)."""

    def __init__(self, text) -> None:
        self.text = text
        self.last = ""

    def __iter__(self):
        for line in self.text:
            self.last = line
            yield line


def read_csv(path: Path, limit: int = MAX_CSV_BYTES, interval: str = "1d"
             ) -> tuple[Bars, dict[str, Any]]:
    """The daily bars of one CSV file and the report of what was decided (see the module
    docstring), e.g. ``{"file": "RMD.AX.csv", "rows": 4780, "sessions": 4259, "adjusted":
    "Adj Close", "dropped": {...}, "merged": 0, "unadjusted": 0, "zero_volume": 41, "gaps":
    3, "longest_gap": {"after": ..., "before": ..., "sessions": ...}, "first": ..., "last":
    ...}``. With an intraday ``interval`` (``1h``, ``30m``, ``15m``), its bars of that
    interval instead, and the report of :func:`_intraday_report`.

    Raises :class:`NotAPriceTable` for a file that is not one,
    :class:`~trading.market.files.UnusableFile` for one that is not a regular file or is over
    ``limit`` bytes, ``FileNotFoundError`` for a missing one."""
    import csv
    import io

    with open_bounded(path, limit) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        lines = _Lines(text)
        rows = csv.reader(lines)
        try:
            columns, counts = _read(path, rows, lines)
        except UnicodeDecodeError:
            raise NotAPriceTable(path, f"line {rows.line_num + 1}: not UTF-8 text (a "
                                       "spreadsheet or another binary file?)") from None
        except csv.Error as exc:
            raise NotAPriceTable(path, f"line {rows.line_num}: not CSV text ({exc})") from None
    if interval != "1d":
        bars, tidied = tidy_intraday(*columns, interval=interval)
        return bars, _intraday_report(path, bars, tidied, counts, columns[-1] is not None,
                                      interval)
    bars, tidied = tidy(*columns)
    from trading.market.gaps import gaps

    found = gaps(bars.dates)
    longest = max(found, key=lambda g: g[1], default=None)
    report = {
        "file": path.name,
        "rows": counts["rows"],
        "sessions": len(bars),
        "adjusted": "Adj Close" if columns[-1] is not None else None,
        "dropped": {"no close": tidied["no close"], "not a session": tidied["not a session"],
                    "duplicate": tidied["duplicate"], "truncated": counts["truncated"]},
        "merged": tidied["merged"],
        "unadjusted": tidied["unadjusted"],
        "zero_volume": tidied["zero_volume"],
        "gaps": len(found),
        "longest_gap": None if longest is None else {
            "after": bars.dates[longest[0] - 1], "before": bars.dates[longest[0]],
            "sessions": longest[1]},
        "first": bars.dates[0] if len(bars) else None,
        "last": bars.dates[-1] if len(bars) else None,
    }
    return bars, report


def _header(path: Path, rows) -> tuple[dict[str, int], int, bool]:
    """Where each field is (``{"date": 0, "close": 4, ...}``), how many fields a row has, and
    whether this is download()'s header (two more header rows follow it)."""
    first = next(rows, None)
    while first is not None and not any(f.strip() for f in first):
        first = next(rows, None)
    if first is None:
        raise NotAPriceTable(path, "is empty, not a price table")
    opening = first[0].lstrip()
    if opening.startswith("<"):
        raise NotAPriceTable(path, "is an HTML page (or other markup), not a price table: "
                                   f"it starts {_shown(','.join(first), 30)}")
    if opening.startswith(("{", "[")):
        raise NotAPriceTable(path, "is JSON, not a price table: it starts "
                                   f"{_shown(','.join(first), 30)}")
    header = [h.strip() for h in first]
    download = header[0] == "Price"
    if download:
        # download(): "Price,Close,..." / "Ticker,^AXJO,..." / "Date,,,": names in row one.
        header[0] = "Date"
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        field = _COLUMNS.get(h.lower().replace(" ", "").replace("_", ""))
        if field is not None:
            index.setdefault(field, i)
    missing = [c for c in ("date", "close") if c not in index]
    if missing:
        raise NotAPriceTable(path, f"no {' or '.join(m.capitalize() for m in missing)} column, "
                                   f"not a price table (header {_shown(','.join(header), 60)})")
    return index, len(header), download


def _read(path: Path, rows, lines: _Lines):
    """The columns of the file as arrays, and the rows read and cut."""
    index, width, download_header = _header(path, rows)
    sessions, moments = array("l"), array("q")
    wanted = [f for f in _NUMBERS if f in index]
    arrays = {f: array("d") for f in wanted}
    cells = [(arrays[f].append, index[f]) for f in wanted]
    di = index["date"]
    pending = None  # (line, row) of a bad row: an error unless it is the cut last line
    n = 0

    def append(row: list[str], line: int) -> None:
        """A row that failed the fast path, unless it was the cut last line: a short row's
        missing fields are empty values (as they always were), a bad value is an error."""
        try:
            day, moment = _when(row[di])
            values = [_number(row[i]) if i < len(row) else math.nan for _, i in cells]
        except (ValueError, IndexError) as exc:
            raise NotAPriceTable(path, f"line {line}: {exc}") from None
        sessions.append(day)
        moments.append(moment)
        for (add, _), v in zip(cells, values):
            add(v)

    for row in rows:
        if pending is not None:
            append(pending[1], pending[0])  # not the last line after all: see append
            n += 1
            pending = None
        if download_header:
            if row and row[0].strip() in ("Ticker", "Date"):
                continue
            download_header = False
        if not any(f.strip() for f in row):
            continue
        try:
            if len(row) < width:
                raise IndexError("a short row")
            day, moment = _when(row[di])
            values = [_number(row[i]) for _, i in cells]
        except (ValueError, IndexError):
            pending = (rows.line_num, row)
            continue
        sessions.append(day)
        moments.append(moment)
        for (add, _), v in zip(cells, values):
            add(v)
        n += 1
    truncated = 0
    if pending is not None:
        if lines.last.endswith(("\n", "\r")):
            append(pending[1], pending[0])
            n += 1
        else:
            truncated = 1
    import numpy as np

    def column(field: str):  # None for a column the file does not have
        return np.frombuffer(arrays[field], dtype=np.float64) if field in arrays else None

    columns = (np.frombuffer(sessions, dtype=np.dtype(f"i{sessions.itemsize}")),
               np.frombuffer(moments, dtype=np.int64),
               *(column(f) for f in _NUMBERS))
    return columns, {"rows": n + truncated, "truncated": truncated}


def tidy(sessions, moments, open_, high, low, close, volume, adj=None, start: int | None = None
         ) -> tuple[Bars, dict[str, int]]:
    """Daily bars from columns of rows in any order (see the module docstring), and what was
    dropped, merged and kept.

    ``sessions``: each row's Sydney date as an ordinal; ``moments``: its Sydney wall time in
    seconds (rows at the same moment are duplicates, at different moments of one session
    intraday rows); a price or volume column is None when the file has none (NaN in the bars);
    ``adj``: the Adj Close column, if the file has one; ``start``: the first session ordinal
    wanted (rows before it are left out, uncounted). Intermediate arrays are dropped as soon
    as they are used: for a file of a million rows each is 8 MB."""
    import numpy as np

    sessions = np.asarray(sessions)
    moments = np.asarray(moments)
    close = np.asarray(close, dtype=float)
    counts = {}
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(close) & (close > 0)
    counts["no close"] = int(len(ok) - ok.sum())
    days = np.unique(sessions[ok])
    closed = days[[not asx.is_session(dt.date.fromordinal(d)) for d in days.tolist()]]
    off = ok & np.isin(sessions, closed)
    counts["not a session"] = int(off.sum())
    ok &= ~off
    if start is not None:
        ok &= sessions >= start
    del off
    day, o, h, lo, c, v = _fold(sessions, moments, ok, open_, high, low, close, volume, adj,
                                counts)
    fromordinal = dt.date.fromordinal
    dates = [fromordinal(d).isoformat() for d in map(int, day)]  # no list of ints beside it
    return Bars(dates, o, h, lo, c, v), counts


def _fold(groups, moments, ok, open_, high, low, close, volume, adj, counts: dict[str, int]):
    """The rows ``ok`` selects, one bar per group key (a session's ordinal for daily bars, a
    bar's slot for intraday ones): sorted by key, then moment; rows at one moment are
    duplicates (the last in the file wins), rows at several moments of one key fold into one
    bar (first open, highest high, lowest low, last close, summed volume). Adjusted by
    ``adj`` where the file has one. Returns ``(keys, open, high, low, close, volume)``
    (NaN arrays for a column the file does not have) and counts ``duplicate``,
    ``unadjusted``, ``merged`` and ``zero_volume`` in ``counts``."""
    import numpy as np

    sessions = groups
    kept = np.flatnonzero(ok)
    # By session, then moment; lexsort is stable, so equal moments stay in file order.
    order = kept[np.lexsort((moments[kept], sessions[kept]))]
    del ok, kept
    day, moment = sessions[order], moments[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (day[1:] != day[:-1]) | (moment[1:] != moment[:-1])
    del moment
    counts["duplicate"] = int(len(order) - last.sum())
    order, day = order[last], day[last]
    del last

    def pick(column):
        return None if column is None else np.asarray(column, dtype=float)[order]

    c = close[order]
    o, h, lo, v = pick(open_), pick(high), pick(low), pick(volume)
    counts["unadjusted"] = 0
    if adj is not None:
        a = np.asarray(adj, dtype=float)[order]
        with np.errstate(invalid="ignore"):
            usable = np.isfinite(a) & (a > 0)
        counts["unadjusted"] = int(len(a) - usable.sum())
        factor = np.where(usable, a / c, 1.0)
        o, h, lo = (None if x is None else x * factor for x in (o, h, lo))
        c = np.where(usable, a, c)

    first = np.ones(len(order), dtype=bool)
    first[1:] = day[1:] != day[:-1]
    starts = np.flatnonzero(first)
    counts["merged"] = int(len(order) - len(starts))
    if counts["merged"]:
        ends = np.append(starts[1:], len(order)) - 1
        o = None if o is None else o[starts]
        c, day = c[ends], day[starts]
        h = None if h is None else np.fmax.reduceat(h, starts)
        lo = None if lo is None else np.fmin.reduceat(lo, starts)
        if v is not None:
            traded = np.add.reduceat(np.isfinite(v), starts)
            v = np.where(traded > 0, np.add.reduceat(np.nan_to_num(v), starts), math.nan)
    o, h, lo, v = (np.full(len(c), math.nan) if x is None else x for x in (o, h, lo, v))
    counts["zero_volume"] = int((v == 0).sum())
    return day, o, h, lo, c, v


# -- intraday files ------------------------------------------------------------------------------
def tidy_intraday(sessions, moments, open_, high, low, close, volume, adj=None, *,
                  interval: str) -> tuple[Bars, dict[str, int]]:
    """Bars of an intraday ``interval`` from columns of rows in any order: what
    :func:`tidy` does for daily bars, with a bar's slot (:func:`trading.market.intraday.slot_of`)
    in place of its session. A row on a day without a session is dropped ("not a session"),
    one outside the session's bars (before 09:59, after the post-close) too ("outside
    hours"); rows at several moments of one slot (a 1-minute export read as ``1h``) fold into
    that slot's bar ("merged"). The bars are keyed by their stamps
    (``2024-04-05T10:00:00+11:00``)."""
    import numpy as np

    from trading.market import intraday

    width = intraday.INTERVALS[interval] * 60
    sessions = np.asarray(sessions, dtype=np.int64)
    moments = np.asarray(moments, dtype=np.int64)
    close = np.asarray(close, dtype=float)
    counts = {}
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(close) & (close > 0)
    counts["no close"] = int(len(ok) - ok.sum())
    days, where = np.unique(sessions, return_inverse=True)
    # Seconds of wall time at which continuous trading ends, per day (-1: no session).
    ends = np.array([_seconds(intraday.continuous_end(dt.date.fromordinal(d)))
                     for d in days.tolist()], dtype=np.int64)
    end = ends[where.reshape(-1)]
    del where
    off = ok & (end < 0)
    counts["not a session"] = int(off.sum())
    ok &= ~off
    del off
    second = moments - sessions * 86400
    opening = asx.OPEN.hour * 3600 + asx.OPEN.minute * 60
    lead = int(intraday.OPEN_LEAD.total_seconds())
    span = int(intraday.AUCTION_SPAN.total_seconds())
    trading = (second >= opening - lead) & (second < end)
    auction = (second >= end) & (second < end + span)
    slot = np.where(trading, opening + np.maximum(second - opening, 0) // width * width,
                    np.where(auction, end, -1))
    del second, trading, auction, end
    outside = ok & (slot < 0)
    counts["outside hours"] = int(outside.sum())
    ok &= ~outside
    del outside
    keys, o, h, lo, c, v = _fold(sessions * 86400 + slot, moments, ok, open_, high, low,
                                 close, volume, adj, counts)
    stamps = [intraday.stamp(dt.datetime.combine(
        dt.date.fromordinal(k // 86400), dt.time(k % 86400 // 3600, k % 3600 // 60), asx.TZ))
        for k in map(int, keys)]
    return Bars(stamps, o, h, lo, c, v), counts


def _seconds(moment: dt.datetime | None) -> int:
    return -1 if moment is None else moment.hour * 3600 + moment.minute * 60


MISSING_SHOWN = 10  # stamps of missing bars named in a report


def missing_bars(stamps: list[str], interval: str) -> tuple[list[str], int]:
    """The continuous-trading bars of ``interval`` absent on the sessions ``stamps`` has bars
    on (a missing hour; the auction bar, which Yahoo may leave out, is never missing), and
    the sessions between its first and last bar that have no bar at all."""
    from trading.market import intraday

    if not stamps:
        return [], 0
    have = set(stamps)
    days = sorted({s[:10] for s in stamps})
    first, last = intraday.parse(stamps[0]), intraday.parse(stamps[-1])
    missing = []
    for day in days:
        for t in intraday.slots(dt.date.fromisoformat(day), interval, auction=False):
            if first <= t <= last and intraday.stamp(t) not in have:
                missing.append(intraday.stamp(t))
    empty = len(asx.sessions_between(first.date(), last.date())) - len(days)
    return missing, empty


def _intraday_report(path: Path, bars: Bars, tidied: dict[str, int], counts: dict[str, int],
                     adjusted: bool, interval: str) -> dict[str, Any]:
    """What :func:`read_csv` reports for an intraday file: the daily report's fields (with
    "outside hours" among the drops, bars counted under ``bars``), and ``missing_bars`` (the
    count of continuous-trading bars absent on sessions the file has), ``missing`` (the
    first :data:`MISSING_SHOWN` of their stamps), ``empty_sessions`` (sessions between its
    first and last bar with none) and ``auction_bars`` (sessions whose auction bar is
    there)."""
    from trading.market import intraday
    from trading.market.gaps import gaps

    found = gaps(bars.dates)
    longest = max(found, key=lambda g: g[1], default=None)
    missing, empty = missing_bars(bars.dates, interval)
    auctions = sum(1 for s in bars.dates
                   if intraday.parse(s) == intraday.auction_slot(dt.date.fromisoformat(s[:10])))
    return {
        "file": path.name,
        "interval": interval,
        "rows": counts["rows"],
        "bars": len(bars),
        "sessions": len({s[:10] for s in bars.dates}),
        "adjusted": "Adj Close" if adjusted else None,
        "dropped": {"no close": tidied["no close"], "not a session": tidied["not a session"],
                    "outside hours": tidied["outside hours"],
                    "duplicate": tidied["duplicate"], "truncated": counts["truncated"]},
        "merged": tidied["merged"],
        "unadjusted": tidied["unadjusted"],
        "zero_volume": tidied["zero_volume"],
        "missing_bars": len(missing),
        "missing": missing[:MISSING_SHOWN],
        "empty_sessions": empty,
        "auction_bars": auctions,
        "gaps": len(found),
        "longest_gap": None if longest is None else {
            "after": bars.dates[longest[0] - 1], "before": bars.dates[longest[0]],
            "sessions": longest[1]},
        "first": bars.dates[0] if len(bars) else None,
        "last": bars.dates[-1] if len(bars) else None,
    }
