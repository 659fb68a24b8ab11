"""Per-condition (per-ad) calibration tests over seeds: a paired Wilcoxon test of each condition's gap
|mean prediction − base rate| between two losses, its corrections across conditions and a bootstrap interval of
the mean gap difference.  Orientation: delta = baseline gap − candidate gap, so delta > 0 favours the candidate."""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats as sps

from le_ray.metrics.validation import _check_array, _check_conditions
from le_ray.stats.choices import ALTERNATIVES, CORRECTIONS, TIE_TOL, ZERO_METHODS, _check_choice
from le_ray.stats.corrections import bh_adjust, holm_adjust
from le_ray.stats.paired import _wilcoxon_on_delta, bootstrap_mean_cis, rank_biserial_columns

_CALIB_SORTS = ("p_value", "abs_delta_mean", "delta_mean", "count", "base_rate")  # per_condition_sort_by

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


def _calib_rows(cond_ids, count, base_rate, gap_b, gap_c, alternative, zero_method, bootstrap: dict):
    """Columns of the calibration-test table for ``cond_ids`` (lower gap is better); ``bootstrap``: the keyword
    arguments of :func:`bootstrap_mean_cis` (samples, seed, confidence)."""
    gb, gc = gap_b[:, cond_ids], gap_c[:, cond_ids]
    delta = gb - gc  # [S, J]: > 0 favours the candidate
    res = _wilcoxon_many(delta, alternative, zero_method)
    # the rank test's direction per ad (T+ − T−)/(T+ + T−): a few seeds with large deltas can point the mean the
    # other way, so a significant test's winner is read from this, never from delta_mean
    effect = rank_biserial_columns(delta)
    ci_low, ci_high = bootstrap_mean_cis(delta, **bootstrap)
    usable = np.isfinite(gb) & np.isfinite(gc)
    n = usable.sum(axis=0)
    candidate_closer = (usable & (delta > TIE_TOL)).sum(axis=0)  # the pairs the test ranks on the candidate's side
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_b = np.where(n > 0, np.where(usable, gb, 0.0).sum(axis=0) / n, np.nan)
        mean_c = np.where(n > 0, np.where(usable, gc, 0.0).sum(axis=0) / n, np.nan)
    return {"condition": cond_ids.astype(np.int64), "count": count[cond_ids].astype(np.int64),
            "base_rate": base_rate[cond_ids], "baseline_gap": mean_b, "candidate_gap": mean_c,
            "delta_mean": res["mean_delta"], "ci_low": ci_low, "ci_high": ci_high, "rank_biserial": effect,
            "n": res["n"], "n_nonzero": res["n_nonzero"], "n_candidate_closer": candidate_closer,
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
                                    sort_by: str = "p_value", bootstrap_samples: int = 10_000, seed: int = 0,
                                    confidence: float = 0.95) -> pl.DataFrame:
    """Per-condition paired test of calibration gaps over seeds (lower gap is better).

    For seed s and condition j: gap_sj = |mean prediction_sj − eval base rate_sj|
    (probability units).  delta = baseline gap − candidate gap, so delta > 0 and
    ``alternative="greater"`` favour the candidate.  ``labels``/``conditions``: one shared
    array [N], or lists with one array per seed (data resampled per seed).
    ``baseline_preds``/``candidate_preds``: list of [N_s] arrays or a 2-D array [S, N].
    A seed counts for j only if n_sj ≥ max(min_count, 1); conditions with no such seed are
    left out.  Columns: condition, count (rows of j in the evaluation data; summed over
    seeds when the data differ per seed), base_rate (pooled), baseline_gap, candidate_gap
    (means over usable seeds), delta_mean, ci_low, ci_high (the expanded percentile bootstrap CI of delta_mean at
    ``confidence``, ``bootstrap_samples`` draws seeded with ``seed``: :func:`bootstrap_mean_cis`; unadjusted),
    rank_biserial (:func:`rank_biserial` of the deltas: > 0 when the ranks favour the candidate, the direction of
    the test), n, n_nonzero (the pairs with delta ≠ 0, those the test ranks), n_candidate_closer (those with
    delta > 0: the candidate's gap the smaller; n_nonzero − n_candidate_closer are the baseline's), statistic,
    p_value, p_holm, p_bh, significant (adjusted p by ``correction`` < alpha; NaN p-values are not counted in m).
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
                                       correction=correction, sort_by=sort_by, bootstrap_samples=bootstrap_samples,
                                       seed=seed, confidence=confidence)


def calibration_tests_from_sums(counts, label_sums, baseline_pred_sums, candidate_pred_sums, *,
                                shared_data: bool = True, alternative: str = "two-sided",
                                zero_method: str = "wilcox", min_count: int = 1, alpha: float = 0.05,
                                correction: str = "holm", sort_by: str = "p_value", bootstrap_samples: int = 10_000,
                                seed: int = 0, confidence: float = 0.95) -> pl.DataFrame:
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
    count, reference = _pooled_counts(n, sy, shared_data)
    base_rate = np.divide(reference, count, out=np.full(n_cond, np.nan), where=count > 0)
    cond_ids = np.flatnonzero(np.isfinite(gap_b).any(axis=0))
    bootstrap = {"samples": bootstrap_samples, "seed": seed, "confidence": confidence}
    cols = _calib_rows(cond_ids, count, base_rate, gap_b, gap_c, alternative, zero_method, bootstrap)
    cols["p_holm"], cols["p_bh"] = holm_adjust(cols["p_value"]), bh_adjust(cols["p_value"])
    adjusted = {"holm": cols["p_holm"], "bh": cols["p_bh"], "none": cols["p_value"]}[correction]
    cols["significant"] = np.nan_to_num(adjusted, nan=np.inf) < alpha
    return _sort_calib(pl.DataFrame(cols, schema_overrides=_CALIB_SCHEMA), sort_by)


def _pooled_counts(n: np.ndarray, sy: np.ndarray, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """(rows, Σ reference) [C] of each condition over the seeds whose stored n and Σy are finite: the first such
    seed's when every seed shares the evaluation rows, else their sums. A seed with a non-finite value (a damaged
    record) counts for neither, as in the gaps (:func:`_seed_gaps` leaves its pair out)."""
    finite = np.isfinite(n) & np.isfinite(sy)
    if shared:
        first, columns = np.argmax(finite, axis=0), np.arange(n.shape[1])
        some = finite.any(axis=0)
        return np.where(some, n[first, columns], 0.0), np.where(some, sy[first, columns], np.nan)
    return np.where(finite, n, 0.0).sum(axis=0), np.where(finite, sy, 0.0).sum(axis=0)


_CALIB_SCHEMA = {"condition": pl.Int64, "count": pl.Int64, "base_rate": pl.Float64,
                 "baseline_gap": pl.Float64, "candidate_gap": pl.Float64, "delta_mean": pl.Float64,
                 "ci_low": pl.Float64, "ci_high": pl.Float64, "rank_biserial": pl.Float64, "n": pl.Int64,
                 "n_nonzero": pl.Int64, "n_candidate_closer": pl.Int64,
                 "statistic": pl.Float64, "p_value": pl.Float64, "p_holm": pl.Float64, "p_bh": pl.Float64,
                 "significant": pl.Boolean}
