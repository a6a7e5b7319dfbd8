"""Predictors: what decides each prediction, named by ``predictor = "module:Name"``.

The prediction service, ``trading replay`` and ``trading backtest`` hand each symbol's inputs
to one predictor through this module; the built-in rules are the default predictor
(``trading.signals.rules:predict``) and go through exactly the same path. The contract, the
fields and the errors are in docs/predictors.md; in short:

- **Loading** (:func:`load`): every predictor but the built-in rules is loaded, and runs,
  in a child process of its own (:mod:`trading.signals.predictor_process`), kept between
  calls. There, the configured folder (``predictors_dir``, default ``predictors/`` beside the
  configuration file) goes first on ``sys.path``, then ``module`` is imported and ``Name``
  looked up in it. A class is instantiated with no arguments, a function without
  parameters is called as a factory, anything else is used as it is. Then
  the object is a **monolith** predictor if it has ``calculate_confidence``, else a
  **native** one (a ``predict`` method, or the object itself when it is callable). A module
  that cannot be imported or built is a :class:`PredictorUnavailable` naming the predictor,
  the file and the exception. A loaded predictor is kept for the life of the process.
- **Calling** (:meth:`Predictor.call`): the monolith form gets the four dicts of the
  monolith's ``calculate_confidence(symbol=, tech_data=, news_data=, volume_data=,
  market_data=)`` (:func:`monolith_args`), every field the monolith reads present (``None``
  where unknown) beside ours; the native form gets ``symbol=, market=, sentiment=, model=,
  config=``, our own shapes. Either way the predictor gets copies: what it does to them
  cannot change the stored inputs.
- **Answers** (:func:`prediction`): a mapping with ``action`` (BUY, SELL or HOLD) and
  ``confidence`` (a number in [0, 1]); anything else is an :class:`InvalidPrediction`. Other
  fields are kept (made JSON-safe); the fields the ledger fills in itself are not taken. A
  plugged predictor's answer weighs at most :data:`ANSWER_LIMIT` as JSON: past it, its long
  texts and lists are cut (:func:`shorten`; the prediction says ``cut``), and one still too
  large is refused.
- **Time** (:func:`run`): one call's symbols get one budget (``predictor_timeout``); what is
  not done by then is a :class:`PredictorTimeout` entry and the request returns. A plugged
  predictor's process is killed then (so a predictor spinning with the GIL held never
  freezes the service) and started again on the next call. The built-in rules run on a
  worker thread, which Python cannot kill; they do not hang.
- **Provenance** (:attr:`Predictor.provenance`): the name, the form, the file, its SHA-256
  and the module's ``__version__``, stored with every prediction it makes.

The module is long because those five are one contract, read and changed together; each is
a section below, in that order. A sixth is the predictor's side of its own process
(:func:`serve`, run as ``python -m trading.signals.predictors``) and the checking of what
comes back from it (the service's side is :mod:`trading.signals.predictor_process`): the
same loading and answers, across a pipe.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import numbers
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from trading.errors import (InvalidPrediction, PredictorError, PredictorFailed,
                            PredictorTimeout, PredictorUnavailable)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from trading.signals.predictor_process import ProcessPredictor

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
DEFAULT = "trading.signals.rules:predict"
ACTIONS = ("BUY", "SELL", "HOLD")

# The monolith's field names, verbatim (issue 15): each dict passed has every one of them.
TECH_FIELDS = ("current_price", "rsi", "macd_histogram", "price_vs_sma20", "tech_score",
               "market_price")
VOLUME_FIELDS = ("volume_trend", "price_volume_correlation", "volume_quality_score")
MARKET_FIELDS = ("context", "trend_pct", "confidence_multiplier", "buy_threshold")
NEWS_FIELDS = ("score", "confidence", "headline_count")
# What the ledger sets on every prediction itself; an answer's own value is not taken.
RESERVED = ("id", "symbol", "created_at", "session", "predictor", "outcomes", "inputs")
# What one answer may weigh as JSON. The rules' stored predictions weigh about 1.5 KB and the
# example monolith's 0.8 KB; 64 KiB leaves a plugin forty times that for its own fields, and
# keeps `trading history` (100 rows) within 6.4 MiB, far below the client's reply_limit.
ANSWER_LIMIT = 64 << 10
_KEEP_TEXT, _KEEP_ITEMS = 2000, 100  # what shorten() keeps of a long text, a long list


class Predictor:
    """A loaded predictor: :meth:`call` it with one symbol's inputs.

    ``target`` is the object whose method (or itself) is called, ``form`` is ``monolith`` or
    ``native``, ``import_s`` how long importing and building it took."""

    isolated = False  # in this process; a plugged one is a predictor_process.ProcessPredictor

    def __init__(self, name: str, target: Any, form: str, call: Callable[..., Any],
                 provenance: JSON, import_s: float) -> None:
        self.name = name
        self.target = target
        self.form = form
        self._call = call
        self.provenance = provenance
        self.import_s = import_s
        # One batch at a time: a monolith class is rarely safe to run on two threads at once,
        # and a hung batch must make later ones wait (and say so), not pile up threads.
        self.lock = threading.Lock()
        self.busy_since: float | None = None

    def call(self, symbol: str, market: Mapping | None, sentiment: Mapping | None,
             model: Mapping | None, config: Any) -> Any:
        """The predictor's raw answer for one symbol (not yet checked: see :func:`prediction`)."""
        if self.form == "monolith":
            return self._call(symbol=symbol, **monolith_args(market, sentiment, config))
        return self._call(symbol=symbol, market=_copy(market), sentiment=_copy(sentiment),
                          model=_copy(model), config=config)

    def describe(self) -> JSON:
        """What ``health_check``, ``trading status`` and ``trading config show`` print."""
        return {**self.provenance, "ok": True, "import_ms": round(self.import_s * 1000, 1)}

    def close(self) -> None:
        """Release what it holds (a process of its own: see predictor_process)."""


