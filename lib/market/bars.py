"""The bar cache: daily and intraday bars in the shared SQLite store, refreshed from a source
as the market moves, served stale (and said so) when the source fails.

Tables (migration 0002): ``bars`` (one row per source, symbol, interval, session, with
``final`` and ``fetched_at``), ``bar_series`` (per series: when fetched, fresh until when, a
precomputed summary, and for a local file what its reader decided: migration 0010's
``reading``) and ``upstream`` (last outcome per source, and its backoff; kept by
:class:`trading.market.breaker.UpstreamState` under the ``bars`` feed).

The module is long because it is one policy over the same two tables: refreshing, the
bound on their size (eviction) and the bypass while the store is unusable all decide
together what a request is served, and splitting them would split that decision.

Why the summary is stored: a cold process answering from a warm cache reads one row per symbol
and compares two numbers; it needs neither numpy nor the holiday calendar (both are paid only
on the refresh path, which computes ``fresh_until`` and the summary once per fetch).

Refresh rules:

- A series is fetched when it is missing, when it does not reach back far enough, or when
  ``now >= fresh_until`` (:func:`trading.market.summary.fresh_until`: minutes during a session, until
  the next session after the close).
- All symbols that need it go to the source in **one** call per :data:`REFRESH_CHUNK` (100)
  symbols (a call's bars live until written: chunks bound the memory). A series already
  cached asks only for its last :data:`TAIL_DAYS` (Yahoo corrects recent bars late); when that tail disagrees
  with the cache on its oldest bar, the history was re-adjusted (a dividend), and the series is
  fetched whole again.
- A failed call leaves the cache as it is; the caller serves it flagged ``stale``. A rate
  limit sets a backoff, any other failure of the source (unreachable, a source bug) a short
  pause, by the policy of :mod:`trading.market.breaker` (the same for news), stored in the
  ``upstream`` table, so a freshly started process honours it too and does not ask.
- The cache is bounded, per **budget**: ``yahoo`` has one, ``sample`` one, and every local
  folder (``csv:DIR``, whatever DIR) shares a single one, so a trader's N folders, or N
  folders of symlinks to the same files, cannot multiply it (issue 26: three folders of
  symlinks had added 64 MB). A budget holds at most ``max_series`` series (the
  ``cache.max_series`` setting) and ``max_bars`` bars (``cache.max_bars``): a local file
  is read whole, and one series can be a million rows, so counting series alone bounded
  nothing. After a refresh writes, the least recently used series of its budget are deleted
  until both hold (migration 0007's ``last_used``, refreshed at most every :data:`TOUCH_S`
  when a request needs the series); the series the request itself asked for are never
  evicted by it, so a budget can exceed its bounds by one request's own series. Bars are
  re-fetchable, so an evicted series is fetched again when next asked for; nothing else in
  the store (predictions, models, news) is touched.
- Space comes back: an eviction that left more than
  :data:`~trading.runtime.store.RECLAIM_BYTES` free in the file gives it back to the
  filesystem (:meth:`~trading.runtime.store.Store.reclaim`). That happens on the refresh path
  only, after the source was read and the bars written, never on a read from a fresh cache.
- **Intraday series** (``interval`` ``1h``, ``30m``, ``15m``; which bars exist and when
  each is complete: :mod:`trading.market.intraday`) are kept per symbol and interval in the
  same tables, a bar keyed by its start (``2024-04-05T10:00:00+11:00``) and ``final`` 0
  while it is in progress. Fresh for :data:`~trading.market.intraday.LIVE_TTL` in a session
  (never past its next bar's completion), until the next open after it; a refresh asks only
  for the bars after the last complete one (intraday bars are as traded, so there is no
  re-adjustment to detect); the stored summary is computed over the last
  :data:`SUMMARY_BARS` complete bars, never the bar in progress. From Yahoo, a start further
  back than it keeps the interval is refused before it is asked
  (:func:`trading.market.intraday.check_reach`), as is any intraday interval from a source
  without them (``sample``). A budget counts the series of every interval.
- A symbol the source answered "no data" for (a typo, a delisted code, a missing CSV file) is
  that symbol's problem, not the source's: only that symbol is left alone for
  :data:`~trading.market.breaker.PAUSE_S` (in this process), so one bad symbol never blocks the
  others.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict
TYPE_CHECKING = False  # typing costs ~2 ms of a cold health_check; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

from trading import clock as _clock
from trading import log
from trading.errors import (InvalidParams, NotFound, RPCError, StoreUnavailable,
                            UpstreamUnavailable)
from trading.market.breaker import PAUSE_S, UpstreamState
from trading.runtime.store import Store

logger = log.getLogger(__name__)

INTERVAL = "1d"
SUMMARY_VERSION = 2  # 2: volume from completed sessions (volume_through)
TAIL_DAYS = 10               # calendar days re-fetched for late corrections (~a week of sessions)
SUMMARY_DAYS = 731           # history the stored summary is computed on
SUMMARY_BARS = 400           # complete intraday bars the stored summary of one is computed on
CONTEXT_CLOSES = 40          # closes kept in the summary for the index trend
ADJUSTED_TOLERANCE = 1e-3    # relative close difference that means "history was re-adjusted"
BYPASS_SERIES = 64           # series kept in memory while the store is unusable
REFRESH_CHUNK = 100  # symbols per upstream call and write, to bound a refresh's memory
MAX_SERIES = 500             # series kept per budget (the cache.max_series setting)
MAX_BARS = 1_000_000         # bars kept per budget (cache.max_bars): 100-200 MB of store
LOCAL = "csv:"               # every source named so counts against one budget
TOUCH_S = 3600.0             # a series' last_used is written at most this often


class Entry:
    """One cached series, as ``bar_series`` has it (read-only by convention).

    A plain class, not a dataclass: building a dataclass costs milliseconds at import, paid on
    every cold start."""

    __slots__ = ("source", "symbol", "start", "first_session", "last_session", "bars",
                 "fetched_at", "fresh_until", "summary", "reading", "interval")

    def __init__(self, source: str, symbol: str, start: str, first_session: str | None,
                 last_session: str | None, bars: int, fetched_at: float, fresh_until: float,
                 summary: dict[str, Any], reading: dict[str, Any] | None = None,
                 interval: str = INTERVAL) -> None:
        self.source, self.symbol, self.start = source, symbol, start
        self.first_session, self.last_session, self.bars = first_session, last_session, bars
        self.fetched_at, self.fresh_until, self.summary = fetched_at, fresh_until, summary
        self.reading = reading  # a local file's reader report (trading.market.reading)
        # 1d, or an intraday interval: then the sessions are bar stamps
        # (2024-04-05T10:00:00+11:00) and the summary counts completed bars only.
        self.interval = interval

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def stale(self, now: float) -> bool:
        return now >= self.fresh_until

    @property
    def summary_ok(self) -> bool:
        return self.summary.get("v") == SUMMARY_VERSION


def _sydney():
    """The exchange's time zone: the calendar (zoneinfo, ~3 ms) is imported on first use, not
    by a health_check that only counts the cache."""
    from trading.market import asx

    return asx.TZ


def today(now: float) -> dt.date:
    return dt.datetime.fromtimestamp(now, _sydney()).date()


class BarCache:
    """Bars for many sources in one store; safe to use from the runtime's worker threads."""

    def __init__(self, store: Store, clock: Callable[[], float] = _clock.time, *,
                 max_series: int = MAX_SERIES, max_bars: int = MAX_BARS) -> None:
        self.store = store
        self.clock = clock
        self.max_series = max_series
        self.max_bars = max_bars
        # Keyed by (source, symbol, interval), as the tables are.
        self._memo: dict[tuple[str, str, str], Entry] = {}
        self._touched: dict[tuple[str, str, str], float] = {}  # when last_used was written
        self._lock = threading.Lock()
        # One upstream call at a time per source and process: a csv folder never waits
        # behind Yahoo, nor Yahoo behind a slow disk (one lock per source name).
        self._fetch_locks: dict[str, threading.Lock] = {}
        self._absent: dict[tuple[str, str, str], tuple[float, RPCError]] = {}  # (until, error)
        self.upstream = UpstreamState(store, "bars")
        # Series served while the store is unusable, most recent last (see _bypass).
        self._bypassed: OrderedDict[tuple[str, str, str], Any] = OrderedDict()

    # -- reading -----------------------------------------------------------------------------
    def _load(self, source: str, symbols: list[str], *, db: bool = False,
              interval: str = INTERVAL) -> dict[str, Entry]:
        found: dict[str, Entry] = {}
        missing = []
        with self._lock:
            for s in symbols:
                e = None if db else self._memo.get((source, s, interval))
                if e is None:
                    missing.append(s)
                else:
                    found[s] = e
        if missing:
            marks = ",".join("?" * len(missing))
            rows = self.store.query(
                f"SELECT * FROM bar_series WHERE source = ? AND interval = ? AND symbol IN ({marks})",
                (source, interval, *missing))
            with self._lock:
                for r in rows:
                    e = _entry(r)
                    self._memo[(source, e.symbol, interval)] = e
                    found[e.symbol] = e
        return found

    def bars(self, source: str, symbol: str, since: str | None = None,
             interval: str = INTERVAL):
        """The cached bars of one series (a :class:`trading.market.summary.Bars`): daily, or
        of an intraday ``interval`` keyed by their stamps (``since``: a date or a stamp)."""
        return self._read(source, symbol, since, interval, False)[0]

    def bars_final(self, source: str, symbol: str, since: str | None = None,
                   interval: str = INTERVAL):
        """:meth:`bars` and, per bar, whether it is complete (False for the bar in progress:
        the day still trading, the hour not yet over in the delayed feed)."""
        return self._read(source, symbol, since, interval, True)

    def _read(self, source: str, symbol: str, since: str | None, interval: str,
              with_final: bool):
        from trading.market.summary import Bars

        try:
            rows = self._bars_rows(source, symbol, since, interval, with_final)
        except StoreUnavailable:
            with self._lock:
                bars = self._bypassed.get((source, symbol, interval))
            if bars is None:
                raise
            keep = [i for i, d in enumerate(bars.dates) if d >= (since or "")]
            bars = bars[keep[0]:] if keep else Bars.empty()
            return bars, (_finals(bars.dates, interval, self.clock()) if with_final else None)
        if not with_final:
            return Bars.from_rows([tuple(r) for r in rows]), None
        return Bars.from_rows([tuple(r)[:6] for r in rows]), [bool(r[6]) for r in rows]

    def _bars_rows(self, source: str, symbol: str, since: str | None, interval: str = INTERVAL,
                   with_final: bool = False):
        return self.store.query(
            "SELECT session, open, high, low, close, volume" + (", final" if with_final else "")
            + " FROM bars WHERE source = ? AND symbol = ? AND interval = ? AND session >= ? "
            "ORDER BY session", (source, symbol, interval, since or ""))

    # -- refreshing --------------------------------------------------------------------------
    def ensure(self, source, symbols: list[str], start: dt.date, interval: str = INTERVAL
               ) -> tuple[dict[str, Entry], dict[str, RPCError]]:
        """Entries for ``symbols`` reaching back to ``start``, refreshed from ``source`` where
        needed (one call per 100 symbols). Errors are per symbol; a symbol with an error may still have an
        (old) entry, which the caller serves as stale.

        ``interval``: ``1d``, or an intraday one (``1h``, ``30m``, ``15m``) for a source
        that has them; from Yahoo, only as far back as it keeps them
        (:func:`trading.market.intraday.check_reach`: InvalidParams, before anything is
        asked). A cached intraday series asks only for the bars after its last complete one.

        When the store itself fails (corrupt, read-only, disk full) the bars are re-fetchable:
        they are served straight from the source, kept in memory only (:meth:`_bypass`),
        rather than failing the command."""
        if interval != INTERVAL:
            _check_intraday(source, interval, start, today(self.clock()))
        try:
            return self._ensure(source, symbols, start, interval)
        except StoreUnavailable as exc:
            logger.warning("%s: the bar cache is unusable (%s); serving from the source",
                           source.name, exc.data.get("cause"))
            return self._bypass(source, symbols, start, interval)

    def _bypass(self, source, symbols: list[str], start: dt.date, interval: str = INTERVAL
                ) -> tuple[dict[str, Entry], dict[str, RPCError]]:
        from trading.market import summary as market

        now = self.clock()
        try:
            with self._fetch_lock(source.name):
                fetched = _fetch(source, symbols, start, now, interval)
        except RPCError as exc:
            return {}, {s: exc for s in symbols}
        entries = {}
        with self._lock:
            for s, bars in fetched.bars.items():
                if not len(bars):
                    continue
                self._bypassed[(source.name, s, interval)] = bars
                self._bypassed.move_to_end((source.name, s, interval))
                at = dt.datetime.fromtimestamp(now, _sydney())
                if interval == INTERVAL:
                    live = not market.is_final(dt.date.fromisoformat(bars.dates[-1]), at)
                    fresh = market.fresh_until(at, bars.dates[-1]).timestamp()
                    summary = build_summary(bars, live)
                else:
                    fresh = _intraday().fresh_until(at, interval, bars.dates[-1]).timestamp()
                    summary = _completed_summary(bars, _finals(bars.dates, interval, now))
                entries[s] = Entry(source.name, s, start.isoformat(), bars.dates[0],
                                   bars.dates[-1], len(bars), now, fresh,
                                   summary, fetched.readings.get(s), interval)
            while len(self._bypassed) > BYPASS_SERIES:
                self._bypassed.popitem(last=False)
        return entries, dict(fetched.errors)

    def _ensure(self, source, symbols: list[str], start: dt.date, interval: str = INTERVAL
                ) -> tuple[dict[str, Entry], dict[str, RPCError]]:
        now = self.clock()
        entries = self._load(source.name, symbols, interval=interval)
        need = self._needing(entries, symbols, start, now)
        errors: dict[str, RPCError] = {}
        need = self._not_absent(source.name, need, errors, now, interval)
        evicted = 0
        if need:
            with self._fetch_lock(source.name):
                # Another thread may have refreshed (or found nothing) while this one waited.
                entries.update(self._load(source.name, need, db=True, interval=interval))
                now = self.clock()
                need = self._not_absent(source.name, self._needing(entries, need, start, now),
                                        errors, now, interval)
                # In chunks: a fetch's bars, rows and summaries are all alive until it is
                # written, so one call for 1,000 new symbols peaked near MemoryMax=400M.
                for i in range(0, len(need), REFRESH_CHUNK):
                    chunk = need[i:i + REFRESH_CHUNK]
                    errors.update(self._refresh(source, chunk, entries, start, interval))
                if need:
                    entries.update(self._load(source.name, need, db=True, interval=interval))
                    evicted = self._evict(source.name, keep=symbols, interval=interval)
        if evicted:  # out of the fetch lock: the source's other requests need not wait
            self._reclaim()
        self._touch(source.name, [s for s in symbols if s in entries], now, interval)
        return entries, errors

    def _touch(self, source: str, symbols: list[str], now: float,
               interval: str = INTERVAL) -> None:
        """Record that a request needed these series (for eviction); at most every TOUCH_S
        per series, and never worth failing or delaying a read for."""
        with self._lock:
            due = [s for s in symbols
                   if now - self._touched.get((source, s, interval), 0.0) >= TOUCH_S]
            for s in due:
                self._touched[(source, s, interval)] = now
            if len(self._touched) > 4 * self.max_series:  # forget the oldest marks
                self._touched = {k: v for k, v in self._touched.items() if now - v < TOUCH_S}
        if not due:
            return
        marks = ",".join("?" * len(due))
        try:
            with self.store.transaction() as db:
                db.execute(f"UPDATE bar_series SET last_used = ? WHERE source = ? AND "
                           f"interval = ? AND symbol IN ({marks})", (now, source, interval, *due))
        except RPCError as exc:  # busy or unusable: eviction order is a hint, not data
            logger.debug("could not record the use of %d series: %s", len(due), exc.message)

    def _evict(self, source: str, keep: list[str], interval: str = INTERVAL) -> int:
        """Delete the least recently used series of ``source``'s budget while it holds more
        than ``max_series`` series or ``max_bars`` bars, never one of ``keep`` (the
        request's own, of ``source`` and ``interval``); returns the bars deleted. A budget
        counts the series of every interval: an hourly series is a series, and its bars
        are bars."""
        where, args = _budget(source)
        count, total = self.store.query(
            f"SELECT count(*), coalesce(sum(bars), 0) FROM bar_series WHERE {where}", args)[0]
        if count <= self.max_series and total <= self.max_bars:
            return 0  # the common case takes no write lock
        kept = set(keep)
        victims: list[tuple[str, str, str]] = []
        deleted = 0
        with self.store.transaction() as db:
            # Counted again under the lock: another process may have written or evicted.
            rows = db.execute(f"SELECT source, symbol, interval, bars FROM bar_series WHERE "
                              f"{where} ORDER BY last_used, fetched_at", args).fetchall()
            count, total = len(rows), sum(r[3] for r in rows)
            for src, symbol, iv, n in rows:
                if count <= self.max_series and total <= self.max_bars:
                    break
                if src == source and iv == interval and symbol in kept:
                    continue
                db.execute("DELETE FROM bars WHERE source = ? AND symbol = ? AND interval = ?",
                           (src, symbol, iv))
                db.execute("DELETE FROM bar_series WHERE source = ? AND symbol = ? AND "
                           "interval = ?", (src, symbol, iv))
                victims.append((src, symbol, iv))
                count, total, deleted = count - 1, total - n, deleted + n
        with self._lock:
            for key in victims:
                self._memo.pop(key, None)
        if victims:
            logger.info("%s: evicted %d least recently used series (%d bars; the budget is "
                        "%d series, %d bars)", _budget_name(source), len(victims), deleted,
                        self.max_series, self.max_bars)
        return deleted

    def _reclaim(self) -> None:
        """Give the space an eviction freed back to the filesystem; maintenance, so a busy or
        failing store only leaves the file as large as it was."""
        try:
            freed = self.store.reclaim()
        except RPCError as exc:
            logger.warning("could not give the store's free space back: %s", exc.message)
            return
        if freed:
            logger.info("the store gave %.1f MB back to the filesystem", freed / 1e6)

    def _fetch_lock(self, source: str) -> threading.Lock:
        with self._lock:
            return self._fetch_locks.setdefault(source, threading.Lock())

    def _not_absent(self, source: str, symbols: list[str], errors: dict[str, RPCError],
                    now: float, interval: str = INTERVAL) -> list[str]:
        """``symbols`` less those the source had no data for moments ago (their error goes
        to ``errors``)."""
        keep = []
        with self._lock:
            for s in symbols:
                until, err = self._absent.get((source, s, interval), (0.0, None))
                if err is not None and now < until:
                    errors[s] = err
                else:
                    keep.append(s)
        return keep

    @staticmethod
    def _needing(entries: dict[str, Entry], symbols: list[str], start: dt.date,
                 now: float) -> list[str]:
        iso = start.isoformat()
        return [s for s in symbols
                if s not in entries or entries[s].stale(now) or entries[s].start > iso
                or not entries[s].summary_ok or _unread(entries[s])]

    def _refresh(self, source, need: list[str], entries: dict[str, Entry],
                 start: dt.date, interval: str = INTERVAL) -> dict[str, RPCError]:
        now = self.clock()
        name = source.name
        refused = self.upstream.refusal(name, now)
        if refused is not None:
            return {s: refused for s in need}
        # Series already cached and reaching back far enough only ask for their tail.
        full = [s for s in need if s not in entries or entries[s].start > start.isoformat()]
        if interval != INTERVAL:
            # Intraday bars are as traded (Yahoo adjusts none): no re-adjusted history to
            # detect, so only the bars after the last complete one are asked for.
            fetch_start = _moment(start) if full else min(
                self._resume_at(name, s, interval, start) for s in need)
        else:
            fetch_start = start if full else min(
                dt.date.fromisoformat(entries[s].last_session or start.isoformat())
                for s in need) - dt.timedelta(days=TAIL_DAYS)
        end = today(now)
        try:
            fetched = _fetch(source, need, fetch_start, now, interval)
        except UpstreamUnavailable as exc:
            self.upstream.record(name, exc.data.get("reason", "error"), exc.message, now)
            logger.warning("%s: fetch of %d symbols failed: %s", name, len(need), exc.message)
            return {s: exc for s in need}
        except Exception as exc:  # a source bug must not become an unhandled error on the wire
            logger.exception("%s: fetch failed", name)
            self.upstream.record(name, "error", f"{type(exc).__name__}: {exc}", now)
            err = UpstreamUnavailable(f"{name} failed: {type(exc).__name__}: {exc}",
                                      reason="error")
            return {s: err for s in need}
        # Nothing at all for any symbol is reported as "empty", not "ok" (but pauses nothing:
        # sources raise for their own failures; "no data" is about the symbols asked for).
        self.upstream.record(name, "ok" if fetched.bars else "empty",
                             f"{len(fetched.bars)} of {len(need)} symbols", now)
        errors: dict[str, RPCError] = dict(fetched.errors)
        with self._lock:
            # Forget expired ones first: a long-lived process asked for many bad symbols
            # must not keep them all.
            self._absent = {k: v for k, v in self._absent.items() if v[0] > now}
            for s, err in fetched.errors.items():
                if isinstance(err, NotFound):
                    self._absent[(name, s, interval)] = (now + PAUSE_S, err)
        rebase = []
        for s, bars in fetched.bars.items():
            if interval == INTERVAL and s in entries and s not in full \
                    and self._readjusted(name, s, bars):
                rebase.append(s)
                continue
            series_start = min(start.isoformat(), entries[s].start) if s in entries \
                else start.isoformat()
            self._write(name, s, bars, series_start, now, reading=fetched.readings.get(s),
                        interval=interval)
        if rebase:
            logger.info("%s: history re-adjusted for %s; fetching it whole", name, rebase)
            try:
                again = source.fetch(rebase, start, end)
            except Exception as exc:
                err = exc if isinstance(exc, RPCError) else UpstreamUnavailable(
                    f"{name} failed: {exc}", reason="error")
                errors.update({s: err for s in rebase})
            else:
                errors.update(again.errors)
                for s, bars in again.bars.items():
                    self._write(name, s, bars, min(start.isoformat(), entries[s].start), now,
                                replace=True, reading=again.readings.get(s))
        return errors

    def _resume_at(self, source: str, symbol: str, interval: str, start: dt.date
                   ) -> dt.datetime:
        """Where an intraday refresh of a cached series starts: the end of its last
        complete bar (the bars after it are the ones it lacks, the bar in progress among
        them); ``start`` when it has none."""
        rows = self.store.query(
            "SELECT max(session) FROM bars WHERE source = ? AND symbol = ? AND interval = ? "
            "AND final = 1", (source, symbol, interval))
        last = rows[0][0] if rows else None
        return _moment(start) if last is None else _intraday().bar_end(last, interval)

    def _readjusted(self, source: str, symbol: str, bars) -> bool:
        first = bars.dates[0]
        rows = self.store.query(
            "SELECT close FROM bars WHERE source = ? AND symbol = ? AND interval = ? AND session = ?",
            (source, symbol, INTERVAL, first))
        if not rows:
            return False
        old, new = rows[0][0], float(bars.close[0])
        return abs(new - old) > ADJUSTED_TOLERANCE * abs(old)

    def _write(self, source: str, symbol: str, bars, series_start: str, now: float, *,
               replace: bool = False, reading: dict[str, Any] | None = None,
               interval: str = INTERVAL) -> None:
        if interval != INTERVAL:
            return self._write_intraday(source, symbol, bars, series_start, now,
                                        reading=reading, interval=interval)
        from trading.market import summary as market

        fetched = dt.datetime.fromtimestamp(now, _sydney())
        # Only the newest bars can be unsettled; everything before the last settled session is
        # final, so a file of decades costs no calendar walk per bar.
        settled = market.is_final(dt.date.fromisoformat(bars.dates[-1]), fetched) \
            if len(bars) else True

        def rows():  # a generator: a long series is not also held as a list of tuples
            # Straight from the arrays: .tolist() would add 32 bytes a value for the whole
            # series (70 MB for the 430,000 bars of a 19 MiB daily file).
            for d, o, h, lo, c, v in zip(bars.dates, bars.open, bars.high, bars.low,
                                         bars.close, bars.volume):
                final = settled or market.is_final(dt.date.fromisoformat(d), fetched)
                yield (source, symbol, INTERVAL, d, _f(o), _f(h), _f(lo), _f(c), _f(v),
                       int(final), now)

        with self.store.transaction() as db:
            if replace:
                db.execute("DELETE FROM bars WHERE source = ? AND symbol = ? AND interval = ?",
                           (source, symbol, INTERVAL))
            db.executemany("INSERT OR REPLACE INTO bars VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows())
            last = db.execute("SELECT max(session), min(session), count(*) FROM bars WHERE "
                              "source = ? AND symbol = ? AND interval = ?",
                              (source, symbol, INTERVAL)).fetchone()
            since = (dt.date.fromisoformat(last[0]) - dt.timedelta(days=SUMMARY_DAYS)).isoformat()
            hist = db.execute(
                "SELECT session, open, high, low, close, volume, final FROM bars WHERE "
                "source = ? AND symbol = ? AND interval = ? AND session >= ? ORDER BY session",
                (source, symbol, INTERVAL, since)).fetchall()
            summary = build_summary(market.Bars.from_rows([tuple(r)[:6] for r in hist]),
                                    live=bool(hist) and not hist[-1][6])
            fresh = market.fresh_until(fetched, last[0]).timestamp()
            db.execute("INSERT OR REPLACE INTO bar_series (source, symbol, interval, start, "
                       "first_session, last_session, bars, fetched_at, fresh_until, summary, "
                       "last_used, reading) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (source, symbol, INTERVAL, series_start, last[1], last[0], last[2], now,
                        fresh, _dumps(summary), now,
                        None if reading is None else json.dumps(reading)))
        with self._lock:
            self._memo.pop((source, symbol, INTERVAL), None)
            self._touched[(source, symbol, INTERVAL)] = now  # written with last_used = now

    def _write_intraday(self, source: str, symbol: str, bars, series_start: str, now: float,
                        *, reading: dict[str, Any] | None, interval: str) -> None:
        """:meth:`_write` for intraday bars: each bar's ``final`` from
        :func:`trading.market.intraday.is_final`; the summary from the last
        :data:`SUMMARY_BARS` complete bars only (the bar in progress is stored and served,
        never summarised); fresh by :func:`trading.market.intraday.fresh_until`."""
        fetched = dt.datetime.fromtimestamp(now, _sydney())
        finals = _finals(bars.dates, interval, now)

        def rows():
            for d, o, h, lo, c, v, final in zip(bars.dates, bars.open, bars.high, bars.low,
                                                bars.close, bars.volume, finals):
                yield (source, symbol, interval, d, _f(o), _f(h), _f(lo), _f(c), _f(v),
                       int(final), now)

        with self.store.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO bars VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows())
            last = db.execute("SELECT max(session), min(session), count(*) FROM bars WHERE "
                              "source = ? AND symbol = ? AND interval = ?",
                              (source, symbol, interval)).fetchone()
            hist = db.execute(
                "SELECT session, open, high, low, close, volume FROM bars WHERE source = ? AND "
                "symbol = ? AND interval = ? AND final = 1 ORDER BY session DESC LIMIT ?",
                (source, symbol, interval, SUMMARY_BARS)).fetchall()
            from trading.market.summary import Bars

            summary = build_summary(Bars.from_rows([tuple(r) for r in reversed(hist)]))
            fresh = _intraday().fresh_until(fetched, interval, last[0]).timestamp()
            db.execute("INSERT OR REPLACE INTO bar_series (source, symbol, interval, start, "
                       "first_session, last_session, bars, fetched_at, fresh_until, summary, "
                       "last_used, reading) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                       (source, symbol, interval, series_start, last[1], last[0], last[2], now,
                        fresh, _dumps(summary), now,
                        None if reading is None else json.dumps(reading)))
        with self._lock:
            self._memo.pop((source, symbol, interval), None)
            self._touched[(source, symbol, interval)] = now

    def last_outcome(self) -> dict[str, Any] | None:
        """The most recent upstream call of any bar source (this process or an earlier one)."""
        return self.upstream.last()

    def size(self) -> dict[str, int]:
        r = self.store.query("SELECT count(*), count(DISTINCT source || ' ' || symbol) FROM bars")[0]
        return {"bars": r[0], "series": r[1], "store_bytes": self.store.size_bytes()}


