"""Paired statistics over repeated runs (seeds): Wilcoxon signed-rank tests, effect sizes,
bootstrap intervals, multiple-testing corrections and per-condition calibration tests.

Orientation (every function here)
---------------------------------
For a metric where lower is better, ``delta = baseline − candidate``; where higher is
better, ``delta = candidate − baseline``.  So **delta > 0 favours the candidate** (LE by
default) and the one-sided alternative ``"greater"`` always means "the candidate is
better", ``"less"`` "the candidate is worse".

The test is ``scipy.stats.wilcoxon(delta, zero_method=zero_method, alternative=alternative)``,
i.e. scipy's paired call with ``x − y = delta`` (``wilcoxon(baseline, candidate)`` for a
lower-is-better metric, ``wilcoxon(candidate, baseline)`` for a higher-is-better one) and
the user's alternative passed through unchanged.  scipy's default ``method="auto"`` is
used (exact for ≤ 50 pairs without ties/zeros, a deterministic permutation test for ≤ 13
pairs with ties/zeros, else the normal approximation).  The reported ``statistic`` is
scipy's: min(T+, T−) for two-sided, T+ (sum of ranks of positive deltas) for one-sided.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import math

import numpy as np
import polars as pl
from scipy import stats as sps

from le_ray.glossary import TESTED_METRICS
from le_ray.metrics.validation import _check_array, _check_conditions

__all__ = [
    "LOWER_IS_BETTER",
    "HIGHER_IS_BETTER",
    "REPEAT_METRICS",
    "ALTERNATIVES",
    "ZERO_METHODS",
    "CORRECTIONS",
    "median_range",
    "paired_deltas",
    "paired_wilcoxon",
    "rank_biserial",
    "bootstrap_mean_ci",
    "summarize_runs",
    "metric_tests",
    "holm_adjust",
    "bh_adjust",
    "adjust_p",
    "is_constant",
    "per_condition_calibration_tests",
    "calibration_tests_from_sums",
    "min_pairs_for_alpha",
    "min_exact_p",
]

# the tested metrics and their directions are defined once, with their definitions, in the glossary
LOWER_IS_BETTER = tuple(m for m, higher in TESTED_METRICS.items() if not higher)
HIGHER_IS_BETTER = tuple(m for m, higher in TESTED_METRICS.items() if higher)
REPEAT_METRICS: dict[str, bool] = {**dict.fromkeys(LOWER_IS_BETTER, False), **dict.fromkeys(HIGHER_IS_BETTER, True)}
ALTERNATIVES = ("two-sided", "greater", "less")
ZERO_METHODS = ("wilcox", "pratt", "zsplit")
CORRECTIONS = ("holm", "bh", "none")
TIE_TOL = 1e-15  # |delta| ≤ TIE_TOL counts as a tie (delta set to exactly 0)
CONSTANT_RTOL = 1e-12  # values whose spread is ≤ CONSTANT_RTOL·max(1, |value|) count as one constant value
_CALIB_SORTS = ("p_value", "abs_delta_mean", "delta_mean", "count", "base_rate")


def _check_choice(value, allowed: Sequence[str], name: str) -> None:
    """Raise ValueError when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


# ---------------------------------------------------------------------------- paired tests


