"""Calibration: the rules' score and the model's output as a probability of being right.

The rules' confidence is the strength of a lean (``max(s, 1 - s)`` times multipliers), and
the model's output is a logistic fit; neither is a probability of anything until it is checked
against outcomes. This module maps them onto what the outcomes say, with logistic (Platt)
scaling (fitted by Newton's method, :func:`_newton`; applying a fit is plain arithmetic).

What "right" is, per action (:func:`trading.signals.outcomes.is_right`): a BUY when the price
rises, a SELL when it falls, a HOLD when it moves less than the horizon's band. Every scored
prediction, whatever its action, says whether the price rose, fell or stayed in the band, so
each of the three is fitted on *all* scored outcomes, not only on the few BUY and SELL calls
(94 of 3,304 on the real bars), per horizon (1 and 5 sessions):

- ``up``: P(return > 0) from the signed lean ``score - 0.5``; a BUY's probability;
- ``down``: P(return < 0) from the same; a SELL's;
- ``quiet``: P(|return| < band) from the lean's strength ``|score - 0.5|`` and the log of the
  20-session volatility (``technical.volatility_pct``): a HOLD's. How far a price moves is
  first a matter of its volatility; without it a HOLD's probability is one number for every
  stock (COL's HOLDs were right 77 % of the time, BHP's 56 %).

Inputs are standardised on the fitting rows; the fit minimises what scikit-learn's
``LogisticRegression`` does with its default L2 penalty (C = 1), so an input with no information shrinks towards the base
rate instead of claiming confidence. Each row is weighted by the share of an independent
outcome it is (:func:`independent_weights`: overlapping horizons, symbols of one session), so
the penalty shrinks a fit by its independent evidence, not by its number of rows. With fewer
than :data:`~trading.signals.outcomes.MIN_OUTCOMES` scored outcomes at a horizon there is no
fit: the prediction says "too little history to calibrate" and carries no probability for
that horizon (its ``confidence`` is then the rules' raw strength, flagged
``calibrated: false``).

Out of sample, always. :func:`walk_forward` calibrates a replay as it would have been
calibrated live: the predictions of session ``d`` use a fit on the outcomes settled by ``d``
(``end_session <= d``: the close of ``d`` is known at its close), refitted every
:data:`REFIT_SESSIONS` sessions on an expanding window, and once every horizon is
fitted only when the outcomes have also grown by :data:`REFIT_GROWTH` since the last fit.
Twenty sessions add about ``20 / S`` to the outcomes of ``S`` sessions, 4 % at 500: so that is
every 20 sessions for the first two years of a history and every 4 % of its length after
(a year at 25 years). A 30-year replay
refitted every 20 sessions would cost the square of its length for late fits that move by
less than their noise. Nothing is tuned on the period it is evaluated on: the inputs, the
penalty, :data:`MIN_OUTCOMES` and :data:`REFIT_SESSIONS` were fixed before the first
evaluation run, and :data:`REFIT_GROWTH` later for cost alone (the two-year replay of the
seven symbols refits exactly as before). :func:`fit_store` fits on every scored outcome (leaving
synthetic ``sample`` data out) and stores the record (the ``calibrations`` table) that live
predictions use (:func:`latest`, :func:`apply`).

The model (:mod:`trading.learning.models`) is calibrated the same way (:func:`fit_platt`).

The module is long because the fit, the records live predictions read, and the walk-forward
over a replay are one method: splitting them would put the definition of "calibrated" in
three places.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trading.signals.outcomes import (HOLD_BAND, HORIZONS, MIN_OUTCOMES, PREDICTOR_SQL,
                                      latest_per_session)

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
REFIT_SESSIONS = 20    # walk-forward: refit about monthly,
REFIT_GROWTH = 0.04    # once the outcomes have grown by 4 % since the last fit
_BATCH = 2000          # predictions rewritten per transaction by the walk-forward
KIND = "rules"
METHOD = "platt"       # logistic scaling (Platt 1999), with the inputs named in each fit
_EPS = 1e-6
# action -> the fit giving its probability of being right
FIT_FOR = {"BUY": "up", "SELL": "down", "HOLD": "quiet"}
INPUTS = {"up": ("lean",), "down": ("lean",), "quiet": ("strength", "log_volatility")}


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _finite(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    v = float(v)
    return v if math.isfinite(v) else math.nan


@dataclass
class Logistic:
    """``p = sigmoid(b + sum w_i (x_i - mean_i) / scale_i)``; a missing input is its mean."""

    inputs: tuple[str, ...]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    n: int
    base_rate: float  # the label's share in the fitting rows

    def p(self, x: Mapping[str, float]) -> float:
        z = self.intercept
        for name, m, s, w in zip(self.inputs, self.mean, self.scale, self.coef):
            v = _finite(x.get(name))
            if not math.isnan(v):
                z += w * (v - m) / s
        return min(1 - _EPS, max(_EPS, _sigmoid(z)))

    def to_json(self) -> JSON:
        return {"inputs": list(self.inputs), "mean": self.mean, "scale": self.scale,
                "coef": self.coef, "intercept": self.intercept, "n": self.n,
                "base_rate": self.base_rate}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Logistic:
        k = len(d["inputs"])
        if not all(len(d[key]) == k for key in ("mean", "scale", "coef")):
            raise ValueError("calibration: mean, scale and coef must match the inputs")
        return cls(tuple(d["inputs"]), [float(v) for v in d["mean"]],
                   [float(v) or 1.0 for v in d["scale"]], [float(v) for v in d["coef"]],
                   float(d["intercept"]), int(d["n"]), float(d["base_rate"]))


def fit_logistic(rows: Sequence[Mapping[str, float]], labels: Sequence[int],
                 inputs: Sequence[str], *, weights: Sequence[float] | None = None) -> Logistic:
    """Fit 0/1 ``labels`` on ``inputs`` of ``rows``, rows ``weights``-weighted (:func:`_newton`)."""
    import numpy as np

    x = np.array([[_finite(r.get(name)) for name in inputs] for r in rows], dtype=float)
    return fit_matrix(x.reshape(len(rows), len(inputs)), np.asarray(labels, dtype=int), inputs,
                      weights=None if weights is None else np.asarray(weights, dtype=float))


def fit_matrix(x, y, inputs: Sequence[str], *, weights=None,
               start: Logistic | None = None) -> Logistic:
    """:func:`fit_logistic` on a float matrix (one column per input, NaN: missing) and 0/1
    labels already in numpy arrays. ``start``: an earlier fit of the same inputs to start the
    solver from (a walk-forward refit on a few per cent more rows: the same optimum, reached
    in a few steps instead of dozens)."""
    import numpy as np

    mean = np.array([float(np.nanmean(c)) if np.isfinite(c).any() else 0.0 for c in x.T])
    x = np.where(np.isnan(x), mean, x)  # a missing input sits at the mean: no push either way
    scale = x.std(axis=0) if len(x) else np.ones(len(inputs))
    scale[~(scale > 0)] = 1.0
    z = (x - mean) / scale
    rate = float(y.mean()) if len(y) else 0.5
    if not len(y) or y.min() == y.max():  # one class only (np.unique sorts: slow)
        r = min(1 - 1e-3, max(1e-3, rate))
        coef, intercept = np.zeros(len(inputs)), math.log(r / (1 - r))
    else:

        first = None
        if start is not None and tuple(start.inputs) == tuple(inputs):
            first = np.array([*start.coef, start.intercept], dtype=float)
        beta = _newton(z, y, np.ones(len(y)) if weights is None else weights, first)
        coef, intercept = beta[:-1], float(beta[-1])
    return Logistic(tuple(inputs), mean.tolist(), scale.tolist(), [float(c) for c in coef],
                    float(intercept), int(len(y)), round(rate, 6))


def _newton(z, y, w, start=None, *, tol: float = 1e-10, max_iter: int = 50):
    """``[coef..., intercept]`` minimising ``C * sum(w * log loss) + |coef|^2 / 2`` with
    C = 1 and the intercept not penalised: the objective of scikit-learn's
    ``LogisticRegression(C=1.0)``, solved by Newton's method with a halving line search.

    By hand because of its size: one or two inputs and an intercept, fitted six times at each
    of a long replay's hundreds of refits. scikit-learn's general solver (L-BFGS, to a
    tolerance of 1e-4) spent about 15 ms a fit on the twenty histories and its import 1-2 s;
    Newton on a 3 x 3 system needs 4-5 steps from zero, 2-3 from the previous refit
    (``start``), and reaches the same optimum (within scikit-learn's own tolerance)."""
    import numpy as np

    # Column by column, in plain numpy: products through BLAS (x.T @ v on a few thousand
    # rows by three columns) start OpenBLAS's threads, which spin against the replay's reader
    # process for the two cores; the walk-forward's fits took six times as long.
    k = z.shape[1]
    cols = [np.ascontiguousarray(z[:, j], dtype=float) for j in range(k)]
    y = np.asarray(y, dtype=float)
    penalty = np.ones(k + 1)
    penalty[-1] = 0.0
    beta = np.zeros(k + 1) if start is None else np.array(start, dtype=float)

    def at(b):
        """The objective at ``b``, and the probabilities, from one pass over the rows."""
        t = np.full(len(y), b[k])
        for j in range(k):
            t += b[j] * cols[j]
        e = np.exp(-np.abs(t))  # never overflows
        p = np.where(t >= 0, 1.0, e) / (1.0 + e)
        loss = np.maximum(t, 0.0) + np.log1p(e) - y * t  # log(1 + exp(t)) - y t
        return float((w * loss).sum() + 0.5 * float((penalty * b * b).sum())), p

    value, p = at(beta)
    for _ in range(max_iter):
        r, d = w * (p - y), w * p * (1.0 - p)
        gradient = np.array([(c * r).sum() for c in cols] + [r.sum()]) + penalty * beta
        hessian = np.diag(penalty)
        for i in range(k):
            di = cols[i] * d
            for j in range(i, k):
                hessian[i, j] += (di * cols[j]).sum()
                hessian[j, i] = hessian[i, j]
            hessian[i, k] = hessian[k, i] = di.sum()
        hessian[k, k] += d.sum()
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while True:  # Newton's step, halved until it does not make things worse
            trial = beta - size * step
            new, q = at(trial)
            if new <= value or size < 1e-6:
                break
            size /= 2
        beta, value, p = trial, new, q
        if np.abs(size * step).max() < tol:
            break
    return beta


def logit(p: float) -> float:
    p = min(1 - _EPS, max(_EPS, float(p)))
    return math.log(p / (1 - p))


def fit_platt(raw: Sequence[float], labels: Sequence[int], *,
              weights: Sequence[float] | None = None) -> Logistic:
    """Platt scaling of a probability: ``sigmoid(a * logit(raw) + b)``, on one input."""
    return fit_logistic([{"logit": logit(p)} for p in raw], labels, ("logit",),
                        weights=weights)


def independent_weights(sessions: Sequence[Any], horizon: int) -> Any:
    """Each outcome's share of an independent one: ``1 / (horizon * outcomes that session)``.

    Over time, ``h``-session returns a session apart overlap (two 5-session returns share
    four days); across symbols, one session's stocks move with one market. So ``n`` rows are
    about ``sessions / h`` independent outcomes, and a fit on a few weeks of seven correlated
    stocks shrinks towards its base rate instead of trusting a handful of market moves.
    A numpy array, one weight a row."""
    import numpy as np

    sessions = np.asarray(sessions)
    if not len(sessions):
        return np.zeros(0)
    _, at, per = np.unique(sessions, return_inverse=True, return_counts=True)
    return 1.0 / (max(1, int(horizon)) * per[at].astype(float))


# -- the rules ---------------------------------------------------------------------------------
def features(score: Any, volatility_pct: Any) -> dict[str, float]:
    """The calibration inputs of one prediction: its score and its stock's volatility."""
    s = _finite(score)
    v = _finite(volatility_pct)
    return {"lean": s - 0.5, "strength": abs(s - 0.5),
            "log_volatility": math.log(v) if v > 0 else math.nan}


def market_volatility(market: Any) -> float | None:
    tech = market.get("technical") if isinstance(market, Mapping) else None
    v = _finite(tech.get("volatility_pct")) if isinstance(tech, Mapping) else math.nan
    return None if math.isnan(v) else v


def labels(forward_return: float, horizon: int) -> dict[str, int]:
    band = HOLD_BAND.get(horizon, HOLD_BAND[max(HOLD_BAND)])
    return {"up": int(forward_return > 0), "down": int(forward_return < 0),
            "quiet": int(abs(forward_return) < band)}


@dataclass
class RulesCalibration:
    """The three fits per horizon; a horizon without them had too little history."""

    horizons: dict[str, dict[str, Logistic]] = field(default_factory=dict)
    fitted_on: dict[str, int] = field(default_factory=dict)   # outcomes per horizon
    through: str | None = None                                # last end_session seen
    source: str | None = None
    id: int | None = None

    def probability(self, action: str, x: Mapping[str, float], horizon: int) -> float | None:
        fits = self.horizons.get(str(horizon))
        if not fits:
            return None
        return fits[FIT_FOR[action]].p(x)

    def to_json(self) -> JSON:
        return {"kind": KIND, "method": METHOD, "min_outcomes": MIN_OUTCOMES,
                "horizons": {h: {k: f.to_json() for k, f in fits.items()}
                             for h, fits in self.horizons.items()},
                "fitted_on": self.fitted_on, "through": self.through, "source": self.source}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], id: int | None = None) -> RulesCalibration:
        if d.get("kind") != KIND:
            raise ValueError(f"not a rules calibration: kind={d.get('kind')!r}")
        return cls({h: {k: Logistic.from_json(f) for k, f in fits.items()}
                    for h, fits in (d.get("horizons") or {}).items()},
                   {h: int(n) for h, n in (d.get("fitted_on") or {}).items()},
                   d.get("through"), d.get("source"), id)


