"""The training service: walk-forward model training, the model registry and backtests.

Heavy work that must cost nothing while idle: systemd starts this process on the first call
and it exits when idle, so numpy, scikit-learn and a few thousand replayed summaries are paid
only while someone is training or backtesting. Every heavy import is inside the method that
needs it; constructing the service opens nothing.

One job runs at a time (a second ``train``/``backtest`` while one runs gets :class:`Busy`).
A running job reports where it is in three places: :meth:`progress` (the CLI polls it over a
second connection to draw its progress bar, since one JSON-RPC call cannot stream),
``health_check``, and systemd's ``STATUS=`` (the runtime sends :meth:`status` about once a
second; the job also sends it directly as each stage or fold completes).
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

from trading import clock, log
from trading.errors import Busy, Cancelled, InvalidParams, Unavailable, UpstreamUnavailable
from trading.handlers import params
from trading.market.periods import (HISTORY_YEARS, LONGEST, PERIODS, SUMMARY_DAYS,
                                    WARMUP_SESSIONS, WHOLE, covering)
from trading.runtime.protocol import rpc
from trading.runtime.service import Service

logger = log.getLogger(__name__)

MAX_HORIZON = 20
MAX_JOB_SYMBOLS = params.MAX_SYMBOLS  # per train/backtest: one symbol's bars at a time


class _JobSlot:
    """The context manager :meth:`Training._running` returns (a class, not
    ``contextlib.contextmanager``: contextlib is about 1 ms of every cold start)."""

    __slots__ = ("service", "kind", "total", "job")

    def __init__(self, service: Training, kind: str, total: int) -> None:
        self.service, self.kind, self.total = service, kind, total

    def __enter__(self) -> Job:
        self.job = self.service._enter_job(self.kind, self.total)
        return self.job

    def __exit__(self, *exc_info) -> bool:
        self.service._leave_job(self.job)
        return False


class Job:
    """Where the running job is: ``stage`` and ``done`` of ``total`` steps."""

    def __init__(self, kind: str, total: int) -> None:
        self.kind = kind
        self.total = total
        self.done = 0
        self.stage = "starting"
        self.started = time.monotonic()
        self.cancel_requested: str | None = None  # why, once someone asked

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.kind, "stage": self.stage, "done": self.done, "total": self.total,
                "elapsed_s": round(time.monotonic() - self.started, 1)}

    def text(self) -> str:
        return f"{self.kind}: {self.stage} ({self.done}/{self.total} steps)"


class Training(Service):
    name = "training"

    def __init__(self, context=None) -> None:
        super().__init__(context)
        self._job: Job | None = None
        self._run_lock = threading.Lock()   # one job at a time

    # -- hooks ----------------------------------------------------------------------------
    def status(self) -> str:
        job = self._job
        return job.text() if job is not None else "idle: no job running; " + super().status()

    def health(self) -> dict[str, Any]:
        job = self._job
        return {"job": job.as_dict() if job is not None else None}

    # -- progress -------------------------------------------------------------------------
    def _running(self, kind: str, total: int) -> _JobSlot:
        """``with self._running(kind, total) as job:``: the one job slot, or Busy."""
        return _JobSlot(self, kind, total)

    def _enter_job(self, kind: str, total: int) -> Job:
        if not self._run_lock.acquire(blocking=False):
            current = self._job.text() if self._job else "a job"
            raise Busy(f"training is busy: {current}; try again when it is done",
                       job=self._job.as_dict() if self._job else None)
        job = self._job = Job(kind, total)
        self.notify(f"STATUS={job.text()}")
        return job

    def _leave_job(self, job: Job) -> None:
        self._job = None
        self._run_lock.release()
        self.notify("STATUS=idle: " + job.kind + " finished")
        logger.info("%s finished in %.1fs", job.kind, time.monotonic() - job.started)

    def _step(self, job: Job, stage: str, done: int | None = None) -> None:
        """Record progress; stop here (Cancelled) when the job was cancelled or its client
        hung up: a job nobody waits for must not hold the one job slot."""
        if self.cancelled and job.cancel_requested is None:
            job.cancel_requested = "its client hung up"
        if job.cancel_requested is not None:
            logger.info("%s cancelled at %s: %s", job.kind, job.stage, job.cancel_requested)
            raise Cancelled(f"{job.kind} cancelled at {job.stage}: {job.cancel_requested}",
                            stage=job.stage)
        job.stage = stage
        job.done = job.done + 1 if done is None else done
        # Sent directly too: the runtime's once-a-second STATUS= may miss a short stage.
        self.notify(f"STATUS={job.text()}")
        logger.debug("%s", job.text())

    @rpc
    def cancel(self) -> dict[str, Any] | None:
        """Ask the running job to stop at its next step; null when no job runs."""
        job = self._job
        if job is None:
            return None
        job.cancel_requested = "cancelled by request"
        return job.as_dict()

    @rpc
    def progress(self) -> dict[str, Any] | None:
        """The running job's stage and steps done of total; null when idle."""
        job = self._job
        return job.as_dict() if job is not None else None

    # -- methods --------------------------------------------------------------------------
    @rpc
    def train(self, symbols: list[str] | None = None, horizon: int = 1,
              source: str | None = None, folds: int = 8, start: str | None = None,
              end: str | None = None) -> dict[str, Any]:
        """Walk-forward train and register a model; out-of-sample scores against baselines.

        The bars: a ``csv:DIR`` folder's whole record, others' last HISTORY_YEARS years;
        ``start`` (a date) trains on no session before it (the bars of a year before it warm
        the indicators), ``end`` leaves out every bar after it, so the model can be
        backtested on the sessions that follow without lookahead. One symbol at a time: its
        bars and summaries are dropped once its rows are built, so memory follows the rows."""
        symbols = self._symbols(symbols)
        start_d, end_d = self._dates(start, end)
        horizon = params.whole("horizon", horizon, 1, MAX_HORIZON)
        folds = params.whole("folds", folds, 2, 20)
        spec = self._source(source)
        budget = self.config["training.max_rows"]
        # A folder's whole record, or more symbols than the budget holds over the years
        # asked, may pass the budget: a first pass over the bars counts the rows.
        count_first = _local(spec) or start_d is not None or \
            len(symbols) * HISTORY_YEARS * 260 > budget
        with self._running("train", 1 + (1 + count_first) * len(symbols) + folds + 1) as job:
            from trading.learning import features, models

            last = end_d or clock.today()
            first = (start_d - dt.timedelta(days=SUMMARY_DAYS) if start_d
                     else None if _local(spec) else _years_before(last, HISTORY_YEARS))
            loading = _Loading(spec, symbols, first, last, start_d, end_d)
            index = self._index_bars(loading, job)
            train_from = start_d.isoformat() if start_d else None
            over = None
            if count_first:
                import collections

                per_session: collections.Counter[str] = collections.Counter()
                for _, b in self._each(loading, job, "counting the sessions of"):
                    per_session.update(b.dates[bisect.bisect_left(b.dates, train_from)
                                               if train_from else 0:])
                loading.used.clear()  # the next pass finds them again
                over = _row_budget(per_session, budget)
                if over is not None:
                    train_from = over["trained_from"]
            parts = []
            for s, b in self._each(loading, job, "features"):
                h = features.history(s, b, index, self.config, start=train_from)
                parts.append(models.compact(features.dataset({s: h}, horizon), self.config))
            data = features.concat(parts)
            del parts
            try:
                model, report = models.train(
                    data, self.config, folds=folds,
                    on_fold=lambda k, n: self._step(job, f"fold {k}/{n}"))
            except ValueError as exc:
                raise InvalidParams(f"cannot train: {exc}") from exc
            self._step(job, "saving")
            report["source"] = spec
            report["skipped"] = loading.skipped
            report["left_out"] = loading.left_out
            report["row_budget"] = over
            report["index"] = _index_note(index, self.config)
            row = models.save(self.store, self.config, model, symbols=sorted(loading.used),
                              train_start=report["train_start"], train_end=report["train_end"],
                              source=spec, metrics=report)
            logger.info("trained %s on %d rows: model %s, majority %s, rules %s", row["version"],
                        report["rows"], report["out_of_sample"]["model"],
                        report["out_of_sample"]["majority"], report["out_of_sample"]["rules"])
            return {**row, "metrics": report}

    @rpc
    def models(self) -> list[dict[str, Any]]:
        """Registered model versions, newest first, with their metrics and the active flag."""
        from trading.learning import models

        return models.list_models(self.store)

    @rpc
    def activate(self, version: str | None, force: bool = False) -> dict[str, Any] | None:
        """Make VERSION the model predictions use (null: predict without a model); a model
        that does not beat the walk-forward base rate out of sample needs ``force``."""
        from trading.learning import models

        return models.activate(self.store, version, force)

    @rpc
    def backtest(self, symbols: list[str] | None = None, start: str | None = None,
                 end: str | None = None, source: str | None = None,
                 cost_bps: float = 10.0, use_model: bool = True,
                 predictor: str | None = None, compare: bool = False,
                 interval: str | None = None) -> dict[str, Any]:
        """Replay history day by day through the predictor (default: the configured one);
        equity against buy-and-hold. ``compare``: the built-in rules too, side by side with
        it and the baselines (always BUY, always HOLD) in ``comparison``. ``interval``
        (default: ``predictor_interval``): 1h, 30m or 15m computes the predictor's inputs
        from those bars, bar by bar, and acts on the call each session ends with
        (:func:`trading.learning.features.intraday_history`)."""
        from trading.config import PREDICTOR_INTERVALS
        from trading.learning import backtest, features, models
        from trading.signals import predictors

        symbols = self._symbols(symbols)
        start_d, end_d = self._dates(start, end)
        cost_bps = params.number("cost_bps (basis points per trade)", cost_bps, 0, 1000)
        interval = params.choice("interval", self.config["predictor_interval"]
                                 if interval is None else interval, PREDICTOR_INTERVALS)
        intraday = interval != "1d"
        spec = self._source(source)
        chosen = predictors.from_config(self.config, params.predictor(predictor))  # PredictorUnavailable: the call
        runs = [chosen]
        if compare and chosen.name != predictors.DEFAULT:
            runs.append(predictors.from_config(self.config, predictors.DEFAULT))
        # Without --start the window starts where the first symbol's indicators are warm,
        # which a first pass over the bars finds (keeping only that date of each).
        passes = len(runs) + 1 + (start_d is None and not intraday)
        with self._running("backtest", 1 + passes * len(symbols) + 1) as job:
            last = end_d or clock.today()
            # a year of bars before the window, so the first day's indicators are warm; a
            # csv:DIR folder's whole record when no start is given
            first = (start_d - dt.timedelta(days=SUMMARY_DAYS) if start_d
                     else None if _local(spec) else
                     _years_before(last, HISTORY_YEARS) - dt.timedelta(days=SUMMARY_DAYS))
            loading = _Loading(spec, symbols, first, last, start_d, end_d, interval)
            index = self._index_bars(loading, job)
            window_start = start_d.isoformat() if start_d else None
            if intraday:
                from trading.market.intraday_summary import IndexWindows

                windows = IndexWindows(index, interval, self.config)
                index = _sessions_of(index)  # the daily closes and opens the equity needs
            elif window_start is None:
                warm = [b.dates[min(WARMUP_SESSIONS, len(b) - 1)]
                        for _, b in self._each(_Loading(spec, symbols, first, last), job,
                                               "finding the first warm session of")]
                window_start = min(warm)
            model, model_note = None, {"used": False, "reason": "no active model"}
            active = models.load_active(self.config, self.store) if use_model else None
            if not use_model:
                model_note["reason"] = "use_model is false"
            elif intraday and active is not None:
                model_note = {"used": False, "version": active.version,
                              "reason": f"the model learned from daily bars; a {interval} "
                                        "backtest does not use it"}
            elif active is not None:
                seen = active.meta.get("train_end", "")
                if seen and seen < window_start:
                    model, model_note = active, {"used": True, "version": active.version,
                                                 "train_end": seen}
                else:
                    model_note = {"used": False, "version": active.version, "train_end": seen,
                                  "reason": f"the active model saw prices up to {seen}, not "
                                            f"before the window starting {window_start}: "
                                            "using it would be lookahead"}
            signals = {run.name: backtest.Signals() for run in runs}
            dates: set[str] = set()
            for s, b in self._each(loading, job, "replaying"):
                h = features.intraday_history(
                    s, b, windows, interval, self.config, start=window_start,
                    end=end_d.isoformat() if end_d else None) if intraday else \
                    features.history(s, b, index, self.config, start=window_start)
                dates.update(h.dates)
                for run in runs:
                    signals[run.name].extend(backtest.replay(
                        {s: h}, self.config, start=window_start,
                        end=end_d.isoformat() if end_d else None, model=model,
                        predictor=run,
                        on_symbol=lambda i, n, s: self._step(
                            job, f"{predictors.label(run.provenance)} deciding {s}")))
            # Compared on the same symbol-sessions, always: one any contestant could not
            # score (a predictor that raised there) is dropped for all, and counted.
            dropped = backtest.same_sessions(signals) if compare and len(runs) > 1 else 0
            sessions = sorted(dates)
            following = dict(zip(sessions, sessions[1:]))
            index_close = dict(zip(index.dates, index.close.tolist())) if index is not None else {}
            index_open = dict(zip(index.dates, index.open.tolist())) if index is not None else {}
            reports = {}
            for run in runs:
                try:
                    r = backtest.evaluate(signals[run.name], index_close,
                                          cost_bps=float(cost_bps), next_session=following,
                                          index_open=index_open)
                except ValueError as exc:
                    why = predictors.summarize_errors(signals[run.name].errors) or exc
                    raise InvalidParams(f"cannot backtest {run.name}: {why}") from exc
                r.update(predictor=run.provenance, failed=len(signals[run.name].errors),
                         errors=predictors.summarize_errors(signals[run.name].errors))
                if compare:
                    r["edge"] = backtest.edge(signals[run.name])
                reports[run.name] = r
            self._step(job, "evaluating")
            report = reports[chosen.name]
            if compare:
                report["comparison"] = backtest.compare(reports)
                report["comparison_dropped"] = dropped
            report.update(source=spec, skipped=loading.skipped, left_out=loading.left_out,
                          model=model_note, interval=interval,
                          index_symbol=self.config["context.index"],
                          index_note=_index_note(index, self.config))
            return report

    # -- helpers --------------------------------------------------------------------------
    def _symbols(self, symbols: Any) -> list[str]:
        from trading.market.symbols import is_index

        raw = params.symbol_list(symbols, default=self.config["symbols"], limit=MAX_JOB_SYMBOLS)
        out = list(dict.fromkeys(params.symbol(s) for s in raw))  # linear, order kept
        if any(is_index(s) for s in out):
            raise InvalidParams("train and backtest take stock symbols, not an index")
        return out

    def _source(self, source: Any) -> str:
        from trading.market.sources import resolve

        spec = params.source(source)
        spec = spec if spec is not None else self.config["source"]
        resolve(spec, self.config.cache_dir)  # validates; raises InvalidParams
        return spec

    def _dates(self, start: Any, end: Any) -> tuple[dt.date | None, dt.date | None]:
        start_d, end_d = params.date("start", start), params.date("end", end)
        if start_d and start_d > (end_d or clock.today()):
            raise InvalidParams(f"start {start} is after " + (f"end {end}" if end_d else "today"))
        return start_d, end_d

    def _get_bars(self, loading: _Loading, symbol: str):
        """One symbol's bars from the market-data service, as Bars; RPCError for that symbol.

        The bars come from the market-data service (``get_bars``), not from the source
        directly: it owns the Yahoo fetching, its rate-limit backoff and the bar cache, and
        this service's unit has no network at all (PrivateNetwork=yes). One symbol per call:
        a call's answer is one symbol's history, whatever the size of the universe."""
        from trading.errors import ClientError
        from trading.market.summary import Bars

        try:
            asked = {"symbol": symbol, "period": loading.period, "source": loading.spec}
            if loading.interval != "1d":
                asked["interval"] = loading.interval
            got = self.peers.call("market-data", "get_bars", asked,
                                  timeout=max(self.config["timeout"], 120.0))
        except ClientError as exc:
            raise Unavailable(f"market-data is not reachable: {exc}") from exc
        if loading.interval != "1d":  # keyed by bar stamp, the bar in progress left out
            from trading.market.intraday_summary import as_intraday_bars

            return as_intraday_bars(got["bars"]), bool(got.get("stale"))
        return Bars.from_rows(got["bars"]), bool(got.get("stale"))

    def _index_bars(self, loading: _Loading, job: Job):
        """The index bars in the job's dates, or None (the context is then NEUTRAL)."""
        from trading.errors import RPCError

        self._step(job, f"loading bars from {loading.spec}", 0)
        try:
            b, _ = self._get_bars(loading, self.config["context.index"])
        except RPCError:
            return None
        job.done = 1
        b = loading.cut(b)
        return b if len(b) else None

    def _each(self, loading: _Loading, job: Job, stage: str):
        """``(symbol, bars)`` for each symbol with bars in the job's dates, one at a time
        (in symbol order, as the reports have always been built), each cut to those dates;
        what is skipped or left out goes to ``loading``. UpstreamUnavailable at the end when
        no symbol had any."""
        from trading.errors import RPCError

        for symbol in sorted(loading.symbols):
            self._step(job, f"{stage} {symbol}")
            try:
                whole, stale = self._get_bars(loading, symbol)
            except RPCError as exc:
                loading.skipped[symbol] = str(exc)
                continue
            if stale:
                logger.warning("using stale bars (source unreachable) for %s", symbol)
                loading.skipped[symbol] = "stale: served from the cache, the source was " \
                                          "unreachable"
            b = loading.cut(whole, symbol)
            del whole
            if not len(b):
                loading.skipped[symbol] = f"no bars from {loading.first or 'the first'} to " \
                                          f"{loading.last}"
                continue
            loading.used.append(symbol)
            yield symbol, b
        if not loading.used:
            why = "; ".join(dict.fromkeys(loading.skipped.values()))  # each reason once
            shown = ", ".join(loading.symbols[:5]) + (
                f" and {len(loading.symbols) - 5} more" if len(loading.symbols) > 5 else "")
            raise UpstreamUnavailable(f"no bars for any of {shown} from {loading.spec}: {why}",
                                      source=loading.spec)