def median_range(values) -> tuple[float, float, float]:
    """(median, min, max) of the finite, positive entries of ``values`` (e.g. one ad's per-seed calibration ratios);
    NaN three times when there is none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return (float(np.median(v)), float(v.min()), float(v.max())) if v.size else (math.nan,) * 3


def paired_deltas(baseline, candidate, *, higher_is_better: bool) -> np.ndarray:
    """Oriented per-seed deltas over pairs where both values are finite, shape [n].

    delta = candidate − baseline (higher is better) or baseline − candidate (lower is
    better), in the metric's units; delta > 0 favours the candidate.
    """
    b = np.asarray(baseline, dtype=np.float64)
    c = np.asarray(candidate, dtype=np.float64)
    if b.ndim != 1 or b.shape != c.shape:
        raise ValueError(f"baseline and candidate must be 1-D of equal length, got {b.shape} and {c.shape}")
    ok = np.isfinite(b) & np.isfinite(c)
    return (c[ok] - b[ok]) if higher_is_better else (b[ok] - c[ok])


def _wilcoxon_on_delta(delta: np.ndarray, alternative: str, zero_method: str) -> dict:
    """Wilcoxon fields for finite oriented deltas (no validation)."""
    n = int(delta.size)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "n_nonzero": 0, "median_delta": nan, "mean_delta": nan, "statistic": nan, "p_value": nan}
    tested = np.where(np.abs(delta) <= TIE_TOL, 0.0, delta)
    n_nonzero = int(np.count_nonzero(tested))
    out = {"n": n, "n_nonzero": n_nonzero, "median_delta": float(np.median(delta)),
           "mean_delta": float(np.mean(delta)), "statistic": 0.0, "p_value": 1.0}
    if n_nonzero:
        res = sps.wilcoxon(tested, zero_method=zero_method, alternative=alternative)
        out["statistic"], out["p_value"] = float(res.statistic), float(res.pvalue)
    return out


def paired_wilcoxon(baseline, candidate, *, higher_is_better: bool, alternative: str = "two-sided",
                    zero_method: str = "wilcox") -> dict:
    """Paired Wilcoxon signed-rank test over seeds, oriented so delta > 0 favours the candidate.

    ``baseline``/``candidate``: one metric value per seed, shape [S], pairs aligned by
    index; pairs with a non-finite value are dropped.  ``alternative="greater"`` tests
    "candidate better", ``"less"`` "candidate worse" (see the module docstring for the
    exact scipy call).  Deltas with |delta| ≤ 1e-15 are ties (set to 0).
    Returns {n, n_nonzero, median_delta, mean_delta, statistic, p_value}; when every
    delta is a tie: statistic 0, p_value 1 (scipy not called); with no usable pair the
    statistics are NaN.
    """
    _check_choice(alternative, ALTERNATIVES, "alternative")
    _check_choice(zero_method, ZERO_METHODS, "zero_method")
    delta = paired_deltas(baseline, candidate, higher_is_better=higher_is_better)
    return _wilcoxon_on_delta(delta, alternative, zero_method)


def rank_biserial(delta) -> float:
    """Matched-pairs rank-biserial correlation r = (T+ − T−)/(T+ + T−), in [−1, 1].

    Ranks (average for ties) are of |delta| over the non-zero deltas (|delta| > 1e-15);
    r > 0 favours the candidate.  0 when every delta is a tie, NaN when ``delta`` is empty.
    """
    d = np.asarray(delta, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    d = d[np.abs(d) > TIE_TOL]
    if d.size == 0:
        return 0.0
    ranks = sps.rankdata(np.abs(d))
    t_plus, t_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((t_plus - t_minus) / (t_plus + t_minus))


def bootstrap_mean_ci(delta, *, samples: int = 10_000, seed: int = 0,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(delta), same units as delta.

    One ``rng.integers(0, n, size=(samples, n))`` draw (rng = default_rng(seed)), means per
    row, then the (1−c)/2 and (1+c)/2 quantiles.  (NaN, NaN) for an empty ``delta``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    d = np.asarray(delta, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, d.size, size=(int(samples), d.size))
    means = d[idx].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(low), float(high)


# ------------------------------------------------------------------------ repeated runs


def _metric_map(table: pl.DataFrame, metrics) -> dict[str, bool]:
    """Metric name → higher_is_better; default: REPEAT_METRICS columns present in ``table``."""
    if metrics is None:
        return {m: hib for m, hib in REPEAT_METRICS.items() if m in table.columns}
    if not isinstance(metrics, Mapping):
        unknown = [m for m in metrics if m not in REPEAT_METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; pass a mapping name → higher_is_better")
        metrics = {m: REPEAT_METRICS[m] for m in metrics}
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise ValueError(f"metric columns missing from table: {missing}")
    return dict(metrics)


def _require_columns(table: pl.DataFrame, columns: Sequence[str]) -> None:
    """Raise ValueError naming the missing columns."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"table is missing required columns {missing}; has {table.columns}")


