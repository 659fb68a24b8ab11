"""Additive per-condition sufficient statistics: every per-condition metric is a function of sums.

``condition_sums`` reduces predictions ``p`` [N], labels ``y`` [N] (0/1), condition ids [N]
(and optionally the true click probabilities ``p_true`` [N]) to a ``ConditionSums`` of plain
numpy arrays; ``merge_sums`` adds several of them (shards of one evaluation, or seeds), and
``le_ray.metrics.per_condition.per_condition_table`` turns sums into the per-condition table.
Because merging is a sum, the table of merged shards equals the table of the concatenated
predictions for every additive column (counts, rates, log loss, Brier, accuracy, F1, ratios,
and the ECE of the grid backends custom / smooth / smooth_lib).  Two parts are NOT additive:
the equal-mass bins of adaptive / adaptive_lib (each shard has its own bin intervals) and the
ece_small subset of a condition that falls back to the quantile threshold.

``sums_to_record`` / ``sums_from_record`` convert to and from a JSON-ready dict, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np

from le_ray.metrics.binning import _binned_p, _equal_mass_index, _grid_index, _qcut_index, _stable_argsort
from le_ray.metrics.pointwise import _bce
from le_ray.metrics.validation import (_check_conditions, _check_num_conditions, _check_pair, _check_small,
                                       _check_truth, _ece_spec, _EceSpec)

__all__ = ["BinSums", "ConditionSums", "condition_sums", "merge_sums", "sums_to_record", "sums_from_record"]

COUNT_FIELDS = ("n", "tp", "fp", "fn", "tn")  # int64 [C]
FLOAT_FIELDS = ("sum_y", "sum_p", "sum_p2", "sum_yp", "sum_ce")  # float64 [C]
BIN_FIELDS = ("condition", "bin", "count", "sum_p", "sum_y", "sum_t")
_DENSE_KEYS = 1 << 24  # (condition, bin) key spaces up to this size are summed with a dense bincount


def _readonly(arr, dtype) -> np.ndarray | None:
    """``arr`` as a read-only 1-D array of ``dtype`` (None passes through)."""
    if arr is None:
        return None
    out = np.array(arr, dtype=dtype).reshape(-1)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class BinSums:
    """Sparse per-(condition, bin) sums in long format, sorted by (condition, bin), count > 0 only.

    condition, bin, count: int64 [M]; sum_p: Σ of the binned p (clip(p, 0, 1) for smooth
    backends) [M]; sum_y: Σ labels [M]; sum_t: Σ true click probabilities [M] or None.
    """

    condition: np.ndarray
    bin: np.ndarray
    count: np.ndarray
    sum_p: np.ndarray
    sum_y: np.ndarray
    sum_t: np.ndarray | None = None

    def __post_init__(self):
        for name in BIN_FIELDS:
            dtype = np.float64 if name.startswith("sum") else np.int64
            object.__setattr__(self, name, _readonly(getattr(self, name), dtype))
        if len({getattr(self, f).size for f in BIN_FIELDS if getattr(self, f) is not None}) > 1:
            raise ValueError("BinSums arrays must all have the same length")
        if np.any(np.diff(self.condition) < 0):
            raise ValueError("BinSums must be sorted by condition")


@dataclass(frozen=True, eq=False)
class ConditionSums:
    """Additive per-condition statistics of C conditions (arrays [C], index = condition id).

    n: rows; sum_y = Σy; sum_p = Σp; sum_p2 = Σp²; sum_yp = Σy·p; sum_ce = Σ BCE (nats,
    p clipped to [1e-12, 1−1e-12]); tp, fp, fn, tn: confusion counts of p ≥ 0.5 vs y ≥ 0.5;
    sum_t = Σ p_true (None without true probabilities).  ``bins`` / ``small_bins``: the ECE
    backend's bins of every condition and of its ece_small subset (``BinSums``);
    small_threshold [C]: the subset threshold (NaN for absent conditions).  ``ece_method``
    and ``n_bins`` (K: B, or G for smooth backends) say how the bins were drawn.
    """

    ece_method: str
    n_bins: int
    n: np.ndarray
    sum_y: np.ndarray
    sum_p: np.ndarray
    sum_p2: np.ndarray
    sum_yp: np.ndarray
    sum_ce: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    sum_t: np.ndarray | None
    bins: BinSums
    small_bins: BinSums
    small_threshold: np.ndarray

    def __post_init__(self):
        for name in COUNT_FIELDS:
            object.__setattr__(self, name, _readonly(getattr(self, name), np.int64))
        for name in (*FLOAT_FIELDS, "sum_t", "small_threshold"):
            object.__setattr__(self, name, _readonly(getattr(self, name), np.float64))
        sizes = {getattr(self, f).size for f in (*COUNT_FIELDS, *FLOAT_FIELDS, "sum_t", "small_threshold")
                 if getattr(self, f) is not None}
        if len(sizes) > 1:
            raise ValueError("ConditionSums per-condition arrays must all have length C")

    @property
    def num_conditions(self) -> int:
        """C, the length of every per-condition array."""
        return int(self.n.size)


def _additive_sums(p, y, cond, num_conditions: int, p_true=None) -> dict:
    """Per-condition arrays [C] of ConditionSums (n … tn, sum_t) with one np.bincount each."""
    c = num_conditions

    def total(w):
        return np.bincount(cond, weights=w, minlength=c)

    def count(mask):
        return np.bincount(cond[mask], minlength=c).astype(np.int64)

    pred, true = p >= 0.5, y >= 0.5
    return {"n": np.bincount(cond, minlength=c).astype(np.int64), "sum_y": total(y), "sum_p": total(p),
            "sum_p2": total(p * p), "sum_yp": total(y * p), "sum_ce": total(_bce(p, y)),
            "tp": count(pred & true), "fp": count(pred & ~true), "fn": count(~pred & true),
            "tn": count(~pred & ~true), "sum_t": None if p_true is None else total(p_true)}


def _condition_groups(cond: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row order grouping rows by condition, stable [N]; group bounds [C+1]) — radix sort on ids."""
    narrow = np.uint16 if n.size <= 1 << 16 else np.int64
    order = np.argsort(cond.astype(narrow), kind="stable")
    return order, np.concatenate(([0], np.cumsum(n)))