def build_summary(bars, live: bool = False) -> dict[str, Any]:
    """What ``bar_series.summary`` holds: the technical and volume summaries of the series,
    and its last closes (enough to place an index in its market context). ``live``: the last
    bar is not final (its volume is left out of the volume measures)."""
    from trading.market import summary as market

    return {
        "v": SUMMARY_VERSION,
        "as_of": bars.dates[-1] if len(bars) else None,
        "technical": market.technical_summary(bars),
        "volume": market.volume_summary(bars, live),
        "closes": [float(c) for c in bars.close[-CONTEXT_CLOSES:]],
    }


def _budget(source: str) -> tuple[str, tuple[str, ...]]:
    """The ``bar_series`` rows that share ``source``'s budget, as a WHERE clause and its
    arguments: every ``csv:`` source (a range, so the ``last_used`` index still serves), or
    the source alone."""
    if source.startswith(LOCAL):
        return "source >= ? AND source < ?", (LOCAL, LOCAL[:-1] + chr(ord(LOCAL[-1]) + 1))
    return "source = ?", (source,)


def _budget_name(source: str) -> str:
    return "local folders (csv:)" if source.startswith(LOCAL) else source


def _unread(e: Entry) -> bool:
    """A local file's series cached before its reader's report was kept (migration 0010):
    read it again, so the report is there to show."""
    return e.reading is None and e.source.startswith("csv:")