Outcome = tuple[Mapping[str, float], int, float, str]  # features, horizon, return, end_session


def fit_rules(outcomes: Iterable[Outcome], *, source: str | None = None) -> RulesCalibration:
    """Fit the three logistic maps per horizon on ``(features, horizon, forward_return,
    end_session)`` rows; a horizon with fewer than :data:`MIN_OUTCOMES` rows stays unfitted."""
    return Prepared(outcomes).fit(None, source=source)


class Prepared:
    """Outcomes in the arrays the fits take, built once: :func:`walk_forward` refits on a
    growing prefix (the outcomes settled by each refit session) hundreds of times, and
    building the inputs row by row for every refit made a replay's cost grow with the
    square of its length. ``outcomes`` must be in ``end_session`` order for prefixes.

    About 45 bytes an outcome: sessions as their ranks, labels as bytes, the ``up`` and
    ``down`` maps sharing their one input. A replay of the ASX 200 over ten years
    has a million outcomes; kept as lists of Python values they grew the replay by half a
    megabyte a thousand calls."""

    def __init__(self, outcomes: Iterable[Outcome]) -> None:
        from array import array

        import numpy as np

        self._last: dict[tuple[int, str], Logistic] = {}  # the latest fit of each map
        columns = {h: {i: array("d") for i in ("lean", "strength", "log_volatility")}
                   for h in HORIZONS}
        rets = {h: array("d") for h in HORIZONS}
        ends = {h: array("l") for h in HORIZONS}
        every = array("l")
        code: dict[str, int] = {}  # each session a number: millions of rows, ~7,000 sessions
        for x, h, r, end in outcomes:
            n = code.get(end)
            if n is None:
                n = code[end] = len(code)
            every.append(n)
            if h not in columns:
                continue
            for i, col in columns[h].items():
                col.append(_finite(x.get(i)))
            rets[h].append(r)
            ends[h].append(n)
        # The numbers as the sessions sort: a session's rank among them.
        self.sessions = sorted(code)
        rank = np.empty(len(code), dtype=np.int32)
        rank[[code[s] for s in self.sessions]] = np.arange(len(code), dtype=np.int32)

        def ranks(numbers) -> Any:
            return rank[np.frombuffer(numbers, dtype=np.int64)] if len(numbers) \
                else np.zeros(0, dtype=np.int32)

        self.ends = ranks(every)
        self.by_h: dict[int, JSON] = {}
        for h in HORIZONS:
            n = len(rets[h])
            ret = np.frombuffer(rets[h], dtype=float) if n else np.zeros(0)
            cols = {i: np.frombuffer(c, dtype=float) if n else np.zeros(0)
                    for i, c in columns[h].items()}
            end = ranks(ends[h])
            band = HOLD_BAND.get(h, HOLD_BAND[max(HOLD_BAND)])
            matrices: dict[tuple[str, ...], Any] = {}  # maps of the same inputs share one
            for inputs in INPUTS.values():
                if inputs not in matrices:
                    matrices[inputs] = np.column_stack([cols[i] for i in inputs]).reshape(
                        n, len(inputs))
            self.by_h[h] = {
                "ends": end,
                "x": {name: matrices[inputs] for name, inputs in INPUTS.items()},
                "y": {"up": (ret > 0).astype(np.int8), "down": (ret < 0).astype(np.int8),
                      "quiet": (np.abs(ret) < band).astype(np.int8)},
                # A row's weight depends only on how many rows share its end session, and a
                # prefix by end session holds all of them: the same as computed on the prefix.
                "w": independent_weights(end, h),
            }

    def _through(self, session: str) -> int:
        """How many of the outcomes (in ``end_session`` order) ended by ``session``."""
        import bisect

        import numpy as np

        return int(np.searchsorted(self.ends, bisect.bisect_right(self.sessions, session)))

    def fit(self, through: str | None, *, source: str | None = None) -> RulesCalibration:
        """The fit on the outcomes with ``end_session <= through`` (None: on all of them,
        in any order)."""
        import bisect

        import numpy as np

        if through is None:
            last = self.sessions[-1] if self.sessions else None
        else:
            seen = self._through(through)
            last = self.sessions[int(self.ends[seen - 1])] if seen else None
        cal = RulesCalibration(through=last, source=source)
        work = []
        for h in HORIZONS:
            d = self.by_h[h]
            n = len(d["ends"]) if through is None else int(np.searchsorted(
                d["ends"], bisect.bisect_right(self.sessions, through)))
            cal.fitted_on[str(h)] = n
            if n >= MIN_OUTCOMES:
                work += [(h, name, d["x"][name][:n], d["y"][name][:n], d["w"][:n])
                         for name in INPUTS]
        # Each fit starts from the same map's previous one (a few per cent more rows: the
        # optimum moved little).
        fits = [fit_matrix(x, y, INPUTS[name], weights=w, start=self._last.get((h, name)))
                for h, name, x, y, w in work]
        for (h, name, *_), fit in zip(work, fits):
            cal.horizons.setdefault(str(h), {})[name] = fit
            self._last[(h, name)] = fit
        return cal

    def count(self, through: str) -> int:
        return self._through(through)


