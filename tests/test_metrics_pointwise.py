"""Tests for le_ray.metrics.pointwise (log loss, Brier, accuracy / F1, AUCs vs scikit-learn)
and the input validation shared by every public metric."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from le_ray import metrics as M


def _data(n=500, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return p, (rng.random(n) < p).astype(float)


def test_logloss_and_brier_hand():
    p = np.array([0.9, 0.2, 0.5])
    y = np.array([1.0, 0.0, 1.0])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.5)) / 3
    assert M.logloss(p, y) == pytest.approx(expected, rel=1e-14)
    assert M.brier(p, y) == pytest.approx((0.01 + 0.04 + 0.25) / 3, rel=1e-14)


def test_logloss_clips_probabilities():
    assert M.logloss([0.0], [1.0]) == pytest.approx(-math.log(1e-12), rel=1e-12)
    assert M.logloss([1.0], [0.0]) == pytest.approx(-math.log(1e-12), rel=1e-6)
    assert M.logloss([1.0], [1.0]) == pytest.approx(1e-12, rel=1e-3)


def test_binary_classification_metrics_hand():
    out = M.binary_classification_metrics([0.9, 0.6, 0.4, 0.2], [1, 0, 1, 0])
    assert out == pytest.approx({"accuracy": 0.5, "precision": 0.5, "recall": 0.5, "f1": 0.5})
    # p ≥ threshold is positive; y ≥ 0.5 is positive
    out = M.binary_classification_metrics([0.5, 0.3], [0.5, 0.0])
    assert out == {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0}
    out = M.binary_classification_metrics([0.9, 0.6], [1, 0], threshold=0.7)
    assert out["accuracy"] == 1.0


def test_binary_classification_metrics_zero_denominators_and_empty():
    out = M.binary_classification_metrics([0.1, 0.2], [0, 0])
    assert out == {"accuracy": 1.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    empty = M.binary_classification_metrics([], [])
    assert all(math.isnan(v) for v in empty.values())


def test_aucs_match_sklearn():
    p, y = _data(2000, seed=3)
    p = np.round(p, 2)  # ties in scores
    assert M.roc_auc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert M.pr_auc(p, y) == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_aucs_one_class_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="one class"):
        assert math.isnan(M.roc_auc([0.1, 0.7], [1, 1]))
    with pytest.warns(RuntimeWarning, match="one class"):
        assert math.isnan(M.pr_auc([0.1, 0.7], [0, 0]))


@pytest.mark.parametrize("fn", [M.logloss, M.brier, M.roc_auc, M.pr_auc, M.ece])
def test_validation_messages(fn):
    with pytest.raises(ValueError, match="shape mismatch"):
        fn([0.1, 0.2], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        fn([0.1, np.nan], [1.0, 0.0])
    with pytest.raises(ValueError, match="1-D"):
        fn([[0.1]], [[1.0]])


def test_empty_inputs_give_nan():
    for fn in (M.logloss, M.brier, M.ece):
        assert math.isnan(fn([], []))


def test_sorted_curve_areas_match_sklearn_on_random_data_with_ties():
    """The one-pass areas over sorted scores against scikit-learn, 300 random cases: sizes 2..3,000, scores
    rounded to 0-3 decimals (from all tied to few ties), any order inside a tie group."""
    rng = np.random.default_rng(12)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(2, 3_000))
        p = np.round(rng.uniform(size=n), int(rng.integers(0, 4)))
        y = (rng.uniform(size=n) < np.clip(p, 0.05, 0.95)).astype(float)
        if y.min() == y.max():
            continue
        order = np.lexsort((rng.uniform(size=n), p))  # ascending p, ties shuffled
        roc, ap = M.sorted_curve_areas(p[order], (y[order] >= 0.5).astype(np.int8))
        assert roc == pytest.approx(roc_auc_score(y, p), rel=1e-12, abs=1e-15)
        assert ap == pytest.approx(average_precision_score(y, p), rel=1e-12, abs=1e-15)
        checked += 1
    assert checked > 250


def test_sorted_curve_areas_by_hand():
    # scores 0.1 (y=0), 0.4 (y=1), 0.4 (y=0), 0.8 (y=1): thresholds 0.8, 0.4, 0.1 give (tp, fp) = (1,0), (2,1), (2,2)
    # ROC: trapezoids (0→0: 0) + (fp 0→1: (1+2)/2) + (fp 1→2: (2+2)/2) = 3.5 over P·N = 4 → 0.875
    # AP: recall 1/2 at precision 1, then +1/2 at precision 2/3 → 0.5 + 1/3
    roc, ap = M.sorted_curve_areas(np.array([0.1, 0.4, 0.4, 0.8]), np.array([0, 1, 0, 1], dtype=np.int8))
    assert roc == pytest.approx(0.875, abs=1e-15) and ap == pytest.approx(0.5 + 1 / 3, abs=1e-15)