# -- loading -----------------------------------------------------------------------------------
_loaded: dict[tuple[str, str], Predictor | ProcessPredictor] = {}
# A load still running (a slow or hung import): since when, its thread, where it puts the result.
_loading: dict[tuple[str, str], tuple[float, threading.Thread, dict]] = {}
_lock = threading.Lock()


def label(provenance: Mapping | None) -> str:
    """A short name for tables: the module's last part (``rules`` for the built-in one,
    ``momentum`` for ``momentum:EnhancedMarketAwarePredictor``)."""
    if not isinstance(provenance, Mapping) or not provenance.get("name"):
        return "rules"  # stored before predictors were pluggable: the rules made it
    return str(provenance["name"]).partition(":")[0].rpartition(".")[2]


def load(spec: str, directory: Path | None, timeout: float) -> Predictor | ProcessPredictor:
    """The predictor ``spec`` (``module:Name``), imported at most once per process.

    The built-in rules are imported here, in a worker thread; any other predictor in a child
    process of its own (:class:`trading.signals.predictor_process.ProcessPredictor`), which is
    killed when the import does not finish within ``timeout`` seconds."""
    key = (spec, str(directory or ""))
    with _lock:
        if key in _loaded:
            return _loaded[key]
        if spec != DEFAULT:
            from trading.signals.predictor_process import ProcessPredictor

            # Under the lock: one process per predictor, however many calls ask at once.
            _loaded[key] = ProcessPredictor(
                spec, directory, [sys.executable, "-m", "trading.signals.predictors"],
                line_limit=ANSWER_LIMIT + (4 << 10)).start(timeout)
            return _loaded[key]
        loading = _loading.get(key)
        if loading is None:
            box: dict[str, Any] = {}
            thread = threading.Thread(target=_import_in_thread,
                                      args=(key, spec, directory, box),
                                      name=f"import {spec}", daemon=True)
            _loading[key] = loading = (time.monotonic(), thread, box)
            thread.start()
    # Calls that arrive during the import (a cold service's first calls come together)
    # wait for the same one, each up to its own timeout: none is refused for being early.
    since, thread, box = loading
    thread.join(timeout)
    if thread.is_alive():
        raise PredictorUnavailable(f"predictor {spec} did not finish importing within "
                                   f"{timeout:g}s (predictor_timeout; importing for "
                                   f"{time.monotonic() - since:.0f}s: an import that hangs?)",
                                   predictor=spec)
    if "error" in box:
        raise box["error"]
    return box["predictor"]