def _small_thresholds(p, cond, n, groups, max_prob, quantile) -> np.ndarray:
    """Per-condition ece_small threshold [C]: max_prob if some p_j ≤ max_prob, else quantile(p_j).

    The quantile fallback is the whole model's rule applied to each condition too (the earlier system left such a
    condition's ece_small NaN; README, "The maths, briefly"); the pooled summary is one condition of all rows.

    The quantile is numpy's linear one; NaN for absent conditions.  ``groups`` is a
    callable returning ``_condition_groups`` (only needed for the quantile fallback).
    """
    has_small = np.bincount(cond[p <= max_prob], minlength=n.size) > 0
    thr = np.where(has_small, float(max_prob), np.nan)
    fallback = np.flatnonzero((n > 0) & ~has_small)
    if fallback.size:
        order, bounds = groups()
        for j in fallback:
            thr[j] = np.quantile(p[order[bounds[j]:bounds[j + 1]]], quantile)
    return thr


def _adaptive_rows(p, cond, n, n_bins, groups, small):
    """Equal-mass bins per condition and per condition's small subset, ([N], [N]).

    Rank r of a row = its position in the condition's stable p order; full bin
    ⌊((r+1)B − 1)/n_j⌋, small bin ⌊((r+1)B − 1)/m_j⌋ with m_j = subset size (the subset
    {p ≤ threshold} is a prefix of that order).  One sort per condition.
    """
    order, bounds = groups
    rank = np.empty(p.size, dtype=np.int64)
    for j in np.flatnonzero(n):
        rows = order[bounds[j]:bounds[j + 1]]
        rank[rows[_stable_argsort(p[rows])[0]]] = np.arange(rows.size)
    m = np.bincount(cond[small], minlength=n.size)
    return _equal_mass_index(rank, n[cond], n_bins), _equal_mass_index(rank, m[cond], n_bins)


def _qcut_rows(p, n, n_bins, groups, small):
    """pandas.qcut bins per condition and per condition's small subset, ([N], [N])."""
    order, bounds = groups
    full, sub = np.zeros(p.size, dtype=np.intp), np.zeros(p.size, dtype=np.intp)
    for j in np.flatnonzero(n):
        rows = order[bounds[j]:bounds[j + 1]]
        full[rows] = _qcut_index(p[rows], n_bins)[0]
        srows = rows[small[rows]]
        sub[srows] = _qcut_index(p[srows], n_bins)[0]
    return full, sub


