"""Tests for le_ray.metrics.sums: merging shard sums equals computing on the concatenated
predictions for every additive metric, JSON record round trips, settings checks, and the
sparse bin layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from le_ray import metrics as M
from le_ray.metrics import sums as S

METHODS = M.ECE_METHODS
GRID_METHODS = ("custom", "smooth", "smooth_lib")
# not additive for the adaptive backends: each shard has its own equal-mass bins
ADAPTIVE_ONLY_APPROX = ("ece", "ece_small", "ece_true")
ARRAY_FIELDS = (*S.COUNT_FIELDS, *S.FLOAT_FIELDS, "sum_t", "small_threshold")


def _shards(seed=0, n=1200, c=5):
    """Predictions in two shards; every condition has p ≤ 0.05 rows in both (no quantile fallback)."""
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    y = (rng.random(n) < p).astype(float)
    t = np.clip(p + rng.normal(0, 0.05, n), 0, 1)
    cond = rng.integers(0, c, n)
    half = n // 2
    for start in (0, half):  # two rows with p = 0.01 per condition at the head of each shard
        cond[start:start + 2 * c] = np.tile(np.arange(c), 2)
        p[start:start + 2 * c] = 0.01
    cond[half - 1] = c  # the highest id appears in the first shard only: shards of unequal C
    return [(p[s], y[s], cond[s], t[s]) for s in (slice(0, half), slice(half, n))]


def _concat(shards):
    return tuple(np.concatenate(parts) for parts in zip(*shards))


def _assert_tables_close(got, expected, columns):
    assert got["condition"].to_list() == expected["condition"].to_list()
    for col in columns:
        np.testing.assert_allclose(got[col].to_numpy(), expected[col].to_numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=col)


def _assert_sums_equal(a: S.ConditionSums, b: S.ConditionSums):
    assert (a.ece_method, a.n_bins) == (b.ece_method, b.n_bins)
    for f in ARRAY_FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), f
    for part in ("bins", "small_bins"):
        for f in S.BIN_FIELDS:
            x, y = getattr(getattr(a, part), f), getattr(getattr(b, part), f)
            assert (x is None) == (y is None), (part, f)
            if x is not None:
                assert x.dtype == y.dtype and np.array_equal(x, y), (part, f)


@pytest.mark.parametrize("method", METHODS)
def test_merged_shards_equal_concatenated(method):
    shards = _shards(seed=1)
    kw = {"ece_method": method, "bins": 8, "small_prob_max": 0.05, "smooth_grid_bins": 50}
    merged = S.merge_sums([M.condition_sums(p, y, c, p_true=t, **kw) for p, y, c, t in shards])
    p, y, c, t = _concat(shards)
    direct = M.per_condition_metrics(p, y, c, p_true=t, **kw)
    got = M.per_condition_table(merged)
    assert got.columns == direct.columns
    skip = ADAPTIVE_ONLY_APPROX if method.startswith("adaptive") else ()
    _assert_tables_close(got, direct, [col for col in direct.columns if col not in skip])
    whole = M.condition_sums(p, y, c, p_true=t, **kw)
    for f in S.COUNT_FIELDS:
        assert np.array_equal(getattr(merged, f), getattr(whole, f)), f
    np.testing.assert_array_equal(merged.small_threshold, whole.small_threshold)
    if method in GRID_METHODS:  # grid bins are identical; their sums equal up to rounding
        for part in ("bins", "small_bins"):
            mb, wb = getattr(merged, part), getattr(whole, part)
            for f in ("condition", "bin", "count"):
                assert np.array_equal(getattr(mb, f), getattr(wb, f)), (part, f)
            np.testing.assert_allclose(mb.sum_t, wb.sum_t, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ("custom", "adaptive"))
def test_merge_of_three_parts_is_order_free(method):
    p, y, c, t = _concat(_shards(seed=2))
    parts = [M.condition_sums(p[s], y[s], c[s], ece_method=method, small_prob_max=0.05)
             for s in (slice(0, 300), slice(300, 700), slice(700, None))]
    a = M.per_condition_table(S.merge_sums(parts))
    b = M.per_condition_table(S.merge_sums([parts[2], S.merge_sums(parts[:2])]))
    _assert_tables_close(a, b, [col for col in a.columns if col != "condition"])


def test_merge_rejects_incompatible_parts():
    p, y, c, t = _concat(_shards())
    with pytest.raises(ValueError, match="at least one"):
        S.merge_sums([])
    with pytest.raises(ValueError, match="cannot merge"):
        S.merge_sums([M.condition_sums(p, y, c), M.condition_sums(p, y, c, ece_method="smooth")])
    with pytest.raises(ValueError, match="cannot merge"):
        S.merge_sums([M.condition_sums(p, y, c, bins=10), M.condition_sums(p, y, c, bins=20)])
    with pytest.raises(ValueError, match="p_true"):
        S.merge_sums([M.condition_sums(p, y, c, p_true=t), M.condition_sums(p, y, c)])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("truth", [False, True])
def test_record_round_trip_is_exact(method, truth):
    p, y, c, t = _concat(_shards(seed=3))
    c[c == 2] = 6  # absent ids → NaN thresholds → None in the record
    p[c == 1] = np.maximum(p[c == 1], 0.2)  # condition 1 uses the quantile fallback
    sums = M.condition_sums(p, y, c, p_true=t if truth else None, ece_method=method, small_prob_max=0.05)
    record = M.sums_to_record(sums)
    text = json.dumps(record, allow_nan=False)  # JSON-ready: no NaN, no numpy scalars
    back = M.sums_from_record(json.loads(text))
    _assert_sums_equal(back, sums)
    assert (record["sum_t"] is None) is (not truth)
    assert (record["bins"]["sum_t"] is None) is (not truth)
    assert M.per_condition_table(back).equals(M.per_condition_table(sums))


def test_sums_are_sparse_sorted_and_read_only():
    p, y, c, _ = _concat(_shards(seed=4))
    sums = M.condition_sums(p, y, c, ece_method="smooth", smooth_grid_bins=400)
    b = sums.bins
    assert (b.count > 0).all() and b.count.sum() == p.size
    key = b.condition * 400 + b.bin
    # one entry per occupied (condition, numpy.histogram bin) pair, in ascending key order
    grid = np.array([np.histogram([v], bins=400, range=(0.0, 1.0))[0].argmax() for v in p])
    assert key.tolist() == np.unique(c * 400 + grid).tolist()
    assert b.count.tolist() == np.unique(c * 400 + grid, return_counts=True)[1].tolist()
    with pytest.raises(ValueError):
        sums.n[0] = 5


def test_dense_and_sparse_key_paths_agree(monkeypatch):
    p, y, c, t = _concat(_shards(seed=5))
    dense = M.condition_sums(p, y, c, p_true=t, ece_method="smooth_lib")
    monkeypatch.setattr(S, "_DENSE_KEYS", 0)  # force the np.unique path
    sparse = M.condition_sums(p, y, c, p_true=t, ece_method="smooth_lib")
    merged = S.merge_sums([sparse, sparse])
    _assert_sums_equal(sparse, dense)
    assert np.array_equal(merged.bins.count, 2 * dense.bins.count)


def test_num_conditions_and_thresholds():
    p = np.array([0.3, 0.4, 0.005, 0.6])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    c = np.array([0, 0, 1, 1])
    sums = M.condition_sums(p, y, c, num_conditions=4, small_prob_max=0.01, small_prob_quantile=0.5)
    assert sums.num_conditions == 4 and sums.n.tolist() == [2, 2, 0, 0]
    # condition 0 falls back to its median, condition 1 has p ≤ 0.01, 2 and 3 are absent
    assert sums.small_threshold[0] == np.quantile([0.3, 0.4], 0.5) and sums.small_threshold[1] == 0.01
    assert np.isnan(sums.small_threshold[2:]).all()
    assert sums.tp.tolist() == [0, 1, 0, 0] and sums.tn.tolist() == [1, 1, 0, 0]
    assert sums.fn.tolist() == [1, 0, 0, 0] and sums.fp.tolist() == [0, 0, 0, 0]
    assert M.per_condition_table(sums).height == 2
    with pytest.raises(ValueError, match="num_conditions"):
        M.condition_sums(p, y, c, num_conditions=1)


def test_table_settings_must_match_the_sums():
    p, y, c, _ = _concat(_shards(seed=6))
    sums = M.condition_sums(p, y, c, ece_method="smooth", smooth_grid_bins=120)
    as_lib = M.per_condition_table(sums, ece_method="smooth_lib")
    direct = M.per_condition_metrics(p, y, c, ece_method="smooth_lib", smooth_grid_bins=120)
    _assert_tables_close(as_lib, direct, [col for col in direct.columns if col != "condition"])
    with pytest.raises(ValueError, match="cannot be tabulated"):
        M.per_condition_table(sums, ece_method="custom")
    with pytest.raises(ValueError, match="cannot be tabulated"):
        M.per_condition_table(sums, smooth_grid_bins=400)
    # min_count and the bandwidth act at table time
    strict = M.per_condition_table(sums, min_count=10**6)
    assert (strict["ece"].to_numpy() == 0.0).all()
