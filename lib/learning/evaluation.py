"""Judging calls honestly: yearly walk-forward folds with a purge and an embargo, and a
scorecard whose intervals come from a block bootstrap over sessions.

The method is the one written down in docs/choosing-the-predictor.md before any candidate was
fitted; this module is its code, shared by the comparison that chose the default predictor
(``bench/choose_predictor.py``) and by anything else that compares predictors.

- **Folds** (:func:`yearly_folds`): a refit every 1 January; a fit learns from the sessions at
  least ``purge`` sessions before the date (a 5-session label then ends before it), and scores
  the sessions of its year after an ``embargo`` of sessions nobody scores.
- **One row per symbol-session**, each with the call made at that session's close (BUY 1,
  SELL -1, HOLD 0), its probability of being right, whether it was right, the base rate of
  its kind of "right" in the fit's training rows, the forward return, and the mean forward
  return of every scored symbol of that session (the market's drift, always-BUY held).
- **The scorecard** (:func:`scorecard`): Brier and log-loss skill against the base rate, ECE
  (10 bins), the BUY/SELL hit rate beside always-BUY's over the same sessions, and the mean
  return per acted call after costs beside holding, and beyond the market's drift. Every
  interval is a circular block bootstrap over the calendar's sessions (all symbols of a session
  move together, and rows are not independent), with each statistic a ratio of sums over the
  resampled sessions: the bootstrap sums per-session totals, never rows, so it costs the
  number of blocks, not of rows.

numpy only: the training path imports it, the prediction path never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

COST = 0.001       # a side: a BUY or SELL acted on pays 2 * COST for its round trip
BLOCK = 20         # sessions a bootstrap block keeps together
RESAMPLES = 2000
PURGE = 5          # sessions before a refit whose labels would reach past it
EMBARGO = 5        # sessions after a refit nobody scores
ECE_BINS = 10
_EPS = 1e-6


@dataclass(frozen=True)
class Fold:
    """One yearly fit: train on calendar positions ``< train_stop``; score ``[start, stop)``."""

    year: int
    train_stop: int
    start: int
    stop: int


def yearly_folds(calendar: Sequence[str], first_year: int, *, purge: int = PURGE,
                 embargo: int = EMBARGO) -> list[Fold]:
    """One fold per calendar year from ``first_year`` on: ``calendar`` is the sorted session
    dates (ISO) of every symbol together."""
    import bisect

    years = sorted({int(d[:4]) for d in calendar if int(d[:4]) >= first_year})
    out = []
    for k, year in enumerate(years):
        at = bisect.bisect_left(calendar, f"{year}-01-01")
        stop = (bisect.bisect_left(calendar, f"{year + 1}-01-01"))
        out.append(Fold(year, max(0, at - purge), min(stop, at + embargo), stop))
    return [f for f in out if f.start < f.stop]


@dataclass
class Calls:
    """Scored rows of one candidate at one horizon (numpy arrays of one length)."""

    session: np.ndarray   # int: the row's position in the calendar
    action: np.ndarray    # int: 1 BUY, -1 SELL, 0 HOLD
    p: np.ndarray         # the probability of being right the candidate gave
    right: np.ndarray     # bool
    base: np.ndarray      # the base rate of the call's kind of "right", from the fit's rows
    ret: np.ndarray       # the forward return (simple)
    drift: np.ndarray     # the mean forward return of every scored symbol of the session


def right_of(action: np.ndarray, ret: np.ndarray, band: float) -> np.ndarray:
    """Whether each call was right (trading.signals.outcomes.is_right, vectorised)."""
    return np.where(action > 0, ret > 0, np.where(action < 0, ret < 0, np.abs(ret) < band))


def session_means(session: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each row's session mean of ``values`` (over the rows given)."""
    sums = np.bincount(session, weights=values)
    counts = np.bincount(session)
    return (sums / np.maximum(counts, 1))[session]


def ece(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float | None:
    """Expected calibration error: the row-weighted mean gap between the mean probability and
    the share right, over ``bins`` equal-width bins."""
    if not len(p):
        return None
    which = np.minimum((p * bins).astype(int), bins - 1)
    n = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, weights=p, minlength=bins)
                 - np.bincount(which, weights=y.astype(float), minlength=bins))
    return float(gap.sum() / n.sum())


