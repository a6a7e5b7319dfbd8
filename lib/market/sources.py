"""Where bars come from: one small interface, three sources.

A source answers :meth:`Source.fetch` for many symbols at once (one upstream call for the
lot) with a :class:`Fetched`: bars per symbol, and per-symbol errors for the ones it has no
data for. A failure of the whole call (network down, rate limited) raises
:class:`~trading.errors.UpstreamUnavailable` with ``reason`` ``"rate-limit"`` or
``"network"``; the cache (:mod:`trading.market.bars`) then serves what it has, flagged stale.

- ``yahoo``: yfinance's ``download()``, batched, daily or of an intraday interval
  (:meth:`YahooSource.fetch_intraday`: bars keyed by their Sydney stamps,
  :mod:`trading.market.intraday`). Foreign errors are translated here, most
  specific first, by :func:`trading.market.yahoo.classify` (shared with news): rate-limit (no
  retry: Yahoo wants minutes); network -> one short retry, then network. yfinance swallows
  per-ticker failures into empty or all-NaN columns and only logs why (``['BHP.AX']:
  DNSError(...)`` on its ``yfinance`` logger): those log lines are read back (and classified
  by :func:`trading.market.yahoo.classify_text`), so a ticker lost to the network or a 429
  is reported as that, and when every ticker was, the whole call is treated as the exception
  it swallowed. The rest become per-symbol ``NotFound`` ("no data"). yfinance's tz/cookie
  cache is moved into the service's cache directory before the first call. The downloader is
  injectable, so tests feed it frames in yfinance's real shapes and never touch the network.
- ``csv:DIR``: ``DIR/<SYMBOL>.csv`` (intraday: ``DIR/<SYMBOL>.1h.csv``, ``.30m.csv``,
  ``.15m.csv``) in Yahoo's classic download layout or either layout yfinance writes, read
  by :mod:`trading.market.reading` (adjusted like live Yahoo, sessions only, one bar a
  session), whose report of what it dropped and found comes back in
  :attr:`Fetched.readings`. The whole file is returned: only a regular file of at most
  :data:`MAX_CSV_BYTES` is read (:mod:`trading.market.files`; the folder is the client's
  choice, so a FIFO or ``/dev/zero`` there is an error for that symbol, never a blocked or
  bloated worker), and a file that is not a price table is a one-line error for its symbol.
- ``sample``: deterministic synthetic bars per symbol (seeded from its name), generated in code
  from a fixed epoch, so a date's bar never changes as time passes; no network, any symbol.

The module is long because the three sources share one contract (:class:`Fetched`, the
per-symbol errors, the session cleaning) that reads best next to each of them.

pandas and yfinance are imported only inside the yahoo path; numpy, csv and hashlib only where
bars are made, so a process answering from the cache pays for none of them.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trading.market import asx, yahoo
from trading.market.files import UnusableFile
from trading.market.reading import MAX_CSV_BYTES, NotAPriceTable, read_csv, tidy
from trading.errors import InvalidParams, NotFound, RPCError, UpstreamUnavailable
from trading.market.summary import Bars
from trading.market.symbols import is_index

logger = logging.getLogger(__name__)

__all__ = ["Source", "Fetched", "YahooSource", "CsvSource", "SampleSource", "resolve",
           "frame_to_bars", "parse_csv"]


class Fetched:
    """What one fetch returned: bars per symbol, per-symbol errors, and for a local file the
    reader's report of what it decided (:func:`trading.market.reading.read_csv`)."""

    def __init__(self) -> None:
        self.bars: dict[str, Bars] = {}
        self.errors: dict[str, RPCError] = {}
        self.readings: dict[str, dict[str, Any]] = {}


class Source:
    """The interface (duck-typed; a plain class, because a typing.Protocol costs import time
    on every cold start): a ``name`` that keys the cache, and :meth:`fetch`."""

    name: str = "source"

    def fetch(self, symbols: list[str], start: dt.date, end: dt.date) -> Fetched:
        """Daily bars for ``symbols`` from ``start`` to ``end`` (session dates, inclusive)."""
        raise NotImplementedError

    # A source with intraday bars also has ``fetch_intraday(symbols, start, end, interval)``
    # (``start``/``end``: aware datetimes; bars keyed by their stamps, see
    # trading.market.intraday); the cache refuses an intraday interval for one without it.


