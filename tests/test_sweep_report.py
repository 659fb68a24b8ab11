"""Sweep report tables from stored records: comparison pairs, complete pairs only, condition values."""

import numpy as np
import polars as pl
import pytest

from le_ray.config import load_config
from le_ray.report.sweep import comparison_pairs, compute_tables, mean_reliability
from le_ray.results import per_condition_frame, trials_frame


def _record(loss, seed, shift):
    rng = np.random.default_rng(seed)
    metrics = {"logloss": 0.3 + shift, "brier": 0.1 + shift / 10, "ece": 0.02 + shift / 10, "ece_small": 0.01,
               "logratio_calib_iw": 0.2 + shift, "logratio_calib_macro": 0.2 + shift, "accuracy": 0.9,
               "roc_auc": 0.7 - shift, "pr_auc": 0.3 - shift}
    base = np.array([0.1, 0.02, 0.005])
    pred = base * (1 + shift * 10 + rng.normal(0, 0.01, 3))
    return {"trial_id": f"{loss}-{seed}", "loss": loss, "seed": seed, "status": "ok", "metrics": metrics,
            "timings": {"total": 1.0}, "node": "n", "device": "cpu", "samples_per_second": 1.0,
            "per_condition": {"condition": [0, 1, 2], "count": [100, 80, 60], "base_rate": base.tolist(),
                              "pred_mean": pred.tolist()},
            "reliability": {"bin": [0, 1], "count": [5, 5], "avg_pred": [0.1, 0.2 + shift],
                            "avg_label": [0.1, None]},
            "curves": {"epoch": [0, 1], "train_loss": [1, 0.5], "eval_loss": [1, 0.6]}}


def test_comparison_pairs():
    assert comparison_pairs(("bce", "localized_entropy")) == [("bce", "localized_entropy")]
    assert comparison_pairs(("bce", "localized_entropy", "focal")) == [
        ("bce", "localized_entropy"), ("bce", "focal"), ("focal", "localized_entropy")]
    assert comparison_pairs(("bce",)) == []


def test_complete_pairs_only_and_orientation():
    cfg = load_config(sets=["repeats.bootstrap_samples=100"])
    records = [_record("bce", s, 0.05) for s in (1, 2, 3, 4)] + [_record("localized_entropy", s, 0.0) for s in (1, 2, 3)]
    trials = trials_frame(records)
    per_cond = per_condition_frame(records, ["ad_a", "ad_b", "ad_c"])
    tables = compute_tables(cfg, trials, per_cond)
    tests = tables.metric_tests["LE_vs_BCE"]
    assert set(tests["n"].to_list()) == {3}  # seed 4 has no LE partner
    logloss = tests.filter(pl.col("metric") == "logloss").row(0, named=True)
    assert logloss["mean_delta"] > 0  # LE lower logloss on every seed → delta > 0 favours LE
    auc = tests.filter(pl.col("metric") == "roc_auc").row(0, named=True)
    assert auc["mean_delta"] > 0
    cond = tables.condition_tests["LE_vs_BCE"]
    assert sorted(cond["value"].to_list()) == ["ad_a", "ad_b", "ad_c"]
    assert (cond["delta_mean"] > 0).all() and set(cond["n"].to_list()) == {3}
    deltas = tables.deltas["LE_vs_BCE"]
    assert deltas.filter(pl.col("metric") == "logloss")["delta"].to_list() == pytest.approx([0.05] * 3)
    summary = tables.summary.filter((pl.col("loss") == "bce") & (pl.col("metric") == "logloss")).row(0, named=True)
    assert summary["n"] == 4 and summary["mean"] == pytest.approx(0.35)


def test_mean_reliability_over_seeds_ignores_empty_bins():
    records = [_record("bce", s, 0.1 * s) for s in (1, 2)]
    rel = mean_reliability(records, "bce")
    assert rel["avg_pred"][1] == pytest.approx(0.2 + 0.15)
    assert np.isnan(rel["avg_label"][1]) and rel["avg_label"][0] == 0.1
    assert mean_reliability(records, "focal") == {}