def summarize_runs(table: pl.DataFrame, *, metrics=None) -> pl.DataFrame:
    """Per-loss summary over seeds: one row per (loss, metric).

    ``table``: columns seed, loss and metric columns (default: the REPEAT_METRICS present).
    Returns columns loss, metric, n (finite values), mean, std (ddof 1; NaN when n < 2),
    min, max — NaN statistics when n = 0.  Losses in order of first appearance, metrics in
    REPEAT_METRICS order.
    """
    _require_columns(table, ["seed", "loss"])
    names = list(_metric_map(table, metrics))
    losses = table.get_column("loss").unique(maintain_order=True).to_list()
    rows = []
    for loss in losses:
        sub = table.filter(pl.col("loss") == loss)
        for m in names:
            v = sub.get_column(m).cast(pl.Float64).fill_null(np.nan).to_numpy()
            v = v[np.isfinite(v)]
            rows.append({"loss": loss, "metric": m, "n": int(v.size),
                         "mean": float(v.mean()) if v.size else np.nan,
                         "std": float(v.std(ddof=1)) if v.size > 1 else np.nan,
                         "min": float(v.min()) if v.size else np.nan,
                         "max": float(v.max()) if v.size else np.nan})
    schema = {"loss": pl.String, "metric": pl.String, "n": pl.Int64, "mean": pl.Float64,
              "std": pl.Float64, "min": pl.Float64, "max": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _paired_frame(table: pl.DataFrame, baseline: str, candidate: str, names) -> pl.DataFrame:
    """Inner join of the baseline and candidate rows on seed (columns m and m__cand)."""
    _require_columns(table, ["seed", "loss"])
    present = set(table.get_column("loss").to_list())
    for loss in (baseline, candidate):
        if loss not in present:
            raise ValueError(f"loss {loss!r} not found in table; available: {sorted(present)}")
    frames = []
    for loss in (baseline, candidate):
        sub = table.filter(pl.col("loss") == loss).select(["seed", *names])
        if sub.get_column("seed").is_duplicated().any():
            raise ValueError(f"duplicate seeds for loss {loss!r}")
        frames.append(sub.with_columns([pl.col(m).cast(pl.Float64).fill_null(np.nan) for m in names]))
    return frames[0].join(frames[1], on="seed", how="inner", suffix="__cand").sort("seed")


def metric_tests(table: pl.DataFrame, *, baseline: str = "bce", candidate: str = "localized_entropy",
                 alternative: str = "two-sided", zero_method: str = "wilcox",
                 bootstrap_samples: int = 10_000, seed: int = 0, confidence: float = 0.95,
                 metrics=None) -> pl.DataFrame:
    """Paired tests of ``candidate`` vs ``baseline`` over seeds, one row per metric.

    ``table``: columns seed, loss, metric columns; pairs are matched by seed (inner join:
    seeds missing for either loss are left out; non-finite pairs dropped per metric).
    Columns: metric, higher_is_better, baseline, candidate (loss names), baseline_mean,
    candidate_mean (over the usable pairs), n, n_nonzero, median_delta, mean_delta,
    statistic, p_value (``paired_wilcoxon``), rank_biserial, ci_low, ci_high (percentile
    bootstrap CI of the mean delta, rng seeded with ``seed`` for every metric),
    baseline_constant / candidate_constant (:func:`is_constant` over the usable pairs, n ≥ 2) and
    ``informative``: False when either loss's value is constant over the seeds or every delta is a tie —
    such a test carries no evidence either way and belongs in no correction family (:func:`adjust_p`).
    delta > 0 favours the candidate.
    """
    _check_choice(alternative, ALTERNATIVES, "alternative")
    _check_choice(zero_method, ZERO_METHODS, "zero_method")
    names = _metric_map(table, metrics)
    joined = _paired_frame(table, baseline, candidate, list(names))
    rows = []
    for m, hib in names.items():
        b, c = joined.get_column(m).to_numpy(), joined.get_column(f"{m}__cand").to_numpy()
        ok = np.isfinite(b) & np.isfinite(c)
        delta = paired_deltas(b, c, higher_is_better=hib)
        low, high = bootstrap_mean_ci(delta, samples=bootstrap_samples, seed=seed, confidence=confidence)
        test = _wilcoxon_on_delta(delta, alternative, zero_method)
        flat_b, flat_c = (ok.sum() >= 2 and is_constant(v[ok]) for v in (b, c))
        rows.append({"metric": m, "higher_is_better": hib, "baseline": baseline, "candidate": candidate,
                     "baseline_mean": float(b[ok].mean()) if ok.any() else np.nan,
                     "candidate_mean": float(c[ok].mean()) if ok.any() else np.nan, **test,
                     "rank_biserial": rank_biserial(delta), "ci_low": low, "ci_high": high,
                     "baseline_constant": bool(flat_b), "candidate_constant": bool(flat_c),
                     "informative": not (flat_b or flat_c or (test["n"] >= 2 and test["n_nonzero"] == 0))})
    return pl.DataFrame(rows, schema=_METRIC_TEST_SCHEMA)


def is_constant(values) -> bool:
    """True when the finite ``values`` (shape [n]) are all one value: max − min ≤ 1e-12·max(1, max |value|).

    E.g. the accuracy of a model that never predicts p ≥ 0.5 on a fixed evaluation split is the same
    (1 − click rate) in every seed: a paired test on it measures nothing about the model. False for no value.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return bool(v.size) and float(v.max() - v.min()) <= CONSTANT_RTOL * max(1.0, float(np.abs(v).max()))


_METRIC_TEST_SCHEMA = {
    "metric": pl.String, "higher_is_better": pl.Boolean, "baseline": pl.String, "candidate": pl.String,
    "baseline_mean": pl.Float64, "candidate_mean": pl.Float64, "n": pl.Int64, "n_nonzero": pl.Int64,
    "median_delta": pl.Float64, "mean_delta": pl.Float64, "statistic": pl.Float64, "p_value": pl.Float64,
    "rank_biserial": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "baseline_constant": pl.Boolean,
    "candidate_constant": pl.Boolean, "informative": pl.Boolean,
}


# ------------------------------------------------------------------ multiple testing


def _finite_p(p) -> tuple[np.ndarray, np.ndarray]:
    """(p as float array [m_all], mask of non-NaN entries); p must lie in [0, 1]."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"p-values must be 1-D, got shape {arr.shape}")
    ok = ~np.isnan(arr)
    if ((arr[ok] < 0) | (arr[ok] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    return arr, ok


def holm_adjust(p) -> np.ndarray:
    """Holm step-down adjusted p-values, shape [m]; NaN entries stay NaN and are not counted.

    With the m finite p sorted ascending p_(1) ≤ … ≤ p_(m):
    p̃_(i) = min(1, max_{k ≤ i} (m − k + 1)·p_(k)).
    """
    arr, ok = _finite_p(p)
    out = np.full(arr.shape, np.nan)
    q = arr[ok]
    order = np.argsort(q, kind="stable")
    adj = np.maximum.accumulate((q.size - np.arange(q.size)) * q[order])
    res = np.empty(q.size)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def bh_adjust(p) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values, shape [m]; NaN entries stay NaN, not counted.

    p̃_(i) = min(1, min_{k ≥ i} m·p_(k)/k) over the m finite p sorted ascending.
    """
    arr, ok = _finite_p(p)
    out = np.full(arr.shape, np.nan)
    q = arr[ok]
    order = np.argsort(q, kind="stable")
    scaled = q[order] * q.size / np.arange(1, q.size + 1)
    adj = np.minimum.accumulate(scaled[::-1])[::-1]
    res = np.empty(q.size)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def adjust_p(p, correction: str, *, include=None) -> np.ndarray:
    """Adjusted p-values, shape [m]: ``correction`` ("holm", "bh" or "none") over the entries where ``include``
    (bool [m], default all) is True and p is not NaN; every other entry is NaN (not in the family, not counted
    in its size). E.g. a metric constant over the seeds is left out, so it does not dilute the others.
    """
    _check_choice(correction, CORRECTIONS, "correction")
    arr, _ = _finite_p(p)
    keep = np.ones(arr.shape, dtype=bool) if include is None else np.asarray(include, dtype=bool)
    if keep.shape != arr.shape:
        raise ValueError(f"include must have the shape of p {arr.shape}, got {keep.shape}")
    family = np.where(keep, arr, np.nan)
    return {"holm": holm_adjust, "bh": bh_adjust, "none": lambda x: x}[correction](family)


def min_exact_p(n_pairs: int, alternative: str = "two-sided") -> float:
    """Smallest p-value an exact Wilcoxon signed-rank test can give with ``n_pairs`` non-zero paired differences.

    Under H0 each of the 2^n sign patterns of the n ranked differences is equally likely, so the most extreme
    statistic (every difference of one sign: W+ = n(n+1)/2 or 0) has probability 1/2^n. One-sided
    ("greater", "less") the smallest p is 1/2^n; two-sided both extremes count, 2/2^n. E.g. n = 5:
    0.0625 two-sided, 0.03125 one-sided. Exact powers of two (``math.ldexp``), no overflow for large n.
    """
    _check_choice(alternative, ALTERNATIVES, "alternative")
    if int(n_pairs) != n_pairs or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive integer, got {n_pairs!r}")
    return math.ldexp(2.0 if alternative == "two-sided" else 1.0, -int(n_pairs))


def min_pairs_for_alpha(alpha: float, *, m_tests: int = 1, correction: str = "holm",
                        alternative: str = "two-sided") -> int:
    """Smallest number of pairs n for which an exact Wilcoxon test can give p < alpha_eff.

    The smallest exact p with n pairs is :func:`min_exact_p`: 2/2^n (two-sided) or 1/2^n (one-sided);
    alpha_eff = alpha/m_tests for Holm and for BH (the bar of a single rejection), alpha
    for "none".  E.g. alpha 0.05, two-sided: n = 6 (n = 5 gives 0.0625).
    """
    _check_choice(correction, CORRECTIONS, "correction")
    _check_choice(alternative, ALTERNATIVES, "alternative")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha!r}")
    if int(m_tests) != m_tests or m_tests < 1:
        raise ValueError(f"m_tests must be a positive integer, got {m_tests!r}")
    target = alpha if correction == "none" else alpha / m_tests
    n = 1
    while min_exact_p(n, alternative) >= target:
        n += 1
    return n


# ----------------------------------------------------------- per-condition calibration


def _as_seed_list(preds, name: str) -> list[np.ndarray]:
    """Predictions per seed: a list of 1-D arrays or a 2-D array [S, N] → list of float arrays."""
    if isinstance(preds, np.ndarray) and preds.ndim == 2:
        rows = list(preds)
    elif isinstance(preds, (list, tuple)):
        rows = list(preds)
    else:
        raise ValueError(f"{name} must be a list of 1-D arrays (one per seed) or a 2-D array [S, N]")
    if not rows:
        raise ValueError(f"{name} is empty: need at least one seed")
    out = [np.asarray(r, dtype=np.float64) for r in rows]
    for s, r in enumerate(out):
        if r.ndim != 1 or not np.isfinite(r).all():
            raise ValueError(f"{name}[{s}] must be a finite 1-D array")
    return out


def _seed_data(labels, conditions, baseline_preds, candidate_preds):
    """Validated per-seed tuples (y, conditions, baseline p, candidate p) and a shared flag."""
    base = _as_seed_list(baseline_preds, "baseline_preds")
    cand = _as_seed_list(candidate_preds, "candidate_preds")
    n_seeds = len(base)
    if len(cand) != n_seeds:
        raise ValueError(f"baseline_preds has {n_seeds} seeds, candidate_preds has {len(cand)}")
    shared = not isinstance(labels, (list, tuple))
    if shared:
        y = _check_array(labels, "labels")
        ys, cs = [y] * n_seeds, [_check_conditions(conditions, y.size)] * n_seeds
    else:
        if not isinstance(conditions, (list, tuple)) or len(labels) != n_seeds or len(conditions) != n_seeds:
            raise ValueError(f"per-seed labels and conditions must be lists with one array per seed ({n_seeds})")
        ys = [_check_array(y, f"labels[{s}]") for s, y in enumerate(labels)]
        cs = [_check_conditions(c, y.size) for c, y in zip(conditions, ys)]
    for s, (y, pb, pc) in enumerate(zip(ys, base, cand)):
        if not (y.size == pb.size == pc.size):
            raise ValueError(f"seed {s}: labels ({y.size}), baseline ({pb.size}) and candidate "
                             f"({pc.size}) lengths differ")
    return list(zip(ys, cs, base, cand)), shared


def _seed_sums(seeds, n_cond: int) -> tuple[np.ndarray, ...]:
    """Per-seed sufficient statistics [S, C]: counts, Σy, Σ baseline p, Σ candidate p."""
    n = np.array([np.bincount(c, minlength=n_cond) for _, c, _, _ in seeds])
    sy = np.array([np.bincount(c, weights=y, minlength=n_cond) for y, c, _, _ in seeds])
    sb = np.array([np.bincount(c, weights=pb, minlength=n_cond) for _, c, pb, _ in seeds])
    sc = np.array([np.bincount(c, weights=pc, minlength=n_cond) for _, c, _, pc in seeds])
    return n, sy, sb, sc


def _seed_gaps(n, sy, sb, sc, min_count: int):
    """Per-seed gaps [S, C] = |mean prediction_j − base rate_j|, NaN when n_sj < max(min_count, 1)."""
    ok = (n >= max(min_count, 1))
    den = np.where(ok, n, 1)
    gap_b = np.where(ok, np.abs(sb - sy) / den, np.nan)
    gap_c = np.where(ok, np.abs(sc - sy) / den, np.nan)
    return gap_b, gap_c


def _wilcoxon_many(delta: np.ndarray, alternative: str, zero_method: str) -> dict:
    """Column-wise ``_wilcoxon_on_delta`` for oriented deltas [S, J]; NaN marks an unusable pair.

    "Clean" columns (all S pairs usable, no tie with 0, no tied |delta|) go through ONE
    vectorised ``scipy.stats.wilcoxon(..., axis=0)`` call: for them scipy's ``auto`` method
    picks per column what a 1-D call would pick, so results equal the 1-D calls.  Other
    columns fall back to one 1-D call each.  Returns arrays [J] keyed like paired_wilcoxon.
    """
    n_seeds, n_cols = delta.shape
    usable = np.isfinite(delta)
    tested = np.where(np.abs(delta) <= TIE_TOL, 0.0, delta)
    n = usable.sum(axis=0)
    nonzero = (usable & (tested != 0)).sum(axis=0)
    out = {"n": n, "n_nonzero": nonzero,
           "statistic": np.where(n > 0, 0.0, np.nan), "p_value": np.where(n > 0, 1.0, np.nan)}
    masked = np.where(usable, delta, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["mean_delta"] = np.where(n > 0, masked.sum(axis=0) / n, np.nan)
    out["median_delta"] = np.full(n_cols, np.nan)
    sorted_abs = np.sort(np.abs(tested), axis=0)
    clean = (n == n_seeds) & (nonzero == n_seeds) & ~(np.diff(sorted_abs, axis=0) == 0).any(axis=0)
    if clean.any():
        res = sps.wilcoxon(tested[:, clean], zero_method=zero_method, alternative=alternative, axis=0)
        out["statistic"][clean], out["p_value"][clean] = res.statistic, res.pvalue
        out["median_delta"][clean] = np.median(delta[:, clean], axis=0)
    for j in np.flatnonzero(~clean & (n > 0)):
        res = _wilcoxon_on_delta(delta[usable[:, j], j], alternative, zero_method)
        for key in ("statistic", "p_value", "median_delta"):
            out[key][j] = res[key]
    return out


def _calib_rows(cond_ids, count, base_rate, gap_b, gap_c, alternative, zero_method):
    """Columns of the calibration-test table for ``cond_ids`` (lower gap is better)."""
    gb, gc = gap_b[:, cond_ids], gap_c[:, cond_ids]
    res = _wilcoxon_many(gb - gc, alternative, zero_method)
    usable = np.isfinite(gb) & np.isfinite(gc)
    n = usable.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_b = np.where(n > 0, np.where(usable, gb, 0.0).sum(axis=0) / n, np.nan)
        mean_c = np.where(n > 0, np.where(usable, gc, 0.0).sum(axis=0) / n, np.nan)
    return {"condition": cond_ids.astype(np.int64), "count": count[cond_ids].astype(np.int64),
            "base_rate": base_rate[cond_ids], "baseline_gap": mean_b, "candidate_gap": mean_c,
            "delta_mean": res["mean_delta"], "n": res["n"], "n_nonzero": res["n_nonzero"],
            "statistic": res["statistic"], "p_value": res["p_value"]}


def _sort_calib(df: pl.DataFrame, sort_by: str) -> pl.DataFrame:
    """Sort: p_value ascending; abs_delta_mean, delta_mean, count, base_rate descending.

    NaN keys go last; ties broken by condition id ascending.
    """
    if sort_by == "abs_delta_mean":
        key = pl.col("delta_mean").abs()
    else:
        key = pl.col(sort_by).cast(pl.Float64)
    key = key.fill_nan(None).alias("__key")
    return (df.with_columns(key)
              .sort(["__key", "condition"], descending=[sort_by != "p_value", False], nulls_last=True)
              .drop("__key"))


def per_condition_calibration_tests(labels, conditions, baseline_preds, candidate_preds, *,
                                    alternative: str = "two-sided", zero_method: str = "wilcox",
                                    min_count: int = 1, alpha: float = 0.05, correction: str = "holm",
                                    sort_by: str = "p_value") -> pl.DataFrame:
    """Per-condition paired test of calibration gaps over seeds (lower gap is better).

    For seed s and condition j: gap_sj = |mean prediction_sj − eval base rate_sj|
    (probability units).  delta = baseline gap − candidate gap, so delta > 0 and
    ``alternative="greater"`` favour the candidate.  ``labels``/``conditions``: one shared
    array [N], or lists with one array per seed (data resampled per seed).
    ``baseline_preds``/``candidate_preds``: list of [N_s] arrays or a 2-D array [S, N].
    A seed counts for j only if n_sj ≥ max(min_count, 1); conditions with no such seed are
    left out.  Columns: condition, count (rows of j in the evaluation data; summed over
    seeds when the data differ per seed), base_rate (pooled), baseline_gap, candidate_gap
    (means over usable seeds), delta_mean, n, n_nonzero, statistic, p_value, p_holm, p_bh,
    significant (adjusted p by ``correction`` < alpha; NaN p-values are not counted in m).
    ``sort_by`` ∈ p_value (ascending), abs_delta_mean, delta_mean, count, base_rate (descending).
    """
    _check_choice(alternative, ALTERNATIVES, "alternative")
    _check_choice(zero_method, ZERO_METHODS, "zero_method")
    _check_choice(correction, CORRECTIONS, "correction")
    _check_choice(sort_by, _CALIB_SORTS, "sort_by")
    seeds, shared = _seed_data(labels, conditions, baseline_preds, candidate_preds)
    n_cond = max((int(c.max()) + 1 for _, c, _, _ in seeds if c.size), default=0)
    n, sy, sb, sc = _seed_sums(seeds, n_cond)
    return calibration_tests_from_sums(n, sy, sb, sc, shared_data=shared, alternative=alternative,
                                       zero_method=zero_method, min_count=min_count, alpha=alpha,
                                       correction=correction, sort_by=sort_by)


def calibration_tests_from_sums(counts, label_sums, baseline_pred_sums, candidate_pred_sums, *,
                                shared_data: bool = True, alternative: str = "two-sided",
                                zero_method: str = "wilcox", min_count: int = 1, alpha: float = 0.05,
                                correction: str = "holm", sort_by: str = "p_value") -> pl.DataFrame:
    """:func:`per_condition_calibration_tests` from per-seed sufficient statistics, each [S, C].

    ``counts`` n_sj, ``label_sums`` Σy, ``*_pred_sums`` Σp of each model over the rows of
    condition j in seed s's evaluation data (e.g. count, count·base_rate and count·pred_mean of
    stored per-condition tables). ``shared_data``: every seed evaluated on the same rows (then
    count/base_rate come from seed 0, else they are pooled over seeds).
    """
    _check_choice(alternative, ALTERNATIVES, "alternative")
    _check_choice(zero_method, ZERO_METHODS, "zero_method")
    _check_choice(correction, CORRECTIONS, "correction")
    _check_choice(sort_by, _CALIB_SORTS, "sort_by")
    n, sy, sb, sc = (np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in
                     (counts, label_sums, baseline_pred_sums, candidate_pred_sums))
    if not (n.shape == sy.shape == sb.shape == sc.shape):
        raise ValueError(f"counts, label and prediction sums must share one [S, C] shape; got "
                         f"{n.shape}, {sy.shape}, {sb.shape}, {sc.shape}")
    n_cond = n.shape[1]
    gap_b, gap_c = _seed_gaps(n, sy, sb, sc, min_count)
    count = n[0] if shared_data else n.sum(axis=0)
    base_rate = np.divide(sy[0] if shared_data else sy.sum(axis=0), count,
                          out=np.full(n_cond, np.nan), where=count > 0)
    cond_ids = np.flatnonzero(np.isfinite(gap_b).any(axis=0))
    cols = _calib_rows(cond_ids, count, base_rate, gap_b, gap_c, alternative, zero_method)
    cols["p_holm"], cols["p_bh"] = holm_adjust(cols["p_value"]), bh_adjust(cols["p_value"])
    adjusted = {"holm": cols["p_holm"], "bh": cols["p_bh"], "none": cols["p_value"]}[correction]
    cols["significant"] = np.nan_to_num(adjusted, nan=np.inf) < alpha
    return _sort_calib(pl.DataFrame(cols, schema_overrides=_CALIB_SCHEMA), sort_by)


_CALIB_SCHEMA = {"condition": pl.Int64, "count": pl.Int64, "base_rate": pl.Float64,
                 "baseline_gap": pl.Float64, "candidate_gap": pl.Float64, "delta_mean": pl.Float64,
                 "n": pl.Int64, "n_nonzero": pl.Int64, "statistic": pl.Float64, "p_value": pl.Float64,
                 "p_holm": pl.Float64, "p_bh": pl.Float64, "significant": pl.Boolean}