def _log_loss(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def scorecard(c: Calls, n_sessions: int, *, resamples: int = RESAMPLES, block: int = BLOCK,
              seed: int = 0) -> dict:
    """The comparison table's row for one candidate: point figures and 95 % intervals."""
    y = c.right.astype(float)
    acted = c.action != 0
    after = np.where(c.action > 0, c.ret, -c.ret) - 2 * COST  # an acted call, after costs
    columns = {  # per-row terms; every statistic is a ratio of two of their sums
        "rows": np.ones(len(y)),
        "bs": (c.p - y) ** 2, "bs_base": (c.base - y) ** 2,
        "ll": _log_loss(c.p, y), "ll_base": _log_loss(c.base, y),
        "acted": acted.astype(float),
        "acted_right": (acted & c.right).astype(float),
        "acted_up": (acted & (c.ret > 0)).astype(float),   # always-BUY right, same rows
        "after": np.where(acted, after, 0.0),
        "beyond": np.where(acted, after - c.drift, 0.0),
        "held": np.where(acted, c.drift, 0.0),
    }
    per_session = {k: np.bincount(c.session, weights=v, minlength=n_sessions)
                   for k, v in columns.items()}

    def stats(t: dict) -> dict:
        def ratio(a: str, b: str):
            num, den = np.asarray(t[a], dtype=float), np.asarray(t[b], dtype=float)
            return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)
        return {"brier_skill": 1 - ratio("bs", "bs_base"),
                "log_loss_skill": 1 - ratio("ll", "ll_base"),
                "edge": ratio("beyond", "acted")}

    point = stats({k: v.sum() for k, v in per_session.items()})
    draws = _block_sums(per_session, n_sessions, resamples, block, seed)
    spread = stats(draws)
    t = {k: float(v.sum()) for k, v in per_session.items()}
    out = {
        "n": int(t["rows"]), "sessions": int(np.count_nonzero(per_session["rows"])),
        "brier": t["bs"] / t["rows"] if t["rows"] else None,
        "log_loss": t["ll"] / t["rows"] if t["rows"] else None,
        "ece": ece(c.p, c.right),
        "acted": int(t["acted"]),
        "hit_rate": t["acted_right"] / t["acted"] if t["acted"] else None,
        "always_buy_hit_rate": t["acted_up"] / t["acted"] if t["acted"] else None,
        "return_after_costs": t["after"] / t["acted"] if t["acted"] else None,
        "buy_and_hold": t["held"] / t["acted"] if t["acted"] else None,
    }
    for name in ("brier_skill", "log_loss_skill", "edge"):
        value = float(point[name])
        lo, hi = np.nanpercentile(spread[name], [2.5, 97.5]) if np.isfinite(
            spread[name]).any() else (np.nan, np.nan)
        out[name] = None if not np.isfinite(value) else float(value)
        out[name + "_ci"] = None if not np.isfinite(lo) else [float(lo), float(hi)]
    return out


def _block_sums(per_session: dict, n: int, resamples: int, block: int, seed: int) -> dict:
    """Each column's total over ``resamples`` circular block resamples of the sessions."""
    rng = np.random.default_rng(seed)
    blocks = -(-n // block)
    starts = rng.integers(0, n, size=(resamples, blocks))
    out = {}
    for k, v in per_session.items():
        wrapped = np.resize(v, n + block)  # circular: the start again, as often as needed
        cum = np.concatenate([[0.0], np.cumsum(wrapped)])
        block_sum = cum[np.arange(n) + block] - cum[np.arange(n)]
        out[k] = block_sum[starts].sum(axis=1)
    return out


def block_interval(session: np.ndarray, values: np.ndarray, n_sessions: int, *,
                   resamples: int = RESAMPLES, block: int = BLOCK,
                   seed: int = 0) -> tuple[float, float] | None:
    """The 95 % interval of the mean of ``values`` (rows at calendar positions ``session``)
    by the same block bootstrap over sessions as :func:`scorecard`."""
    if not len(values):
        return None
    per = {"sum": np.bincount(session, weights=values, minlength=n_sessions),
           "n": np.bincount(session, minlength=n_sessions).astype(float)}
    draws = _block_sums(per, n_sessions, resamples, block, seed)
    means = draws["sum"][draws["n"] > 0] / draws["n"][draws["n"] > 0]
    if not len(means):
        return None
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def skill_interval(session: np.ndarray, loss: np.ndarray, loss_base: np.ndarray,
                   n_sessions: int, *, resamples: int = RESAMPLES, block: int = BLOCK,
                   seed: int = 0) -> tuple[float, float, float] | None:
    """``1 - sum(loss) / sum(loss_base)`` (a Brier or log-loss skill) and its 95 % interval by
    the block bootstrap over sessions: ``(skill, low, high)``."""
    if not len(loss):
        return None
    per = {"loss": np.bincount(session, weights=loss, minlength=n_sessions),
           "base": np.bincount(session, weights=loss_base, minlength=n_sessions)}
    if not per["base"].sum():
        return None
    draws = _block_sums(per, n_sessions, resamples, block, seed)
    ok = draws["base"] > 0
    skills = 1 - draws["loss"][ok] / draws["base"][ok]
    lo, hi = np.percentile(skills, [2.5, 97.5])
    return float(1 - per["loss"].sum() / per["base"].sum()), float(lo), float(hi)


def qualifies(card: dict, *, max_ece: float = 0.03) -> bool:
    """The rule's test: Brier skill and the edge over always-BUY both with intervals above
    zero, and an ECE of at most ``max_ece``."""
    b, e = card.get("brier_skill_ci"), card.get("edge_ci")
    return bool(b and e and b[0] > 0 and e[0] > 0 and card.get("ece") is not None
                and card["ece"] <= max_ece)