def _sum_by_key(key: np.ndarray, size: int, weights) -> tuple[np.ndarray, np.ndarray, list]:
    """(distinct keys ascending [M], rows per key [M] int64, [Σ w per key [M] or None])."""
    if size <= _DENSE_KEYS:
        rows = np.bincount(key, minlength=size)
        keys = np.flatnonzero(rows)
        sums = [None if w is None else np.bincount(key, weights=w, minlength=size)[keys] for w in weights]
        return keys, rows[keys].astype(np.int64), sums
    keys, inverse = np.unique(key, return_inverse=True)
    rows = np.bincount(inverse, minlength=keys.size).astype(np.int64)
    return keys, rows, [None if w is None else np.bincount(inverse, weights=w, minlength=keys.size)
                        for w in weights]


def _long_bins(cond, idx, num_conditions: int, n_bins: int, weights) -> BinSums:
    """BinSums of rows (cond [N], bin idx [N]) with weights (binned p, y, p_true or None)."""
    key = cond * n_bins + idx.astype(np.int64, copy=False)
    keys, rows, (sum_p, sum_y, sum_t) = _sum_by_key(key, num_conditions * n_bins, weights)
    return BinSums(keys // n_bins, keys % n_bins, rows, sum_p, sum_y, sum_t)


def _row_bins(p, cond, n, spec: _EceSpec, groups, small):
    """Bin index of every row for the full ECE and for the small-subset ECE, ([N], [N])."""
    if spec.grid:
        idx = _grid_index(p, spec)
        return idx, idx
    if spec.method == "adaptive":
        return _adaptive_rows(p, cond, n, spec.bins, groups(), small)
    return _qcut_rows(p, n, spec.bins, groups(), small)


def condition_sums(p, y, conditions, *, p_true=None, num_conditions: int | None = None,
                   ece_method: str = "custom", bins: int = 20, min_count: int = 1,
                   smooth_bandwidth: float = 0.05, smooth_grid_bins: int | None = 400,
                   small_prob_max: float = 0.01, small_prob_quantile: float = 0.1) -> ConditionSums:
    """Additive per-condition sufficient statistics of (p [N], y [N], conditions [N]).

    C = ``num_conditions`` (≥ max id + 1) or max id + 1.  The bins are those of the backend
    ``ece_method`` within each condition (grid index for custom / smooth*, the condition's
    own equal-mass index for adaptive*); the small bins hold each condition's subset
    {p ≤ threshold_j}, threshold_j as in ``ece_small``.  ``min_count`` and
    ``smooth_bandwidth`` do not change the sums (they act in ``per_condition_table``);
    they are validated here so one settings dict fits both calls.
    """
    p, y = _check_pair(p, y)
    cond = _check_conditions(conditions, p.size)
    t = _check_truth(p_true, p.size)
    c = _check_num_conditions(num_conditions, cond)
    spec = _ece_spec(ece_method, bins, min_count, smooth_bandwidth, smooth_grid_bins)
    _check_small(small_prob_max, small_prob_quantile)
    add = _additive_sums(p, y, cond, c, t)
    cache: list = []

    def groups():
        if not cache:
            cache.append(_condition_groups(cond, add["n"]))
        return cache[0]

    thr = _small_thresholds(p, cond, add["n"], groups, small_prob_max, small_prob_quantile)
    small = p <= thr[cond]
    full_idx, small_idx = _row_bins(p, cond, add["n"], spec, groups, small)
    weights = (_binned_p(p, spec), y, t)
    sub_weights = tuple(None if w is None else w[small] for w in weights)
    return ConditionSums(
        ece_method=spec.method, n_bins=spec.n_bins, **add,
        bins=_long_bins(cond, full_idx, c, spec.n_bins, weights),
        small_bins=_long_bins(cond[small], small_idx[small], c, spec.n_bins, sub_weights),
        small_threshold=thr)


def _pad(arr: np.ndarray, size: int, fill) -> np.ndarray:
    """``arr`` [c] padded with ``fill`` to length ``size`` ≥ c."""
    out = np.full(size, fill, dtype=arr.dtype)
    out[:arr.size] = arr
    return out


def _merge_bins(parts: list[BinSums], num_conditions: int, n_bins: int) -> BinSums:
    """Sum BinSums grouped by (condition, bin); the result is sorted and sparse again."""
    cat = {f: None if getattr(parts[0], f) is None else np.concatenate([getattr(b, f) for b in parts])
           for f in BIN_FIELDS}
    key = cat["condition"] * n_bins + cat["bin"]
    weights = (cat["count"].astype(np.float64), cat["sum_p"], cat["sum_y"], cat["sum_t"])
    keys, _, (count, sum_p, sum_y, sum_t) = _sum_by_key(key, num_conditions * n_bins, weights)
    return BinSums(keys // n_bins, keys % n_bins, np.rint(count).astype(np.int64), sum_p, sum_y, sum_t)


def _check_mergeable(sums_list: list[ConditionSums]) -> None:
    """ValueError unless every part has the same backend, bin count and truth columns."""
    if not sums_list:
        raise ValueError("merge_sums needs at least one ConditionSums")
    first = sums_list[0]
    for s in sums_list[1:]:
        if (s.ece_method, s.n_bins) != (first.ece_method, first.n_bins):
            raise ValueError(f"cannot merge sums of {s.ece_method} (K = {s.n_bins}) with "
                             f"{first.ece_method} (K = {first.n_bins})")
        if (s.sum_t is None) != (first.sum_t is None):
            raise ValueError("cannot merge sums with and without p_true")


def merge_sums(sums_list) -> ConditionSums:
    """Merge shards or seeds: elementwise sums of every per-condition array (padded to the largest
    C) and of the bins grouped by (condition, bin).

    Exact for everything additive.  small_threshold is the NaN-ignoring maximum over parts
    (equal to every part's max_prob unless a part fell back to its quantile threshold).
    Approximation: for adaptive / adaptive_lib, bin k of one part and bin k of another are
    different p intervals (each part's own equal-mass bins), so summing them by index only
    approximates the equal-mass bins of the pooled predictions; the same holds for the small
    subsets of conditions that used the quantile fallback.
    """
    sums_list = list(sums_list)
    _check_mergeable(sums_list)
    first = sums_list[0]
    c = max(s.num_conditions for s in sums_list)
    fields = (*COUNT_FIELDS, *FLOAT_FIELDS) + (() if first.sum_t is None else ("sum_t",))
    totals = {f: sum(_pad(getattr(s, f), c, 0) for s in sums_list) for f in fields}
    totals.setdefault("sum_t", None)
    thr = reduce(np.fmax, [_pad(s.small_threshold, c, np.nan) for s in sums_list])
    return ConditionSums(
        ece_method=first.ece_method, n_bins=first.n_bins, **totals,
        bins=_merge_bins([s.bins for s in sums_list], c, first.n_bins),
        small_bins=_merge_bins([s.small_bins for s in sums_list], c, first.n_bins),
        small_threshold=thr)


def _list(arr) -> list | None:
    """Array → list of Python scalars (None passes through)."""
    return None if arr is None else arr.tolist()


def sums_to_record(sums: ConditionSums) -> dict:
    """JSON-ready dict of ``sums``: lists of ints / floats, None for absent parts (sum_t) and for
    NaN thresholds; ``sums_from_record`` inverts it exactly."""
    record = {"ece_method": sums.ece_method, "n_bins": int(sums.n_bins)}
    record.update({f: _list(getattr(sums, f)) for f in (*COUNT_FIELDS, *FLOAT_FIELDS, "sum_t")})
    record["small_threshold"] = [None if np.isnan(v) else v for v in sums.small_threshold.tolist()]
    for part in ("bins", "small_bins"):
        record[part] = {f: _list(getattr(getattr(sums, part), f)) for f in BIN_FIELDS}
    return record


def sums_from_record(record: dict) -> ConditionSums:
    """Rebuild a ConditionSums from ``sums_to_record``'s dict (KeyError names a missing key)."""
    thr = [np.nan if v is None else v for v in record["small_threshold"]]
    arrays = {f: record[f] for f in (*COUNT_FIELDS, *FLOAT_FIELDS, "sum_t")}
    parts = {part: BinSums(**{f: record[part].get(f) for f in BIN_FIELDS}) for part in ("bins", "small_bins")}
    return ConditionSums(ece_method=str(record["ece_method"]), n_bins=int(record["n_bins"]), **arrays,
                         small_threshold=np.asarray(thr, dtype=np.float64), **parts)
