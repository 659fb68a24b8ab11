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
