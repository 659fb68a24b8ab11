"""Per-condition tables, every column computed from additive sums (``le_ray.metrics.sums``).

Rows are the conditions present (n_j > 0), sorted by base_rate desc, count desc, condition
id asc.  Columns of ``per_condition_table`` (units):

* count n_j (rows); base_rate = Σy/n; pred_mean = Σp/n (probabilities);
* logloss = Σ BCE / n (nats); brier = Σ(p − y)²/n = (Σp² − 2Σyp + Σy)/n, which uses
  y ∈ {0, 1} (so Σy² = Σy) — with soft labels it is not the Brier score;
* accuracy = (tp + tn)/n and f1 = 2PR/(P + R) of the rule p ≥ 0.5 vs y ≥ 0.5 (0 where a
  denominator is 0);
* calibration_ratio = pred_mean / base_rate (NaN when base_rate ≤ 1e-12); le_ratio =
  Σ BCE(p_i, y_i) / (n·H(base_rate)) (NaN when the denominator ≤ 1e-12);
* ece / ece_small: the backend's ECE within the condition and within its small subset;
* with true probabilities (sum_t): true_rate = Σp_true/n, calibration_ratio_true =
  pred_mean / true_rate (NaN when true_rate ≤ 1e-12), gap_true = |pred_mean − true_rate|,
  ece_true = ECE with the per-bin mean of p_true in place of the per-bin mean label.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.special import xlogy

from le_ray.metrics.calibration import _bin_means, _ece_rows
from le_ray.metrics.pointwise import _f1
from le_ray.metrics.sums import BinSums, ConditionSums, _additive_sums, condition_sums
from le_ray.metrics.validation import (RATIO_EPS, SMOOTH_METHODS, _check_conditions, _check_min_count, _check_pair,
                                       _ece_spec, _EceSpec, _ratio)

__all__ = ["per_condition_table", "per_condition_metrics", "calibration_ratios", "le_ratio_by_condition",
           "logratio_calibration"]

LOGRATIO_EPS = 1e-6  # additive smoothing inside the log-ratio calibration
_TABLE_SORT = (["base_rate", "count", "condition"], [True, True, False])
_CHUNK_CELLS = 1 << 20  # conditions × bins densified at a time for the per-condition ECE
TABLE_COLUMNS = ("condition", "count", "base_rate", "logloss", "accuracy", "f1", "ece", "ece_small",
                 "pred_mean", "calibration_ratio", "le_ratio", "brier")
TRUTH_COLUMNS = ("true_rate", "calibration_ratio_true", "gap_true", "ece_true")


def _constant_ce_sum(n: np.ndarray, sum_y: np.ndarray) -> np.ndarray:
    """Σ_i BCE(r, y_i) of the constant predictor r = Σy/n, i.e. n·H(r) in nats (0·ln 0 = 0).

    The constant is not clipped: a pure condition (r = 0 or 1) has CE exactly 0.
    """
    rate = _ratio(sum_y, n)
    return -(xlogy(sum_y, rate) + xlogy(np.maximum(n - sum_y, 0.0), 1.0 - rate))


def _calibration_ratio(pred_mean: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """pred_mean / rate, NaN where rate ≤ 1e-12."""
    return np.divide(pred_mean, rate, out=np.full(rate.shape, np.nan), where=rate > RATIO_EPS)


def _le_ratio(sum_ce: np.ndarray, base_ce: np.ndarray) -> np.ndarray:
    """Σ model BCE / Σ base-rate BCE, NaN where the denominator ≤ 1e-12: a condition of one label (the earlier
    system clipped its rate and gave ~1e11)."""
    return np.divide(sum_ce, base_ce, out=np.full(np.shape(base_ce), np.nan), where=base_ce > RATIO_EPS)


def _sorted_table(columns: dict) -> pl.DataFrame:
    """Polars table sorted by base_rate desc, count desc, condition id asc."""
    keys, desc = _TABLE_SORT
    return pl.DataFrame(columns).sort(keys, descending=desc)


def _basic_columns(n_all, sum_y, sum_p, present: np.ndarray) -> dict:
    """condition, count, base_rate, pred_mean, calibration_ratio [P] for the present ids."""
    n = n_all[present]
    base_rate, pred_mean = sum_y[present] / n, sum_p[present] / n
    return {"condition": present.astype(np.int64), "count": n.astype(np.int64),
            "base_rate": base_rate, "pred_mean": pred_mean,
            "calibration_ratio": _calibration_ratio(pred_mean, base_rate)}


def _additive_columns(s: ConditionSums, present: np.ndarray) -> dict:
    """Every column that is a closed-form function of the per-condition sums [P]."""
    cols = _basic_columns(s.n, s.sum_y, s.sum_p, present)
    n, sum_ce, sum_y = s.n[present], s.sum_ce[present], s.sum_y[present]
    squares = s.sum_p2[present] - 2.0 * s.sum_yp[present] + sum_y  # Σ(p − y)², y ∈ {0, 1}
    cols.update({
        "logloss": sum_ce / n,
        "accuracy": (s.tp[present] + s.tn[present]) / n,
        "f1": _f1(s.tp[present], s.fp[present], s.fn[present]),
        "le_ratio": _le_ratio(sum_ce, _constant_ce_sum(n, sum_y)),
        "brier": np.maximum(squares, 0.0) / n,
    })
    if s.sum_t is not None:
        true_rate = s.sum_t[present] / n
        cols.update({"true_rate": true_rate,
                     "calibration_ratio_true": _calibration_ratio(cols["pred_mean"], true_rate),
                     "gap_true": np.abs(cols["pred_mean"] - true_rate)})
    return cols


def _dense_chunk(bins: BinSums, lo: int, hi: int, n_bins: int, fields) -> tuple[np.ndarray, list]:
    """Counts [hi−lo, K] and the sums named by ``fields`` [hi−lo, K] of conditions lo..hi−1."""
    a, b = np.searchsorted(bins.condition, [lo, hi])
    rows, cols = bins.condition[a:b] - lo, bins.bin[a:b]
    counts = np.zeros((hi - lo, n_bins), dtype=np.int64)
    counts[rows, cols] = bins.count[a:b]
    sums = []
    for f in fields:
        dense = np.zeros((hi - lo, n_bins))
        dense[rows, cols] = getattr(bins, f)[a:b]
        sums.append(dense)
    return counts, sums


def _ece_by_condition(bins: BinSums, num_conditions: int, spec: _EceSpec, targets) -> list[np.ndarray]:
    """Per-condition ECE [C] against each target sum in ``targets`` ("sum_y", "sum_t").

    Bins are densified to [R, K] blocks of at most ~1M cells, averaged (and smoothed) with
    the backend's rule and reduced along K; NaN for conditions without rows.
    """
    k = spec.n_bins
    out = [np.full(num_conditions, np.nan) for _ in targets]
    step = max(1, _CHUNK_CELLS // k)
    for lo in range(0, num_conditions, step):
        hi = min(num_conditions, lo + step)
        counts, sums = _dense_chunk(bins, lo, hi, k, ("sum_p", *targets))
        avg_pred, *avg_targets = _bin_means(counts, sums, spec)
        for i, avg in enumerate(avg_targets):
            out[i][lo:hi] = _ece_rows(counts, avg_pred, avg)
    return out


def _table_spec(sums: ConditionSums, ece_method, bins, min_count, smooth_bandwidth, smooth_grid_bins) -> _EceSpec:
    """ECE settings for tabulating ``sums``: None means as stored; ValueError when the bins differ."""
    method = sums.ece_method if ece_method is None else ece_method
    k = sums.n_bins
    grid = smooth_grid_bins if smooth_grid_bins is not None else (k if method in SMOOTH_METHODS else None)
    spec = _ece_spec(method, k if bins is None else bins, min_count, smooth_bandwidth, grid)
    same_rule = method == sums.ece_method or {method, sums.ece_method} <= set(SMOOTH_METHODS)
    if not same_rule or spec.n_bins != k:
        raise ValueError(f"these sums hold {sums.ece_method} bins (K = {k}); they cannot be "
                         f"tabulated as {method} with K = {spec.n_bins}")
    return spec


def per_condition_table(sums: ConditionSums, *, ece_method: str | None = None, bins: int | None = None,
                        min_count: int = 1, smooth_bandwidth: float = 0.05,
                        smooth_grid_bins: int | None = None) -> pl.DataFrame:
    """Per-condition metrics table computed only from ``sums`` (see the module docstring).

    Columns TABLE_COLUMNS, plus TRUTH_COLUMNS when ``sums.sum_t`` is present.
    ``ece_method`` / ``bins`` / ``smooth_grid_bins``: None takes the settings the sums were
    computed with (smooth and smooth_lib share their bins, so either may tabulate the
    other's sums); other bin settings raise ValueError.  ``min_count`` and
    ``smooth_bandwidth`` act here, as in ``ece``.
    """
    spec = _table_spec(sums, ece_method, bins, min_count, smooth_bandwidth, smooth_grid_bins)
    present = np.flatnonzero(sums.n)
    cols = _additive_columns(sums, present)
    truth = sums.sum_t is not None
    full = _ece_by_condition(sums.bins, sums.num_conditions, spec, ("sum_y", "sum_t") if truth else ("sum_y",))
    (small,) = _ece_by_condition(sums.small_bins, sums.num_conditions, spec, ("sum_y",))
    cols["ece"], cols["ece_small"] = full[0][present], small[present]
    if truth:
        cols["ece_true"] = full[1][present]
    names = TABLE_COLUMNS + (TRUTH_COLUMNS if truth else ())
    return _sorted_table({name: cols[name] for name in names})


def per_condition_metrics(p, y, conditions, *, ece_method: str = "custom", bins: int = 20,
                          min_count: int = 1, smooth_bandwidth: float = 0.05,
                          smooth_grid_bins: int | None = 400, small_prob_max: float = 0.01,
                          small_prob_quantile: float = 0.1, p_true=None) -> pl.DataFrame:
    """Per-condition metrics table, one row per condition present in ``conditions``.

    Exactly ``per_condition_table(condition_sums(p, y, conditions, ...))``: columns
    condition, count, base_rate, logloss, accuracy, f1, ece, ece_small (ECE settings as in
    ``ece`` / ``ece_small`` within the condition), pred_mean, calibration_ratio, le_ratio,
    brier, and with ``p_true`` [N] (true click probabilities) true_rate,
    calibration_ratio_true, gap_true, ece_true.  Sorted by base_rate desc, count desc, id asc.
    """
    sums = condition_sums(p, y, conditions, p_true=p_true, ece_method=ece_method, bins=bins,
                          min_count=min_count, smooth_bandwidth=smooth_bandwidth,
                          smooth_grid_bins=smooth_grid_bins, small_prob_max=small_prob_max,
                          small_prob_quantile=small_prob_quantile)
    return per_condition_table(sums, min_count=min_count, smooth_bandwidth=smooth_bandwidth)


def _checked_sums(p, y, conditions) -> dict:
    """Validated inputs reduced to the per-condition arrays of ``_additive_sums``."""
    p, y = _check_pair(p, y)
    cond = _check_conditions(conditions, p.size)
    return _additive_sums(p, y, cond, int(cond.max()) + 1 if cond.size else 0)


def calibration_ratios(p, y, conditions) -> pl.DataFrame:
    """Per-condition calibration ratio pred_mean / base_rate (dimensionless; 1 = calibrated).

    Columns condition, count, base_rate, pred_mean, calibration_ratio (NaN when
    base_rate ≤ 1e-12); present conditions only, sorted by base_rate desc, count desc, id asc.
    """
    s = _checked_sums(p, y, conditions)
    return _sorted_table(_basic_columns(s["n"], s["sum_y"], s["sum_p"], np.flatnonzero(s["n"])))


def le_ratio_by_condition(p, y, conditions) -> pl.DataFrame:
    """Per-condition LE ratio = Σ_i BCE(p_i, y_i) / Σ_i BCE(base_rate_j, y_i) over rows of j.

    Columns condition, count, base_rate, logloss (mean model BCE, nats),
    base_rate_logloss (H(base_rate), nats), le_ratio (NaN when the denominator ≤ 1e-12).
    Sorted by base_rate desc, count desc, condition id asc.
    """
    s = _checked_sums(p, y, conditions)
    present = np.flatnonzero(s["n"])
    n, sum_ce, sum_y = s["n"][present], s["sum_ce"][present], s["sum_y"][present]
    base_ce = _constant_ce_sum(n, sum_y)
    return _sorted_table({"condition": present.astype(np.int64), "count": n.astype(np.int64),
                          "base_rate": sum_y / n, "logloss": sum_ce / n,
                          "base_rate_logloss": base_ce / n, "le_ratio": _le_ratio(sum_ce, base_ce)})


def _logratio_from_sums(n, sum_y, sum_p, min_count: int) -> dict:
    """Count-weighted and plain means of g_j = |ln((pred_mean_j+1e-6)/(base_rate_j+1e-6))|."""
    keep = (n >= min_count) & (n > 0)
    if not keep.any():
        return {"logratio_calib_iw": float("nan"), "logratio_calib_macro": float("nan")}
    nk = n[keep]
    g = np.abs(np.log((sum_p[keep] / nk + LOGRATIO_EPS) / (sum_y[keep] / nk + LOGRATIO_EPS)))
    return {"logratio_calib_iw": float(np.sum(nk * g) / np.sum(nk)), "logratio_calib_macro": float(g.mean())}


def logratio_calibration(p, y, conditions, *, min_count: int = 1) -> dict:
    """Log-ratio calibration over conditions with count ≥ min_count (dimensionless, ≥ 0).

    g_j = |ln((pred_mean_j + 1e-6) / (base_rate_j + 1e-6))|; ``logratio_calib_iw`` is the
    count-weighted mean of g_j, ``logratio_calib_macro`` the plain mean; NaN when no
    condition qualifies.
    """
    s = _checked_sums(p, y, conditions)
    return _logratio_from_sums(s["n"], s["sum_y"], s["sum_p"], _check_min_count(min_count))
