"""Walk-forward splits and scores: time order, the gap, and honest metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trading.learning import walkforward as wf


@settings(max_examples=200, deadline=None)
@given(n=st.integers(20, 600), folds=st.integers(1, 12), gap=st.integers(1, 10),
       min_train=st.integers(1, 200))
def test_splits_never_train_on_a_tested_session_and_keep_the_gap(n, folds, gap, min_train):
    try:
        splits = wf.expanding_splits(n, folds=folds, gap=gap, min_train=min_train)
    except ValueError:
        assert n - min_train - gap < folds
        return
    assert len(splits) == folds
    tested: list[int] = []
    for fold in splits:
        train, test = set(fold.train), set(fold.test)
        assert not train & test
        assert fold.train.start == 0  # expanding: always from the first session
        assert len(fold.train) >= min_train
        # every training session ends at least `gap` sessions before the test block
        assert fold.test.start - (fold.train.stop - 1) > gap
        assert max(train) < min(test)
        tested.extend(fold.test)
    # test blocks are contiguous, ordered, disjoint, and reach the last session
    assert tested == list(range(splits[0].test.start, n))
    assert [len(f.train) for f in splits] == sorted(len(f.train) for f in splits)


def test_gap_below_one_is_refused():
    with pytest.raises(ValueError):
        wf.expanding_splits(100, gap=0)
    with pytest.raises(ValueError, match="too few"):
        wf.expanding_splits(10, folds=8, min_train=5, gap=1)


def test_rows_follow_their_session_so_a_date_is_never_split():
    # three symbols share sessions 0..49; rows are grouped by symbol, not by date
    positions = np.tile(np.arange(50), 3)
    for fold in wf.expanding_splits(50, folds=4, gap=2, min_train=10):
        tr, te = wf.rows_in(positions, fold.train), wf.rows_in(positions, fold.test)
        assert len(tr) == 3 * len(fold.train) and len(te) == 3 * len(fold.test)
        assert set(positions[tr]).isdisjoint(positions[te])
        assert positions[tr].max() + fold.gap < positions[te].min()


def test_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) * 0.3 + 0.3 * y, 2)  # rounding makes ties
    assert wf.auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert wf.auc(y, np.full(300, 0.6)) == 0.5
    assert wf.auc(np.ones(5), np.linspace(0, 1, 5)) is None


def test_accuracy_and_brier_by_hand():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.9, 0.2, 0.4, 0.5])  # 0.5 counts as "down"
    assert wf.accuracy(y, p) == 0.5
    assert wf.brier(y, p) == pytest.approx((0.01 + 0.04 + 0.36 + 0.25) / 4)
    assert wf.auc(y, p) == 1.0  # every "up" scored above the one "down"
    s = wf.scores(y, np.array([0.9, 0.45, 0.4, 0.5]))  # 0.4 now ranks below the "down"
    assert s["n"] == 4 and s["accuracy"] == 0.5 and s["auc"] == pytest.approx(2 / 3, abs=1e-4)
