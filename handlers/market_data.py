"""The market-data service: prices, indicators and market context for ASX symbols.

Methods (every one takes ``source``: None for the configured one, ``"yahoo"``, ``"sample"``
or ``"csv:DIR"`` with an absolute DIR):

- ``get_market_data(symbol, interval)`` -> ``{symbol, interval, as_of, source, stale, age_s,
  days_behind, technical, volume, market_context, reading}``; the score ranges are documented in
  :mod:`trading.market.summary`. ``as_of`` is the session date of the last bar; ``age_s`` the
  seconds since the series was fetched; ``days_behind`` the days from ``as_of`` to today in
  Sydney (a ``csv:`` folder that ends months ago is read fresh but is not current: the rules
  turn a last bar more than a week old into a HOLD); ``stale`` is true when the freshness
  rule says it should have been refreshed and the source could not be reached.
- ``bulk_fetch(symbols, interval)`` -> ``{results: {SYMBOL: ...}, errors: {AS_GIVEN: {code,
  message, problem}}, market_context, interval}``, one upstream call for the lot.
- ``interval`` (issue 29): ``1d`` (the default) summarises daily bars; ``1h``, ``30m`` or
  ``15m`` the **complete** bars of that interval over the window the old service used
  (:mod:`trading.market.intraday_summary`), the index's context from its bars of the same
  interval. ``as_of`` is then the stamp of the last complete bar, and ``in_progress`` the bar
  still trading (``{time, close, volume}``, used by no indicator; None when there is none).
- ``get_market_context()``, ``get_bars(symbol, interval, period)``, and ``health_check`` with
  the cache size and the last upstream call's outcome. ``get_bars`` serves daily (``1d``,
  the default), weekly (``1wk``) and intraday bars (``1h``, ``30m``, ``15m``: which bars exist
  is :mod:`trading.market.intraday`); an intraday row has its ``time`` (the bar's start,
  ``2024-04-05T10:00:00+11:00``) and ``final`` (false for the bar in progress, which no
  indicator uses).
- Every result for a ``csv:`` symbol carries ``reading``, the report of what the file's reader
  decided (rows dropped as not sessions, duplicates, a cut last line; zero-volume sessions,
  gaps, the adjustment; :mod:`trading.market.reading`); None for other sources.

Cold start stays cheap: this module imports no numpy, pandas or yfinance; a request answered
from a fresh cache reads stored summaries (see :mod:`trading.market.bars`).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

from trading.config import PREDICTOR_INTERVALS
from trading.errors import RPCError, UpstreamUnavailable
from trading.handlers import params
from trading.market.periods import PERIODS, SUMMARY_DAYS
from trading.market.symbols import normalize
from trading.runtime.protocol import rpc
from trading.runtime.service import Service

HEALTH_TTL = 2.0  # seconds a health_check's cache figures are reused

INTRADAY = ("1h", "30m", "15m")  # trading.market.intraday.INTERVALS (not imported: cold start)
INTERVALS = ("1d", "1wk", *INTRADAY)


class MarketData(Service):
    name = "market-data"

    def __init__(self, context=None) -> None:
        super().__init__(context)
        self._cache = None
        self._health_memo: tuple[float, dict[str, Any]] | None = None
        self._sources: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------
    @property
    def cache(self):
        store = self.store
        with self._lock:
            if self._cache is None:
                from trading.market.bars import BarCache

                self._cache = BarCache(store, max_series=self.config["cache.max_series"],
                                       max_bars=self.config["cache.max_bars"])
            return self._cache

    def source(self, spec: str | None = None):
        """The source for ``spec`` (None: the configured one); tests may put their own in
        ``self._sources``."""
        self._health_memo = None  # a fetch may follow: health_check reads the store again
        spec = params.source(spec)  # before the lookup: a list or dict is not even hashable
        spec = self.config["source"] if spec is None else spec
        with self._lock:
            src = self._sources.get(spec)
        if src is None:
            from trading.market.sources import resolve

            src = resolve(spec, self.config.cache_dir)
            with self._lock:
                src = self._sources.setdefault(spec, src)
        return src

    def _index(self) -> str:
        return normalize(self.config["context.index"])

    def _context(self, entries, now: float, src=None, as_of: str | None = None
                 ) -> dict[str, Any]:
        """The market context for a symbol whose last bar is ``as_of`` (None: the latest).

        The index trend ends at the symbol's own last session: a CSV folder whose index
        file runs on past a stock's, or a halted stock, must not be judged by a market that
        came later. An index that is behind the symbol, or was not refreshed (its source
        failed), gives its trend flagged ``fallback``, which the rules trust less."""
        from trading.market.summary import context_for_trend, trend_from_closes

        index = self._index()
        e = entries.get(index)
        closes = e.summary.get("closes", []) if e is not None else []
        index_as_of = e.summary.get("as_of") if e is not None else None
        sessions = self.config["context.sessions"]
        behind = False
        if e is not None and as_of and index_as_of and index_as_of != as_of:
            if index_as_of > as_of:
                since = (dt.date.fromisoformat(as_of) - dt.timedelta(days=3 * sessions + 30))
                bars = self.cache.bars(src.name, index, since=since.isoformat())
                closes = [float(c) for d, c in zip(bars.dates, bars.close) if d <= as_of]
            else:
                behind = True
        context = context_for_trend(trend_from_closes(closes, sessions), self.config)
        if e is not None and (behind or e.stale(now)) and not context["fallback"]:
            context["fallback"] = True
        return context

    def _gather(self, src, symbols: list[str], days: int = SUMMARY_DAYS):
        from trading.market.bars import today

        cache = self.cache
        start = today(cache.clock()) - dt.timedelta(days=days)
        entries, errors = cache.ensure(src, symbols, start)
        return entries, errors, cache.clock()

    @staticmethod
    def _result(e, src, context: dict[str, Any], now: float) -> dict[str, Any]:
        from trading.market.bars import today

        s = e.summary
        as_of = s.get("as_of")
        try:
            behind = (today(now) - dt.date.fromisoformat(as_of)).days if as_of else None
        except ValueError:
            behind = None
        return {
            "symbol": e.symbol,
            "interval": "1d",
            "as_of": as_of,
            "source": src.name,
            "stale": e.stale(now),
            "age_s": round(max(0.0, now - e.fetched_at), 3),
            "days_behind": behind,
            "technical": s.get("technical"),
            "volume": s.get("volume"),
            "market_context": context,
            "reading": e.reading,
        }

    # -- methods -------------------------------------------------------------------------
    @rpc
    def get_market_data(self, symbol: str, source: str | None = None,
                        interval: str = "1d") -> dict[str, Any]:
        """Price, indicators, volume and market context for one symbol, from daily bars
        (``interval`` 1d) or the complete bars of an intraday interval (1h, 30m, 15m)."""
        sym = params.symbol(symbol)
        params.choice("interval", interval, PREDICTOR_INTERVALS)
        src = self.source(source)
        if interval != "1d":
            results, errors, _ = self._intraday_market(src, [sym], interval)
            if sym not in results:
                raise errors.get(sym) or UpstreamUnavailable(
                    f"no {interval} bars for {sym}", symbol=sym)
            return results[sym]
        index = self._index()
        entries, errors, now = self._gather(src, [sym] if sym == index else [sym, index])
        e = entries.get(sym)
        if e is None or not e.summary_ok:
            raise errors.get(sym) or UpstreamUnavailable(f"no data for {sym}", symbol=sym)
        return self._result(e, src, self._context(entries, now, src, e.summary.get("as_of")),
                            now)

    @rpc
    def bulk_fetch(self, symbols: list[str], source: str | None = None,
                   interval: str = "1d") -> dict[str, Any]:
        """get_market_data for many symbols with one upstream fetch; errors per symbol."""
        given, errors = params.symbols(symbols)
        params.choice("interval", interval, PREDICTOR_INTERVALS)
        src = self.source(source)
        if not given:
            # Nothing valid to serve: nothing is fetched or stored for bad input, not even the
            # index (the context is the flagged NEUTRAL fallback).
            return {"results": {}, "errors": errors, "interval": interval,
                    "market_context": self._context({}, 0.0)}  # no entries: no clock needed
        if interval != "1d":
            results, failures, context = self._intraday_market(src, list(given), interval)
            for sym, raws in given.items():
                if sym not in results:
                    exc = failures.get(sym) or UpstreamUnavailable(
                        f"no {interval} bars for {sym}", symbol=sym)
                    for raw in raws:
                        errors[params.key(raw)] = exc.entry()
            return {"results": results, "errors": errors, "market_context": context,
                    "interval": interval}
        index = self._index()
        wanted = list(given) + ([index] if index not in given else [])
        entries, failures, now = self._gather(src, wanted)
        context = self._context(entries, now)
        latest = entries[index].summary.get("as_of") if index in entries else None
        by_as_of: dict[str | None, dict[str, Any]] = {latest: context}
        results = {}
        for sym, raws in given.items():
            e = entries.get(sym)
            if e is None or not e.summary_ok:
                exc = failures.get(sym) or UpstreamUnavailable(f"no data for {sym}", symbol=sym)
                for raw in raws:
                    errors[params.key(raw)] = exc.entry()
            else:
                as_of = e.summary.get("as_of")
                if as_of not in by_as_of:
                    by_as_of[as_of] = self._context(entries, now, src, as_of)
                results[sym] = self._result(e, src, by_as_of[as_of], now)
        return {"results": results, "errors": errors, "market_context": context,
                "interval": "1d"}

    def _intraday_market(self, src, symbols: list[str], interval: str
                         ) -> tuple[dict[str, Any], dict[str, RPCError], dict[str, Any]]:
        """get_market_data's answers at an intraday ``interval``, for many symbols: the bars
        ensured through the cache (one upstream call with the index; a cached series asks
        only for the bars after its last complete one), then each symbol summarised by
        :func:`trading.market.intraday_summary.summarize` over its **complete** bars of the
        last ``WINDOW_SESSIONS[interval]`` sessions, with the index's bars of the same
        interval and window for the context. Returns ``(results, errors, context)``, the
        context being the index's own latest (for the answer's ``market_context``)."""
        from trading.market import intraday_summary
        from trading.market.bars import today

        cache = self.cache
        index = self._index()
        sessions = intraday_summary.WINDOW_SESSIONS[interval]
        start = _sessions_back(today(cache.clock()), sessions)
        wanted = symbols + ([index] if index not in symbols else [])
        entries, errors = cache.ensure(src, wanted, start, interval)
        now = cache.clock()
        index_bars, _ = self._window(src, index, interval, sessions, entries.get(index))
        latest = intraday_summary.summarize(index, index_bars, index_bars, interval,
                                            self.config)["market_context"]
        results: dict[str, Any] = {}
        for sym in symbols:
            e = entries.get(sym)
            if e is None or not e.last_session:
                continue
            bars, in_progress = self._window(src, sym, interval, sessions, e)
            if not len(bars):
                errors.setdefault(sym, UpstreamUnavailable(
                    f"no complete {interval} bar for {sym} yet", symbol=sym))
                continue
            # The index up to the symbol's own last bar: a halted stock is not judged by a
            # market that came after it.
            upto = [i for i, d in enumerate(index_bars.dates) if d <= bars.dates[-1]]
            summary = intraday_summary.summarize(
                sym, bars, index_bars[:upto[-1] + 1] if upto else index_bars[:0], interval,
                self.config)
            context = summary["market_context"]
            if (e.stale(now) or (sym != index and index in entries
                                 and entries[index].stale(now))) and not context["fallback"]:
                context["fallback"] = True
            as_of = summary.get("as_of")
            try:
                behind = (today(now) - dt.date.fromisoformat(as_of[:10])).days
            except (TypeError, ValueError):
                behind = None
            results[sym] = {
                "symbol": sym, "interval": interval, "as_of": as_of, "source": src.name,
                "stale": e.stale(now), "age_s": round(max(0.0, now - e.fetched_at), 3),
                "days_behind": behind, "technical": summary.get("technical"),
                "volume": summary.get("volume"), "market_context": context,
                "in_progress": in_progress,
                "window": {"sessions": sessions, "bars": len(bars), "first": bars.dates[0],
                           "last": bars.dates[-1]},
                "reading": e.reading}
        return results, errors, latest

    def _window(self, src, sym: str, interval: str, sessions: int, e):
        """The complete bars of ``sym``'s last ``sessions`` sessions (a :class:`Bars`) and the
        bar in progress after them (``{time, close, volume}`` or None)."""
        from trading.market import intraday_summary
        from trading.market.summary import Bars

        if e is None or not e.last_session:
            return Bars.empty(), None
        last = dt.date.fromisoformat(e.last_session[:10])
        since = (last - dt.timedelta(days=3 * sessions + 14)).isoformat()
        bars, finals = self.cache.bars_final(src.name, sym, since, interval)
        done = [i for i, f in enumerate(finals) if f]
        # The bar in progress: the first not yet complete after the last complete one (a
        # local file read under a pinned clock has later ones too: not yet traded then).
        pending = [i for i, f in enumerate(finals) if not f and (not done or i > done[-1])]
        in_progress = None
        if pending:
            i = pending[0]
            in_progress = {"time": bars.dates[i], "close": _plain(bars.close[i]),
                           "volume": _plain(bars.volume[i]), "final": False}
        if not done:
            return Bars.empty(), in_progress
        complete = Bars([bars.dates[i] for i in done],
                        *(getattr(bars, f)[done] for f in ("open", "high", "low", "close",
                                                            "volume")))
        return intraday_summary.window(complete, interval), in_progress

    @rpc
    def get_market_context(self, source: str | None = None) -> dict[str, Any]:
        """The market context from the index trend (NEUTRAL, flagged fallback, without it)."""
        src = self.source(source)
        index = self._index()
        entries, _, now = self._gather(src, [index])
        e = entries.get(index)
        return {**self._context(entries, now), "index": index,
                "as_of": e.summary.get("as_of") if e else None, "source": src.name,
                "stale": e.stale(now) if e else True}

    @rpc
    def get_bars(self, symbol: str, interval: str = "1d", period: str = "1y",
                 source: str | None = None, indicators: bool = False) -> dict[str, Any]:
        """Daily (1d), weekly (1wk) or intraday (1h, 30m, 15m) bars for a period (5d, 1mo,
        3mo, 6mo, 1y, 2y, 5y, 10y, max), counted back from the last bar; ``indicators``: with
        SMA20, RSI14 and MACD per bar. ``reading``: for a ``csv:`` file, what its reader
        dropped, merged and found (see :mod:`trading.market.reading`); None for other
        sources. Intraday: see :meth:`_intraday_bars`."""
        sym = params.symbol(symbol)
        params.choice("interval", interval, INTERVALS)
        params.choice("period", period, PERIODS)
        src = self.source(source)
        if interval in INTRADAY:
            return self._intraday_bars(sym, interval, period, src,
                                       params.flag("indicators", indicators))
        days = PERIODS[period]
        entries, errors, now = self._gather(src, [sym], max(days, SUMMARY_DAYS))
        e = entries.get(sym)
        if e is None or not e.last_session:
            raise errors.get(sym) or UpstreamUnavailable(f"no data for {sym}", symbol=sym)
        since = (dt.date.fromisoformat(e.last_session) - dt.timedelta(days=days - 1)).isoformat()
        rows = self.cache.bars(src.name, sym, since).to_rows()
        if interval == "1wk":
            rows = weekly(rows)
        out = {"symbol": sym, "interval": interval, "source": src.name,
               "stale": e.stale(now), "bars": rows, "reading": e.reading}
        if params.flag("indicators", indicators):
            out["indicators"] = indicator_series(rows)
        return out

    def _intraday_bars(self, sym: str, interval: str, period: str, src, indicators: bool
                       ) -> dict[str, Any]:
        """get_bars for an intraday interval. Rows: ``{time, date, open, high, low, close,
        volume, final}``, ``time`` the bar's start in Sydney time, ``date`` its session;
        ``final`` false for the bar in progress. Indicators are computed over the complete
        bars only (None beside the bar in progress). From Yahoo the period may not reach
        further back than it keeps the interval (730 days for 1h, 60 for 30m and 15m: a
        one-line invalid-params error); ``max`` is all it keeps; a ``csv:`` file is read
        whole."""
        from trading.market import intraday
        from trading.market.bars import today

        cache = self.cache
        on = today(cache.clock())
        if period == "max" and src.name == "yahoo":
            days = intraday.reach_days(interval)
        else:
            days = PERIODS[period]
        start = on - dt.timedelta(days=days - 1)
        entries, errors = cache.ensure(src, [sym], start, interval)
        now = cache.clock()
        e = entries.get(sym)
        if e is None or not e.last_session:
            raise errors.get(sym) or UpstreamUnavailable(f"no {interval} bars for {sym}",
                                                         symbol=sym)
        since = (dt.date.fromisoformat(e.last_session[:10])
                 - dt.timedelta(days=days - 1)).isoformat()
        bars, finals = cache.bars_final(src.name, sym, since, interval)
        rows = [{"time": r["date"], "date": r["date"][:10],
                 **{k: r[k] for k in ("open", "high", "low", "close", "volume")},
                 "final": f} for r, f in zip(bars.to_rows(), finals)]
        out = {"symbol": sym, "interval": interval, "source": src.name, "stale": e.stale(now),
               "bars": rows, "reading": e.reading}
        if indicators:
            done = next((i for i, f in enumerate(finals) if not f), len(finals))
            series = indicator_series(rows[:done])
            out["indicators"] = {k: v + [None] * (len(rows) - done) for k, v in series.items()}
        return out

    # -- health --------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        # Counting the bars is O(rows): a monitor polling health_check reads it at most every
        # HEALTH_TTL seconds instead of scanning the table on every probe.
        now = time.monotonic()
        memo = self._health_memo
        if memo is not None and now - memo[0] < HEALTH_TTL:
            return memo[1]
        try:
            value = {"cache": self.cache.size(), "last_fetch": self.cache.last_outcome()}
        except RPCError as exc:
            return {"cache": None, "cache_error": exc.message}
        except Exception as exc:  # the store may be unreadable; health still answers
            return {"cache": None, "cache_error": str(exc)}
        self._health_memo = (now, value)
        return value


def indicator_series(rows: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """SMA20, RSI14 and MACD(12, 26, 9) per bar, by the same functions the predictions use
    (so a chart shows the numbers a call was made from); ``None`` during the warm-up."""
    from trading.market import indicators as ind

    close = [r["close"] for r in rows]

    def plain(values) -> list[float | None]:
        return [None if v != v else round(float(v), 6) for v in values]  # NaN -> None

    if not close:
        return {k: [] for k in ("sma20", "rsi14", "macd", "macd_signal", "macd_hist")}
    line, signal, hist = ind.macd(close)
    return {"sma20": plain(ind.sma(close, 20)), "rsi14": plain(ind.rsi(close, 14)),
            "macd": plain(line), "macd_signal": plain(signal), "macd_hist": plain(hist)}


def _sessions_back(day: dt.date, sessions: int) -> dt.date:
    """The first day to fetch so ``sessions`` whole sessions are there before ``day``'s own
    (whose bars may not have begun yet)."""
    from trading.market import asx

    start = day
    for _ in range(sessions):
        start = asx.previous_session(start)
    return start


def _plain(x) -> float | None:
    x = float(x)
    return round(x, 6) if x == x else None


def weekly(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Daily rows grouped by ISO week; a week is dated by its first session."""
    out: list[dict[str, Any]] = []
    key = None
    for r in rows:
        k = dt.date.fromisoformat(r["date"]).isocalendar()[:2]
        if k != key:
            key = k
            out.append(dict(r))
            continue
        w = out[-1]
        w["high"] = _max(w["high"], r["high"])
        w["low"] = _min(w["low"], r["low"])
        w["close"] = r["close"]
        w["volume"] = (w["volume"] or 0) + (r["volume"] or 0)
    return out


def _max(a, b):
    return b if a is None else a if b is None else max(a, b)


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


SERVICE = MarketData


def run() -> int:
    """The console script ``trading-market-data``, which the unit runs: a script entry point skips
    ``python -m``'s runpy (about 5 ms of every activation)."""
    from trading.handlers import main

    return main(SERVICE)


if __name__ == "__main__":
    raise SystemExit(run())