class _Loading:
    """What one job asks market-data for (source, symbols, dates and the ``get_bars``
    period) and what it found: the symbols used, the skipped ones with why, and per symbol
    the bars outside the dates that were not used, with why (``left_out``)."""

    def __init__(self, spec: str, symbols: list[str], first: dt.date | None, last: dt.date,
                 start: dt.date | None = None, end: dt.date | None = None,
                 interval: str = "1d") -> None:
        self.spec, self.symbols, self.first, self.last = spec, symbols, first, last
        self.interval = interval
        # A csv:DIR folder is asked for all of it ("max"; the fixed periods stop at ten
        # years): it is local, and what the dates leave out can then be said. Others are
        # asked for the period covering the dates.
        days = (clock.today() - first).days if first else None
        self.period = WHOLE if _local(spec) or days is None or days > PERIODS[LONGEST] \
            else covering(days, shortest="1y")
        self.before = (f"before --start {start}, less {SUMMARY_DAYS} days of indicator warm-up"
                       if start else f"before the {HISTORY_YEARS} years used from {spec} "
                       "(--start for more)")
        self.after = f"after --end {end}" if end else "after today"
        self.used: list[str] = []
        self.skipped: dict[str, str] = {}
        self.left_out: dict[str, str] = {}

    def cut(self, b, symbol: str | None = None):
        """``b`` in ``[first, last]``; what fell outside is noted for ``symbol``. (An intraday
        bar's key is its stamp, which sorts after its date: "~" sorts after every stamp.)"""
        kept = _until(b, self.last.isoformat() + ("~" if self.interval != "1d" else ""))
        after = len(b) - len(kept)
        if self.first is not None:
            kept = kept[bisect.bisect_left(kept.dates, self.first.isoformat()):]
        before = len(b) - after - len(kept)
        if symbol is not None and (before or after):
            notes = []
            if before:
                notes.append(f"{b.dates[0]}..{b.dates[before - 1]} ({self.before})")
            if after:
                notes.append(f"{b.dates[len(b) - after]}..{b.dates[-1]} ({self.after})")
            self.left_out[symbol] = "; ".join(notes)
        return kept


