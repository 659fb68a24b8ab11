"""Tests for le_ray.metrics.calibration / .binning: hand-computed ECE cases per backend, the
reference bin rules (linspace edges; numpy.histogram for smooth), ece_table's min_count
masking, ece_small and the all-backend invariants of the single-array ECE."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter1d

from le_ray import metrics as M
from le_ray.metrics.binning import _stable_argsort

METHODS = M.ECE_METHODS


def _data(n=500, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return p, (rng.random(n) < p).astype(float)


def _counts(table):
    return dict(zip(table["bin"].to_list(), table["count"].to_list()))


# ------------------------------------------------------------------ custom


def test_custom_hand_case_and_min_count():
    p = np.array([0.1, 0.2, 0.3, 0.9])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    # bins (0, .5], (.5, 1]: gaps |0.2 − 1/3| (n=3) and |0.9 − 1| (n=1)
    assert M.ece(p, y, bins=2) == pytest.approx(0.75 * (1 / 3 - 0.2) + 0.25 * 0.1, abs=1e-15)
    # min_count=2 skips the second bin, which still counts in N = 4
    assert M.ece(p, y, bins=2, min_count=2) == pytest.approx(0.75 * (1 / 3 - 0.2), abs=1e-15)
    assert M.ece(p, y, bins=2, min_count=5) == 0.0


def test_custom_edge_rule_zero_one_and_linspace_edges():
    e3 = np.linspace(0.0, 1.0, 11)[3]  # 3·0.1 = 0.30000000000000004, one ulp above 3/10
    assert e3 == 0.30000000000000004
    p = np.array([0.0, 0.3, 0.5, 1.0, 0.1, e3, np.nextafter(e3, 1.0)])
    table = M.ece_table(p, np.zeros(p.size), bins=10)
    # right-closed on the linspace edges: 0 → bin 0; 0.1 (= edge 1) → bin 0; 0.3 and the edge
    # value 0.30000000000000004 → bin 2; the next float above the edge → bin 3; 0.5 → bin 4; 1 → bin 9
    assert _counts(table) == {0: 2, 1: 0, 2: 2, 3: 1, 4: 1, 5: 0, 6: 0, 7: 0, 8: 0, 9: 1}
    assert table.height == 10 and table.columns == ["bin", "count", "avg_pred", "avg_label", "abs_gap"]


@pytest.mark.parametrize("bins", [3, 5, 10, 20, 49])
def test_custom_bins_equal_reference_digitize(bins):
    edges = np.linspace(0.0, 1.0, bins + 1)
    p = np.concatenate([edges, np.nextafter(edges, 2.0), np.nextafter(edges, -1.0), _data(200, seed=bins)[0],
                        [-0.5, 1.5]])
    expected = np.clip(np.digitize(p, edges, right=True) - 1, 0, bins - 1)
    table = M.ece_table(p, np.zeros(p.size), bins=bins)
    assert table["count"].to_list() == np.bincount(expected, minlength=bins).tolist()


def test_custom_out_of_range_predictions_go_to_end_bins():
    table = M.ece_table([-0.2, 1.5], [0.0, 1.0], bins=4)
    assert table["count"].to_list() == [1, 0, 0, 1]
    # custom averages the raw (unclipped) p: gaps 0.2 and 0.5
    assert M.ece([-0.2, 1.5], [0.0, 1.0], bins=4) == pytest.approx(0.35, abs=1e-15)


def test_empty_bins_are_nan_in_table():
    table = M.ece_table([0.1, 0.15], [0.0, 1.0], bins=4)
    assert table["count"].to_list() == [2, 0, 0, 0]
    assert table["avg_pred"][0] == pytest.approx(0.125)
    assert table["abs_gap"][0] == pytest.approx(0.375)
    assert all(math.isnan(v) for v in table["abs_gap"].to_list()[1:])


@pytest.mark.parametrize("method", METHODS)
def test_ece_table_masks_bins_below_min_count(method):
    p = np.array([0.1, 0.12, 0.14, 0.9, 0.95])
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0])
    # two bins of 3 and 2 rows (2 and 3 for adaptive); min_count = 3 masks the smaller one
    kw = {"method": method, "bins": 2, "smooth_grid_bins": 2, "smooth_bandwidth": 0.0}
    full = M.ece_table(p, y, **kw)
    masked = M.ece_table(p, y, min_count=3, **kw)
    assert masked["count"].to_list() == full["count"].to_list()  # counts always shown
    small = np.asarray(masked["count"]) < 3
    assert small.any() and not small.all()
    for col in ("avg_pred", "avg_label", "abs_gap"):
        values = masked[col].to_numpy()
        assert np.isnan(values[small]).all(), col
        np.testing.assert_array_equal(values[~small], full[col].to_numpy()[~small])
    # the ECE sums exactly the unmasked rows, normalised by all rows
    gaps = masked["abs_gap"].to_numpy()
    expected = np.nansum(masked["count"].to_numpy() * gaps) / p.size
    assert M.ece(p, y, min_count=3, **kw) == pytest.approx(expected, abs=1e-15)


# ------------------------------------------------------------------ adaptive


def test_adaptive_hand_case():
    p = np.array([0.4, 0.1, 0.3, 0.2])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    # sorted bins {0.1, 0.2} (y 0, 0) and {0.3, 0.4} (y 1, 1)
    assert M.ece(p, y, method="adaptive", bins=2) == pytest.approx(0.5 * 0.15 + 0.5 * 0.65, abs=1e-15)


def test_ties_split_in_adaptive_but_not_in_adaptive_lib():
    p = np.full(4, 0.5)
    y = np.array([1.0, 1.0, 0.0, 0.0])
    # stable sort keeps input order: bins {y=1,1} and {y=0,0}, each gap 0.5
    assert M.ece(p, y, method="adaptive", bins=2) == pytest.approx(0.5)
    # qcut keeps ties together: one bin, gap 0
    assert M.ece(p, y, method="adaptive_lib", bins=2) == 0.0
    assert M.ece_table(p, y, method="adaptive_lib", bins=2).height == 1
    assert M.ece(p, y, method="custom", bins=2) == 0.0


def test_bins_more_than_samples():
    p = np.array([0.2, 0.5, 0.7])
    y = np.array([0.0, 1.0, 1.0])
    per_sample = float(np.mean(np.abs(p - y)))
    adaptive = M.ece_table(p, y, method="adaptive", bins=5)
    # cuts floor(k·3/5) = 0,0,1,1,2,3 → counts 0,1,0,1,1
    assert adaptive["count"].to_list() == [0, 1, 0, 1, 1]
    assert M.ece(p, y, method="adaptive", bins=5) == pytest.approx(per_sample)
    lib = M.ece_table(p, y, method="adaptive_lib", bins=5)
    assert lib["count"].to_list() == [1, 1, 1]
    assert M.ece(p, y, method="adaptive_lib", bins=5) == pytest.approx(per_sample)


@pytest.mark.parametrize(("n", "bins"), [(7, 3), (10, 4), (396, 46), (1000, 20)])
def test_adaptive_counts_are_floor_cuts(n, bins):
    p, y = _data(n, seed=n)
    cuts = (np.arange(bins + 1) * n) // bins
    assert M.ece_table(p, y, method="adaptive", bins=bins)["count"].to_list() == np.diff(cuts).tolist()


def test_adaptive_lib_matches_direct_qcut():
    p, y = _data(300, seed=5)
    p = np.round(p, 1)  # heavy ties
    codes = pd.qcut(p, q=7, duplicates="drop", labels=False)
    table = M.ece_table(p, y, method="adaptive_lib", bins=7)
    assert table["count"].to_list() == np.bincount(codes).tolist()
    gaps = [abs(p[codes == k].mean() - y[codes == k].mean()) for k in range(codes.max() + 1)]
    expected = sum(np.count_nonzero(codes == k) / p.size * g for k, g in enumerate(gaps))
    assert M.ece(p, y, method="adaptive_lib", bins=7) == pytest.approx(expected, abs=1e-14)


# ------------------------------------------------------------------ smooth


def _reference_smooth(p, y, grid, bandwidth, min_count, lib):
    """Loop reference of the smooth ECE: numpy.histogram of clip(p, 0, 1) on (0, 1), G bins."""
    q = np.clip(p, 0.0, 1.0)
    hists = [np.histogram(q, bins=grid, range=(0.0, 1.0), weights=w)[0].astype(float) for w in (None, q, y)]
    sigma = bandwidth * grid
    if lib:
        smooth = [gaussian_filter1d(h, sigma, mode="nearest", truncate=4.0) for h in hists]
    else:
        r = math.ceil(4 * sigma)
        k = {d: math.exp(-0.5 * (d / sigma) ** 2) for d in range(-r, r + 1)}
        total = sum(k.values())
        smooth = [[sum(k[g - h] / total * hist[h] for h in range(grid) if abs(g - h) <= r)
                   for g in range(grid)] for hist in hists]
    ece = 0.0
    for g in range(grid):
        if hists[0][g] >= max(min_count, 1):
            ece += hists[0][g] / p.size * abs(smooth[1][g] / smooth[0][g] - smooth[2][g] / smooth[0][g])
    return ece


@pytest.mark.parametrize("lib", [False, True])
@pytest.mark.parametrize("min_count", [1, 3])
def test_smooth_matches_loop_reference(lib, min_count):
    # 0.4, 0.6, 0.0 and 1.0 sit exactly on grid edges: the histogram rule puts them in the bin above
    p = np.array([0.0, 0.05, 0.12, 0.13, 0.4, 0.41, 0.42, 0.77, 0.99, 1.0, 0.6, 0.61, -0.1, 1.2])
    y = np.array([0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1], dtype=float)
    method = "smooth_lib" if lib else "smooth"
    got = M.ece(p, y, method=method, smooth_grid_bins=10, smooth_bandwidth=0.1, min_count=min_count)
    assert got == pytest.approx(_reference_smooth(p, y, 10, 0.1, min_count, lib), abs=1e-14)


@pytest.mark.parametrize("method", ["smooth", "smooth_lib"])
def test_smooth_grid_is_numpy_histogram(method):
    grid = 10
    edges = np.linspace(0.0, 1.0, grid + 1)
    p = np.concatenate([edges, np.nextafter(edges, -1.0), _data(100, seed=9)[0], [-0.3, 1.4]])
    table = M.ece_table(p, np.zeros(p.size), method=method, smooth_grid_bins=grid)
    expected = np.histogram(np.clip(p, 0.0, 1.0), bins=grid, range=(0.0, 1.0))[0]
    assert table["count"].to_list() == expected.tolist()
    # hand: [g/G, (g+1)/G), the last bin closed; p outside [0, 1] clipped first
    hand = M.ece_table([0.0, 0.1, 0.5, 0.95, 1.0, -0.2, 1.5], np.zeros(7), method=method, smooth_grid_bins=grid)
    assert _counts(hand) == {0: 2, 1: 1, 2: 0, 3: 0, 4: 0, 5: 1, 6: 0, 7: 0, 8: 0, 9: 3}


@pytest.mark.parametrize("method", ["smooth", "smooth_lib"])
def test_smooth_averages_clipped_predictions(method):
    table = M.ece_table([-0.2, 1.5], [0.0, 1.0], method=method, smooth_grid_bins=4, smooth_bandwidth=0.0)
    assert table["count"].to_list() == [1, 0, 0, 1]
    assert table["avg_pred"][0] == 0.0 and table["avg_pred"][3] == 1.0
    assert M.ece([-0.2, 1.5], [0.0, 1.0], method=method, smooth_grid_bins=4, smooth_bandwidth=0.0) == 0.0


def test_smooth_zero_padding_kernel_hand():
    # one sample in grid bin 0 of G=2, σ = 0.5 grid bins → r = 2, zero padding
    table = M.ece_table([0.25], [1.0], method="smooth", smooth_grid_bins=2, smooth_bandwidth=0.25)
    assert table["count"].to_list() == [1, 0]
    assert table["avg_pred"][0] == pytest.approx(0.25)  # ratios of smoothed sums
    assert table["avg_label"][0] == pytest.approx(1.0)
    assert math.isnan(table["avg_pred"][1])  # raw-empty grid bin, below min_count = 1
    assert M.ece([0.25], [1.0], method="smooth", smooth_grid_bins=2, smooth_bandwidth=0.25) == pytest.approx(0.75)
    # min_count = 0 shows the smoothed averages of the raw-empty bin (as the reference does)
    shown = M.ece_table([0.25], [1.0], method="smooth", smooth_grid_bins=2, smooth_bandwidth=0.25, min_count=0)
    assert shown["avg_pred"].to_list() == pytest.approx([0.25, 0.25])
    assert shown["abs_gap"][1] == pytest.approx(0.75)


@pytest.mark.parametrize("method", ["smooth", "smooth_lib"])
def test_smooth_zero_bandwidth_equals_custom(method):
    p, y = _data(400, seed=2)  # no p on a grid edge, so the two edge rules agree
    assert M.ece(p, y, method=method, smooth_bandwidth=0.0, smooth_grid_bins=25) == pytest.approx(
        M.ece(p, y, bins=25), abs=1e-15)


def test_smooth_grid_default():
    p, y = _data(50)
    assert M.ece_table(p, y, method="smooth", smooth_grid_bins=None, bins=20).height == 200
    assert M.ece_table(p, y, method="smooth", smooth_grid_bins=None, bins=50).height == 500
    assert M.ece_table(p, y, method="smooth_lib", smooth_grid_bins=33).height == 33


def test_unknown_method_and_bad_settings():
    with pytest.raises(ValueError) as err:
        M.ece([0.1], [0.0], method="isotonic")
    for name in METHODS:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="smooth_grid_bins"):
        M.ece([0.1], [0.0], method="smooth", smooth_grid_bins=1)
    with pytest.raises(ValueError, match="bins"):
        M.ece([0.1], [0.0], bins=0)
    with pytest.raises(ValueError, match="min_count"):
        M.ece([0.1], [0.0], min_count=-1)


def test_reliability_curve_is_ece_table():
    p, y = _data(200)
    assert M.reliability_curve(p, y, bins=8, method="adaptive").equals(M.ece_table(p, y, bins=8, method="adaptive"))


# ------------------------------------------------------------------ ece_small


def test_ece_small_uses_max_prob_subset():
    p = np.array([0.005, 0.008, 0.5, 0.9])
    y = np.array([0.0, 1.0, 1.0, 0.0])
    out = M.ece_small(p, y, max_prob=0.01, bins=10)
    assert out["threshold"] == 0.01 and out["subset_size"] == 2
    assert out["ece_small"] == pytest.approx(abs(0.0065 - 0.5))


def test_ece_small_quantile_fallback():
    p = np.linspace(0.2, 0.9, 8)
    y = np.array([0, 0, 1, 0, 1, 1, 0, 1], dtype=float)
    thr = float(np.quantile(p, 0.3))
    out = M.ece_small(p, y, max_prob=0.01, quantile=0.3, bins=5)
    assert out["threshold"] == thr
    assert out["subset_size"] == int(np.count_nonzero(p <= thr)) == 3
    assert out["ece_small"] == pytest.approx(M.ece(p[p <= thr], y[p <= thr], bins=5))


@pytest.mark.parametrize("method", METHODS)
def test_ece_small_every_backend_and_empty(method):
    p, y = _data(300, seed=4)
    out = M.ece_small(p, y, max_prob=0.2, method=method)
    sub = p <= 0.2
    assert out["ece_small"] == pytest.approx(M.ece(p[sub], y[sub], method=method), abs=1e-14)
    empty = M.ece_small([], [], method=method)
    assert math.isnan(empty["ece_small"]) and math.isnan(empty["threshold"]) and empty["subset_size"] == 0


# ------------------------------------------------------------------ invariants (all backends)


@pytest.mark.parametrize("method", METHODS)
def test_ece_in_unit_interval_and_permutation_invariant(method):
    p, y = _data(1000, seed=7)
    value = M.ece(p, y, method=method, bins=15)
    assert 0.0 < value <= 1.0
    perm = np.random.default_rng(1).permutation(p.size)
    assert M.ece(p[perm], y[perm], method=method, bins=15) == pytest.approx(value, abs=1e-13)
    worst = M.ece(np.array([0.0, 1.0]), np.array([1.0, 0.0]), method=method, bins=4)
    assert 0.0 <= worst <= 1.0


@pytest.mark.parametrize("method", METHODS)
def test_perfectly_calibrated_soft_labels_give_zero(method):
    p, _ = _data(500, seed=8)
    assert M.ece(p, p.copy(), method=method, bins=13) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("method", METHODS)
def test_perfectly_calibrated_binary_groups_give_zero(method):
    # p constant within each group and mean y equal to it; 3 equal groups of 10
    p = np.repeat([0.2, 0.5, 0.8], 10)
    y = np.concatenate([np.r_[np.ones(2), np.zeros(8)], np.r_[np.ones(5), np.zeros(5)],
                        np.r_[np.ones(8), np.zeros(2)]])
    assert M.ece(p, y, method=method, bins=3, smooth_bandwidth=0.02) == pytest.approx(0.0, abs=1e-12)


def test_stable_argsort_matches_numpy_stable():
    rng = np.random.default_rng(0)
    for p in (rng.random(1000), rng.integers(0, 5, 1000).astype(float), np.ones(50),
              np.array([0.0, -0.0, 0.0]), np.zeros(0)):
        order, ps = _stable_argsort(p)
        expected = np.argsort(p, kind="stable")
        assert np.array_equal(order, expected)
        assert np.array_equal(ps, p[expected])
