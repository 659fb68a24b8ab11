"""Pointwise metrics of one set of predictions: log loss, Brier score, accuracy / F1, AUCs.

``p`` [N] predicted probabilities, ``y`` [N] labels in [0, 1]; a label is positive when
``y ≥ 0.5``.  Empty input gives NaN.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import auc, average_precision_score, roc_curve

from le_ray.metrics.validation import _check_pair

__all__ = ["logloss", "brier", "roc_auc", "pr_auc", "binary_classification_metrics"]

PROB_CLIP = 1e-12  # logloss clips p to [PROB_CLIP, 1 − PROB_CLIP]


def _bce(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample BCE in nats, shape [N]: −y·ln q − (1−y)·ln(1−q), q = clip(p, 1e-12, 1−1e-12)."""
    q = np.clip(p, PROB_CLIP, 1.0 - PROB_CLIP)
    return -(y * np.log(q) + (1.0 - y) * np.log1p(-q))


def _mean(x: np.ndarray) -> float:
    """Mean of x, NaN when empty (no warning)."""
    return float(x.mean()) if x.size else float("nan")


def logloss(p, y) -> float:
    """Mean binary cross-entropy in nats: (1/N) Σ BCE(clip(p_i), y_i), clip to [1e-12, 1−1e-12]."""
    p, y = _check_pair(p, y)
    return _mean(_bce(p, y))


def brier(p, y) -> float:
    """Brier score: (1/N) Σ (p_i − y_i)² (squared probability units); NaN when empty."""
    p, y = _check_pair(p, y)
    return _mean((p - y) ** 2)


def _safe_div(num, den) -> np.ndarray:
    """Elementwise num/den with 0 where den == 0 (for precision/recall/F1)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def _f1(tp, fp, fn) -> np.ndarray:
    """F1 = 2·P·R/(P+R) with P = tp/(tp+fp), R = tp/(tp+fn); 0 where a denominator is 0."""
    precision, recall = _safe_div(tp, tp + fp), _safe_div(tp, tp + fn)
    return _safe_div(2.0 * precision * recall, precision + recall)


def binary_classification_metrics(p, y, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall and F1 of the rule ``p ≥ threshold`` against ``y ≥ 0.5``.

    Returns a dict of floats (dimensionless fractions); 0 where a denominator is 0,
    NaN for every entry on empty input.
    """
    p, y = _check_pair(p, y)
    if p.size == 0:
        return dict.fromkeys(("accuracy", "precision", "recall", "f1"), float("nan"))
    pred, true = p >= threshold, y >= 0.5
    tp = np.count_nonzero(pred & true)
    fp = np.count_nonzero(pred & ~true)
    fn = np.count_nonzero(~pred & true)
    return {
        "accuracy": float(np.count_nonzero(pred == true) / p.size),
        "precision": float(_safe_div(tp, tp + fp)),
        "recall": float(_safe_div(tp, tp + fn)),
        "f1": float(_f1(tp, fp, fn)),
    }


def _accuracy(p: np.ndarray, y: np.ndarray) -> float:
    """Fraction of samples with (p ≥ 0.5) == (y ≥ 0.5); NaN when empty."""
    return float(np.count_nonzero((p >= 0.5) == (y >= 0.5)) / p.size) if p.size else float("nan")


def _binary_labels(y: np.ndarray):
    """int8 labels (y ≥ 0.5), or None (with a RuntimeWarning) when only one class is present.

    int8 labels make scikit-learn's label checks several times faster than float labels.
    """
    labels = (y >= 0.5).astype(np.int8)
    if labels.size == 0 or labels.min() == labels.max():
        warnings.warn("ROC-AUC / PR-AUC undefined: only one class present in y; returning NaN",
                      RuntimeWarning, stacklevel=3)
        return None
    return labels


def _sklearn_roc_auc(labels: np.ndarray, p: np.ndarray) -> float:
    """``auc(*roc_curve(labels, p)[:2])`` — the computation scikit-learn's binary
    ``roc_auc_score`` performs, minus its label re-binarisation (≈5× faster on 10M rows;
    tests check equality with ``roc_auc_score``)."""
    fpr, tpr, _ = roc_curve(labels, p)
    return float(auc(fpr, tpr))


def roc_auc(p, y) -> float:
    """ROC-AUC of scores p for labels y ≥ 0.5, computed by scikit-learn (``roc_curve`` + ``auc``).

    NaN with a RuntimeWarning when only one class is present (or the input is empty).
    """
    p, y = _check_pair(p, y)
    labels = _binary_labels(y)
    return float("nan") if labels is None else _sklearn_roc_auc(labels, p)


def pr_auc(p, y) -> float:
    """PR-AUC as average precision (``sklearn.metrics.average_precision_score``), labels y ≥ 0.5.

    NaN with a RuntimeWarning when only one class is present (or the input is empty).
    """
    p, y = _check_pair(p, y)
    labels = _binary_labels(y)
    return float("nan") if labels is None else float(average_precision_score(labels, p))
