"""Trained models: the fitted form, the registry in the store, and the active model.

The model is a scikit-learn ``LogisticRegression`` on standardised features (see
:func:`fit_logistic`), but what is kept is only its numbers: the feature names, the
standardisation (mean, scale), the coefficients and the intercept, as one JSON file under
``<state_dir>/models/``. :class:`LinearModel` turns a ``get_market_data`` result into a
probability with plain arithmetic, so the prediction service pays neither the scikit-learn nor
the numpy import (about 0.6 s and 0.1 s cold) to use a model.

The registry is the ``models`` table (migration 0005): one row per version with what it was
trained on, its out-of-sample metrics, and an ``active`` flag (at most one row, enforced by a
partial unique index). :func:`load_active` is what the prediction service calls.

Calibration (issue 16): :func:`train` fits a Platt scaling of the model's output
(:func:`trading.signals.calibration.fit_platt`) on its walk-forward out-of-sample
probabilities, and :meth:`LinearModel.probability` applies it, so the number the rules see is a
probability that was checked against outcomes the model had not seen. Each test block is
scored with a calibration fitted only on the earlier blocks' output (their labels settled
before the block starts); the first block has none and is left out of the calibrated figures.
A model is activated only when it beats the majority baseline on Brier score out of sample
(:func:`activate`, unless forced).

The module is long (past 400 lines) because the model's three lives are kept together: the
fitted form a prediction evaluates, the registry that says which one is active, and the
walk-forward training (with its calibration and verdict) that produces both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from trading import clock
from trading.errors import InvalidParams, NotFound
from trading.learning.features import FEATURE_NAMES, vector

logger = logging.getLogger(__name__)

KIND = "logistic-regression"


@dataclass
class LinearModel:
    """A fitted logistic model: ``p(up) = sigmoid(w . (x - mean) / scale + b)``."""

    version: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    horizon: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None  # a calibration.Logistic on the raw logit

    def raw_probability(self, market_data: dict) -> float:
        """The fitted logistic's P(close rises over ``horizon`` sessions), uncalibrated.

        A missing feature (``None``/NaN, e.g. before enough history) contributes nothing: it
        is taken at the training mean.
        """
        x = vector(market_data, self.features)
        z = self.intercept
        for xi, m, s, w in zip(x, self.mean, self.scale, self.coef):
            if not math.isnan(xi):
                z += w * (xi - m) / s
        return _sigmoid(z)

    def probability(self, market_data: dict) -> float:
        """P(close rises over ``horizon`` sessions): the raw output through the model's
        out-of-sample calibration when it has one."""
        return self.calibrate(self.raw_probability(market_data))

    def calibrate(self, raw: float) -> float:
        if not self.calibration:
            return raw
        from trading.signals.calibration import Logistic, logit

        return Logistic.from_json(self.calibration).p({"logit": logit(raw)})

    def probabilities(self, rows) -> list[float]:
        """Vectorised form for training and backtests: ``rows`` is an (n, k) array."""
        import numpy as np

        x = (np.asarray(rows, dtype=float) - np.asarray(self.mean)) / np.asarray(self.scale)
        x = np.where(np.isnan(x), 0.0, x)
        z = x @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def to_json(self) -> dict[str, Any]:
        return {"kind": KIND, "version": self.version, "features": self.features,
                "mean": self.mean, "scale": self.scale, "coef": self.coef,
                "intercept": self.intercept, "horizon": self.horizon, "meta": self.meta,
                "calibration": self.calibration}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModel:
        if data.get("kind") != KIND:
            raise ValueError(f"not a {KIND} model: kind={data.get('kind')!r}")
        k = len(data["features"])
        if not all(len(data[key]) == k for key in ("mean", "scale", "coef")):
            raise ValueError("model file: mean, scale and coef must match the features")
        unknown = set(data["features"]) - set(FEATURE_NAMES)
        if unknown:
            raise ValueError(f"model file names unknown features: {sorted(unknown)}")
        return cls(version=str(data["version"]), features=list(data["features"]),
                   mean=[float(v) for v in data["mean"]],
                   scale=[float(v) or 1.0 for v in data["scale"]],
                   coef=[float(v) for v in data["coef"]], intercept=float(data["intercept"]),
                   horizon=int(data.get("horizon", 1)), meta=dict(data.get("meta") or {}),
                   calibration=data.get("calibration") or None)


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def fit_logistic(x, y, features: list[str], *, horizon: int, version: str = "unsaved",
                 c: float = 1.0) -> LinearModel:
    """Fit scikit-learn's ``LogisticRegression`` (lbfgs, L2, deterministic) on standardised
    ``x`` and export its numbers. scikit-learn is imported here only, on the training path."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=int)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature (e.g. no index data) carries no signal
    z = (x - mean) / scale
    if len(np.unique(y)) < 2:
        # One class only: the honest model is the base rate (LogisticRegression refuses).
        rate = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
        coef, intercept = np.zeros(x.shape[1]), math.log(rate / (1 - rate))
    else:
        clf = LogisticRegression(C=c, max_iter=1000)
        clf.fit(z, y)
        coef, intercept = clf.coef_[0], float(clf.intercept_[0])
    return LinearModel(version=version, features=list(features), mean=mean.tolist(),
                       scale=scale.tolist(), coef=[float(v) for v in coef],
                       intercept=float(intercept), horizon=horizon)


