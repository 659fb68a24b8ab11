"""One flat dict of float metrics per model: ``model_summary`` from predictions, ``summary_from_sums`` from
sufficient statistics computed elsewhere (on a GPU, where the predictions are)."""

from __future__ import annotations

import numpy as np

from le_ray.metrics.binning import _stable_argsort
from le_ray.metrics.calibration import _ece_pair
from le_ray.metrics.per_condition import _constant_ce_sum, _logratio_from_sums, per_condition_table
from le_ray.metrics.pointwise import _accuracy, _bce, _binary_labels, _warn_one_class, sorted_curve_areas
from le_ray.metrics.sums import ConditionSums
from le_ray.metrics.validation import RATIO_EPS, _check_conditions, _check_pair, _check_small, _ece_spec

__all__ = ["SUMMARY_KEYS", "model_summary", "summary_from_sums"]

SUMMARY_KEYS = ("logloss", "brier", "accuracy", "ece", "ece_small", "ece_small_threshold",
                "logratio_calib_iw", "logratio_calib_macro", "roc_auc", "pr_auc", "le_ratio")


def _aucs(ps: np.ndarray, ys: np.ndarray) -> tuple[float, float]:
    """(ROC-AUC, average precision) of p already sorted ascending (:func:`sorted_curve_areas`); NaN pair when
    one class only."""
    labels = _binary_labels(ys)
    if labels is None:
        return float("nan"), float("nan")
    return sorted_curve_areas(ps, labels)


def _condition_metrics(total_ce: float, y, p, cond, min_count: int) -> dict:
    """le_ratio = Σ model BCE / Σ_j n_j·H(base_rate_j) and the log-ratio calibration.

    One global condition (and NaN log-ratio calibration) when ``cond`` is None.
    """
    if cond is None:
        return _le_ratio_and_logratio(total_ce, np.array([y.size]), np.array([y.sum()]), None, min_count)
    return _le_ratio_and_logratio(total_ce, np.bincount(cond), np.bincount(cond, weights=y),
                                  np.bincount(cond, weights=p), min_count)


def _le_ratio_and_logratio(total_ce: float, n: np.ndarray, sum_y: np.ndarray, sum_p: np.ndarray | None,
                           min_count: int) -> dict:
    """:func:`_condition_metrics` from per-condition counts and sums [C] (``sum_p`` None: one global condition,
    NaN log-ratio calibration)."""
    if sum_p is None:
        out = {"logratio_calib_iw": float("nan"), "logratio_calib_macro": float("nan")}
    else:
        out = _logratio_from_sums(n, sum_y, sum_p, min_count)
        n, sum_y = n[n > 0], sum_y[n > 0]
    base = float(_constant_ce_sum(n, sum_y).sum())
    out["le_ratio"] = float(total_ce / base) if base > RATIO_EPS else float("nan")
    return out


def summary_from_sums(sums: ConditionSums, pooled: ConditionSums, *, squared_error: float,
                      curve: tuple[float, float, float, float], min_count: int = 1,
                      smooth_bandwidth: float = 0.05) -> dict:
    """:func:`model_summary` (keys ``SUMMARY_KEYS``) from statistics computed where the predictions are.

    ``sums``: the per-condition sums [C]; ``pooled``: the same statistics of all rows as ONE condition
    (its ECE bins, ece_small subset and threshold are then the whole split's, as in ``model_summary``);
    ``squared_error`` = Σ (p − y)²; ``curve`` = (ROC-AUC, average precision, positives P, negatives N) as
    :func:`le_ray.metrics.sorted_curve_areas` computes them. logloss = Σ BCE / n, brier = Σ (p − y)² / n,
    accuracy = (tp + tn) / n. Equal to ``model_summary`` of the same predictions up to float64 summation order.
    ``min_count`` / ``smooth_bandwidth``: the ECE settings, as in ``model_summary``. Empty → all NaN.
    """
    out = dict.fromkeys(SUMMARY_KEYS, float("nan"))
    n = int(pooled.n.sum())
    if n == 0:
        return out
    table = per_condition_table(pooled, min_count=min_count, smooth_bandwidth=smooth_bandwidth)
    total_ce = float(pooled.sum_ce.sum())
    out.update(logloss=total_ce / n, brier=squared_error / n, accuracy=float(pooled.tp.sum() + pooled.tn.sum()) / n,
               ece=float(table["ece"][0]), ece_small=float(table["ece_small"][0]),
               ece_small_threshold=float(pooled.small_threshold[0]))
    out.update(_le_ratio_and_logratio(total_ce, sums.n, sums.sum_y, sums.sum_p, min_count))
    roc, ap, positives, negatives = curve
    if positives == 0 or negatives == 0:
        _warn_one_class(stacklevel=2)
    else:
        out["roc_auc"], out["pr_auc"] = float(roc), float(ap)
    return out


