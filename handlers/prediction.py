"""The prediction service: BUY/SELL/HOLD predictions, the prediction log and outcome scoring.

One ``generate_predictions`` call makes one bulk call to market-data and one to sentiment
(through their sockets, so systemd starts them on demand), asks the active model (issue 7) if
there is one, hands each symbol's inputs to the configured predictor (``predictor``; the
built-in rules by default: :mod:`trading.signals.predictors`), and stores every prediction
with its inputs, the predictor's provenance and an event in one transaction. The events are
published to Redis afterwards when ``redis_url`` is set (:mod:`trading.signals.events`).

Failure is per symbol where it can be: a symbol market-data cannot serve, or the predictor
raises for, answers wrongly for or runs out of time on, gets an error entry and the others
are predicted; a sentiment service that is down costs confidence, not the prediction. Only
market-data being unreachable, or a predictor that cannot be imported, fails the call.
The predictor is imported on the first prediction, not when the service starts.

Intervals (issue 29): a call is made at the configured ``predictor_interval`` (or the call's
``interval``): ``1d`` from daily bars, or ``1h``/``30m``/``15m`` from the complete intraday bars
market-data summarises, and each prediction is stored with it. At an intraday interval a symbol
whose last complete bar is the one its stream's latest call was made from is not predicted
again: it is listed in the answer's ``unchanged`` (``{SYMBOL: bar}``), so the half-hourly timer
says "no new completed bar" and stores nothing twice.
"""

from __future__ import annotations

import threading
import time
TYPE_CHECKING = False  # typing costs ~3 ms of every cold start; annotations are strings
if TYPE_CHECKING:
    from typing import Any

from trading import log
from trading.errors import InvalidParams, NotFound, RPCError, TradingError, Unavailable
from trading.handlers import params
from trading.runtime.protocol import rpc
from trading.runtime.service import Service

logger = log.getLogger(__name__)

# The market source named on a call also picks the news source where one exists, so
# `--source sample` is a fully offline run; csv:DIR has no news, so the configured one is used.
_NEWS_FOR = {"sample": "sample", "yahoo": "yahoo"}


