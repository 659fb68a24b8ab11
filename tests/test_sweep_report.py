"""Sweep report from stored records: comparison pairs, complete pairs only, exclusions, truth-based gaps, pooling."""

import numpy as np
import polars as pl
import pytest

from le_ray import metrics
from le_ray.config import load_config
from le_ray.report.sweep import comparison_pairs, compute_tables, mean_reliability
from le_ray.sweep.store import per_condition_frame, pooled_per_condition, trials_frame

RATES = np.array([0.1, 0.02, 0.005])


def _predictions(seed, shift, rows=4000):
    rng = np.random.default_rng(seed)
    cond = np.repeat(np.arange(3), rows)
    p_true = RATES[cond]
    y = (rng.random(cond.size) < p_true).astype(float)
    p = np.clip(p_true * (1 + shift * 10 + rng.normal(0, 0.01, cond.size)), 1e-6, 1 - 1e-6)
    return p, y, cond, p_true


def _record(loss, seed, shift, truth=False):
    p, y, cond, p_true = _predictions(seed, shift)
    sums = metrics.condition_sums(p, y, cond, p_true=p_true if truth else None)
    summary = {k: float(v) for k, v in metrics.model_summary(p, y, cond).items()}
    return {"trial_id": f"{loss}-{seed}", "loss": loss, "seed": seed, "metrics": summary,
            "condition_sums": metrics.sums_to_record(sums), "timings": {"total": 1.0}, "node": "n", "device": "cpu",
            "samples_per_second": 1.0,
            "reliability": {"bin": [0, 1], "count": [5, 5], "avg_pred": [0.1, 0.2 + shift], "avg_label": [0.1, None]},
            "curves": {"epoch": [0, 1], "train_loss": [1, 0.5], "eval_loss": [1, 0.6]}}


def _tables(records, *sets, excluded=frozenset()):
    cfg = load_config(sets=["repeats.bootstrap_samples=100", *sets])
    return compute_tables(cfg, trials_frame(records), per_condition_frame(records, ["ad_a", "ad_b", "ad_c"]),
                          records, excluded)


def test_comparison_pairs():
    assert comparison_pairs(("bce", "localized_entropy")) == [("bce", "localized_entropy")]
    assert comparison_pairs(("bce", "localized_entropy", "focal")) == [
        ("bce", "localized_entropy"), ("bce", "focal"), ("focal", "localized_entropy")]
    assert comparison_pairs(("bce",)) == []


def test_complete_pairs_only_and_orientation():
    records = [_record("bce", s, 0.05) for s in (1, 2, 3, 4)] + [_record("localized_entropy", s, 0.0) for s in (1, 2, 3)]
    tables = _tables(records)
    tests = tables.metric_tests["LE_vs_BCE"]
    assert set(tests["n"].to_list()) == {3}  # seed 4 has no LE partner
    assert tests.filter(pl.col("metric") == "logloss")["mean_delta"][0] > 0  # LE better calibrated → lower logloss
    assert "p_adjusted" in tests.columns and (tests["p_adjusted"] >= tests["p_value"]).all()
    cond = tables.condition_tests["LE_vs_BCE"]
    assert sorted(cond["value"].to_list()) == ["ad_a", "ad_b", "ad_c"]
    assert (cond["delta_mean"] > 0).all() and set(cond["n"].to_list()) == {3}
    summary = tables.summary.filter((pl.col("loss") == "bce") & (pl.col("metric") == "logloss"))
    assert summary["n"][0] == 4


def test_excluded_conditions_are_not_tested():
    records = [_record(loss, s, shift) for s in (1, 2, 3, 4, 5, 6) for loss, shift in (("bce", 0.05),
                                                                                        ("localized_entropy", 0.0))]
    cond = _tables(records, excluded={2}).condition_tests["LE_vs_BCE"]
    assert sorted(cond["condition"].to_list()) == [0, 1]
    calib = _tables(records, excluded={2}).calibration
    assert calib.filter(pl.col("condition") == 2)["excluded"].all()


def test_gap_is_measured_against_the_truth_when_synthetic():
    records = [_record(loss, s, shift, truth=True) for s in (1, 2, 3) for loss, shift in (("bce", 0.05),
                                                                                           ("localized_entropy", 0.0))]
    truth = _tables(records)
    labels = _tables(records, "evaluation.synthetic_truth=false")
    assert truth.truth and not labels.truth
    t = truth.condition_tests["LE_vs_BCE"].sort("condition")
    # LE predicts p_true * (1 + noise): its gap to the truth is tiny; label gaps carry Bernoulli noise
    le = per_condition_frame(records).filter(pl.col("loss") == "localized_entropy").with_columns(
        ((pl.col("sum_p") - pl.col("sum_t")) / pl.col("n")).abs().alias("gap"))
    by_hand = le.group_by("condition").agg(pl.col("gap").mean()).sort("condition")["gap"].to_numpy()
    assert t["candidate_gap"].to_numpy() == pytest.approx(by_hand, rel=1e-9)
    assert (t["candidate_gap"] < 1e-3 * RATES).all()
    assert (labels.condition_tests["LE_vs_BCE"].sort("condition")["candidate_gap"] > t["candidate_gap"]).all()


def test_pooled_table_equals_the_table_of_concatenated_predictions():
    records = [_record("bce", s, 0.05) for s in (1, 2, 3)]
    pooled = pooled_per_condition(records, "bce").sort("condition")
    parts = [_predictions(s, 0.05) for s in (1, 2, 3)]
    direct = metrics.per_condition_metrics(np.concatenate([p for p, *_ in parts]),
                                           np.concatenate([y for _, y, *_ in parts]),
                                           np.concatenate([c for _, _, c, _ in parts])).sort("condition")
    for col in ("count", "base_rate", "pred_mean", "logloss", "ece", "calibration_ratio", "le_ratio", "brier"):
        assert pooled[col].to_numpy() == pytest.approx(direct[col].to_numpy(), rel=1e-12), col


def test_mean_reliability_over_seeds_ignores_empty_bins():
    records = [_record("bce", s, 0.1 * s) for s in (1, 2)]
    rel = mean_reliability(records, "bce")
    assert rel["avg_pred"][1] == pytest.approx(0.2 + 0.15)
    assert np.isnan(rel["avg_label"][1]) and rel["avg_label"][0] == 0.1
    assert mean_reliability(records, "focal") == {}