def describe(cal: RulesCalibration | None) -> JSON:
    """What a prediction carries about the calibration it used."""
    if cal is None:
        return {"method": None, "record": None, "fitted_on": {}, "through": None}
    return {"method": METHOD, "record": cal.id, "fitted_on": cal.fitted_on,
            "through": cal.through, "source": cal.source}


def apply(p: JSON, market: Any, cal: RulesCalibration | None) -> JSON:
    """Put the calibrated probability of being right on a :func:`rules.decide` prediction.

    Sets ``strength`` (the rules' raw confidence, what the thresholds compare), ``probability``
    (``{"1": p or None, "5": ...}``), ``calibrated``, ``calibration`` and ``confidence``: the
    probability after one session when there is one, else the raw strength (``calibrated``
    false, and a reason saying why). Returns ``p``."""
    strength = p.get("strength", p.get("confidence"))
    x = features(p.get("score"), market_volatility(market))
    probability = {str(h): (None if cal is None else cal.probability(p["action"], x, h))
                   for h in HORIZONS}
    probability = {h: None if v is None else round(v, 4) for h, v in probability.items()}
    p["strength"] = strength
    p["probability"] = probability
    p["calibrated"] = probability["1"] is not None
    p["calibration"] = describe(cal)
    p["confidence"] = probability["1"] if p["calibrated"] else strength
    reasons = p.setdefault("reasons", [])
    reasons[:] = [r for r in reasons if not r.startswith(("calibrated:", "uncalibrated"))]
    if p["calibrated"]:
        later = probability.get("5")
        reasons.append(f"calibrated: P({p['action']} right) {probability['1']:.2f} after 1 "
                       "session" + (f", {later:.2f} after 5" if later is not None else "")
                       + f" ({METHOD}, {cal.fitted_on.get('1', 0)} scored outcomes through "
                       f"{cal.through})")
    else:
        have = 0 if cal is None else cal.fitted_on.get("1", 0)
        reasons.append(f"uncalibrated: too little history to calibrate ({have} scored "
                       f"outcomes, {MIN_OUTCOMES} needed); confidence {strength:.2f} is the "
                       "rules' strength, not a probability")
    return p