def _clean(rows: list[tuple], start: dt.date | None = None) -> Bars:
    """``(date, open, high, low, close, volume)`` rows as a file's are read: sorted, one bar a
    date (last wins), no rows without a close or on ASX closures (:func:`reading.tidy`)."""
    import numpy as np

    if not rows:
        return Bars.empty()
    days = np.array([dt.date.fromisoformat(r[0]).toordinal() for r in rows], dtype=np.int64)
    values = np.array([r[1:6] for r in rows], dtype=float).T
    return tidy(days, days * 86400, *values,
                start=None if start is None else start.toordinal())[0]


# -- yahoo -----------------------------------------------------------------------------------
Downloader = Callable[[list[str], dt.date, dt.date], Any]
YAHOO_EARLIEST = dt.date(1970, 1, 1)


class YahooSource(Source):
    """yfinance, one batched ``download()`` per fetch; see the module docstring."""

    name = yahoo.BARS  # keys the cache and the upstream state

    def __init__(self, cache_dir: Path, downloader: Downloader | None = None, *,
                 retry_delay: float = 2.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cache_dir = Path(cache_dir)
        self.downloader = downloader
        self.retry_delay = retry_delay
        self.sleep = sleep
        self._ready = False
        self._lock = threading.Lock()

    def _download(self, symbols: list[str], start, end, interval: str = "1d"):
        """The frame, and why yfinance says each failed ticker failed (from its log)."""
        failures = _SwallowedErrors(symbols)
        yf_logger = logging.getLogger("yfinance")
        yf_logger.addHandler(failures)
        try:
            frame = self._download_frame(symbols, start, end, interval)
        finally:
            yf_logger.removeHandler(failures)
        return frame, failures.by_symbol

    def _download_frame(self, symbols: list[str], start, end, interval: str = "1d"):
        if self.downloader is not None:
            if interval == "1d":
                return self.downloader(symbols, start, end)
            return self.downloader(symbols, start, end, interval=interval)
        import yfinance as yf

        with self._lock:
            if not self._ready:
                # yfinance's tz/cookie cache defaults to ~/.cache, which a sandboxed service
                # cannot write; keep it with our own cache.
                where = self.cache_dir / "yfinance"
                where.mkdir(parents=True, exist_ok=True)
                yf.set_tz_cache_location(str(where))
                self._ready = True
        if interval != "1d":
            # Intraday: moments, not dates; bars of regular hours only. yfinance gives the
            # index in the exchange's time zone (Australia/Sydney) since 1.4.
            return yf.download(symbols, start=start, end=end, interval=interval,
                               prepost=False, auto_adjust=True, group_by="column",
                               progress=False, threads=True)
        return yf.download(symbols, start=start.isoformat(),
                           end=(end + dt.timedelta(days=1)).isoformat(), interval="1d",
                           auto_adjust=True, group_by="column", progress=False, threads=True)

    def fetch(self, symbols: list[str], start: dt.date, end: dt.date) -> Fetched:
        # The "max" period reaches back 150 years; yfinance cannot take a timestamp before
        # the Unix epoch (Yahoo has nothing older anyway).
        start = max(start, YAHOO_EARLIEST)
        frame, failures = self._call(symbols, start, end)
        return self._fetched(symbols, frame_to_bars(frame, symbols, start), failures)

    def fetch_intraday(self, symbols: list[str], start: dt.datetime, end: dt.datetime,
                       interval: str) -> Fetched:
        """Bars of ``interval`` (``1h``, ``30m``, ``15m``) starting from ``start`` to ``end``,
        one batched ``download()``. How far back Yahoo serves them is checked by the cache
        before it asks (:func:`trading.market.intraday.check_reach`)."""
        frame, failures = self._call(symbols, start, end, interval)
        return self._fetched(symbols, frame_to_intraday(frame, symbols, interval, start),
                             failures)

    def _fetched(self, symbols: list[str], found: dict[str, Bars],
                 failures: dict[str, tuple[str | None, str]]) -> Fetched:
        out = Fetched()
        for s in symbols:
            if s in found and len(found[s]):
                out.bars[s] = found[s]
                continue
            kind, why = failures.get(s, (None, ""))
            if kind is None:
                out.errors[s] = NotFound(f"yahoo has no data for {s}", symbol=s, reason="empty")
            else:
                out.errors[s] = UpstreamUnavailable(yahoo.message(kind, why), symbol=s,
                                                    reason=kind)
        return out

    def _call(self, symbols: list[str], start, end, interval: str = "1d"):
        for attempt in (1, 2):
            try:
                frame, failures = self._download(symbols, start, end, interval)
                _raise_if_all_swallowed(symbols, failures)
                return frame, failures
            except Exception as exc:  # translated below, most specific first
                kind = exc.kind if isinstance(exc, _Swallowed) else yahoo.classify(exc)
                if kind == "rate-limit":
                    raise UpstreamUnavailable(yahoo.message(kind, str(exc)),
                                              reason=kind) from exc
                if kind not in ("network", "busy"):
                    raise
                if attempt == 2:
                    raise UpstreamUnavailable(yahoo.message(kind, str(exc)),
                                              reason=kind) from exc
                logger.warning("yahoo: %s error (%s); retrying in %.3gs", kind, exc,
                               self.retry_delay)
                self.sleep(self.retry_delay)
        raise AssertionError("unreachable")


class _Swallowed(Exception):
    """What yfinance caught for every ticker of a download, raised again as one failure."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind


def _raise_if_all_swallowed(symbols: list[str], failures: dict[str, tuple[str, str]]) -> None:
    """Raise when every ticker failed with a network error, a 429 or a locked cache that
    yfinance only logged.

    ``yf.download`` offline returns an empty frame and logs ``DNSError(...)``; that is Yahoo
    being unreachable, not a lack of data, and must back off and serve the cache like one.
    """
    kinds = {failures.get(s, (None, ""))[0] for s in symbols}
    if kinds and None not in kinds:
        kind = next(k for k in ("rate-limit", "network", "busy") if k in kinds)
        raise _Swallowed(kind, failures[symbols[0]][1])


class _SwallowedErrors(logging.Handler):
    """Collects the per-ticker failures ``yf.download`` logs instead of raising.

    yfinance (1.x) logs ``Failed to get ticker 'CBA.AX' reason: <text>`` from its worker
    threads, then one summary record per distinct failure, ``['CBA.AX', 'BHP.AX']:
    DNSError('...')``. Offline, a long-lived process sees the summary turn into "possibly
    delisted; no timezone found" after two failures (yfinance stops retrying the time zone),
    so a network failure in any record of a ticker wins over "no data". Records of tickers
    this download did not ask for are ignored.
    """

    _SUMMARY = re.compile(r"\[(?P<symbols>[^\]]*)\]: (?P<why>.+)", re.S)
    _TICKER = re.compile(r"Failed to get ticker '(?P<symbol>[^']+)' reason: (?P<why>.+)", re.S)

    def __init__(self, symbols: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.wanted = {s.upper() for s in symbols}
        self.by_symbol: dict[str, tuple[str | None, str]] = {}  # symbol -> (kind, why)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a record whose message cannot be formatted: not one of these
            return
        if m := self._SUMMARY.fullmatch(message):
            symbols = re.findall(r"'([^']+)'", m["symbols"])
        elif m := self._TICKER.fullmatch(message):
            symbols = [m["symbol"]]
        else:
            return
        why, kind = m["why"], yahoo.classify_text(m["why"])
        for symbol in symbols:
            if symbol in self.wanted and (kind or symbol not in self.by_symbol):
                self.by_symbol[symbol] = (kind, why)


def frame_to_bars(frame, symbols: list[str], start: dt.date | None = None) -> dict[str, Bars]:
    """Bars per symbol from a yfinance frame: ``download()``'s two-level columns (either
    level order) or ``history()``'s flat columns (one symbol). Dates become exchange-local
    session dates: a tz-aware index is converted to Sydney time, never to UTC."""
    out = {}
    for s, (index, columns) in _frame_columns(frame, symbols).items():
        dates = [d.isoformat() for d in index.date]
        bars = _clean(list(zip(dates, *columns)), start)
        if len(bars):
            out[s] = bars
    return out


def frame_to_intraday(frame, symbols: list[str], interval: str,
                      start: dt.datetime | None = None) -> dict[str, Bars]:
    """Intraday bars per symbol from a yfinance frame of ``interval`` (either layout, as
    :func:`frame_to_bars`), each row placed in its bar by Sydney wall time (an index in UTC
    or at either daylight-saving offset reads the same), rows outside the session's bars
    dropped (:func:`trading.market.reading.tidy_intraday`); bars before ``start`` left out."""
    import numpy as np

    from trading.market import intraday
    from trading.market.reading import tidy_intraday

    first = None if start is None else intraday.slot_of(start, interval) or start
    out = {}
    for s, (index, columns) in _frame_columns(frame, symbols).items():
        local = [t.to_pydatetime() for t in index]
        days = np.array([t.toordinal() for t in local], dtype=np.int64)
        moments = days * 86400 + np.array([t.hour * 3600 + t.minute * 60 + t.second
                                           for t in local], dtype=np.int64)
        values = [np.asarray(c, dtype=float) for c in columns]
        bars = tidy_intraday(days, moments, *values, interval=interval)[0]
        if first is not None and len(bars):
            keep = intraday.stamp(first)
            bars = bars[next((i for i, d in enumerate(bars.dates) if d >= keep), len(bars)):]
        if len(bars):
            out[s] = bars
    return out


def _frame_columns(frame, symbols: list[str]) -> dict[str, tuple[Any, list[list[float]]]]:
    """Per symbol of a yfinance frame: its index in Sydney time (a naive one is taken as
    Sydney time) and its open, high, low, close and volume columns as floats (NaN for one
    the frame lacks)."""
    if frame is None or getattr(frame, "empty", True):
        return {}
    import pandas as pd

    cols = frame.columns
    subs: dict[str, Any] = {}
    if isinstance(cols, pd.MultiIndex):
        level = next((i for i in range(cols.nlevels)
                      if set(symbols) & set(map(str, cols.get_level_values(i)))), None)
        if level is None:
            return {}
        for s in symbols:
            if s in set(map(str, cols.get_level_values(level))):
                subs[s] = frame.xs(s, axis=1, level=level)
    elif len(symbols) == 1:
        subs[symbols[0]] = frame
    out = {}
    for s, sub in subs.items():
        index = sub.index
        if not isinstance(index, pd.DatetimeIndex):
            index = pd.to_datetime(index)
        if index.tz is not None:
            index = index.tz_convert(asx.TZ.key)
        lower = {str(c).lower(): c for c in sub.columns}

        def column(name: str) -> list[float]:
            c = lower.get(name)
            if c is None:
                return [math.nan] * len(sub)
            return [float(v) for v in pd.to_numeric(sub[c], errors="coerce")]

        out[s] = (index, [column(f) for f in ("open", "high", "low", "close", "volume")])
    return out


# -- csv -------------------------------------------------------------------------------------
class CsvSource(Source):
    """``csv:DIR``: one file per symbol, ``DIR/<SYMBOL>.csv``; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.name = f"csv:{self.directory}"

    def fetch(self, symbols: list[str], start: dt.date, end: dt.date) -> Fetched:
        return self._read(symbols, "1d")

    def fetch_intraday(self, symbols: list[str], start: dt.datetime, end: dt.datetime,
                       interval: str) -> Fetched:
        """``DIR/<SYMBOL>.<interval>.csv`` (``CBA.AX.1h.csv``) in yfinance's intraday layout,
        whole, as :func:`trading.market.reading.read_csv` reads it for ``interval``."""
        return self._read(symbols, interval)

    def _read(self, symbols: list[str], interval: str) -> Fetched:
        out = Fetched()
        suffix = ".csv" if interval == "1d" else f".{interval}.csv"
        for s in symbols:
            path = self.directory / f"{s}{suffix}"
            try:
                bars, report = read_csv(path, interval=interval)
            except FileNotFoundError:
                out.errors[s] = NotFound(f"no file {path.name} in {self.directory}", symbol=s)
                continue
            except UnusableFile as exc:
                # NotFound, not a source failure: the cache leaves this symbol alone for a
                # while and the other symbols (and the other sources) are served as usual.
                out.errors[s] = NotFound(f"cannot use {exc}", symbol=s, reason=exc.reason)
                continue
            except NotAPriceTable as exc:
                out.errors[s] = UpstreamUnavailable(f"cannot use {path}: {exc.why}", symbol=s,
                                                    reason="unreadable")
                continue
            except (OSError, ValueError) as exc:
                out.errors[s] = UpstreamUnavailable(f"cannot read {path}: {_one_line(exc)}",
                                                    symbol=s, reason="unreadable")
                continue
            if not len(bars):
                out.errors[s] = NotFound(f"{path} has no bars ({_dropped(report)})", symbol=s)
            else:
                out.bars[s] = bars
                out.readings[s] = report
        return out


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _dropped(report: dict[str, Any]) -> str:
    """``4 rows, dropped: 3 no close, 1 truncated`` for a file that gave no bars."""
    dropped = ", ".join(f"{n} {why}" for why, n in report["dropped"].items() if n)
    return f"{report['rows']} rows" + (f", dropped: {dropped}" if dropped else "")