def _given_order(order, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order [N] int64, p[order]) from a caller's stable ascending order of p; checked to be one (sorted,
    ties in row order) in O(N), so a wrong order raises instead of giving wrong metrics."""
    order = np.asarray(order)
    indices = np.issubdtype(order.dtype, np.integer) or np.issubdtype(order.dtype, np.floating)
    if order.shape != p.shape or not indices:
        raise ValueError(f"order must be an index array of shape {p.shape}, got {order.dtype} of shape {order.shape}")
    order = order.astype(np.int64, copy=False)
    if order.size and (order.min() < 0 or order.max() >= p.size):
        raise ValueError(f"order must hold row indices 0..{p.size - 1}")
    ps = p[order]
    step, ties = np.diff(ps), ps[1:] == ps[:-1]
    if np.any(step < 0) or np.any(np.diff(order)[ties] <= 0):
        raise ValueError("order is not the stable ascending order of p (sorted p, ties in row order)")
    return order, ps


def model_summary(p, y, conditions=None, *, order=None, ece_method: str = "custom", bins: int = 20,
                  min_count: int = 1, smooth_bandwidth: float = 0.05,
                  smooth_grid_bins: int | None = 400, small_prob_max: float = 0.01,
                  small_prob_quantile: float = 0.1) -> dict:
    """Flat dict of float metrics for one model (keys ``SUMMARY_KEYS``).

    logloss (nats), brier, accuracy (p ≥ 0.5), ece, ece_small, ece_small_threshold,
    logratio_calib_iw / _macro (conditions with count ≥ min_count; NaN without
    conditions), roc_auc, pr_auc (as scikit-learn's, to float rounding; NaN with a warning for one class) and
    le_ratio = Σ_i BCE(p_i, y_i) / Σ_j n_j·H(base_rate_j) — the pooled per-condition
    base-rate predictor (a single global base rate when ``conditions`` is None; NaN when
    the denominator ≤ 1e-12).  p is sorted once (stable) and the order is reused by the
    adaptive ECE, the small-p prefix and the AUCs; ``order`` [N] passes that stable ascending order in
    (e.g. from ``torch.sort(stable=True)`` where p was computed, on a GPU) and skips the host sort, with
    the same result.  Empty input → all NaN.
    """
    p, y = _check_pair(p, y)
    cond = None if conditions is None else _check_conditions(conditions, p.size)
    spec = _ece_spec(ece_method, bins, min_count, smooth_bandwidth, smooth_grid_bins)
    _check_small(small_prob_max, small_prob_quantile)
    out = dict.fromkeys(SUMMARY_KEYS, float("nan"))
    if p.size == 0:
        return out
    order, ps = _stable_argsort(p) if order is None else _given_order(order, p)
    ys = y[order]
    ce_sum = float(np.sum(_bce(ps, ys)))
    e, small, thr, _ = _ece_pair(ps, ys, spec, small_prob_max, small_prob_quantile, presorted=True)
    out.update(logloss=ce_sum / p.size, brier=float(np.mean((ps - ys) ** 2)), accuracy=_accuracy(ps, ys),
               ece=e, ece_small=small, ece_small_threshold=thr)
    out.update(_condition_metrics(ce_sum, y, p, cond, spec.min_count))
    out["roc_auc"], out["pr_auc"] = _aucs(ps, ys)
    return out