# -- registry ----------------------------------------------------------------------------
def models_dir(cfg) -> Path:
    return cfg.state_dir / "models"


def new_version(model: LinearModel, when: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ-xxxxxx``: sortable by time, the suffix from the fitted numbers."""
    digest = hashlib.sha256(json.dumps(
        [model.features, model.mean, model.scale, model.coef, model.intercept]).encode())
    return f"{when:%Y%m%dT%H%M%SZ}-{digest.hexdigest()[:6]}"


def save(store, cfg, model: LinearModel, *, symbols: list[str], train_start: str,
         train_end: str, source: str, metrics: dict[str, Any],
         when: datetime | None = None) -> dict[str, Any]:
    """Write the model file (atomically) and its registry row; returns the row."""
    when = when or clock.now()
    model.version = new_version(model, when)
    directory = models_dir(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{model.version}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(model.to_json(), indent=1))
    os.replace(tmp, path)
    row = {"version": model.version, "created_at": when.isoformat(timespec="seconds"),
           "kind": KIND, "symbols": symbols, "features": model.features,
           "horizon": model.horizon, "train_start": train_start, "train_end": train_end,
           "source": source, "metrics": metrics, "path": str(path), "active": False}
    with store.transaction() as db:
        db.execute(
            "INSERT INTO models (version, created_at, kind, symbols, features, horizon,"
            " train_start, train_end, source, metrics, path, active)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            (row["version"], row["created_at"], KIND, json.dumps(symbols),
             json.dumps(model.features), model.horizon, train_start, train_end, source,
             json.dumps(metrics), str(path)))
    return row


def _row(r) -> dict[str, Any]:
    return {"version": r["version"], "created_at": r["created_at"], "kind": r["kind"],
            "symbols": json.loads(r["symbols"]), "features": json.loads(r["features"]),
            "horizon": r["horizon"], "train_start": r["train_start"],
            "train_end": r["train_end"], "source": r["source"],
            "metrics": json.loads(r["metrics"]), "path": r["path"], "active": bool(r["active"])}


def list_models(store) -> list[dict[str, Any]]:
    """Every registered version, newest first."""
    rows = store.query("SELECT * FROM models ORDER BY created_at DESC, version DESC")
    return [_row(r) for r in rows]


def get(store, version: str) -> dict[str, Any]:
    rows = store.query("SELECT * FROM models WHERE version = ?", (version,))
    if not rows:
        raise NotFound(f"no model {version!r} (see `trading models`)", version=version)
    return _row(rows[0])


def verdict(metrics: dict[str, Any]) -> dict[str, Any]:
    """Whether a model beat the walk-forward base rate out of sample (its Brier skill's 95 %
    interval above zero), and why not.

    Uses the calibrated figures (what predictions would see) when the report has them, else
    (a model trained before issue 16) the raw out-of-sample scores."""
    if isinstance(metrics.get("verdict"), dict):
        return metrics["verdict"]
    oos = metrics.get("out_of_sample") or {}
    model, majority = (oos.get("model") or {}).get("brier"), (oos.get("majority") or {}).get("brier")
    if model is None or majority is None:
        return {"beats_majority": False, "why": "no out-of-sample Brier scores recorded"}
    beats = model < majority
    return {"beats_majority": beats, "model_brier": model, "majority_brier": majority,
            "why": f"Brier {model:.4f} {'<' if beats else '>='} {majority:.4f} for the "
                   "majority class out of sample"}


def activate(store, version: str | None, force: bool = False) -> dict[str, Any] | None:
    """Make ``version`` the active model (``None``: no model is active); one transaction.

    A model that does not beat the walk-forward base rate out of sample, its Brier skill's
    95 % interval above zero (:func:`verdict`), is refused unless ``force``: a model with no
    edge only adds noise."""
    if version is not None and not isinstance(version, str):
        raise InvalidParams("version must be a string")
    if not isinstance(force, bool):
        raise InvalidParams("force must be true or false")
    if version is not None and not force:
        v = verdict(get(store, version)["metrics"])
        if not v["beats_majority"]:
            raise InvalidParams(f"model {version} does not beat the walk-forward base rate: "
                                f"{v['why']}; activate it anyway with --force",
                                version=version, verdict=v)
    with store.transaction() as db:
        if version is not None and not db.execute(
                "SELECT 1 FROM models WHERE version = ?", (version,)).fetchone():
            raise NotFound(f"no model {version!r} (see `trading models`)", version=version)
        db.execute("UPDATE models SET active = 0 WHERE active = 1")
        if version is not None:
            db.execute("UPDATE models SET active = 1 WHERE version = ?", (version,))
    return get(store, version) if version is not None else None


def active_row(store) -> dict[str, Any] | None:
    rows = store.query("SELECT * FROM models WHERE active = 1")
    return _row(rows[0]) if rows else None


def load_file(path: str | Path) -> LinearModel:
    with open(path, encoding="utf-8") as f:
        return LinearModel.from_json(json.load(f))


_cache: dict[tuple[str, str], LinearModel] = {}
_cache_lock = threading.Lock()


def load_active(cfg, store=None) -> LinearModel | None:
    """The active model, or ``None`` when none is active (or its file is unreadable, logged).

    Cheap enough per prediction: one indexed query; the file is parsed once per version.
    """
    if store is None:
        from trading.runtime.store import Store

        store = Store(cfg.db_path)
    row = active_row(store)
    if row is None:
        return None
    key = (str(cfg.db_path), row["version"])
    with _cache_lock:
        model = _cache.get(key)
    if model is not None:
        return model
    try:
        model = load_file(row["path"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.error("active model %s cannot be loaded from %s: %s; predicting without it",
                     row["version"], row["path"], exc)
        return None
    model.meta.setdefault("train_end", row["train_end"])
    with _cache_lock:
        _cache[key] = model
    return model


# -- walk-forward training ---------------------------------------------------------------
MIN_PRESENT = 0.8  # a feature missing from more rows than this leaves it out of the model


def rules_probability(market: dict, cfg) -> float:
    """The rule-based predictor as a probability: :func:`trading.signals.rules.decide`'s score (the
    weighted mean of its components, 0.5 neutral; above 0.5 it leans towards BUY), with no
    sentiment and no model, as in a backtest."""
    from trading.signals.rules import decide

    return float(decide(market, None, None, cfg)["score"])


def compact(data, cfg):
    """``data`` with the rules' probability of each row in place of its summary.

    A summary is a nested dict of about 1.3 KB; the rules' probability is all training needs
    of it. A job over hundreds of symbols builds one symbol's rows, compacts them and drops
    the summaries before the next (``Dataset.rules``), so its memory follows the rows, not
    the rows times a dict."""
    import dataclasses

    import numpy as np

    if data.rules is not None:
        return data
    rules = np.array([rules_probability(m, cfg) for m in data.markets], dtype=float)
    return dataclasses.replace(data, markets=None, rules=rules)


def train(data, cfg, *, folds: int = 8, min_train: int | None = None,
          on_fold=None) -> tuple[LinearModel, dict[str, Any]]:
    """Walk-forward evaluation of the model and both baselines, then the final fit on all rows.

    ``data`` is a :class:`trading.learning.features.Dataset`. Returns the fitted model (unsaved) and
    the report: out-of-sample accuracy, AUC and Brier score of the model, of the majority
    class of each training window (its base rate as the probability) and of the rules, pooled
    over the test blocks and per fold. ``on_fold(k, folds)`` is called as folds complete.
    """
    import numpy as np

    from trading.learning import walkforward as wf

    present = 1.0 - np.isnan(data.x).mean(axis=0) if len(data.y) else np.zeros(len(FEATURE_NAMES))
    chosen = [i for i, share in enumerate(present) if share >= MIN_PRESENT]
    dropped = {FEATURE_NAMES[i]: round(float(present[i]), 3)
               for i in range(len(FEATURE_NAMES)) if i not in chosen}
    if not chosen:
        raise ValueError("no feature is present in enough rows to train on")
    names = [FEATURE_NAMES[i] for i in chosen]
    x = data.x[:, chosen]
    ok = ~np.isnan(x).any(axis=1)  # the indicators' warm-up rows
    x, y = x[ok], data.y[ok]
    dates = np.array(data.dates)[ok]
    label_dates = np.array(data.label_dates)[ok]
    sessions = sorted(set(dates.tolist()))
    positions = np.searchsorted(np.array(sessions), dates)
    n = len(sessions)
    if min_train is None:
        min_train = max(60, n // 4)
    splits = wf.expanding_splits(n, folds=folds, gap=data.horizon, min_train=min_train)

    from trading.signals import calibration as cal

    if data.rules is not None:  # compacted: computed as the rows were built
        rules_p = np.asarray(data.rules, dtype=float)[ok]
    else:
        rules_p = np.array([rules_probability(m, cfg)
                            for m, keep in zip(data.markets, ok) if keep])
    oos = {"model": np.full(len(y), np.nan), "majority": np.full(len(y), np.nan),
           "rules": np.full(len(y), np.nan)}
    calibrated = np.full(len(y), np.nan)
    per_fold = []
    for fold in splits:
        tr, te = wf.rows_in(positions, fold.train), wf.rows_in(positions, fold.test)
        # Purged: a row whose label is decided on or after the test block's first session is
        # not trained on. The gap covers the horizon in sessions of the calendar, but a
        # symbol's next bar can be weeks later (a suspension; histories years apart), and its
        # label with it.
        tr = tr[label_dates[tr] < sessions[fold.test.start]]
        if not len(tr) or max(label_dates[tr].tolist()) >= sessions[fold.test.start]:
            raise RuntimeError(f"fold {fold.index}: a training label reaches the test block")
        m = fit_logistic(x[tr], y[tr], names, horizon=data.horizon)
        oos["model"][te] = m.probabilities(x[te])
        # The calibration of this block: earlier blocks' output whose labels settled before it.
        seen = np.flatnonzero(~np.isnan(oos["model"]) & (label_dates < sessions[fold.test.start])
                              & (positions < fold.test.start))
        if len(seen) >= cal.MIN_OUTCOMES:
            platt = cal.fit_platt(oos["model"][seen].tolist(), y[seen].tolist(),
                                  weights=cal.independent_weights(dates[seen].tolist(),
                                                                  data.horizon))
            calibrated[te] = [platt.p({"logit": cal.logit(v)}) for v in oos["model"][te]]
        oos["majority"][te] = float(y[tr].mean())
        oos["rules"][te] = rules_p[te]
        per_fold.append({**fold.describe(sessions),
                         **{k: wf.scores(y[te], v[te]) for k, v in oos.items()},
                         "train_up_share": round(float(y[tr].mean()), 4)})
        if on_fold is not None:
            on_fold(fold.index, len(splits))
    tested = ~np.isnan(oos["model"])
    final = fit_logistic(x, y, names, horizon=data.horizon)
    if tested.sum() >= cal.MIN_OUTCOMES:
        final.calibration = cal.fit_platt(
            oos["model"][tested].tolist(), y[tested].tolist(),
            weights=cal.independent_weights(dates[tested].tolist(), data.horizon)).to_json()
    report = {
        "horizon": data.horizon,
        "rows": int(len(y)), "sessions": n, "symbols": sorted(set(data.symbols)),
        "features": names, "features_dropped": dropped,
        "train_start": sessions[0], "train_end": max(label_dates.tolist()),
        "folds": len(splits), "gap": data.horizon, "min_train": min_train,
        "out_of_sample": {k: wf.scores(y[tested], v[tested]) for k, v in oos.items()},
        "up_share_tested": round(float(y[tested].mean()), 4),
        "per_fold": per_fold,
        "baselines": {"majority": "the base rate of each training window as the probability "
                                  "(decision: its majority class)",
                      "rules": "trading.signals.rules.decide score with no sentiment and no model"},
        "coefficients": dict(zip(names, [round(c, 4) for c in final.coef])),
        "calibration": _calibration_report(y, oos, calibrated),
    }
    report["verdict"] = _verdict(report["calibration"],
                                 _skill(y, calibrated, oos["majority"], positions, n))
    return final, report


def _skill(y, calibrated, base, positions, n_sessions: int):
    """The calibrated model's Brier skill against the walk-forward base rate (each training
    window's share of "up") with its 95 % interval, by the block bootstrap over sessions
    (:mod:`trading.learning.evaluation`): rows of one session move together, so resampling
    rows would make the interval far too narrow."""
    import numpy as np

    from trading.learning.evaluation import skill_interval

    rows = ~np.isnan(calibrated)
    return skill_interval(positions[rows], (calibrated[rows] - y[rows]) ** 2,
                          (base[rows] - y[rows]) ** 2, n_sessions)


def _calibration_report(y, oos: dict, calibrated) -> dict[str, Any]:
    """The model's probability of "up" as a forecast, raw and calibrated, beside the majority
    baseline and climatology, on the rows that had a calibration (all but the first block)."""
    import numpy as np

    from trading.signals import scorecard

    rows = ~np.isnan(calibrated)
    yy = y[rows].tolist()
    out: dict[str, Any] = {"rows": int(rows.sum()), "uncalibrated_rows":
                           int((~np.isnan(oos["model"]) & ~rows).sum())}
    for name, p in (("calibrated", calibrated), ("raw", oos["model"]),
                    ("majority", oos["majority"]), ("rules", oos["rules"])):
        f = scorecard.forecast(p[rows].tolist(), yy)
        f.pop("reliability")
        out[name] = f
    out["reliability"] = scorecard.reliability(calibrated[rows].tolist(), yy)
    return out


def _verdict(c: dict[str, Any], skill) -> dict[str, Any]:
    """Activate-worthy only when the calibrated model beats the walk-forward base rate with
    the whole 95 % interval of its Brier skill above zero (docs/choosing-the-predictor.md):
    a lower Brier score by chance is not an edge."""
    model, majority = c["calibrated"]["brier"], c["majority"]["brier"]
    if not c["rows"] or model is None or majority is None or skill is None:
        return {"beats_majority": False, "why": "too few out-of-sample rows to calibrate "
                                                "and judge the model"}
    point, lo, hi = skill
    beats = lo > 0
    return {"beats_majority": beats, "model_brier": model, "majority_brier": majority,
            "brier_skill": round(point, 4), "brier_skill_ci95": [round(lo, 4), round(hi, 4)],
            "beats_rules": model < c["rules"]["brier"],
            "beats_climatology": (c["calibrated"]["brier_skill"] or 0) > 0,
            "why": f"calibrated Brier {model:.4f} vs {majority:.4f} for the walk-forward base "
                   f"rate out of sample, on {c['rows']} rows: skill {point:+.4f}, 95% interval "
                   f"{lo:+.4f} to {hi:+.4f} (block bootstrap over sessions), "
                   + ("above zero" if beats else "not above zero")}