def _entry(r) -> Entry:
    try:
        summary = json.loads(r["summary"]) if r["summary"] else {}
    except ValueError:
        summary = {}
    try:
        reading = json.loads(r["reading"]) if r["reading"] else None
    except ValueError:
        reading = None
    return Entry(r["source"], r["symbol"], r["start"], r["first_session"], r["last_session"],
                 r["bars"], r["fetched_at"], r["fresh_until"], summary, reading, r["interval"])


def _f(x) -> float | None:
    x = float(x)
    return x if x == x else None


def _dumps(summary: dict[str, Any]) -> str:
    return json.dumps(summary)


# -- intraday ------------------------------------------------------------------------------------
def _intraday():
    from trading.market import intraday

    return intraday


def _moment(day: dt.date) -> dt.datetime:
    """The first moment of ``day`` in Sydney (where an intraday fetch from a date starts)."""
    return dt.datetime.combine(day, dt.time(0, 0), _sydney())


def _check_intraday(source, interval: str, start: dt.date, on: dt.date) -> None:
    """InvalidParams (one line) for an intraday interval the source has none of, or that
    reaches back further than Yahoo keeps it."""
    intraday = _intraday()
    if interval not in intraday.INTERVALS:
        raise InvalidParams(f"interval {interval!r} not supported; use 1d, "
                            f"{', '.join(intraday.INTERVALS)}")
    if not hasattr(source, "fetch_intraday"):
        raise InvalidParams(f"source {source.name} has daily bars only; intraday bars "
                            f"({interval}) come from yahoo or csv:DIR", source=source.name)
    from trading.market.yahoo import BARS

    if source.name == BARS:
        intraday.check_reach(interval, start, on)


def _fetch(source, symbols: list[str], start, now: float, interval: str):
    """One call to the source: daily bars from the date ``start`` to today, or intraday
    bars from the moment ``start`` to now."""
    if interval == INTERVAL:
        return source.fetch(symbols, start, today(now))
    if not isinstance(start, dt.datetime):
        start = _moment(start)
    return source.fetch_intraday(symbols, start, dt.datetime.fromtimestamp(now, _sydney()),
                                 interval)


def _finals(stamps: list[str], interval: str, now: float) -> list[bool]:
    """Per intraday bar, whether it was complete at ``now``."""
    at = dt.datetime.fromtimestamp(now, _sydney())
    if interval == INTERVAL:
        from trading.market import summary as market

        return [market.is_final(dt.date.fromisoformat(d), at) for d in stamps]
    is_final = _intraday().is_final
    return [is_final(d, interval, at) for d in stamps]


def _completed_summary(bars, finals: list[bool]) -> dict[str, Any]:
    """The summary of an intraday series over its complete bars only."""
    done = [i for i, f in enumerate(finals) if f][-SUMMARY_BARS:]
    if not done:
        from trading.market.summary import Bars

        return build_summary(Bars.empty())
    return build_summary(bars[done[0]:done[-1] + 1])