# -- the store ---------------------------------------------------------------------------------
def _store_outcomes(rows) -> Iterator[Outcome]:
    for r in rows:
        yield (features(r["score"], r["vol"]), r["horizon"], r["forward_return"],
               r["end_session"])


def fit_store(store, *, include_sample: bool = False, source: str | None = None,
              created_at: str | None = None) -> RulesCalibration:
    """Fit on every scored outcome of the rules' daily calls in the store (``source``: only
    those made from it; sample data left out unless ``include_sample``) and store the record;
    returns it (with its id)."""
    from trading.signals.events import now_iso
    from trading.signals.predictors import DEFAULT

    # The rules' own daily predictions only: the fit maps the rules' score on daily bars, not
    # a plugged predictor's, nor the rules' score on hourly bars (issue 29: an intraday call
    # uses this fit too, but its outcomes are not what the daily score predicts).
    where, args = [f"{PREDICTOR_SQL} = ?", "p.interval = '1d'"], [DEFAULT]
    if source is not None:
        where.append("p.source = ?")
        args.append(source)
    if not include_sample:
        where.append("coalesce(p.data_source, '') != 'sample'")
    rows = store.conn.execute(  # a session's runs count once, as the scorecard counts them
        latest_per_session(" AND ".join(where)) + " SELECT p.score, json_extract(p.inputs,"
        " '$.market.technical.volatility_pct') AS vol, o.horizon, o.forward_return,"
        " o.end_session FROM outcomes o JOIN p ON p.id = o.prediction_id WHERE p.nth = 1",
        tuple(args))  # streamed: a million outcomes are never a list of rows
    cal = fit_rules(_store_outcomes(rows), source=source)
    with store.transaction() as db:
        cur = db.execute(
            "INSERT INTO calibrations (created_at, kind, source, fitted_on, through, record)"
            " VALUES (?,?,?,?,?,?)",
            (created_at or now_iso(), KIND, source, max(cal.fitted_on.values(), default=0),
             cal.through, json.dumps(cal.to_json())))
        cal.id = cur.lastrowid
    return cal