def _import_in_thread(key: tuple[str, str], spec: str, directory: Path | None, box: dict
                      ) -> None:
    """The import thread's work: the rules into ``box`` (or the exception), then kept."""
    try:
        box["predictor"] = _load(spec, directory)
    except BaseException as exc:  # noqa: BLE001 - handed to the callers' threads
        box["error"] = exc
    finally:
        with _lock:
            _loading.pop(key, None)
            if "predictor" in box:
                _loaded[key] = box["predictor"]


def _load(spec: str, directory: Path | None) -> Predictor:
    module_name, _, attr = spec.partition(":")
    where = _where(module_name, directory)
    if directory is not None and directory.is_dir():
        # First, as Python puts a script's own folder: the user's module is the one found.
        if sys.path[:1] != [str(directory)]:
            while str(directory) in sys.path:
                sys.path.remove(str(directory))
            sys.path.insert(0, str(directory))
        top = module_name.split(".")[0]
        held = getattr(sys.modules.get(top), "__file__", None)
        if held and Path(where).is_file() and Path(held).parent not in (
                directory, directory / top):
            _forget(top)  # a module of that name from elsewhere: this folder's file wins
    started = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, SystemExit: all one clear line
        _forget(module_name)  # nothing half-imported stays: the next call tries the file anew
        raise PredictorUnavailable(f"predictor {spec} cannot be imported ({where}): "
                                   f"{type(exc).__name__}: {exc}", predictor=spec) from exc
    where = getattr(module, "__file__", None) or where
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as exc:
        raise PredictorUnavailable(f"predictor {spec}: {module_name} ({where}) has no "
                                   f"{attr}", predictor=spec) from exc
    try:
        target = _build(obj)
    except PredictorUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's constructor
        raise PredictorUnavailable(f"predictor {spec} ({where}) cannot be built: "
                                   f"{type(exc).__name__}: {exc}", predictor=spec) from exc
    if callable(getattr(target, "calculate_confidence", None)):
        form, call = "monolith", target.calculate_confidence
    elif callable(getattr(target, "predict", None)):
        form, call = "native", target.predict
    elif callable(target) and not isinstance(target, type):
        form, call = "native", target
    else:
        raise PredictorUnavailable(
            f"predictor {spec} ({where}) is neither an object with calculate_confidence(...) "
            "or predict(...) nor a function (docs/predictors.md)", predictor=spec)
    import_s = time.perf_counter() - started
    version = (getattr(target, "__version__", None) or getattr(module, "__version__", None)
               or (_own_version() if module_name.startswith("trading.") else None))
    provenance = {"name": spec, "form": form, "file": where if isinstance(where, str) else None,
                  "sha256": _sha256(where), "version": None if version is None else str(version)}
    logger.info("predictor %s (%s, %s) loaded in %.1f ms", spec, form, where, import_s * 1000)
    return Predictor(spec, target, form, call, provenance, import_s)


def _forget(module_name: str) -> None:
    for name in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
        sys.modules.pop(name, None)


def _where(module_name: str, directory: Path | None) -> str:
    """Where the module should be, for messages before it is imported."""
    if directory is not None:
        top = module_name.split(".")[0]
        for candidate in (directory / f"{top}.py", directory / top / "__init__.py"):
            if candidate.exists():
                return str(candidate)
        return f"not in {directory}; searched the import path"
    return "searched the import path"


def _build(obj: Any) -> Any:
    """A class is instantiated; a function without parameters is a factory; else as is."""
    if isinstance(obj, type):
        return obj()
    code = getattr(obj, "__code__", None)
    if (code is not None and code.co_argcount == 0 and code.co_kwonlyargcount == 0
            and not code.co_flags & 0x0C):  # no *args, no **kwargs
        return obj()
    return obj


def _sha256(path: Any) -> str | None:
    if not isinstance(path, str):
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _own_version() -> str:
    from trading import __version__

    return __version__


def close_all() -> None:
    """Forget every loaded predictor and stop the processes of plugged ones (the next load
    starts them again)."""
    with _lock:
        loaded = list(_loaded.values())
        _loaded.clear()
    for p in loaded:
        p.close()