def _row_budget(per_session: Mapping[str, int], budget: int) -> dict[str, Any] | None:
    """Where a train job's rows must start to stay within ``budget`` (``training.max_rows``)
    symbol-sessions, keeping the newest sessions whole; None when every one fits. Measured
    (bench/bench_training.py --max-rows, docs/benchmarks.md#training): about 0.9 KB a row at
    the job's peak beside some 165 MB of imports; 133,744 rows peaked at 289 MB, past the
    training unit's MemoryMax=288M (the job is OOM-killed there), and the default 80,000 at
    240 MB, its MemoryHigh=."""
    total = sum(per_session.values())
    if total <= budget:
        return None
    kept, start = 0, None
    for session in sorted(per_session, reverse=True):
        if kept + per_session[session] > budget:
            break
        kept += per_session[session]
        start = session
    if start is None:
        raise InvalidParams(f"one session holds more than training.max_rows ({budget:,}) "
                            "symbol-sessions: raise it or train on fewer symbols")
    return {"max_rows": budget, "trained_from": start, "symbol_sessions": total,
            "left_out": total - kept,
            "why": f"{total:,} symbol-sessions are more than one train job holds "
                   f"(training.max_rows, {budget:,}): the newest {kept:,} are used, from "
                   f"{start}; --start chooses another window"}