class Prediction(Service):
    name = "prediction"

    def __init__(self, context=None) -> None:
        super().__init__(context)
        self._publisher = None
        self._lock = threading.Lock()
        self._predictor = None
        self._predictor_error: str | None = None

    # -- lazily opened parts --------------------------------------------------------------
    @property
    def publisher(self):
        with self._lock:
            if self._publisher is None:
                from trading.signals.events import Publisher

                self._publisher = Publisher.from_config(self.config)
            return self._publisher

    def _model(self):
        """The active model or None; a missing or broken training module is not an error."""
        try:
            from trading.learning import models
        except ImportError:
            return None
        try:
            return models.load_active(self.config, store=self.store)
        except Exception:  # noqa: BLE001 - predicting without a model beats not predicting
            logger.exception("loading the active model failed; predicting without it")
            return None

    def predictor(self, spec: str | None = None):
        """The configured predictor, imported on first use (a PredictorUnavailable when it
        cannot be: tried again on the next call, so a fixed file is picked up); ``spec``:
        another one for this call (:meth:`_chosen`)."""
        from trading.errors import PredictorUnavailable
        from trading.signals import predictors

        if spec is not None and spec != self.config["predictor"]:
            return self._chosen(spec)
        try:
            self._predictor = predictors.from_config(self.config)
        except PredictorUnavailable as exc:
            self._predictor_error = exc.message
            logger.warning("%s", exc.message)  # the caller gets it as the call's error
            raise
        self._predictor_error = None
        return self._predictor

    def _chosen(self, spec: str):
        """A predictor one call names (``trading predict --predictor``): the built-in rules,
        or one in the predictors folder, which its owner put there. Any other module is
        refused: a caller of the socket must not make the service import what it likes."""
        import os

        from trading.signals import predictors

        if spec != predictors.DEFAULT:
            folder = os.fspath(self.config.predictors_dir)
            top = spec.partition(":")[0].split(".")[0]
            if not (os.path.isfile(os.path.join(folder, top + ".py"))
                    or os.path.isdir(os.path.join(folder, top))):
                raise InvalidParams(
                    f"predictor {spec}: a call may choose the built-in rules or a predictor "
                    f"in {folder} (no {top}.py there); any other is set as `predictor` in the "
                    "configuration", predictor=spec)
        return predictors.from_config(self.config, spec)

    @rpc
    def check_predictor(self, predictor: str | None = None) -> dict[str, Any]:
        """Import the configured predictor (or ``predictor``, as a call may name it) here, in
        the service's sandbox, as a prediction would, and describe it (``trading status``,
        ``trading config show`` and ``trading replay`` ask this rather than import the
        trader's code in their own, unsandboxed, process)."""
        from trading.errors import PredictorUnavailable

        spec = params.predictor(predictor)
        try:
            return self.predictor(spec).describe()
        except PredictorUnavailable as exc:
            return {"name": spec or self.config["predictor"], "ok": False,
                    "error": exc.message, "directory": str(self.config.predictors_dir)}

    @rpc
    def run_predictor(self, jobs: list, predictor: str | None = None) -> dict[str, Any]:
        """A plugged predictor's answers to jobs a client prepared (a replay's sessions):
        ``{predictor, results, errors}`` keyed by each job's ``key``. The trader's code runs
        here, in the service's sandbox, never in the command that reads the history
        (issue 27); nothing is stored. At most ``predictors.CHUNK`` jobs a call, each
        ``{symbol, key, market, sentiment?, model?}``, within ``predictor_timeout``."""
        from trading.signals import predictors

        spec = params.predictor(predictor)
        if not isinstance(jobs, list) or not 0 < len(jobs) <= predictors.CHUNK:
            raise InvalidParams(f"jobs: expected a list of 1 to {predictors.CHUNK} jobs")
        batch = []
        for i, job in enumerate(jobs):
            if not (isinstance(job, dict) and isinstance(job.get("market"), dict)
                    and isinstance(job.get("key"), str)
                    and all(isinstance(job.get(k), (dict, type(None)))
                            for k in ("sentiment", "model"))):
                raise InvalidParams(f"jobs[{i}]: expected {{symbol, key, market, sentiment, "
                                    "model}} with market an object")
            batch.append(predictors.Job(params.symbol(job.get("symbol")), job["market"],
                                        job.get("sentiment"), job.get("model"),
                                        key=job["key"][:200]))
        chosen = self.predictor(spec)
        results, errors = predictors.run(chosen, batch, self.config,
                                         self.config["predictor_timeout"])
        return {"predictor": chosen.provenance, "results": results, "errors": errors}

    def _predictor_health(self) -> dict[str, Any]:
        """The predictor as far as it is known, never importing it (health must stay cheap)."""
        loaded = self._predictor
        if loaded is not None:
            since = loaded.busy_since
            return {**loaded.describe(),
                    "busy_s": None if since is None else round(time.monotonic() - since, 1)}
        info = {"name": self.config["predictor"], "loaded": False}
        if self._predictor_error:
            info.update(ok=False, error=self._predictor_error)
        return info

    def health(self) -> dict[str, Any]:
        pub = self._publisher
        return {"db_path": self.config.db_file,
                "redis": bool(self.config["redis_url"]),
                "events_published": pub.published if pub else 0,
                "publish_failures": pub.failures if pub else 0,
                "predictor": self._predictor_health()}

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
        super().close()

    # -- predictions -----------------------------------------------------------------------
    @rpc
    def generate_predictions(self, symbols: list[str] | None = None,
                             source: str | None = None,
                             predictor: str | None = None,
                             interval: str | None = None) -> dict[str, Any]:
        """Predict BUY/SELL/HOLD for symbols (default: configured) and store the predictions;
        ``predictor`` (module:Name): this call's, instead of the configured one (the built-in
        rules or one in the predictors folder); ``interval`` (1d, 1h, 30m, 15m): the bars the
        inputs are computed over, instead of the configured ``predictor_interval``."""
        from trading.config import PREDICTOR_INTERVALS
        from trading.signals import ledger, predictors
        from trading.signals.events import now_iso

        given, errors = params.symbols(symbols, default=self.config["symbols"])
        source = params.source(source)
        chosen = params.predictor(predictor)
        interval = params.choice("interval", self.config["predictor_interval"]
                                 if interval is None else interval, PREDICTOR_INTERVALS)
        wanted = list(given)
        created_at = now_iso()
        out: dict[str, Any] = {"results": {}, "errors": errors, "created_at": created_at,
                               "model_version": None, "market_context": None,
                               "predictor": None, "interval": interval, "unchanged": {}}
        if not wanted:
            return out
        predictor = self.predictor(chosen)  # before the peers: a broken one fails fast
        out["predictor"] = predictor.provenance

        src = {"source": source} if source is not None else {}
        if interval != "1d":  # a daily call asks as before (a peer of an older install)
            src["interval"] = interval
        try:
            market = self.peers.call("market-data", "bulk_fetch", {"symbols": wanted, **src})
        except RPCError as exc:
            if isinstance(exc, InvalidParams):
                raise
            raise Unavailable(f"market-data failed: {exc.message}") from exc
        except TradingError as exc:
            raise Unavailable(f"market-data is not available: {exc}") from exc
        results: dict[str, Any] = market.get("results") or {}
        errors.update(market.get("errors") or {})
        out["market_context"] = market.get("market_context")
        if interval != "1d":
            out["unchanged"] = self._unchanged(results, predictor.name, interval)
            results = {s: r for s, r in results.items() if s not in out["unchanged"]}

        sentiment: dict[str, Any] = {}
        sentiment_problem = None
        if results:
            news = _NEWS_FOR.get(source or "")
            try:
                answer = self.peers.call("sentiment", "analyze_bulk",
                                         {"symbols": list(results),
                                          **({"source": news} if news else {})})
                sentiment = answer.get("results") or {}
            except TradingError as exc:
                sentiment_problem = f"sentiment unavailable: {exc}"
                logger.warning("%s; predicting without sentiment", sentiment_problem)

        model = self._model() if results else None
        version = getattr(model, "version", None) if model is not None else None
        out["model_version"] = version

        from trading.signals import calibration

        # The rules' score becomes a probability of being right (issue 16); a plugged
        # predictor's confidence is its own and is stored as it said.
        rules_decide = predictor.name == predictors.DEFAULT
        cal = calibration.latest(self.store) if results and rules_decide else None
        jobs = []
        for symbol in wanted:
            data = results.get(symbol)
            if data is None:
                if symbol not in errors and symbol not in out["unchanged"]:
                    errors[symbol] = NotFound(
                        f"market-data returned nothing for {symbol}").entry()
                continue
            probability = None
            if model is not None:
                try:
                    probability = float(model.probability(data))
                except Exception:  # noqa: BLE001 - one symbol's model failure is not fatal
                    logger.exception("model %s failed on %s", version, symbol)
            jobs.append(predictors.Job(symbol, data, sentiment.get(symbol), None if model is None
                                       else {"version": version, "probability": probability}))
        decided, failed = predictors.run(predictor, jobs, self.config,
                                         self.config["predictor_timeout"])
        errors.update(failed)
        made, inputs = [], {}
        for job in jobs:
            p = decided.get(job.symbol)
            if p is None:
                continue
            p["created_at"] = created_at
            if rules_decide:
                calibration.apply(p, job.market, cal)  # the probability of being right
            if sentiment_problem:
                p["reasons"].insert(0, sentiment_problem)
            made.append(p)
            inputs[job.symbol] = {"market": job.market, "sentiment": job.sentiment,
                                  "sentiment_error": sentiment_problem, "model": job.model}
        if made:
            written = ledger.record(self.store, made, inputs, source=source,
                                    run_id=ledger.new_run_id(), interval=interval)
            self.publisher.publish(written)
        out["results"] = {p["symbol"]: p for p in made}
        return out

    def _unchanged(self, results: dict[str, Any], predictor: str, interval: str
                   ) -> dict[str, str]:
        """The symbols whose last complete ``interval`` bar (market-data's ``as_of``) is the
        one the latest live call of the same stream (source, predictor, interval) was made
        from: ``{SYMBOL: bar}``. Predicting them again would store the same call twice."""
        from trading.signals import ledger

        same: dict[str, str] = {}
        for symbol, data in results.items():
            bar = data.get("as_of") if isinstance(data, dict) else None
            if not bar:
                continue
            last = ledger.last_bar(self.store, symbol, origin="live",
                                   source=data.get("source") or None, predictor=predictor,
                                   interval=interval)
            if last == bar:
                same[symbol] = bar
        return same

    @rpc
    def get_prediction(self, symbol: str, inputs: bool = False, origin: str | None = None,
                       source: str | None = None,
                       predictor: str | None = None) -> dict[str, Any]:
        """The latest stored prediction for one symbol, with its stream and outcomes so far
        (and, with ``inputs``, the market, sentiment and model inputs it was made from);
        ``origin``, ``source``, ``predictor``: of those streams only."""
        from trading.signals import ledger

        if not isinstance(inputs, bool):
            raise InvalidParams("inputs must be true or false")
        return ledger.latest(self.store, params.symbol(symbol), inputs, origin=origin,
                             source=source, predictor=predictor)

    @rpc
    def history(self, symbol: str | None = None, since: str | None = None,
                limit: int = 100, origin: str | None = None, source: str | None = None,
                predictor: str | None = None,
                interval: str | None = None) -> list[dict[str, Any]]:
        """Stored predictions, newest first, each with its stream (optionally one symbol,
        since an ISO date or date-time, Sydney time unless it has an offset; ``origin`` live
        or replay, ``source`` yahoo, csv, sample or a whole spec, ``predictor`` module:Name
        or its short name, ``interval`` 1d: of those streams only)."""
        from trading.signals import ledger

        return ledger.history(self.store, None if symbol is None else params.symbol(symbol),
                              since, limit, origin=origin, source=source, predictor=predictor,
                              interval=interval)

    @rpc
    def streams(self, symbol: str | None = None,
                since: str | None = None) -> list[dict[str, Any]]:
        """The prediction streams stored (origin, source, predictor, interval), each with its
        count and latest time, newest first (optionally of one symbol, since a time)."""
        from trading.signals import ledger

        return ledger.streams(self.store, None if symbol is None else params.symbol(symbol),
                              since)

    # -- outcomes --------------------------------------------------------------------------
    @rpc
    def evaluate_outcomes(self, source: str | None = None) -> dict[str, Any]:
        """Score every prediction old enough: returns after 1 and 5 sessions vs the index,
        each on bars from the source it was made from; ``source``: only those made from it."""
        from trading.signals import outcomes

        source = params.source(source)

        def get_bars(symbol: str, period: str, src: str | None = None):
            return self.peers.call("market-data", "get_bars",
                                   {"symbol": symbol, "interval": "1d", "period": period,
                                    **({"source": src} if src is not None else {})})

        done = outcomes.evaluate(self.store, get_bars, index=self.config["context.index"],
                                 publisher=self.publisher, source=source)
        if done["evaluated"]:
            # New outcomes: refit the rules' calibration live predictions use (issue 16).
            from trading.signals import calibration

            cal = calibration.fit_store(self.store)
            done["calibration"] = {"id": cal.id, "fitted_on": cal.fitted_on,
                                   "through": cal.through}
        return done

    @rpc
    def accuracy_report(self, origin: str | None = None,
                        include_sample: bool = False,
                        predictor: str | None = None,
                        interval: str | None = None) -> dict[str, Any]:
        """The scorecard per horizon: BUY/SELL and HOLD apart with Wilson intervals, beside
        baselines over the same sessions; Brier skill, ECE and reliability of the calibrated
        probability; each predictor's apart (``predictor``: only that one's) and each bar
        interval's (``by_interval``; ``interval``: only that one's calls). Sample
        (synthetic) predictions are left out unless include_sample."""
        from trading.signals import outcomes

        return outcomes.accuracy(self.store, origin, include_sample,
                                 params.predictor(predictor), interval)

    @rpc
    def events(self, after_id: int = 0, type: str | None = None, limit: int = 100,
               latest: bool = False) -> list[dict[str, Any]]:
        """Events after ``after_id`` (oldest first); ``latest``: the last ``limit`` of them."""
        from trading.signals import events

        return events.read(self.store, after_id, type, limit, bool(latest))


SERVICE = Prediction


def run() -> int:
    """The console script ``trading-prediction``, which the unit runs: a script entry point skips
    ``python -m``'s runpy (about 5 ms of every activation)."""
    from trading.handlers import main

    return main(SERVICE)


if __name__ == "__main__":
    raise SystemExit(run())