def check(cfg: Any) -> JSON:
    """Load the configured predictor here and say how it went (``trading status``, ``trading
    config show``): ``{name, ok, error | form, file, sha256, version, import_ms}``."""
    spec = cfg["predictor"]
    try:
        return load(spec, cfg.predictors_dir, cfg["predictor_timeout"]).describe()
    except PredictorError as exc:
        return {"name": spec, "ok": False, "error": exc.message,
                "directory": str(cfg.predictors_dir)}


def from_config(cfg: Any, spec: str | None = None) -> Predictor:
    """The configured predictor (or ``spec``), from the configured folder."""
    return load(spec or cfg["predictor"], cfg.predictors_dir, cfg["predictor_timeout"])


# -- the monolith's arguments ----------------------------------------------------------------
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, scalars): cheaper than copy.deepcopy."""
    kind = type(value)
    if kind in _SCALARS:  # the usual leaves, before the ABC checks (a replay makes millions)
        return value
    if kind is dict or isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    return value


def _section(market: Mapping | None, key: str) -> dict:
    value = market.get(key) if isinstance(market, Mapping) else None
    return _copy(value) if isinstance(value, Mapping) else {}


def monolith_args(market: Mapping | None, sentiment: Mapping | None, cfg: Any) -> JSON:
    """``tech_data``, ``news_data``, ``volume_data`` and ``market_data`` as the monolith's
    ``calculate_confidence`` reads them: our sections with each of the monolith's fields
    present (``None`` where unknown). A missing market context is NEUTRAL with the configured
    NEUTRAL terms and ``fallback: true``, as market-data itself reports one; missing
    sentiment is no evidence: score 0, confidence 0, no headlines, ``missing: true``."""
    from trading.signals.rules import setting

    tech = {f: None for f in TECH_FIELDS} | _section(market, "technical")
    volume = {f: None for f in VOLUME_FIELDS} | _section(market, "volume")
    context = _section(market, "market_context")
    if context.get("context") is None:
        context = {"context": "NEUTRAL", "trend_pct": None,
                   "confidence_multiplier": setting(cfg, "multiplier.neutral"),
                   "buy_threshold": setting(cfg, "threshold.neutral"), "fallback": True}
    context = {f: None for f in MARKET_FIELDS} | context
    if isinstance(sentiment, Mapping):
        news = {f: None for f in NEWS_FIELDS} | _copy(sentiment)
    else:
        news = {"score": 0.0, "confidence": 0.0, "headline_count": 0, "headlines": [],
                "missing": True}
    symbol = market.get("symbol") if isinstance(market, Mapping) else None
    news.setdefault("symbol", symbol)
    return {"tech_data": tech, "news_data": news, "volume_data": volume,
            "market_data": context}


# -- answers ---------------------------------------------------------------------------------
def _json_safe(value: Any, depth: int = 0) -> Any:
    """Plain JSON values (a numpy float becomes a float, an object its text); NaN is None."""
    if depth > 20:
        return str(value)
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v, depth + 1) for v in value]
    return str(value)


def shorten(value: Any, depth: int = 0) -> Any:
    """JSON data with each text over 2,000 characters and each list over 100 items cut to
    that, saying how much was cut: how an answer over :data:`ANSWER_LIMIT` is made to fit."""
    if isinstance(value, str) and len(value) > _KEEP_TEXT:
        return f"{value[:_KEEP_TEXT]}... [{len(value) - _KEEP_TEXT} characters cut]"
    if depth > 20:
        return value
    if isinstance(value, dict):
        return {k: shorten(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        kept = [shorten(v, depth + 1) for v in value[:_KEEP_ITEMS]]
        if len(value) > _KEEP_ITEMS:
            kept.append(f"[{len(value) - _KEEP_ITEMS} more items cut]")
        return kept
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def prediction(answer: Any, symbol: str, market: Mapping | None, sentiment: Mapping | None,
               predictor: Predictor) -> JSON:
    """The stored prediction from a predictor's answer, or :class:`InvalidPrediction`.

    The answer's fields are kept (JSON-safe); what it leaves out that the ledger and the
    tables show (price, RSI, sentiment score, market context, staleness) comes from the
    inputs, and ``reasons`` is always a list of strings."""
    name = predictor.name
    if not isinstance(answer, Mapping):
        raise InvalidPrediction(f"predictor {name} answered {type(answer).__name__} for "
                                f"{symbol}, not a dict with action and confidence",
                                predictor=name)
    action = answer.get("action")
    if not isinstance(action, str) or action.strip().upper() not in ACTIONS:
        raise InvalidPrediction(f"predictor {name} gave {symbol} the action {action!r}; "
                                "expected BUY, SELL or HOLD", predictor=name)
    raw = answer.get("confidence")
    confidence = _number(raw)
    if confidence is None or not 0.0 <= confidence <= 1.0:
        raise InvalidPrediction(f"predictor {name} gave {symbol} the confidence {raw!r}; "
                                "expected a number from 0 to 1", predictor=name)
    out: JSON = {str(k): _json_safe(v) for k, v in answer.items() if k not in RESERVED}
    out["action"] = action.strip().upper()
    out["confidence"] = round(confidence, 4)
    out["score"] = _number(out.get("score"))
    reasons = out.get("reasons", out.get("reason"))
    if isinstance(reasons, str):
        reasons = [reasons]
    out["reasons"] = [str(r) for r in reasons] if isinstance(reasons, list) else []
    # What the tables and the ledger's columns show, from the inputs where the answer has
    # none of the right type (a monolith's answer rarely carries them).
    tech = _section(market, "technical")
    context = _section(market, "market_context").get("context")
    for key, kind, value in (
            ("price", float, _number(tech.get("current_price")) or
             _number(tech.get("market_price"))),
            ("rsi", float, _number(tech.get("rsi"))),
            ("sentiment_score", float, _number(sentiment.get("score"))
             if isinstance(sentiment, Mapping) else None),
            ("market_context", str, context if isinstance(context, str) else "NEUTRAL"),
            ("data_stale", bool, bool(isinstance(market, Mapping) and market.get("stale") or
                                      isinstance(sentiment, Mapping) and sentiment.get("stale"))),
            ("model_version", str, None)):
        have = out.get(key)
        if not isinstance(have, kind) or kind is float and isinstance(have, bool):
            out[key] = value
    out["symbol"] = symbol
    out["predictor"] = dict(predictor.provenance)
    return out


# -- running a batch within the budget --------------------------------------------------------
class Job:
    """One symbol's inputs: the market-data result, the sentiment answer (or None) and the
    model's ``{version, probability}`` (or None)."""

    __slots__ = ("symbol", "market", "sentiment", "model", "key")

    def __init__(self, symbol: str, market: Mapping, sentiment: Mapping | None = None,
                 model: Mapping | None = None, key: str | None = None) -> None:
        self.symbol, self.market, self.sentiment, self.model = symbol, market, sentiment, model
        self.key = key or symbol  # what results and errors are keyed by (a replay: per session)


