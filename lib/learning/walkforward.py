"""Walk-forward validation: time-ordered, expanding-window splits and out-of-sample scores.

Market data is a time series, so a shuffled split (or k-fold) lets a model learn from the
future it is then tested on. Here every fold trains on an expanding prefix of the sessions and
tests on the block that follows it, after a gap:

    sessions  0 ............................................ n-1
    fold 1    [train .........]  gap  [test 1]
    fold 2    [train ...................]  gap  [test 2]
    ...

A training row at session ``t`` carries the label ``sign(close[t+h] / close[t] - 1)``, which is
only known at session ``t+h``. With a gap of at least ``h`` sessions between the last training
session and the first test session, no training label depends on a price from the test block.
Splits are over *sessions* (dates), not rows, so with several symbols a date is either all in
training or all in testing.

The scores are numpy only (no scikit-learn import): accuracy at 0.5, ROC AUC from ranks
(Mann-Whitney U, ties averaged), and the Brier score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fold:
    """One split, as half-open ranges of session positions (indexes into the sorted dates)."""

    index: int
    train: range
    test: range
    gap: int

    def describe(self, dates: Sequence[str]) -> dict:
        return {"fold": self.index, "train_start": dates[self.train.start],
                "train_end": dates[self.train.stop - 1], "test_start": dates[self.test.start],
                "test_end": dates[self.test.stop - 1], "train_sessions": len(self.train),
                "test_sessions": len(self.test), "gap": self.gap}


def expanding_splits(n_sessions: int, *, folds: int = 8, gap: int = 1,
                     min_train: int = 120) -> list[Fold]:
    """``folds`` expanding-window splits of ``n_sessions`` sessions with ``gap`` between.

    The sessions after the first ``min_train + gap`` are cut into ``folds`` contiguous test
    blocks (the first blocks get the remainder); fold ``k`` trains on every session before
    its test block minus the gap. Raises ``ValueError`` when there are too few sessions.
    """
    if gap < 1:
        raise ValueError("gap must be at least 1 session (at least the label horizon)")
    if folds < 1 or min_train < 1:
        raise ValueError("folds and min_train must be at least 1")
    testable = n_sessions - min_train - gap
    if testable < folds:
        raise ValueError(f"{n_sessions} sessions are too few for {folds} folds after "
                         f"{min_train} training sessions and a gap of {gap}")
    size, extra = divmod(testable, folds)
    out = []
    start = min_train + gap
    for k in range(folds):
        stop = start + size + (1 if k < extra else 0)
        out.append(Fold(k + 1, range(0, start - gap), range(start, stop), gap))
        start = stop
    return out


def rows_in(positions: np.ndarray, span: range) -> np.ndarray:
    """Indexes of the rows whose session position lies in ``span``."""
    return np.flatnonzero((positions >= span.start) & (positions < span.stop))


# -- scores ---------------------------------------------------------------------------------
def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Share of rows where ``p > 0.5`` agrees with ``y`` (exactly 0.5 counts as "down")."""
    y = np.asarray(y, dtype=bool)
    return float(np.mean((np.asarray(p) > 0.5) == y)) if len(y) else float("nan")


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probability of "up"; 0.25 is a coin that always says 0.5."""
    y = np.asarray(y, dtype=float)
    return float(np.mean((np.asarray(p, dtype=float) - y) ** 2)) if len(y) else float("nan")


def auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """ROC AUC as the Mann-Whitney U statistic (tied scores get average ranks).

    ``None`` when ``y`` has one class only (AUC is undefined there). A constant predictor
    scores exactly 0.5.
    """
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=float)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=float)
    sorted_p = p[order]
    # Average ranks over runs of equal scores.
    i = 0
    while i < len(p):
        j = i
        while j + 1 < len(p) and sorted_p[j + 1] == sorted_p[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def scores(y: np.ndarray, p: np.ndarray) -> dict:
    """Accuracy, AUC, Brier and the row count, rounded for reports."""
    a = auc(y, p)
    return {"accuracy": round(accuracy(y, p), 4), "auc": None if a is None else round(a, 4),
            "brier": round(brier(y, p), 4), "n": int(len(y))}
