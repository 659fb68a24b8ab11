"""The written verdict on hand-made test tables: significant both ways, none, excluded conditions, bands."""

import numpy as np
import polars as pl

from le_ray.report.verdict import VerdictInputs, condition_sentences, metric_sentences, rate_bands, verdict_lines


def _metrics(rows):
    return pl.DataFrame(rows, orient="row", schema={"metric": pl.String, "higher_is_better": pl.Boolean, "mean_delta": pl.Float64,
                                      "ci_low": pl.Float64, "ci_high": pl.Float64, "rank_biserial": pl.Float64,
                                      "p_adjusted": pl.Float64})


def _conditions(rows):
    return pl.DataFrame(rows, orient="row", schema={"condition": pl.Int64, "value": pl.String, "base_rate": pl.Float64,
                                      "baseline_gap": pl.Float64, "candidate_gap": pl.Float64,
                                      "p_value": pl.Float64, "p_holm": pl.Float64})


def _inputs(metrics, conditions, excluded=(), bands=None):
    return VerdictInputs("bce", "localized_entropy", metrics, conditions, list(excluded), alpha=0.05,
                         correction="holm", seeds=8, gap_reference="the true click probability", bands=bands)


def test_significant_both_ways_and_not():
    m = _metrics([("logloss", False, 0.002, 0.001, 0.003, 0.9, 0.01),   # LE better
                  ("roc_auc", True, -0.01, -0.02, -0.005, -1.0, 0.02),   # BCE better
                  ("ece", False, 0.0001, -0.001, 0.002, 0.1, 0.6)])
    text = metric_sentences(_inputs(m, _conditions([])))
    assert text[0].startswith("LE beats BCE on logloss") and "holm p = 0.01" in text[0]
    assert text[1].startswith("BCE beats LE on roc_auc")
    assert text[2] == "No significant difference (holm-adjusted p >= 0.05) in: ece."


def test_nothing_significant():
    m = _metrics([("logloss", False, 0.002, -0.001, 0.003, 0.2, 0.5)])
    assert metric_sentences(_inputs(m, _conditions([]))) == [
        "No significant difference (holm-adjusted p >= 0.05) in: logloss."]


def test_bands_by_tertile_and_explicit():
    assert rate_bands(np.array([0.3, 0.001, 0.01, 0.02])).tolist() == [2, 0, 0, 1]
    assert rate_bands(np.array([0.3, 0.001, 0.01]), (0.005, 0.1)).tolist() == [2, 0, 1]


def test_conditions_grouped_and_excluded_listed():
    c = _conditions([(0, "a", 0.001, 0.002, 0.0005, 0.01, 0.02),   # rare: LE better
                     (1, "b", 0.002, 0.003, 0.001, 0.01, 0.03),    # rare: LE better
                     (2, "c", 0.02, 0.001, 0.002, 0.4, 0.8),        # middle: nothing
                     (3, "d", 0.2, 0.001, 0.01, 0.001, 0.004)])    # common: BCE better
    text = condition_sentences(_inputs(_metrics([]), c, excluded=[{"value": "z", "train_clicks": 3,
                                                                   "eval_clicks": 0}]))
    assert "rare conditions" in text[1] and "LE is better calibrated on 2 of 2 (holm p <= 0.03)" in text[1]
    assert "middle conditions" in text[2] and "no significant difference on any of 1" in text[2]
    assert "common conditions" in text[3] and "BCE is better calibrated on 1 of 1" in text[3]
    assert text[-1] == "1 condition(s) had too few clicks to test and are not in the verdict: z (3 train / 0 eval clicks)."


def test_verdict_carries_caveats():
    lines = verdict_lines(_inputs(_metrics([]), _conditions([])), ["the audit warned: x"])
    assert lines[0] == "LE vs BCE over 8 paired seed(s):"
    assert lines[-1].startswith("Caveats: 8 seeds") and lines[-1].endswith("the audit warned: x")
