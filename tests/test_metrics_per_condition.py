"""Tests for le_ray.metrics.per_condition: the per-condition table against a slow loop
reference, hand cases (Brier, truth columns, LE ratio, log-ratio calibration), and the
invariants every per-condition metric must satisfy for every ECE backend."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest

from le_ray import metrics as M

METHODS = M.ECE_METHODS
# per-condition columns that are probabilities or ECEs, hence within [0, 1]
UNIT_COLUMNS = ("base_rate", "accuracy", "f1", "ece", "ece_small", "pred_mean", "brier")


def _data(n=500, seed=0, c=5):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return p, (rng.random(n) < p).astype(float), rng.integers(0, c, n)


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
            "brier": sum((a - b) ** 2 for a, b in zip(pj, yj)) / n,
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


def test_condition_validation():
    with pytest.raises(ValueError, match="shape mismatch"):
        M.calibration_ratios([0.1, 0.2], [0, 1], [0])
    with pytest.raises(ValueError, match="integer"):
        M.calibration_ratios([0.1, 0.2], [0, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        M.calibration_ratios([0.1, 0.2], [0, 1], [-1, 0])
    # integral floats are accepted
    assert M.calibration_ratios([0.1, 0.2], [0, 1], [0.0, 1.0]).height == 2
    with pytest.raises(ValueError, match="p_true"):
        M.per_condition_metrics([0.1, 0.2], [0, 1], [0, 1], p_true=[0.1])


def test_brier_per_condition_matches_direct():
    p, y, c = _data(600, seed=21, c=4)
    table = M.per_condition_metrics(p, y, c)
    for row in table.iter_rows(named=True):
        mask = c == row["condition"]
        assert row["brier"] == pytest.approx(M.brier(p[mask], y[mask]), rel=1e-12, abs=1e-15)


def test_truth_columns_hand():
    # condition 0: p (0.2, 0.4), p_true (0.1, 0.3), y (0, 1); condition 1: p (0.9,), p_true (0.6,)
    p = np.array([0.2, 0.4, 0.9])
    y = np.array([0.0, 1.0, 1.0])
    t = np.array([0.1, 0.3, 0.6])
    c = np.array([0, 0, 1])
    table = M.per_condition_metrics(p, y, c, p_true=t, bins=2)
    assert table.columns[-4:] == ["true_rate", "calibration_ratio_true", "gap_true", "ece_true"]
    r0 = table.filter(pl.col("condition") == 0).row(0, named=True)
    r1 = table.filter(pl.col("condition") == 1).row(0, named=True)
    assert r0["true_rate"] == pytest.approx(0.2, abs=1e-15)
    assert r0["calibration_ratio_true"] == pytest.approx(0.3 / 0.2, rel=1e-14)
    assert r0["gap_true"] == pytest.approx(0.1, abs=1e-15)
    # both rows of condition 0 in bin (0, .5]: |mean p − mean p_true| = |0.3 − 0.2|
    assert r0["ece_true"] == pytest.approx(0.1, abs=1e-15)
    assert r1["true_rate"] == pytest.approx(0.6) and r1["gap_true"] == pytest.approx(0.3)
    assert r1["calibration_ratio_true"] == pytest.approx(1.5) and r1["ece_true"] == pytest.approx(0.3)
    # the label-based ECE of the same bins: |0.3 − 0.5| and |0.9 − 1|
    assert r0["ece"] == pytest.approx(0.2) and r1["ece"] == pytest.approx(0.1)
    assert "true_rate" not in M.per_condition_metrics(p, y, c).columns


@pytest.mark.parametrize("method", METHODS)
def test_ece_true_equals_ece_against_soft_labels(method):
    # ece_true is the ECE with the per-bin mean of p_true in place of the mean label
    p, y, c = _data(300, seed=22, c=3)
    t = np.clip(p + np.random.default_rng(1).normal(0, 0.05, p.size), 0, 1)
    table = M.per_condition_metrics(p, y, c, p_true=t, ece_method=method)
    for row in table.iter_rows(named=True):
        m = c == row["condition"]
        assert row["ece_true"] == pytest.approx(M.ece(p[m], t[m], method=method), rel=1e-10, abs=1e-14)


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
    with pytest.raises(ValueError, match="min_count"):
        M.logratio_calibration(p, y, c, min_count=-1)


def test_le_ratio_by_condition_hand():
    p = np.array([0.9, 0.1, 0.3])
    y = np.array([1.0, 0.0, 1.0])
    c = np.array([0, 0, 1])
    table = M.le_ratio_by_condition(p, y, c)
    row0 = table.filter(pl.col("condition") == 0).row(0, named=True)
    assert row0["le_ratio"] == pytest.approx(-math.log(0.9) / math.log(2), rel=1e-12)
    row1 = table.filter(pl.col("condition") == 1).row(0, named=True)
    assert math.isnan(row1["le_ratio"])  # pure condition: constant predictor CE is 0


# ------------------------------------------------------------------ invariants (every backend)


@pytest.mark.parametrize("method", METHODS)
def test_per_condition_unit_interval_and_permutation_invariant(method):
    p, y, c = _data(900, seed=31, c=4)
    t = np.clip(p * 0.9 + 0.05, 0, 1)
    table = M.per_condition_metrics(p, y, c, ece_method=method, small_prob_max=0.05, p_true=t)
    for col in (*UNIT_COLUMNS, "ece_true", "true_rate", "gap_true"):
        values = table[col].to_numpy()
        assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all(), col
    assert (table["ece"].to_numpy() > 0).all()  # noisy labels: never exactly calibrated
    perm = np.random.default_rng(2).permutation(p.size)
    shuffled = M.per_condition_metrics(p[perm], y[perm], c[perm], ece_method=method, small_prob_max=0.05,
                                       p_true=t[perm])
    assert shuffled["condition"].to_list() == table["condition"].to_list()
    for col in table.columns:
        np.testing.assert_allclose(shuffled[col].to_numpy(), table[col].to_numpy(), rtol=1e-12, atol=1e-13,
                                   err_msg=col)


@pytest.mark.parametrize("method", METHODS)
def test_constant_base_rate_predictor_is_perfectly_calibrated(method):
    # each condition predicts its own base rate (a multiple of 1/8) for all of its rows
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0], dtype=float)
    c = np.repeat([0, 1, 2], 8)
    rates = np.bincount(c, weights=y) / np.bincount(c)
    # adaptive splits tied p across its equal-mass bins, so it gets one bin per condition
    bins = 1 if method == "adaptive" else 4
    table = M.per_condition_metrics(rates[c], y, c, ece_method=method, bins=bins, small_prob_max=0.5,
                                    smooth_bandwidth=0.01)
    np.testing.assert_allclose(table["ece"].to_numpy(), 0.0, atol=1e-15)
    np.testing.assert_allclose(table["calibration_ratio"].to_numpy(), 1.0, rtol=1e-15)
    np.testing.assert_allclose(table["le_ratio"].to_numpy(), 1.0, rtol=1e-12)
    # the small subset (p ≤ 0.5, or the quantile fallback for the 0.75 condition) is the whole condition
    np.testing.assert_allclose(table["ece_small"].to_numpy(), 0.0, atol=1e-15)


@pytest.mark.parametrize("method", METHODS)
def test_single_class_and_absent_conditions_are_explicit(method):
    p = np.array([0.2, 0.3, 0.6, 0.7, 0.4, 0.8])
    y = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    c = np.array([0, 0, 1, 1, 4, 4])  # 0: all negative, 1: all positive, 2 and 3 absent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = M.per_condition_metrics(p, y, c, ece_method=method)
        empty = M.per_condition_metrics([], [], [], ece_method=method)
    assert table["condition"].to_list() == [1, 4, 0]
    row = {r["condition"]: r for r in table.iter_rows(named=True)}
    assert math.isnan(row[0]["calibration_ratio"]) and math.isnan(row[0]["le_ratio"])
    assert row[0]["f1"] == 0.0 and row[0]["accuracy"] == 1.0
    assert math.isnan(row[1]["le_ratio"]) and row[1]["calibration_ratio"] == pytest.approx(0.65)
    assert row[1]["ece"] == pytest.approx(0.35) and row[0]["ece"] == pytest.approx(0.25)
    assert empty.height == 0 and empty.columns == table.columns