CHUNK = 64  # jobs per budget in run_many: about a session of a big watch list


def run_many(predictor: Predictor, jobs: Sequence[Job], config: Any, budget: float,
             chunk: int = CHUNK) -> tuple[dict[str, JSON], dict[str, JSON]]:
    """:func:`run` over many jobs (a replay, a backtest), ``budget`` seconds for each chunk of
    ``chunk`` jobs. After a timeout the rest is not tried: each chunk would only wait out its
    own budget behind the hung call."""
    results: dict[str, JSON] = {}
    errors: dict[str, JSON] = {}
    for start in range(0, len(jobs), chunk):
        done, failed = run(predictor, jobs[start:start + chunk], config, budget)
        results.update(done)
        errors.update(failed)
        if any(e.get("problem") == PredictorTimeout.problem for e in failed.values()):
            for job in jobs[start + chunk:]:
                errors[job.key] = PredictorTimeout(
                    f"{job.key} not predicted: predictor {predictor.name} timed out earlier "
                    "in this run", predictor=predictor.name).entry()
            break
    return results, errors


def summarize_errors(errors: Mapping[str, JSON]) -> JSON:
    """``{problem: {count, first}}`` for a replay's or backtest's report."""
    out: JSON = {}
    for key, e in errors.items():
        slot = out.setdefault(e.get("problem", "error"), {"count": 0, "first": f"{key}: "
                                                          f"{e.get('message')}"})
        slot["count"] += 1
    return out