def _sessions_of(bars):
    """Intraday bars as one bar a session (its first bar's open, its last complete bar's
    close): what the equity curve and the index's returns are computed from."""
    from trading.market.summary import Bars

    if bars is None or not len(bars):
        return None
    rows: dict[str, dict[str, Any]] = {}
    for stamp, o, c in zip(bars.dates, bars.open.tolist(), bars.close.tolist()):
        day = rows.get(stamp[:10])
        if day is None:
            rows[stamp[:10]] = {"date": stamp[:10], "open": o, "high": c, "low": c, "close": c,
                                "volume": 0}
        else:
            day["close"] = c
    return Bars.from_rows(list(rows.values()))


def _local(spec: str) -> bool:
    """A csv:DIR folder: the trader's own record, used whole (``sample`` and Yahoo are not)."""
    return spec.startswith("csv:")


def _years_before(day: dt.date, years: int) -> dt.date:
    """The same day ``years`` earlier (28 February for a 29th with no match)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def _until(bars, end: str):
    """The bars dated on or before ``end``."""
    return bars[:bisect.bisect_right(bars.dates, end)]


def _index_note(index, cfg) -> dict[str, Any]:
    if index is None or not len(index):
        return {"symbol": cfg["context.index"], "available": False,
                "note": "no index bars: market context is the NEUTRAL fallback throughout"}
    return {"symbol": cfg["context.index"], "available": True, "first": index.dates[0],
            "last": index.dates[-1], "sessions": len(index),
            "note": "outside these dates the market context is the NEUTRAL fallback"}


SERVICE = Training


def run() -> int:
    """The console script ``trading-training``, which the unit runs: a script entry point skips
    ``python -m``'s runpy (about 5 ms of every activation)."""
    from trading.handlers import main

    return main(SERVICE)


if __name__ == "__main__":
    raise SystemExit(run())
