"""Paired tests over seeds, one metric at a time: Wilcoxon signed-rank, rank-biserial effect size, expanded
percentile bootstrap intervals of the mean delta, and the per-metric test table of two losses.

Orientation: delta > 0 favours the candidate (see :mod:`le_ray.stats`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import math

import numpy as np
import polars as pl
from scipy import stats as sps

from le_ray.stats.choices import (ALTERNATIVES, CONSTANT_RTOL, REPEAT_METRICS, TIE_TOL, ZERO_METHODS,
                                  _check_choice)


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
        # "wilcox" discards the zero differences anyway; dropping them here lets scipy's auto method take the exact
        # distribution of the n_nonzero ranked pairs (n ≤ 50, no tied |delta|): given zeros, it falls back to the
        # normal approximation, whose p can fall below the exact smallest 2/2^n_nonzero (null audit: 5 nonzero of
        # 14 seeds gave p = 0.043, where the exact test cannot go below 0.0625)
        ranked = tested[tested != 0] if zero_method == "wilcox" else tested
        res = sps.wilcoxon(ranked, zero_method=zero_method, alternative=alternative)
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


def rank_biserial_columns(delta: np.ndarray) -> np.ndarray:
    """:func:`rank_biserial` of every column of ``delta`` [S, J] at once (one ``rankdata(axis=0)``; a call per
    column took seconds at 20,000 ads): NaN entries left out per column, ties with 0 (|delta| ≤ 1e-15) too."""
    d = np.asarray(delta, dtype=np.float64)
    finite = np.isfinite(d)
    nonzero = finite & (np.abs(d) > TIE_TOL)
    ranks = sps.rankdata(np.where(nonzero, np.abs(d), np.nan), axis=0, nan_policy="omit")
    t_plus = np.where(nonzero & (d > 0), ranks, 0.0).sum(axis=0)
    t_minus = np.where(nonzero & (d < 0), ranks, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (t_plus - t_minus) / (t_plus + t_minus)
    return np.where(~finite.any(axis=0), np.nan, np.where(nonzero.any(axis=0), r, 0.0))


def expanded_levels(n: int, confidence: float) -> tuple[float, float]:
    """The quantile levels (a, 1 − a) of the expanded percentile bootstrap interval of a mean of ``n`` values at
    ``confidence`` c (Hesterberg 2015, "What teachers should know about the bootstrap", §3.3):
    a = Φ(−√(n/(n−1)) · t_{(1+c)/2, n−1}), the plain percentile levels ((1−c)/2, (1+c)/2) when n < 2.

    Why: the plain percentile interval of a mean is too narrow over few values (it uses the divide-by-n spread and
    the normal's quantile instead of the t's); over seeds it covered 84 % at n = 5 and 90 % at n = 10 at a "95 %"
    label (null audit, 2026-12-06). Expanded: 92 % and 95 % for normal deltas, 92 % and 94 % for t(3) deltas
    (tests/test_stats.py). It cannot reach beyond the range of the resampled means, so at n = 3 it still covers
    ~74 %. E.g. n = 10, c = 0.95: a = 0.0086."""
    low, high = (1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0
    if n < 2:
        return low, high
    a = float(sps.norm.cdf(-math.sqrt(n / (n - 1)) * sps.t.ppf(high, n - 1)))
    return a, 1.0 - a


def bootstrap_mean_ci(delta, *, samples: int = 10_000, seed: int = 0,
                      confidence: float = 0.95) -> tuple[float, float]:
    """Expanded percentile bootstrap CI of mean(delta) at ``confidence``, same units as delta.

    One ``rng.integers(0, n, size=(samples, n))`` draw (rng = default_rng(seed)), means per row, then their
    :func:`expanded_levels` quantiles.  (NaN, NaN) for an empty ``delta``.
    """
    _check_bootstrap(samples, confidence)
    d = np.asarray(delta, dtype=np.float64)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, d.size, size=(int(samples), d.size))
    means = d[idx].mean(axis=1)
    low, high = np.quantile(means, expanded_levels(d.size, confidence))
    return float(low), float(high)


def _check_bootstrap(samples: int, confidence: float) -> None:
    """Raise ValueError unless ``samples`` is a positive integer and 0 < ``confidence`` < 1."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")


#: bootstrap means held at once by :func:`bootstrap_mean_cis` (float64: 32 MiB), however many columns it is given
_BOOTSTRAP_BLOCK = 1 << 22


def bootstrap_mean_cis(delta, *, samples: int = 10_000, seed: int = 0,
                       confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """:func:`bootstrap_mean_ci` of every column of ``delta`` [S, J] over its finite entries: (low [J], high [J]).

    Each column gets what a :func:`bootstrap_mean_ci` call on it with the same ``seed`` gives. A column whose S
    entries are all finite shares one draw ``rng.integers(0, S, size=(samples, S))`` with the others, written as
    resampling counts W [samples, S] so that the bootstrap means of a block of columns are one product W·delta / S
    (numpy has no batched percentile bootstrap; scipy.stats.bootstrap redraws per column, takes minutes for
    thousands of ads, and has no expanded percentile method); a column with missing seeds is bootstrapped alone
    over its usable entries, at the levels of its own count.
    """
    _check_bootstrap(samples, confidence)
    d = np.atleast_2d(np.asarray(delta, dtype=np.float64))
    n_seeds, n_cols = d.shape
    low, high = np.full(n_cols, np.nan), np.full(n_cols, np.nan)
    full = np.isfinite(d).all(axis=0) & (n_seeds > 0)
    for j in np.flatnonzero(~full):
        low[j], high[j] = bootstrap_mean_ci(d[:, j], samples=samples, seed=seed, confidence=confidence)
    cols = np.flatnonzero(full)
    if not cols.size:
        return low, high
    idx = np.random.default_rng(seed).integers(0, n_seeds, size=(int(samples), n_seeds))
    counts = np.zeros((int(samples), n_seeds))
    np.add.at(counts, (np.arange(int(samples))[:, None], idx), 1.0)
    quantiles = expanded_levels(n_seeds, confidence)
    block = max(1, _BOOTSTRAP_BLOCK // int(samples))
    for start in range(0, cols.size, block):
        part = cols[start:start + block]
        means = counts @ d[:, part] / n_seeds
        low[part], high[part] = np.quantile(means, quantiles, axis=0)
    return low, high

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