class _Batch:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.results: dict[str, JSON] = {}
        self.errors: dict[str, JSON] = {}
        self.current: str | None = None
        self.started = False
        self.abandoned = False


def run(predictor: Predictor, jobs: Sequence[Job], config: Any, budget: float
        ) -> tuple[dict[str, JSON], dict[str, JSON]]:
    """Predict every job within ``budget`` seconds: ``(results, errors)`` by ``job.key``.

    A predictor that raises for a symbol gives that symbol a ``predictor-failed`` entry; an
    answer outside the contract an ``invalid-prediction`` entry; a symbol not done when the
    budget runs out a ``predictor-timeout`` entry. The others get their predictions."""
    remote = getattr(predictor, "run_remote", None)
    if remote is not None:  # in the prediction service (trading.signals.remote_predictor)
        return remote(jobs, budget)
    if predictor.isolated:
        answered, errors = predictor.run_batch(jobs, config, budget)
        results: dict[str, JSON] = {}
        for job, message in answered:
            try:
                results[job.key] = _from_process(message, job, predictor)
            except PredictorError as exc:
                errors[job.key] = exc.entry()
        return results, errors
    batch = _Batch()
    deadline = time.monotonic() + budget
    thread = threading.Thread(target=_work, args=(predictor, jobs, config, batch, deadline),
                              name=f"predictor {predictor.name}", daemon=True)
    thread.start()
    thread.join(budget)
    with batch.lock:
        batch.abandoned = True  # a late answer from here on is dropped, not half-used
        results, errors = dict(batch.results), dict(batch.errors)
        current, started = batch.current, batch.started
    name = predictor.name
    for job in jobs:
        if job.key in results or job.key in errors:
            continue
        if not started:
            since = predictor.busy_since
            busy = f" for {time.monotonic() - since:.0f}s" if since is not None else ""
            message = (f"predictor {name} is still busy{busy} with an earlier call (hung?); "
                       f"{job.symbol} not predicted within {budget:g}s (predictor_timeout)")
        elif job.key == current:
            message = (f"predictor {name} did not answer for {job.symbol} within {budget:g}s "
                       "(predictor_timeout): cut off")
            logger.error("%s", message)
        else:
            message = (f"{job.symbol} not predicted: predictor {name} used up the "
                       f"{budget:g}s budget (predictor_timeout) on the symbols before it")
        errors[job.key] = PredictorTimeout(message, predictor=name).entry()
    return results, errors


def _work(predictor: Predictor, jobs: Sequence[Job], config: Any, batch: _Batch,
          deadline: float) -> None:
    if not predictor.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
        return  # still busy with an earlier batch: run() says so
    predictor.busy_since = time.monotonic()
    try:
        with batch.lock:
            batch.started = True
        for job in jobs:
            with batch.lock:
                if batch.abandoned:
                    return
                batch.current = job.key
            try:
                answer = predictor.call(job.symbol, job.market, job.sentiment, job.model, config)
                outcome, ok = prediction(answer, job.symbol, job.market, job.sentiment,
                                         predictor), True
            except InvalidPrediction as exc:
                logger.warning("%s", exc.message)
                outcome, ok = exc.entry(), False
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code
                logger.warning("predictor %s raised for %s", predictor.name, job.symbol,
                               exc_info=True)
                outcome, ok = PredictorFailed(
                    f"predictor {predictor.name} raised for {job.symbol}: "
                    f"{type(exc).__name__}: {exc}", predictor=predictor.name,
                    exception=type(exc).__name__).entry(), False
            with batch.lock:
                if batch.abandoned:
                    return
                (batch.results if ok else batch.errors)[job.key] = outcome
    finally:
        predictor.busy_since = None
        predictor.lock.release()