def parse_csv(path: Path, limit: int = MAX_CSV_BYTES) -> Bars:
    """The bars of one CSV file, without the report (:func:`trading.market.reading.read_csv`
    has both, and says what it raises)."""
    return read_csv(path, limit)[0]


# -- sample ----------------------------------------------------------------------------------
EPOCH = dt.date(2015, 1, 2)
MAX_SESSIONS = 8192  # about 32 years of sessions from the epoch


class SampleSource(Source):
    """Synthetic daily bars, the same for a symbol on every machine; see the module docstring."""

    name = "sample"

    def __init__(self, clock: Callable[[], dt.datetime] = asx.now) -> None:
        self.clock = clock
        self._sessions: tuple[dt.date, list[str]] | None = None
        self._lock = threading.Lock()

    def sessions(self, end: dt.date) -> list[str]:
        with self._lock:
            if self._sessions is None or self._sessions[0] != end:
                self._sessions = (end, [d.isoformat() for d in asx.sessions_between(EPOCH, end)])
            return self._sessions[1]

    def fetch(self, symbols: list[str], start: dt.date, end: dt.date) -> Fetched:
        end = min(end, asx.last_closed_session(self.clock()))
        dates = self.sessions(end)
        first = next((i for i, d in enumerate(dates) if d >= start.isoformat()), len(dates))
        out = Fetched()
        for s in symbols:
            out.bars[s] = synthetic(s, dates)[first:]
        return out