def latest(store) -> RulesCalibration | None:
    """The newest rules calibration record, or None (then predictions say they are
    uncalibrated). A broken record is logged and ignored, never a failed prediction."""
    rows = store.query("SELECT id, record FROM calibrations WHERE kind = ? "
                       "ORDER BY id DESC LIMIT 1", (KIND,))
    if not rows:
        return None
    try:
        return RulesCalibration.from_json(json.loads(rows[0]["record"]), rows[0]["id"])
    except (ValueError, KeyError, TypeError) as exc:
        logger.error("calibration record %s is unreadable (%s); predicting uncalibrated",
                     rows[0]["id"], exc)
        return None


def _session_before(session: str) -> str:
    import datetime as dt

    from trading.market import asx

    return asx.previous_session(dt.date.fromisoformat(session)).isoformat()


# -- the walk-forward over a replay --------------------------------------------------------------
def walk_forward(store, run_id: str, *, during: bool = False) -> JSON:
    """Calibrate the stored predictions of one replay run out of sample, session by session.

    The predictions of session ``d`` get the fit made at the latest refit session ``r <= d``
    from the run's outcomes with ``end_session <= r``. ``during``: the run's predictions were
    made during their session (an intraday replay, issue 29), when that session's close was not
    known yet, so ``r`` is the session before ``d``. Rewrites their ``prediction`` JSON
    (confidence, probability, calibration, reasons) and ``probability_1``/``_5``. Returns
    ``{sessions, refits, calibrated: {h: n}, uncalibrated: {h: n}}``."""
    outs = store.conn.execute(  # streamed into compact arrays, never a list of rows
        "SELECT p.score, json_extract(p.inputs, '$.market.technical.volatility_pct') AS vol,"
        " o.horizon, o.forward_return, o.end_session FROM outcomes o"
        " JOIN predictions p ON p.id = o.prediction_id WHERE p.run_id = ?"
        " ORDER BY o.end_session", (run_id,))
    prepared = Prepared(_store_outcomes(outs))
    sessions = [d for (d,) in store.tuples(
        "SELECT DISTINCT session FROM predictions WHERE run_id = ? ORDER BY session",
        (run_id,))]
    fits: dict[str, RulesCalibration] = {}
    current: RulesCalibration | None = None
    since = 0
    refits = 0
    for d in sessions:
        upto = _session_before(d) if during else d
        since += 1
        if current is None or not all(current.horizons.get(str(h)) for h in HORIZONS) \
                or since >= REFIT_SESSIONS:
            have = sum(current.fitted_on.values()) if current else 0
            # Refit when there is more to learn from: any new outcome while a horizon is
            # unfitted, else REFIT_GROWTH more. Refitting a long replay's millions of
            # outcomes every 20 sessions cost the square of its length for fits that moved
            # by less than their own noise.
            grown = prepared.count(upto)
            if grown > have and (current is None or grown >= have * (1 + REFIT_GROWTH)
                                 or not all(current.horizons.get(str(h)) for h in HORIZONS)):
                current = prepared.fit(upto)
                refits += 1
                since = 0
        fits[d] = current
    # Each row is rewritten in place, the JSON by SQLite (json_set) with what the fit changes:
    # reading, decoding, encoding and writing back every prediction's whole JSON was a third
    # of a long replay's calibration.
    from trading.signals.ledger import dumps as ledger_dumps

    described = {id(cal): ledger_dumps(describe(cal)) for cal in fits.values()}
    counts = {"calibrated": {str(h): 0 for h in HORIZONS},
              "uncalibrated": {str(h): 0 for h in HORIZONS}}
    last = 0
    while True:  # a batch at a time, in the order of the rows: memory flat in the run's size
        rows = store.tuples(
            "SELECT id, session, action, score, coalesce(json_extract(prediction,"
            " '$.strength'), confidence), json_extract(prediction, '$.reasons'),"
            " json_extract(inputs, '$.market.technical.volatility_pct') FROM predictions"
            " WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
            (run_id, last, _BATCH)).fetchall()
        if not rows:
            break
        updates = []
        for pid, session, action, score, strength, reasons, vol in rows:
            cal = fits[session]
            p = {"action": action, "score": score, "strength": strength,
                 "reasons": json.loads(reasons) if reasons else []}
            apply(p, {"technical": {"volatility_pct": vol}}, cal)
            probability = p["probability"]
            for h in HORIZONS:
                counts["calibrated" if probability[str(h)] is not None
                       else "uncalibrated"][str(h)] += 1
            updates.append((p["confidence"], probability["1"], probability["5"],
                            p["strength"], p["strength"], ledger_dumps(probability),
                            "true" if p["calibrated"] else "false",
                            described[id(cal)], p["confidence"],
                            ledger_dumps(p["reasons"]), pid))
        last = rows[-1][0]
        with store.transaction() as db:  # strength: the column repeats the JSON's (0012)
            db.executemany(
                "UPDATE predictions SET confidence = ?, probability_1 = ?, probability_5 = ?,"
                " strength = ?, prediction = CASE WHEN json_valid(prediction) THEN"
                " json_set(prediction, '$.strength', ?, '$.probability', json(?),"
                " '$.calibrated', json(?), '$.calibration', json(?), '$.confidence', ?,"
                " '$.reasons', json(?)) ELSE prediction END WHERE id = ?", updates)
    return {"sessions": len(sessions), "refits": refits, **counts}