# -- a plugged predictor's own process --------------------------------------------------------
def _from_process(message: Any, job: Job, predictor: ProcessPredictor) -> JSON:
    """The prediction in one answer of a predictor's process (the child's side is
    :func:`serve`), or the PredictorError it stands for, logged."""
    name = predictor.name
    kind = next((k for k in ("answer", "not_mapping", "too_large", "raised")
                 if isinstance(message, dict) and k in message), None)
    try:
        if kind == "answer":
            out = prediction(message["answer"], job.symbol, job.market, job.sentiment,
                             predictor)
            cut = message.get("cut_from")
            if isinstance(cut, int):
                out["cut"] = {"from_bytes": cut, "limit": ANSWER_LIMIT}
                logger.warning("predictor %s answered %d bytes for %s, over the %d byte "
                               "limit: its long texts were cut", name, cut, job.symbol,
                               ANSWER_LIMIT)
            return out
        if kind == "not_mapping":
            raise InvalidPrediction(f"predictor {name} answered {str(message[kind])[:100]} "
                                    f"for {job.symbol}, not a dict with action and confidence",
                                    predictor=name)
        if kind == "too_large":
            raise InvalidPrediction(f"predictor {name} answered {message[kind]} bytes for "
                                    f"{job.symbol}, over the {ANSWER_LIMIT} byte limit even "
                                    "with its long texts cut: not stored", predictor=name)
    except InvalidPrediction as exc:
        logger.warning("%s", exc.message)
        raise
    if kind == "raised":
        raised = str(message[kind])[:100]
        text = str(message.get("message", ""))[:2000]
        logger.warning("predictor %s raised for %s: %s: %s", name, job.symbol, raised, text)
        raise PredictorFailed(f"predictor {name} raised for {job.symbol}: {raised}: {text}",
                              predictor=name, exception=raised)
    raise PredictorFailed(f"predictor {name}'s process answered {str(message)[:100]!r} "
                          f"for {job.symbol}", predictor=name, exception="Protocol")


def _answer_of(predictor: Predictor, job: Mapping, config: Any) -> JSON:
    """One job's answer line, in the predictor's process: JSON-safe, and within ANSWER_LIMIT
    (long texts cut, else only its size)."""
    try:
        answer = predictor.call(job["symbol"], job["market"], job["sentiment"], job["model"],
                                config)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's code
        import traceback

        traceback.print_exc()  # to stderr: the service's journal
        return {"raised": type(exc).__name__, "message": str(exc)[:2000]}
    if not isinstance(answer, Mapping):
        return {"not_mapping": type(answer).__name__}
    from trading.runtime.protocol import encode

    out = {"answer": _json_safe(dict(answer))}
    size = len(encode(out))
    if size <= ANSWER_LIMIT:
        return out
    cut = {"answer": shorten(out["answer"]), "cut_from": size}
    return cut if len(encode(cut)) <= ANSWER_LIMIT else {"too_large": size}


def serve() -> int:
    """The predictor's process (``python -m trading.signals.predictors``): the child's side
    of :mod:`trading.signals.predictor_process`, loading one predictor and answering jobs."""
    import os

    from trading.runtime.protocol import decode, encode
    from trading.signals.predictor_process import config_from, exit_on_hang_up

    # The protocol gets private copies of stdin and stdout; the predictor's prints go to
    # stderr and its reads of stdin find nothing.
    proto_in = os.fdopen(os.dup(0), "rb")
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    threading.Thread(target=exit_on_hang_up, args=(proto_in.fileno(),), daemon=True).start()

    def send(message: Any) -> None:
        proto_out.write(encode(message))
        proto_out.flush()

    predictor: Predictor | None = None
    config: Any = None
    for line in proto_in:
        message = decode(line.decode("utf-8"))
        if "load" in message:
            folder = message.get("directory")
            try:
                predictor = _load(message["load"], Path(folder) if folder else None)
            except PredictorUnavailable as exc:
                send({"error": exc.message})
                return 1
            send({"loaded": predictor.provenance, "import_s": predictor.import_s})
        elif "config" in message:
            config = config_from(message["config"])
        elif "jobs" in message and predictor is not None:
            for job in message["jobs"]:
                send(_answer_of(predictor, job, config))
    return 0


if __name__ == "__main__":
    raise SystemExit(serve())