def synthetic(symbol: str, dates: list[str]) -> Bars:
    """A random walk with changing drift and volatility regimes, seeded from ``symbol``."""
    import hashlib

    import numpy as np

    seed = int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    n = len(dates)
    if n > MAX_SESSIONS:
        raise ValueError(f"sample data ends after {MAX_SESSIONS} sessions from {EPOCH}")
    # Draw for a fixed length and cut, so a date's bar is the same whatever the end date.
    n_out, n = n, MAX_SESSIONS
    index = is_index(symbol)
    base = rng.uniform(6000, 9000) if index else float(np.exp(rng.uniform(np.log(2), np.log(200))))
    # Regimes of 20-60 sessions, each with its own drift and volatility, so RSI and MACD swing
    # through their whole range instead of hovering at neutral.
    cuts = np.cumsum(rng.integers(20, 60, size=n // 20 + 2))
    regime = np.searchsorted(cuts, np.arange(n), side="right")
    drift = rng.normal(0.0, 0.0025 if not index else 0.0012, size=len(cuts) + 1)[regime]
    vol = rng.uniform(0.008, 0.024 if not index else 0.012, size=len(cuts) + 1)[regime]
    r = drift + vol * rng.standard_normal(n)
    close = base * np.exp(np.cumsum(r))
    gap = np.exp(vol * 0.3 * rng.standard_normal(n))
    open_ = np.concatenate(([base], close[:-1])) * gap
    high = np.maximum(open_, close) * np.exp(np.abs(vol * 0.5 * rng.standard_normal(n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(vol * 0.5 * rng.standard_normal(n)))
    base_volume = rng.uniform(2e5, 8e6) if not index else rng.uniform(4e5, 9e5)
    volume = np.round(base_volume * np.exp(0.3 * rng.standard_normal(n) + 12.0 * np.abs(r)))
    k = n_out
    return Bars(dates, open_[:k], high[:k], low[:k], close[:k], volume[:k])


# -- choosing ---------------------------------------------------------------------------------
def resolve(spec: str, cache_dir: Path) -> Source:
    """``"yahoo"``, ``"sample"`` or ``"csv:DIR"`` (DIR must be an existing directory).

    ``spec`` is a string: its type and length are the one rule of
    :func:`trading.handlers.params.source`, which every service applies first."""
    if spec == "yahoo":
        return YahooSource(cache_dir)
    if spec == "sample":
        return SampleSource()
    shown = spec if len(spec) <= 100 else spec[:100] + "..."  # echoed and logged: keep short
    if spec.startswith("csv:"):
        directory = Path(spec[4:]).expanduser()
        try:
            usable = directory.is_absolute() and directory.is_dir()
        except (OSError, ValueError) as exc:  # a name too long, a NUL, a loop of links
            raise InvalidParams(f"source {shown!r}: csv:DIR needs an existing absolute "
                                f"directory ({exc.__class__.__name__})", source=shown) from exc
        if not usable:
            raise InvalidParams(f"source {shown!r}: csv:DIR needs an existing absolute directory",
                                source=shown)
        return CsvSource(directory.resolve())
    raise InvalidParams(f"unknown source {shown!r}; use yahoo, sample or csv:DIR", source=shown)
