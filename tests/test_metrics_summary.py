"""Tests for le_ray.metrics.summary: model_summary against the individual metrics."""

from __future__ import annotations

import math
import warnings

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from le_ray import metrics as M

METHODS = M.ECE_METHODS


def _data(n, seed, c):
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return p, (rng.random(n) < p).astype(float), rng.integers(0, c, n)


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
    rng = np.random.default_rng(13)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(float)
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


def test_model_summary_empty_is_all_nan():
    out = M.model_summary([], [])
    assert tuple(out) == M.SUMMARY_KEYS
    assert all(math.isnan(v) for v in out.values())


@pytest.mark.parametrize("method", METHODS)
def test_model_summary_permutation_invariant_and_in_range(method):
    p, y, c = _data(2000, seed=14, c=6)
    s = M.model_summary(p, y, c, ece_method=method)
    for key in ("brier", "accuracy", "ece", "ece_small", "roc_auc", "pr_auc"):
        assert 0.0 <= s[key] <= 1.0, key
    perm = np.random.default_rng(3).permutation(p.size)
    shuffled = M.model_summary(p[perm], y[perm], c[perm], ece_method=method)
    for key, value in s.items():
        assert shuffled[key] == pytest.approx(value, rel=1e-12, abs=1e-14), key


@pytest.mark.parametrize("method", ["custom", "adaptive", "smooth", "adaptive_lib"])
def test_model_summary_with_a_given_stable_order_is_identical(method):
    """The order a GPU sorted (stable, ties by row; int64 or float64 indices) gives the host's numbers exactly."""
    rng = np.random.default_rng(8)
    p = np.round(rng.uniform(0, 0.2, 5_000), 3)  # many ties: their order inside a bin matters for adaptive
    y = (rng.uniform(size=p.size) < p).astype(float)
    c = rng.integers(0, 5, p.size)
    order = np.argsort(p, kind="stable")
    want = M.model_summary(p, y, c, ece_method=method)
    for given in (order, order.astype(np.float64)):
        got = M.model_summary(p, y, c, order=given, ece_method=method)
        assert json.dumps(got) == json.dumps(want)


def test_model_summary_refuses_an_order_that_is_not_the_stable_one():
    p = np.array([0.3, 0.1, 0.1, 0.2])
    y = np.array([1.0, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="stable ascending order"):
        M.model_summary(p, y, order=np.array([2, 1, 3, 0]))  # sorted, but the tie out of row order
    with pytest.raises(ValueError, match="stable ascending order"):
        M.model_summary(p, y, order=np.array([1, 2, 0, 3]))  # not sorted
    with pytest.raises(ValueError, match="row indices"):
        M.model_summary(p, y, order=np.array([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="shape"):
        M.model_summary(p, y, order=np.array([1, 2, 3]))


def _from_sums(p, y, c, **ece):
    """summary_from_sums fed by the host's own sums: what a device computes, the numpy way."""
    labels = (y >= 0.5).astype(np.int8)
    order = np.argsort(p, kind="stable")
    positives, negatives = float(labels.sum()), float(labels.size - labels.sum())
    areas = M.sorted_curve_areas(p[order], labels[order]) if positives and negatives else (0.0, 0.0)
    sums = M.condition_sums(p, y, c, num_conditions=int(c.max()) + 1, **ece)
    pooled = M.condition_sums(p, y, np.zeros_like(c), num_conditions=1, **ece)
    return M.summary_from_sums(sums, pooled, squared_error=float(np.sum((p - y) ** 2)),
                               curve=(*areas, positives, negatives), min_count=ece.get("min_count", 1),
                               smooth_bandwidth=ece.get("smooth_bandwidth", 0.05))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("min_count", [1, 40])
def test_summary_from_sums_equals_model_summary(method, min_count):
    """Every key of model_summary from sums: the pooled condition's ECE pair and threshold, logloss, brier,
    accuracy from its sums, le_ratio and the log-ratio calibration from the per-condition sums."""
    p, y, c = _data(4000, seed=21, c=11)
    p = np.round(p ** 3, 3)  # CTR-like small p, with ties; some below the ece_small cut-off
    ece = dict(ece_method=method, bins=15, min_count=min_count, small_prob_max=0.01, small_prob_quantile=0.2)
    want = M.model_summary(p, y, c, **ece)
    got = _from_sums(p, y, c, **ece)
    assert tuple(got) == M.SUMMARY_KEYS
    for key in M.SUMMARY_KEYS:
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-15, nan_ok=True), key
    assert all(math.isfinite(got[k]) for k in ("ece", "ece_small", "roc_auc", "le_ratio", "logratio_calib_iw"))


def test_summary_from_sums_one_class_and_empty():
    p, y, c = _data(500, seed=3, c=4)
    with pytest.warns(RuntimeWarning, match="only one class"):
        got = _from_sums(p, np.zeros_like(y), c)
    assert math.isnan(got["roc_auc"]) and math.isnan(got["pr_auc"]) and math.isfinite(got["logloss"])
    empty = M.condition_sums(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), num_conditions=1)
    out = M.summary_from_sums(empty, empty, squared_error=0.0, curve=(0.0, 0.0, 0.0, 0.0))
    assert all(math.isnan(v) for v in out.values())
