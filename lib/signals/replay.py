"""The historical replay behind ``trading replay``: predictions as they would have been made.

This module is long: the daily and the intraday replay share their walk over the series, the
reader process and the writing.

:func:`replay` rebuilds history one symbol at a time, over the whole series the source holds
(``--start``/``--end`` narrow it): for each session it takes the summary of the bars up to
that session (:func:`trading.market.series.series_summaries`: what market-data's
:func:`~trading.market.summary.summarize` gives for the same bars, with the configured index
``context.index`` for the market context, computed once per series rather than once per
session), asks each given predictor (:mod:`trading.signals.predictors`; the rules by default)
for a decision, exactly as the prediction service does (no sentiment: there are no historical
headlines), stores the predictions in the ledger as made at that session's close
(``origin = 'replay'``) and scores their outcomes from the same bars, in one transaction per
symbol. Replayed predictions emit no events: they are history, not news.

**Intraday** (issue 29: ``interval`` ``1h``, ``30m`` or ``15m``, from ``SYMBOL.1h.csv``
files): each completed bar is predicted from the bars up to it and no later one
(:func:`trading.market.intraday_summary.window_summaries`: the old service's window of the
last five sessions of bars, the index's bars of the same interval up to that bar), stored as
made when the delayed feed had the bar (:func:`made_at`), with its interval (the stream's
fourth part: a 1h replay never replaces a daily one) and scored like a daily call, at 1 and 5
sessions, from the bar's close to the session closes the same file gives (each session's last
bar: the closing auction; intraday files are as traded, so a daily file's adjusted closes would
not compare). A bar is not predicted until its window holds five sessions after the series'
start or a gap. The walk-forward calibration of an intraday run fits on the outcomes settled
by the session before each call's (it was made before its own session's close).

Sessions are not predicted during the indicators' warm-up, which restarts after every gap in
a series (:func:`trading.market.gaps.gaps`); the result says how many sessions were left
out and why (``coverage``), and passes on what the reader of a local file decided
(``reading``: rows dropped, adjusted prices).

Memory stays flat in the number of symbols: one symbol's bars and predictions are held at a
time. Two processes share the work, as a machine of two cores allows: a reader process forked
at the start reads and summarises each series and has the in-process predictors (the rules)
decide every session, building the rows to insert, while this process writes the symbol
before it and scores its outcomes; the reader writes nothing and never touches the store
(:func:`_packages`). Then the run is calibrated as it would have been calibrated live
(:func:`trading.signals.calibration.walk_forward`: each session's predictions get a fit made
only from outcomes settled by that session), and a calibration fitted on every scored outcome
(sample data left out) is stored for live predictions to use.

Ctrl-C stops a replay within a second wherever it is (issue 27: it took 6-10 s). A long
SQLite statement (sorting every outcome for the calibration, a symbol's thousands of inserts)
runs in C, where Python cannot raise KeyboardInterrupt, so the connection's progress handler
calls back into Python every :data:`PROGRESS_STEPS` SQLite steps, where it can; the statement
is then interrupted, and :func:`replay` raises the KeyboardInterrupt it stood for. The
calibration drops its queued fits (:meth:`trading.signals.calibration.Prepared.fit`). What was
being written is rolled back: every symbol stays whole, and the calibration's rewrite keeps the
batches it committed (a replay run again recomputes it all).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time, timezone
from typing import Any

from trading import clock
from trading.errors import InvalidParams, NotFound, TradingError
from trading.market.periods import LOOKBACK_SESSIONS, WARMUP_SESSIONS, WHOLE
from trading.runtime.store import Store
from trading.signals import calibration, ledger, outcomes

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
REPLAY_CACHE_KIB = 16384  # SQLite's page cache while a replay writes (the default is 2 MiB)
PROGRESS_STEPS = 100_000  # SQLite steps between chances for Ctrl-C (a few ms; no cost seen)
DAILY = "1d"  # the interval of a daily replay; 1h, 30m and 15m replay intraday files


def made_at(bar: str, interval: str) -> str:
    """When a live run could first have made a call from the intraday bar stamped ``bar``:
    when the delayed feed has all of it, as an ISO UTC timestamp."""
    from trading.market import intraday

    t = intraday.final_at(bar, interval)
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _fetch(get_bars: Any, symbol: str, source: str, interval: str) -> Any:
    """``get_bars`` for the whole series of ``interval`` (a daily call keeps the old form)."""
    if interval == DAILY:
        return get_bars(symbol, WHOLE, source)
    return get_bars(symbol, WHOLE, source, interval)


def close_time(session: str) -> str:
    """16:30 Sydney on ``session`` (after the closing auction) as an ISO UTC timestamp."""
    t = datetime.combine(date.fromisoformat(session), time(16, 30), clock.sydney())
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def replay(store: Store, cfg: Any, get_bars: outcomes.GetBars, symbols: Iterable[str], *,
           source: str, start: str | None = None, end: str | None = None, every: int = 1,
           today: date | None = None, predictors: Sequence[Any] | None = None,
           interval: str = DAILY, on_symbol: Any = None, reader: bool = False) -> JSON:
    """Predict each ``every``-th session of each symbol's history as if at its close, store the
    predictions (origin 'replay', replacing the earlier replay of the same source, symbols and
    sessions, and nothing else), and score their outcomes. Returns ``{run_id, predictions,
    by_action, errors, outcomes, coverage, reading}``.

    ``predictors`` (loaded :class:`trading.signals.predictors.Predictor`; default: the rules)
    each decide every session, side by side: each one's predictions are a run of their own
    (``run_id`` ``replay:SOURCE`` for the rules, ``replay:SOURCE:module:Name`` for another),
    so replaying one predictor never replaces another's. With several, ``runs`` has each
    one's ``{run_id, predictor, predictions, by_action, errors}``.

    Each symbol is replaced and stored in one transaction: an interrupted replay leaves
    every symbol either as the earlier replay had it or as this one has it.

    ``interval``: ``1d``, or an intraday one (``1h``, ``30m``, ``15m``): then each ``every``-th
    completed bar is predicted (see the module docstring), ``get_bars`` being called with the
    interval as a fourth argument.

    ``on_symbol(symbol)`` is called as each series' turn comes, the index's first (a
    progress bar).

    ``reader``: read and predict in a forked reader process while this one writes
    (:func:`_packages`). Only for a ``get_bars`` that is safe to call in a fork: one that reads
    files, as ``trading replay``'s does, not one that goes through a database connection this
    process opened (SQLite connections must not cross a fork)."""
    from trading.market import asx, intraday, intraday_summary
    from trading.market.series import IndexContext
    from trading.market.summary import as_bars
    from trading.signals import predictors as _predictors

    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InvalidParams("every must be a positive integer")
    if interval != DAILY and not intraday.is_intraday(interval):
        raise InvalidParams(f"interval {str(interval)[:20]!r}: use 1d, "
                            f"{', '.join(intraday.INTERVALS)}")
    runs = list(predictors) if predictors else [
        _predictors.load(_predictors.DEFAULT, None, 60.0)]
    index = cfg["context.index"]
    if on_symbol:
        on_symbol(index)
    try:
        index_bars = _bars(_fetch(get_bars, index, source, interval).get("bars"), interval)
    except NotFound as exc:
        # No index file in the folder: the context is the flagged NEUTRAL fallback, as
        # backtest and train have it, rather than no replay at all.
        logger.warning("replay without %s (%s): market context NEUTRAL (fallback)", index, exc)
        index_bars = as_bars(None)
    context_at = IndexContext(index_bars, cfg, LOOKBACK_SESSIONS) if interval == DAILY \
        else intraday_summary.IndexWindows(index_bars, interval, cfg)
    settled = asx.previous_session(today) if today is not None \
        else outcomes.last_settled_session(asx.now())
    cutoff = settled.isoformat()
    index_close = _closes(index_bars, cutoff)[1]
    del index_bars
    # A replay writes thousands of rows a transaction into a table with six indexes: with
    # SQLite's default 2 MB page cache, pages spill and an insert costs 145 us instead of 62.
    # Raised for this connection while it replays, then put back.
    conn = store.conn
    cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute(f"PRAGMA cache_size = {-REPLAY_CACHE_KIB}")
    conn.set_progress_handler(_interruptible, PROGRESS_STEPS)
    try:
        return _replay(store, cfg, get_bars, symbols, runs, source=source, start=start,
                       end=end, every=every, settled=settled, context_at=context_at,
                       index_close=index_close, interval=interval, on_symbol=on_symbol,
                       reader=reader)
    except sqlite3.OperationalError as exc:
        if str(exc) == "interrupted":  # only the progress handler interrupts this connection
            raise KeyboardInterrupt from None
        raise
    finally:
        conn.set_progress_handler(None, 0)
        conn.execute(f"PRAGMA cache_size = {int(cache_size)}")


def _interruptible() -> bool:
    """SQLite's progress handler during a replay. Calling it is the point: Python runs a
    pending SIGINT's handler on entering it, whose KeyboardInterrupt the sqlite3 module turns
    into interrupting the statement (``OperationalError: interrupted``)."""
    return False


def _replay(store: Store, cfg: Any, get_bars: outcomes.GetBars, symbols: Iterable[str],
            runs: list, *, source: str, start: str | None, end: str | None, every: int,
            settled: date, context_at: Any, index_close: dict[str, float],
            interval: str = DAILY, on_symbol: Any = None, reader: bool = False) -> JSON:
    from trading.signals import predictors as _predictors

    cutoff = settled.isoformat()
    budget = cfg.get("predictor_timeout") or 10.0
    now = clock.now(timezone.utc).isoformat(timespec="microseconds")
    tail = "" if interval == DAILY else f"@{interval}"  # 1h runs beside the daily ones
    rules_run = f"replay:{source}{tail}"
    results = [{"run_id": f"replay:{source}" + ("" if p.name == _predictors.DEFAULT
                                                  else f":{p.name}") + tail,
                "predictor": p.provenance, "predictions": 0, "by_action": {}, "failed": {}}
               for p in runs]
    scored: JSON = {"evaluated": 0, "pending": 0, "symbols": 0, "errors": {}}
    coverage = Coverage(start, end)
    reading: JSON = {}
    # The predictors that run in this process (the built-in rules) decide where the bars are
    # read and summarised: in the reader process, beside the writing (see _packages).
    here = [i for i, p in enumerate(runs) if _in_this_process(p)]
    prepare = _Prepare(get_bars, cfg, runs, here, [r["run_id"] for r in results],
                       source=source, interval=interval,
                       start=start, end=end, every=every, cutoff=cutoff, budget=budget,
                       context_at=context_at)
    for package in _packages(symbols, prepare, on_symbol, reader=reader):
        symbol = package["symbol"]
        coverage.merge(package["coverage"])
        if package.get("missing"):
            continue
        if package.get("reading"):
            reading[symbol] = package["reading"]
        close_dates, close = package["close_dates"], package["close"]
        scored["symbols"] += 1
        for i, (predictor, result) in enumerate(zip(runs, results)):
            if i in package["written"]:
                written, failed = package["written"][i]
            else:  # a plugged predictor: asked from here (its own process, or the service)
                made, failed = _predictors.run_many(predictor, package["jobs"], cfg, budget)
                written = _rows(result["run_id"], made, package["jobs"], source, interval)
            result["failed"].update(failed)
            _store_symbol(store, result, written, symbol, close_dates, close, index_close,
                          now, scored, interval)
    walk = {}
    for r in results:
        r["errors"] = _predictors.summarize_errors(r.pop("failed"))
        if r["run_id"] == rules_run:
            # The rules' runs are calibrated as they would have been live, walk-forward, and
            # the store's calibration for live predictions refitted (on the rules'
            # predictions only: calibration maps the rules' score; a plugged predictor's
            # confidence is its own). An intraday run refits nothing live: the stored fit
            # is the daily calls' (their score on daily bars means something else).
            logger.info("calibrating %s, walk-forward", r["run_id"])
            walk = {"walk_forward": calibration.walk_forward(store, r["run_id"],
                                                             during=interval != DAILY)}
            if interval == DAILY:
                live = calibration.fit_store(store)
                walk["stored"] = {"id": live.id, "fitted_on": live.fitted_on,
                                  "through": live.through}
            r["calibration"] = walk
    first = results[0]
    return {**first, "interval": interval, "outcomes": scored,
            "coverage": coverage.summary(), "reading": reading,
            **({"runs": results} if len(results) > 1 else {})}


def _in_this_process(predictor: Any) -> bool:
    """A predictor that runs in this process (the built-in rules), not in a child of its own
    (a plugged one) or in the prediction service (:mod:`trading.signals.remote_predictor`)."""
    return not getattr(predictor, "isolated", False) and not hasattr(predictor, "run_remote")


class _Prepare:
    """One symbol's share of a replay that writes nothing: its bars read and summarised, the
    in-process predictors' calls on each session as the rows to insert (:func:`_rows`), and
    its session closes. Returns a package: ``{symbol, coverage, missing | reading,
    close_dates, close, written: {run: (rows, failed)}, jobs (when a run is asked from the
    writing process)}``."""

    def __init__(self, get_bars, cfg, runs, here, run_ids, *, source, interval, start, end,
                 every, cutoff, budget, context_at) -> None:
        self.get_bars, self.cfg, self.runs, self.here = get_bars, cfg, runs, here
        self.run_ids = run_ids
        self.source, self.interval, self.cutoff, self.budget = source, interval, cutoff, budget
        self.start, self.end, self.every, self.context_at = start, end, every, context_at

    def __call__(self, symbol: str) -> JSON:
        from trading.market.series import series_summaries
        from trading.signals import predictors as _predictors

        logger.info("replaying %s", symbol)
        coverage = Coverage(self.start, self.end)
        try:
            answer = _fetch(self.get_bars, symbol, self.source, self.interval)
        except TradingError as exc:
            coverage.missing(symbol, str(exc))
            return {"symbol": symbol, "coverage": coverage, "missing": True}
        bars = _bars(answer.get("bars"), self.interval)  # Bars, or get_bars' rows
        dates = [d[:10] for d in bars.dates]
        keep = coverage.window(symbol, dates, self.every)
        if self.interval == DAILY:
            summaries = series_summaries(symbol, bars, self.context_at,
                                         lookback=LOOKBACK_SESSIONS, warmup=WARMUP_SESSIONS,
                                         keep=keep)
            extra: JSON = {}
        else:
            summaries = _intraday_summaries(symbol, bars, self.interval, self.cfg,
                                            self.context_at, keep)
            extra = {"interval": self.interval}
        jobs = [_predictors.Job(symbol, {**market, "source": self.source, "stale": False,
                                         "age_s": 0, **extra},
                                key=f"{symbol}@{market['as_of']}")
                for _, market in summaries]
        coverage.predicted(symbol, len(jobs))
        close_dates, close = _closes(bars, self.cutoff)
        written = {}
        # One watched batch a symbol, with the budget of the chunks it holds: a thread a
        # chunk of 64 was a thousand thread starts over the twenty histories.
        chunks = max(1, -(-len(jobs) // _predictors.CHUNK))
        for i in self.here:
            made, failed = _predictors.run_many(self.runs[i], jobs, self.cfg,
                                                self.budget * chunks,
                                                chunk=max(1, len(jobs)))
            written[i] = (_rows(self.run_ids[i], made, jobs, self.source, self.interval),
                          failed)
        return {"symbol": symbol, "coverage": coverage, "reading": answer.get("reading"),
                "close_dates": close_dates, "close": close, "written": written,
                # the jobs only for a predictor asked from the writing process
                **({"jobs": jobs} if len(self.here) < len(self.runs) else {})}


def _packages(symbols: Iterable[str], prepare: _Prepare, on_symbol=None, *,
              reader: bool = False):
    """``prepare(symbol)`` for each symbol, in order. With ``reader``, two symbols or more,
    and where the system can fork, a reader process prepares them while this one writes the packages it
    already has (reading and predicting is about half of a replay's work and the writing the
    other half: two cores, both busy). The reader writes nothing and touches no database: the
    store stays this process's alone. ``on_symbol(symbol)`` as each symbol's turn comes."""
    import multiprocessing

    symbols = list(symbols)
    if not reader or len(symbols) < 2 \
            or "fork" not in multiprocessing.get_all_start_methods():
        for symbol in symbols:
            if on_symbol:
                on_symbol(symbol)
            yield prepare(symbol)
        return
    import sys

    for stream in (sys.stdout, sys.stderr):  # or the child would write them out again
        stream.flush()
    ours, theirs = multiprocessing.get_context("fork").Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(
        target=_read_all, args=(symbols, prepare, theirs), name="trading-replay-reader",
        daemon=True)
    child.start()
    theirs.close()
    try:
        for symbol in symbols:
            try:
                kind, body = ours.recv()
            except EOFError:
                child.join(5)
                raise TradingError(f"replay: the process reading the bars ended (exit code "
                                   f"{child.exitcode}) at {symbol}") from None
            if kind == "raise":
                raise body
            if on_symbol:
                on_symbol(symbol)
            yield body
    finally:
        ours.close()
        if child.is_alive():
            child.terminate()
        child.join(5)


def _read_all(symbols: list[str], prepare: _Prepare, out) -> None:
    """The reader process: each symbol's package, in order, through ``out``. A failure is
    sent as the exception for the replay to raise; Ctrl-C reaches the replay too, which stops
    this process, so here it only ends."""
    import pickle

    try:
        for symbol in symbols:
            out.send(("package", prepare(symbol)))
    except KeyboardInterrupt:
        return
    except BaseException as exc:  # noqa: BLE001 - raised in the replay, where it is reported
        try:
            pickle.dumps(exc)
        except Exception:  # noqa: BLE001 - whatever does not pickle is sent as its text
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        out.send(("raise", exc))


def _bars(rows: Any, interval: str):
    from trading.market.intraday_summary import as_intraday_bars
    from trading.market.summary import as_bars

    return as_bars(rows) if interval == DAILY else as_intraday_bars(rows)


def _intraday_summaries(symbol: str, bars: Any, interval: str, cfg: Any, context_at: Any,
                        keep: Any):
    """The summary at each completed bar ``keep`` picks whose window is whole: five sessions
    (``WINDOW_SESSIONS``) since the series' start or its last gap. A bar before that is
    warm-up (the coverage counts it so: it is neither kept nor skipped by ``keep``)."""
    from trading.market.intraday_summary import whole_windows, window_summaries

    ready = whole_windows(bars.dates, interval)

    def whole(i: int, stamp: str) -> bool:
        return ready[i] and keep(i, stamp[:10])

    return window_summaries(symbol, bars, None, interval, cfg, keep=whole,
                            context_at=context_at)


def _rows(run_id: str, made: JSON, jobs: list, source: str, interval: str = DAILY) -> JSON:
    """One predictor's calls on one symbol as the rows to insert (:func:`ledger.row`), each
    as made at its session's close (intraday: when its bar was complete), and per row its
    ``(session, action, price)`` for scoring: ``{rows, calls}``. Touches no database."""
    rows, calls = [], []
    for job in jobs:
        p = made.get(job.key)
        if p is None:
            continue
        p["created_at"] = close_time(job.market["as_of"]) if interval == DAILY \
            else made_at(job.market["as_of"], interval)
        # ledger.record() keys inputs by symbol and a replay has many predictions per
        # symbol, so each row is built with its own inputs.
        rows.append(ledger.row(p, {"market": job.market, "sentiment": None, "model": None},
                               source=source, origin="replay", run_id=run_id,
                               interval=interval))
        calls.append((p["session"], p["action"], p.get("price")))
    return {"rows": rows, "calls": calls}


def _store_symbol(store: Store, result: JSON, written: JSON, symbol: str, dates: list[str],
                  close: dict[str, float], index_close: dict[str, float], now: str,
                  scored: JSON, interval: str = DAILY) -> None:
    """One predictor's predictions of one symbol (:func:`_rows`), with their outcomes: one
    transaction that replaces exactly what it recomputes (this run's predictions of this
    symbol on these sessions; every other symbol, session and predictor stays)."""
    run_id, calls = result["run_id"], written["calls"]
    stored = []
    with store.transaction() as db:
        # A first replay of a symbol has nothing to replace: one look instead of a DELETE a
        # session.
        if db.execute("SELECT 1 FROM predictions WHERE run_id = ? AND symbol = ? LIMIT 1",
                      (run_id, symbol)).fetchone():
            db.executemany("DELETE FROM predictions WHERE run_id = ? AND symbol = ? "
                           "AND session = ?", [(run_id, symbol, c[0]) for c in calls])
        for values, (session, action, price) in zip(written["rows"], calls):
            # interval and price: an intraday call is scored from the price it was made at.
            stored.append({"id": db.execute(ledger.INSERT, values).lastrowid,
                           "session": session, "action": action, "origin": "replay",
                           "done": None, "interval": interval, "price": price})
        if dates:
            new_rows: list = []
            scored["pending"] += outcomes.score(symbol, stored, dates, close, index_close,
                                                now, scored, new_rows, [])
            db.executemany(outcomes.OUTCOMES_INSERT, new_rows)
            scored["evaluated"] += len(new_rows)
    result["predictions"] += len(calls)
    for _, action, _ in calls:
        result["by_action"][action] = result["by_action"].get(action, 0) + 1


def _closes(bars, cutoff: str) -> tuple[list[str], dict[str, float]]:
    """:func:`trading.signals.outcomes.session_closes` of :class:`Bars`: session dates and
    closes up to ``cutoff``, a bar without a positive close left out."""
    dates, closes = [], {}
    for d, c in zip(bars.dates, bars.close.tolist()):
        d = d[:10]
        if d <= cutoff and c > 0:  # NaN > 0 is False
            if d not in closes:
                dates.append(d)
            closes[d] = c
    dates.sort()
    return dates, closes


class Coverage:
    """What of each series was predicted, and why the rest was not."""

    def __init__(self, start: str | None, end: str | None) -> None:
        self.start, self.end = start, end
        self.sessions = self.made = 0
        self.left_out = {"before --start": 0, "after --end": 0, "warm-up after a start or "
                         "a gap": 0, "not an --every session": 0}
        self.spans: dict[str, list[str]] = {}
        self.problems: dict[str, str] = {}
        self._inside = self._skipped = 0

    def missing(self, symbol: str, why: str) -> None:
        self.problems[symbol] = why

    def window(self, symbol: str, dates: list[str], every: int):
        """The ``keep`` filter for one series, counting the sessions outside the window."""
        self.sessions += len(dates)
        if dates:
            self.spans[symbol] = [dates[0], dates[-1]]
        start, end = self.start, self.end
        before = sum(1 for d in dates if start and d < start)
        after = sum(1 for d in dates if end and d > end)
        self.left_out["before --start"] += before
        self.left_out["after --end"] += after
        self._inside, self._skipped = len(dates) - before - after, 0

        def keep(i: int, day: str) -> bool:
            if (start and day < start) or (end and day > end):
                return False
            if (i - WARMUP_SESSIONS) % every:
                self._skipped += 1
                return False
            return True

        return keep

    def predicted(self, symbol: str, n: int) -> None:
        """``n`` sessions of the series just filtered were summarised for the predictors."""
        self.made += n
        self.left_out["not an --every session"] += self._skipped
        self.left_out["warm-up after a start or a gap"] += self._inside - n - self._skipped

    def merge(self, other: Coverage) -> None:
        """Add what ``other`` counted (one symbol's, counted in the reader process)."""
        self.sessions += other.sessions
        self.made += other.made
        for k, v in other.left_out.items():
            self.left_out[k] += v
        self.spans.update(other.spans)
        self.problems.update(other.problems)

    def summary(self) -> JSON:
        return {"symbols": len(self.spans), "sessions": self.sessions, "predicted": self.made,
                "first": min((s[0] for s in self.spans.values()), default=None),
                "last": max((s[1] for s in self.spans.values()), default=None),
                "left_out": {k: v for k, v in self.left_out.items() if v},
                "no_data": self.problems}
