"""Tests for le_ray.metrics: hand-computed ECE cases per backend, invariants, AUCs vs
scikit-learn, per-condition table vs a slow loop reference, model_summary consistency."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import average_precision_score, roc_auc_score

from le_ray import metrics as M

METHODS = M.ECE_METHODS


def _data(n=500, seed=0, c=None):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    y = (rng.random(n) < p).astype(float)
    if c is None:
        return p, y
    return p, y, rng.integers(0, c, n)


# ------------------------------------------------------------------ elementary metrics


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


def test_condition_validation():
    with pytest.raises(ValueError, match="shape mismatch"):
        M.calibration_ratios([0.1, 0.2], [0, 1], [0])
    with pytest.raises(ValueError, match="integer"):
        M.calibration_ratios([0.1, 0.2], [0, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        M.calibration_ratios([0.1, 0.2], [0, 1], [-1, 0])
    # integral floats are accepted
    assert M.calibration_ratios([0.1, 0.2], [0, 1], [0.0, 1.0]).height == 2


def test_empty_inputs_give_nan():
    for fn in (M.logloss, M.brier, M.ece):
        assert math.isnan(fn([], []))
    assert all(math.isnan(v) for v in M.model_summary([], []).values())


# ------------------------------------------------------------------ ECE hand cases


def test_custom_hand_case_and_min_count():
    p = np.array([0.1, 0.2, 0.3, 0.9])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    # bins (0, .5], (.5, 1]: gaps |0.2 − 1/3| (n=3) and |0.9 − 1| (n=1)
    assert M.ece(p, y, bins=2) == pytest.approx(0.75 * (1 / 3 - 0.2) + 0.25 * 0.1, abs=1e-15)
    # min_count=2 skips the second bin, which still counts in N = 4
    assert M.ece(p, y, bins=2, min_count=2) == pytest.approx(0.75 * (1 / 3 - 0.2), abs=1e-15)
    assert M.ece(p, y, bins=2, min_count=5) == 0.0


def test_custom_edge_rule_zero_one_and_exact_edges():
    p = np.array([0.0, 0.3, 0.5, 1.0, 0.1, 0.30000000000000004])
    table = M.ece_table(p, np.zeros(6), bins=10)
    counts = dict(zip(table["bin"].to_list(), table["count"].to_list()))
    # p=0 → bin 0; 0.1 = 1/10 → bin 0 (right-closed); 0.3 → bin 2; next float above 0.3 → bin 3;
    # 0.5 → bin 4; p=1 → bin 9
    assert counts == {0: 2, 1: 0, 2: 1, 3: 1, 4: 1, 5: 0, 6: 0, 7: 0, 8: 0, 9: 1}
    assert table.height == 10 and table.columns == ["bin", "count", "avg_pred", "avg_label", "abs_gap"]


def test_custom_out_of_range_predictions_go_to_end_bins():
    table = M.ece_table([-0.2, 1.5], [0.0, 1.0], bins=4)
    assert table["count"].to_list() == [1, 0, 0, 1]


def test_empty_bins_are_nan_in_table():
    table = M.ece_table([0.1, 0.15], [0.0, 1.0], bins=4)
    assert table["count"].to_list() == [2, 0, 0, 0]
    assert table["avg_pred"][0] == pytest.approx(0.125)
    assert table["abs_gap"][0] == pytest.approx(0.375)
    assert all(math.isnan(v) for v in table["abs_gap"].to_list()[1:])


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


def test_adaptive_lib_matches_direct_qcut():
    p, y = _data(300, seed=5)
    p = np.round(p, 1)  # heavy ties
    codes = pd.qcut(p, q=7, duplicates="drop", labels=False)
    table = M.ece_table(p, y, method="adaptive_lib", bins=7)
    assert table["count"].to_list() == np.bincount(codes).tolist()
    gaps = [abs(p[codes == k].mean() - y[codes == k].mean()) for k in range(codes.max() + 1)]
    expected = sum(np.count_nonzero(codes == k) / p.size * g for k, g in enumerate(gaps))
    assert M.ece(p, y, method="adaptive_lib", bins=7) == pytest.approx(expected, abs=1e-14)


def _reference_smooth(p, y, grid, bandwidth, min_count, lib):
    """Loop reference of the smooth ECE on a G-bin grid (same edge rule as custom)."""
    idx = np.array([min(max(math.ceil(v * grid) - 1, 0), grid - 1) for v in p])
    hists = [np.bincount(idx, weights=w, minlength=grid) for w in (np.ones_like(p), p, y)]
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
    p = np.array([0.0, 0.05, 0.12, 0.13, 0.4, 0.41, 0.42, 0.77, 0.99, 1.0, 0.6, 0.61])
    y = np.array([0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0, 1], dtype=float)
    method = "smooth_lib" if lib else "smooth"
    got = M.ece(p, y, method=method, smooth_grid_bins=10, smooth_bandwidth=0.1, min_count=min_count)
    assert got == pytest.approx(_reference_smooth(p, y, 10, 0.1, min_count, lib), abs=1e-14)


def test_smooth_zero_padding_kernel_hand():
    # one sample in grid bin 0 of G=2, σ = 0.5 grid bins → r = 2, zero padding
    k = np.exp(-0.5 * (np.arange(-2, 3) / 0.5) ** 2)
    k /= k.sum()
    table = M.ece_table([0.25], [1.0], method="smooth", smooth_grid_bins=2, smooth_bandwidth=0.25)
    assert table["count"].to_list() == [1, 0]
    assert table["avg_pred"][0] == pytest.approx(0.25)  # ratios of smoothed sums
    assert table["avg_label"][0] == pytest.approx(1.0)
    assert math.isnan(table["avg_pred"][1])  # raw-empty grid bin
    assert M.ece([0.25], [1.0], method="smooth", smooth_grid_bins=2, smooth_bandwidth=0.25) == pytest.approx(0.75)
    assert k.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["smooth", "smooth_lib"])
def test_smooth_zero_bandwidth_equals_custom(method):
    p, y = _data(400, seed=2)
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
    assert 0.0 <= value <= 1.0
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
        order, ps = M._stable_argsort(p)
        expected = np.argsort(p, kind="stable")
        assert np.array_equal(order, expected)
        assert np.array_equal(ps, p[expected])


# ------------------------------------------------------------------ per condition


def _bce(p, y):
    q = min(max(p, 1e-12), 1 - 1e-12)
    return -(y * math.log(q) + (1 - y) * math.log(1 - q))


def _reference_per_condition(p, y, c, method, small_max):
    rows = []
    for j in sorted(set(c.tolist())):
        idx = [i for i in range(p.size) if c[i] == j]
        pj, yj = p[idx], y[idx]
        n = len(idx)
        br = sum(yj) / n
        pm = sum(pj) / n
        ce = sum(_bce(a, b) for a, b in zip(pj, yj))
        base = sum(_bce(br, b) if 0 < br < 1 else 0.0 for b in yj)
        tp = sum(1 for a, b in zip(pj, yj) if a >= 0.5 and b >= 0.5)
        fp = sum(1 for a, b in zip(pj, yj) if a >= 0.5 and b < 0.5)
        fn = sum(1 for a, b in zip(pj, yj) if a < 0.5 and b >= 0.5)
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        rows.append({
            "condition": j, "count": n, "base_rate": br, "logloss": ce / n,
            "accuracy": sum(1 for a, b in zip(pj, yj) if (a >= 0.5) == (b >= 0.5)) / n, "f1": f1,
            "ece": M.ece(pj, yj, method=method),
            "ece_small": M.ece_small(pj, yj, max_prob=small_max, method=method)["ece_small"],
            "pred_mean": pm, "calibration_ratio": pm / br if br > 1e-12 else float("nan"),
            "le_ratio": ce / base if base > 1e-12 else float("nan"),
        })
    rows.sort(key=lambda r: (-r["base_rate"], -r["count"], r["condition"]))
    return rows


@pytest.mark.parametrize("method", METHODS)
def test_per_condition_matches_loop_reference(method):
    p, y, c = _data(400, seed=11, c=6)
    c[c == 3] = 7  # gap in ids: conditions 3, 5, 6 absent
    c[:5] = 8
    y[:5] = 0.0  # condition 8: base rate 0 → NaN calibration ratio and LE ratio
    p[c == 2] = np.clip(p[c == 2], 0.05, 1.0)  # condition 2 needs the quantile fallback
    got = M.per_condition_metrics(p, y, c, ece_method=method, small_prob_max=0.02)
    ref = _reference_per_condition(p, y, c, method, 0.02)
    assert got.columns == list(ref[0].keys())
    assert got["condition"].to_list() == [r["condition"] for r in ref]
    for col in got.columns:
        expected = np.array([r[col] for r in ref], dtype=float)
        np.testing.assert_allclose(got[col].to_numpy().astype(float), expected, rtol=1e-10, atol=1e-13,
                                   err_msg=col)


def test_per_condition_sort_order():
    p = np.full(7, 0.5)
    y = np.array([1, 0, 1, 0, 1, 0, 1], dtype=float)
    c = np.array([2, 2, 0, 0, 5, 5, 9])
    # base rates: 2 → .5, 0 → .5, 5 → .5, 9 → 1; counts 2, 2, 2, 1
    table = M.per_condition_metrics(p, y, c)
    assert table["condition"].to_list() == [9, 0, 2, 5]
    ratios = M.calibration_ratios(p, y, c)
    assert ratios["condition"].to_list() == [9, 0, 2, 5]
    assert ratios.columns == ["condition", "count", "base_rate", "pred_mean", "calibration_ratio"]


def test_calibration_ratio_one_when_p_equals_base_rate():
    rng = np.random.default_rng(0)
    c = rng.integers(0, 5, 300)
    y = (rng.random(300) < 0.3).astype(float)
    rates = np.bincount(c, weights=y) / np.bincount(c)
    table = M.calibration_ratios(rates[c], y, c)
    np.testing.assert_allclose(table["calibration_ratio"].to_numpy(), 1.0, rtol=1e-12)
    lr = M.logratio_calibration(rates[c], y, c)
    assert lr["logratio_calib_iw"] == pytest.approx(0.0, abs=1e-12)
    # the constant base-rate predictor has LE ratio 1
    np.testing.assert_allclose(M.le_ratio_by_condition(rates[c], y, c)["le_ratio"].to_numpy(), 1.0, rtol=1e-9)


def test_logratio_calibration_hand_and_min_count():
    p = np.array([0.2, 0.2, 0.5, 0.5, 0.5])
    y = np.array([0.0, 1.0, 1.0, 1.0, 0.0])
    c = np.array([0, 0, 1, 1, 1])
    g0 = abs(math.log((0.2 + 1e-6) / (0.5 + 1e-6)))
    g1 = abs(math.log((0.5 + 1e-6) / (2 / 3 + 1e-6)))
    out = M.logratio_calibration(p, y, c)
    assert out["logratio_calib_iw"] == pytest.approx((2 * g0 + 3 * g1) / 5, rel=1e-12)
    assert out["logratio_calib_macro"] == pytest.approx((g0 + g1) / 2, rel=1e-12)
    only1 = M.logratio_calibration(p, y, c, min_count=3)
    assert only1 == pytest.approx({"logratio_calib_iw": g1, "logratio_calib_macro": g1})
    none = M.logratio_calibration(p, y, c, min_count=4)
    assert math.isnan(none["logratio_calib_iw"]) and math.isnan(none["logratio_calib_macro"])


def test_le_ratio_by_condition_hand():
    p = np.array([0.9, 0.1, 0.3])
    y = np.array([1.0, 0.0, 1.0])
    c = np.array([0, 0, 1])
    table = M.le_ratio_by_condition(p, y, c)
    row0 = table.filter(pl.col("condition") == 0).row(0, named=True)
    assert row0["le_ratio"] == pytest.approx(-math.log(0.9) / math.log(2), rel=1e-12)
    row1 = table.filter(pl.col("condition") == 1).row(0, named=True)
    assert math.isnan(row1["le_ratio"])  # pure condition: constant predictor CE is 0


# ------------------------------------------------------------------ model summary


@pytest.mark.parametrize("method", METHODS)
def test_model_summary_matches_individual_metrics(method):
    p, y, c = _data(3000, seed=12, c=9)
    p[:10] = 0.5  # some ties
    s = M.model_summary(p, y, c, ece_method=method, bins=12)
    assert tuple(s) == M.SUMMARY_KEYS
    small = M.ece_small(p, y, method=method, bins=12)
    expected = {
        "logloss": M.logloss(p, y), "brier": M.brier(p, y),
        "accuracy": M.binary_classification_metrics(p, y)["accuracy"],
        "ece": M.ece(p, y, method=method, bins=12), "ece_small": small["ece_small"],
        "ece_small_threshold": small["threshold"], **M.logratio_calibration(p, y, c),
        "roc_auc": roc_auc_score(y, p), "pr_auc": average_precision_score(y, p),
    }
    for key, value in expected.items():
        assert s[key] == pytest.approx(value, rel=1e-12, abs=1e-14), key
    table = M.le_ratio_by_condition(p, y, c)
    base = float((table["base_rate_logloss"] * table["count"]).sum())
    assert s["le_ratio"] == pytest.approx(M.logloss(p, y) * p.size / base, rel=1e-12)


def test_model_summary_without_conditions():
    p, y = _data(500, seed=13)
    s = M.model_summary(p, y)
    assert math.isnan(s["logratio_calib_iw"]) and math.isnan(s["logratio_calib_macro"])
    rate = y.mean()
    entropy = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    assert s["le_ratio"] == pytest.approx(M.logloss(p, y) / entropy, rel=1e-12)
    assert all(isinstance(v, float) for v in s.values())


def test_model_summary_one_class_warns():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = M.model_summary([0.2, 0.4], [0.0, 0.0])
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)
    assert math.isnan(s["roc_auc"]) and math.isnan(s["pr_auc"]) and math.isnan(s["le_ratio"])
