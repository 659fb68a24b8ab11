"""The written verdict on hand-made tables (le_ray.report.verdict): absolute rate bands, the rare-ad headline,
metric results with uninformative metrics, setting differences and one list of caveats (le_ray.report.caveats),
and the rendering. The bottom
line and its wording are in tests/test_bottom_line.py."""

import dataclasses

import polars as pl
import pytest

from le_ray.report.bottom_line import bottom_line
from le_ray.report.caveats import caveat_lines, setting_differences
from le_ray.report.verdict import (Verdict, band_labels, band_sentences, bands_overview, metric_sentences,
                                   rare_headline, rate_bands, verdict_markdown, verdict_text)

from .verdict_cases import BCE_RATIOS, LE_RATIOS, _conditions, _inputs, _metrics, _ratios


def test_decade_bands_and_labels():
    assert band_labels() == ["< 0.1 %", "0.1–1 %", "1–10 %", "≥ 10 %"]
    assert band_labels((0.005, 0.1)) == ["< 0.5 %", "0.5–10 %", "≥ 10 %"]
    rates = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.3, float("nan")]
    assert rate_bands(rates).tolist() == [0, 1, 1, 2, 2, 3, 3, -1]
    assert rate_bands(rates, (0.005, 0.1)).tolist() == [0, 0, 1, 1, 1, 2, 2, -1]


def test_metric_sentences_significant_both_ways_and_uninformative_left_out():
    m = _metrics([("logloss", False, 0.002, 0.001, 0.003, 0.9, 0.01),   # LE better
                  ("roc_auc", True, -0.01, -0.02, -0.005, -1.0, 0.02),  # BCE better
                  ("ece", False, 0.0001, -0.001, 0.002, 0.1, 0.6),
                  ("accuracy", True, 0.0, 0.0, 0.0, 0.0, float("nan"))], informative=[True, True, True, False])
    text = metric_sentences(_inputs(metrics=m))
    assert text[0] == ("LE beats BCE on logloss (lower is better): mean delta 0.002 (95% bootstrap CI [0.001, 0.003], "
                       "unadjusted; favours LE when > 0), rank-biserial 0.9, holm p = 0.01.")
    ninety = metric_sentences(dataclasses.replace(_inputs(metrics=m), confidence=0.9))  # the configured confidence
    assert "(90% bootstrap CI [0.001, 0.003], unadjusted;" in ninety[0]
    assert text[1].startswith("BCE beats LE on roc_auc")
    assert text[2] == "LE and BCE do not differ significantly (holm-adjusted p >= 0.05) in: ece."
    assert text[3] == ("accuracy is uninformative for LE vs BCE (identical in all 12 seeds for LE), so it is left out "
                       "of the holm family.")


def test_band_sentences_name_only_significant_ads():
    c = _conditions([(0, "a", 0.0005, 0.002, 0.0005, 12, 0.01, 0.02),   # < 0.1 %: LE better
                     (1, "b", 0.0008, 0.003, 0.001, 12, 0.01, 0.03),    # < 0.1 %: LE better
                     (2, "c", 0.005, 0.001, 0.002, 12, 0.4, 0.8),       # 0.1–1 %: nothing
                     (3, "d", 0.2, 0.001, 0.01, 12, 0.001, 0.004),      # ≥ 10 %: BCE better
                     (4, "e", 0.3, 0.001, 0.01, 12, 0.3, 0.9)])         # ≥ 10 %: nothing
    assert band_sentences(_inputs(conditions=c)) == [
        "LE vs BCE, ads at < 0.1 % (2 tested): LE is closer to each ad's true click probability than BCE on 2 (ads a, b; "
        "holm p <= 0.03).",
        "LE vs BCE, ads at 0.1–1 % (1 tested): LE and BCE do not differ significantly.",
        "LE vs BCE, ads at ≥ 10 % (2 tested): BCE is closer to the ad's true click probability than LE on 1 (ad d; holm p <= 0.004); LE and "
        "BCE do not differ significantly on the other 1."]


def _ads(rates, tested, excluded=None):
    return pl.DataFrame({"condition": range(len(rates)), "ad_id": [f"x{j}" for j in range(len(rates))],
                         "base_rate": rates, "tested": tested,
                         "excluded": excluded if excluded is not None else [not t for t in tested]})


def test_bands_list_each_ad_once_and_headline_when_no_ad_is_rare():
    ads = _ads([0.05, 0.2, 0.004, 0.03], [True, True, False, True])
    assert bands_overview(ads, (0.001, 0.01, 0.1)) == [
        "< 0.1 %: no tested ad", "0.1–1 %: no tested ad; 1 left out of testing with too few clicks to test (no "
        "training click, or evaluation clicks below `repeats.min_eval_clicks`; see the caveats): ad x2 (0.4 %)",
        "1–10 %: 2 tested (ads x3, x0)", "≥ 10 %: 1 tested (ad x1)"]
    assert rare_headline(ads, "evaluation click rate", "filter on the rarest ads") == [
        "No tested ad is below 1 % (evaluation click rate; 1 ad(s) below it had too few clicks to test): this data "
        "cannot answer the rare-ad question; filter on the rarest ads."]
    assert rare_headline(_ads([0.005, 0.2], [True, True]), "x", "y") == []


def _finding(code, message, severity="warning"):
    return {"severity": severity, "code": code, "message": message, "keys": ["repeats.num_runs"], "conditions": []}


def test_caveats_one_finding_per_line_and_fixed_split():
    findings = [_finding("few_eval_clicks", "3 condition(s) with fewer than 20 evaluation clicks: a, b, c"),
                _finding("settings_differ", "lr_decay differs: 0.9999 (BCE), 0.9995 (LE)"),
                _finding("info_only", "a note", severity="info")]
    lines = caveat_lines(findings, seeds=12, alternative="two-sided", resampled=False, truth=False)
    assert lines[0] == ("Audit warning `few_eval_clicks`: 3 condition(s) with fewer than 20 evaluation clicks: a, b, "
                        "c. Keys: `repeats.num_runs`.")
    assert lines[1].startswith("Audit warning `settings_differ`: lr_decay differs") and lines[2].startswith("Audit note")
    assert sum("One train/evaluation split serves all 12 seeds" in x for x in lines) == 1
    assert sum(f"{2 / 2 ** 12:.3g}" in x for x in lines) == 1
    assert len(set(lines)) == len(lines)
    for line in lines:  # no run-on: every line carries one finding
        assert sum(f"`{f['code']}`" in line for f in findings) <= 1
    redrawn = caveat_lines([_finding("underpowered", "5 seeds: ...")], seeds=5, alternative="two-sided",
                           resampled=True, truth=True, missing=2,
                           tuning={"num_samples": 8, "scheduler": "asha", "metric": "logloss",
                                   "losses": [{"loss": "bce", "space": {"lr": [0.001, 0.01]}}]})
    assert not any("split" in x for x in redrawn) and not any("smallest exact" in x for x in redrawn)
    assert any(x.startswith("2 planned trial(s) are missing") for x in redrawn)
    assert any("same budget (8 samples" in x for x in redrawn)
    unequal = {"num_samples": 2, "scheduler": "asha", "metric": "logloss",
               "losses": [{"loss": "bce", "space": {"lr": [0.001, 0.01]}}, {"loss": "localized_entropy", "space": {}}]}
    line = caveat_lines([], seeds=6, alternative="two-sided", resampled=True, truth=True, tuning=unequal)[-1]
    assert line.startswith("Unequal tuning by `le-ray tune` (searched: BCE (2 samples each")
    assert "not searched, trained as configured: LE" in line and "same budget" not in line
    budget = {**unequal, "budget": {"same": False, "searched": ["bce", "localized_entropy"],
                                    "epochs": {"bce": 4, "localized_entropy": 6}}}
    line = caveat_lines([], seeds=6, alternative="two-sided", resampled=True, truth=True, tuning=budget)[-1]
    assert "epochs per sample BCE 4, LE 6" in line and "not searched" not in line
    failed = {**unequal, "budget": {"same": False, "searched": ["bce", "localized_entropy"],
                                    "epochs": {"bce": 4, "localized_entropy": 4},
                                    "counts": {"bce": {"samples": 2, "failed": 1}, "localized_entropy": {
                                        "samples": 2, "failed": 0}}}}
    line = caveat_lines([], seeds=6, alternative="two-sided", resampled=True, truth=True, tuning=failed)[-1]
    assert line.startswith("Unequal tuning") and line.count("samples failed: BCE 1 of 2)") == 1 and "LE 0" not in line


def test_setting_differences_from_the_audit_settings():
    settings = {"bce": {"lr": 0.004, "lr_decay": 0.9999, "epochs": 5, "history": None},
                "localized_entropy": {"lr": 0.004, "lr_decay": 0.9995, "epochs": 5, "history": {"max_window": 9}},
                "focal": {"lr": 0.001, "lr_decay": 0.999, "epochs": 4, "history": None}}
    assert setting_differences(settings, "bce", "localized_entropy") == ("lr_decay 0.9995 for LE vs 0.9999 for BCE",)
    assert setting_differences(settings, "bce", "focal") == (
        "epochs 4 for focal vs 5 for BCE", "lr 0.001 for focal vs 0.004 for BCE",
        "lr_decay 0.999 for focal vs 0.9999 for BCE")
    assert setting_differences({}, "bce", "focal") == ()
    fairness = [{"setting": "lr_decay", "losses": {"bce": {"value": 0.9999, "source": "profile"},
                                                   "localized_entropy": {"value": 0.9995, "source": "--set"},
                                                   "focal": {"value": 0.9999, "source": None}}}]
    assert setting_differences(settings, "bce", "localized_entropy", fairness) == (
        "lr_decay 0.9995 for LE (--set) vs 0.9999 for BCE (profile)",)
    assert setting_differences(settings, "bce", "focal", fairness) == ()  # the audit record wins: equal here


def test_rendering_puts_the_headline_and_bottom_line_first():
    v = Verdict(headline=["No tested ad is below 1 %."], bottom=[("LE vs BCE, rarest tested ad", ["S1.", "S2."])],
                note="N.", bands=["< 0.1 %: no tested ad"], comparisons=[("LE vs BCE over 5 paired seeds", ["M."])],
                caveats=["C1.", "C2."])
    md = verdict_markdown(v)
    assert md[:5] == ["**No tested ad is below 1 %.**", "", "_N._", "", "**LE vs BCE, rarest tested ad.** S1. S2."]
    assert md[-4:] == ["", "- C1.", "- C2.", ""] and "### Caveats" in md  # the note defines terms before their use
    text = verdict_text(v, width=60)
    assert text[0] == "No tested ad is below 1 %." and text[2] == "N." and text[4].startswith(
        "LE vs BCE, rarest tested ad: S1. S2.")
    assert text[-2:] == ["  - C1.", "  - C2."]


# ------------------------------------------------- stopped sweeps and seeds too few to test (review findings)





def test_untested_ads_have_too_few_clicks_only_when_the_audit_excluded_them():
    # x0 (0.05 %) and x2 (0.4 %) are untested for want of paired seeds, x1 (0.4 %) was excluded by the audit
    ads = _ads([0.0005, 0.004, 0.004, 0.03], [False, False, False, True], excluded=[False, True, False, False])
    assert bands_overview(ads, (0.001, 0.01, 0.1), "no two losses share a stored seed yet") == [
        "< 0.1 %: no tested ad; 1 untested (ad x0: no two losses share a stored seed yet)",
        "0.1–1 %: no tested ad; 1 left out of testing with too few clicks to test (no training click, or evaluation "
        "clicks below `repeats.min_eval_clicks`; see the caveats): ad x1 (0.4 %); 1 untested (ad x2: no two losses share a stored seed yet)",
        "1–10 %: 1 tested (ad x3)", "≥ 10 %: no tested ad"]
    assert rare_headline(ads, "r", "a") == [
        "No tested ad is below 1 % (r; 1 ad(s) below it had too few clicks to test; 2 ad(s) below it had no usable "
        "pair of seeds): this data cannot answer the rare-ad question; a."]
    none_excluded = bands_overview(_ads([0.0005, 0.004], [False, False], excluded=[False, False]), (0.001, 0.01, 0.1))
    assert not any("too few clicks" in line for line in none_excluded)


def test_pending_headline_names_the_stored_trials_and_the_resume_command():
    from le_ray.report.verdict import pending_headline

    trials = {"bce": (0, 10), "localized_entropy": (4, 10), "focal": (0, 10)}
    pairs = [("bce", "localized_entropy"), ("bce", "focal"), ("focal", "localized_entropy")]
    assert pending_headline(trials, pairs, 0, "`le-ray repeats --name s6 --results-dir r`") == [
        "No comparison is possible yet: no two losses share a stored seed (trials stored per loss: BCE 0 of 10, LE 4 "
        "of 10, focal 0 of 10), so nothing could be tested: the sweep stopped early, which says nothing about the "
        "data. It can be resumed with `le-ray repeats --name s6 --results-dir r` (stored trials are kept), or this "
        "report rebuilt once paired seeds are stored."]
    partial = pending_headline({"bce": (10, 10), "localized_entropy": (10, 10), "focal": (0, 10)}, pairs[1:], 1, "`x`")
    assert partial == ["Not compared yet: focal vs BCE, LE vs focal (no seed stored for both losses; trials stored per "
                       "loss: BCE 10 of 10, LE 10 of 10, focal 0 of 10); the sweep can be resumed with `x`."]
    assert pending_headline(trials, [], 3, "`x`") == []


@pytest.mark.parametrize("n", range(1, 11))
def test_smallest_reachable_p_is_scipys_exact_p_of_all_one_sign(n):
    """Reference: scipy's exact Wilcoxon p of n differences of one sign (the most extreme statistic), and the
    project's own Holm / BH adjustment of a family of m such p-values."""
    import numpy as np
    from scipy.stats import wilcoxon

    from le_ray.report.verdict import smallest_reachable_p
    from le_ray.stats import bh_adjust, holm_adjust

    extreme = np.arange(1.0, n + 1)
    for alternative in ("two-sided", "greater"):
        p = wilcoxon(extreme, alternative=alternative, method="exact").pvalue
        assert smallest_reachable_p(n, alternative) == pytest.approx(p, rel=1e-12)
        assert smallest_reachable_p(n, alternative, "holm", 9) == pytest.approx(holm_adjust([p] * 9).min())
        assert smallest_reachable_p(n, alternative, "bh", 9) == pytest.approx(bh_adjust([p] * 9).min())
    assert smallest_reachable_p(0, "two-sided") == 1.0


def test_a_test_ranked_behind_tests_with_as_few_pairs_is_untestable_when_holm_cannot_bring_it_below_alpha():
    """Null audit: in a family of ads ranking (6, 6, 10) pairs, the bound max(3 · p_min(10), p_min(6)) = 0.031 called
    a 6-pair ad testable ("not significant"), but it can only rank behind the 10-pair ad and the other 6-pair ad,
    whose p is no smaller than its own: Holm gives it at least 2 · p_min(6) = 0.0625, so it is untestable."""
    from le_ray.report.verdict import family, is_untestable, why_untestable

    cond = _conditions([(1, "a", 0.0005, 0.0003, 0.0004, 6, 0.5, 0.9), (2, "b", 0.0006, 0.0003, 0.0004, 6, 0.5, 0.9),
                        (3, "c", 0.02, 0.003, 0.004, 10, 0.5, 0.9)])
    v = _inputs(conditions=cond)
    fam = family(v, cond, "p_holm")
    assert fam.ranked == ((6, 2), (10, 1)) and is_untestable(v, 6, fam) and not is_untestable(v, 10, fam)
    assert why_untestable(v, 6, fam) == ("the smallest exact two-sided Wilcoxon p at n = 6 is 0.0312, 0.0625 after "
                                         "holm over 3 tests, not below alpha 0.05")
    seven = _conditions([(1, "a", 0.0005, 0.0003, 0.0004, 7, 0.5, 0.9), (2, "b", 0.0006, 0.0003, 0.0004, 6, 0.5, 0.9),
                         (3, "c", 0.02, 0.003, 0.004, 10, 0.5, 0.9)])
    assert not is_untestable(v, 7, family(v, seven, "p_holm"))  # behind the 10-pair ad only: 2 · 2/2^7 = 0.031


def test_under_holm_a_test_with_fewer_ranked_pairs_keeps_the_family_floor_not_m_times_its_own():
    """Quickstart: 9 metrics over 10 seeds, accuracy with 8 nonzero deltas. Its smallest Holm-adjusted p is reached
    when the other 8 tests sit at p_min(10) and it ranks last: max(9 · p_min(10), p_min(8)) = 0.0176, which the
    project's Holm adjustment gives too. Before, 9 · p_min(8) = 0.0703 called it 'untestable' while focal vs BCE's
    accuracy, also 8 nonzero of 10, was significant at holm p = 0.0176 in the same report."""
    from le_ray.report.verdict import smallest_reachable_p
    from le_ray.stats import holm_adjust, min_exact_p

    best = [min_exact_p(10, "two-sided")] * 8 + [min_exact_p(8, "two-sided")]
    reachable = smallest_reachable_p(8, "two-sided", "holm", 9, best=10)
    assert reachable == pytest.approx(holm_adjust(best)[-1]) == pytest.approx(9 * 2 / 2 ** 10)
    names = [f"m{i}" for i in range(8)] + ["accuracy"]
    nine = _metrics([(name, True, 0.001, -0.0005, 0.002, 0.5, 0.2) for name in names], informative=[True] * 9)
    nine = nine.with_columns(pl.lit(10).alias("n"), pl.Series("n_nonzero", [10] * 8 + [8]))
    lines = metric_sentences(_inputs(metrics=nine))
    assert lines == [f"LE and BCE do not differ significantly (holm-adjusted p >= 0.05) in: {', '.join(names)}."]


def test_metric_sentences_say_untestable_when_the_seeds_cannot_reach_alpha():
    two = _metrics([("logloss", False, 0.002, 0.002, 0.002, 1.0, 1.0), ("ece", False, 0.001, 0.001, 0.001, 1.0, 1.0)],
                   informative=[True, True])
    one_seed = metric_sentences(_inputs(metrics=two.with_columns(pl.lit(1).alias("n"))))
    assert one_seed == ["LE vs BCE is untestable with 1 paired seed in: logloss, ece (the smallest exact two-sided "
                        "Wilcoxon p at n = 1 is 1, not below alpha 0.05; the bootstrap CI of one seed is a single "
                        "point); this is no evidence that they are alike."]
    # 6 seeds: 2 / 2^6 = 0.031 < 0.05, but Holm over 2 metrics can give no p below 2 · 0.031 = 0.0625
    six = metric_sentences(_inputs(metrics=two.with_columns(pl.lit(6).alias("n"))))
    assert six[0].startswith("LE vs BCE is untestable with 6 paired seeds in: logloss, ece (the smallest exact "
                             f"two-sided Wilcoxon p at n = 6 is {2 / 2 ** 6:.3g}, {2 * 2 / 2 ** 6:.3g} after holm over "
                             "2 tests, not below alpha 0.05")
    seven = metric_sentences(_inputs(metrics=two.with_columns(pl.lit(7).alias("n"))))  # 2 · 2 / 2^7 < 0.05
    assert seven == ["LE and BCE do not differ significantly (holm-adjusted p >= 0.05) in: logloss, ece. The "
                     "unadjusted 95% bootstrap CI of the mean delta excludes 0 for logloss, ece, but the exact test, "
                     "holm-adjusted over 2 metrics, does not reach alpha: the bootstrap interval of the mean and the "
                     "rank test need not agree."]
    spans = two.with_columns(pl.lit(7).alias("n"), pl.Series("ci_low", [0.001, -0.001]))
    assert metric_sentences(_inputs(metrics=spans))[0].endswith(
        "in: logloss, ece. The unadjusted 95% bootstrap CI of the mean delta excludes 0 for logloss, but the exact "
        "test, holm-adjusted over 2 metrics, does not reach alpha: the bootstrap interval of the mean and the rank "
        "test need not agree.")
    uncorrected = dataclasses.replace(_inputs(metrics=spans), correction="none")
    assert "for logloss, but the exact test does not reach alpha:" in metric_sentences(uncorrected)[0]
    across = spans.with_columns(pl.Series("ci_low", [-0.001, -0.001]))
    assert metric_sentences(_inputs(metrics=across)) == [
        "LE and BCE do not differ significantly (holm-adjusted p >= 0.05) in: logloss, ece."]
    assert not any("differ significantly" in x for x in one_seed + six)


def test_per_ad_tests_of_one_seed_are_untestable_not_insignificant():
    cond = _conditions([(0, "a", 0.0005, 0.0001, 0.0004, 1, 1.0, 1.0), (1, "b", 0.0008, 0.0002, 0.0001, 1, 1.0, 1.0)])
    ratios = _ratios({0: ([1.0], [1.8]), 1: ([1.3], [1.1])})
    v = _inputs(conditions=cond, ratios=ratios)
    assert band_sentences(v) == ["LE vs BCE, ads at < 0.1 % (2 tested): untestable on all 2 with 1 paired seed (the "
                                 "smallest exact two-sided Wilcoxon p at n = 1 is 1, not below alpha 0.05)."]
    tests = bottom_line(v)[1][1::2]
    assert len(tests) == 2 and all("holm p = 1, but untestable with 1 paired seed" in x for x in tests)
    assert not any("not significant" in x for x in tests)


def test_power_caveat_uses_the_paired_seeds_stored_not_the_configured_number():
    lines = caveat_lines([], seeds={"LE vs BCE": 3}, alternative="two-sided", resampled=False, truth=True,
                         planned=10, alpha=0.05)
    assert lines[0] == ("With 3 paired seeds (3 of 10 seeds stored) the smallest exact two-sided Wilcoxon p is "
                        f"{2 / 2 ** 3:.3g}: no test of 3 paired seeds can reach alpha 0.05, so those tests are "
                        "untestable, not negative; store more seeds.")
    assert lines[1].startswith("One train/evaluation split serves all 10 seeds")
    mixed = caveat_lines([], seeds={"LE vs BCE": 10, "focal vs BCE": 7, "LE vs focal": 7}, alternative="two-sided",
                         resampled=True, truth=True, planned=10, alpha=0.05)
    assert mixed[0] == (f"The smallest exact two-sided Wilcoxon p is {2 / 2 ** 10:.3g} with 10 paired seeds (LE vs "
                        f"BCE) and {2 / 2 ** 7:.3g} with 7 paired seeds (focal vs BCE, LE vs focal; 7 of 10 seeds "
                        "stored): only a difference of the same sign in nearly every seed can be significant; more "
                        "seeds (--extend --set repeats.num_runs=N on the stored sweep) let smaller differences show.")
    assert not any("smallest exact" in x for x in caveat_lines([], seeds={"LE vs BCE": 0}, alternative="two-sided",
                                                               resampled=True, truth=True, planned=10))


def test_ece_small_caveat_only_when_trials_mixed_its_two_rules():
    """Avazu sample: 2 of 36 trials had a prediction <= 0.01 and took the few rows below it, 34 took their model's
    10 % quantile; the paired ece_small tests compared the two kinds with no word of it."""
    from le_ray.report.caveats import ece_small_caveat

    mixed = pl.DataFrame({"loss": ["bce", "bce", "focal", "localized_entropy"], "seed": [42, 43, 42, 42],
                          "ece_small_threshold": [0.01, 0.0359, 0.0823, 0.05]})
    assert ece_small_caveat(mixed, 0.01, 0.1) == (
        "ece_small mixed its two rules across the trials: 1 of 4 had a prediction <= 0.01 and took the rows below it, "
        "3 (BCE 1, focal 1, LE 1) had none and took their model's 10% quantile of p (thresholds 0.0359–0.0823); its "
        "per-seed values then cover rows chosen by different rules, so its paired tests compare unlike quantities.")
    assert ece_small_caveat(mixed.filter(pl.col("ece_small_threshold") > 0.01), 0.01, 0.1) is None  # one rule
    assert ece_small_caveat(mixed.with_columns(pl.lit(0.01).alias("ece_small_threshold")), 0.01, 0.1) is None
    assert ece_small_caveat(pl.DataFrame(), 0.01, 0.1) is None


def test_a_sweep_whose_trials_failed_says_so_instead_of_calling_it_stopped_early():
    """Criteo with one NaN feature value: every trial failed, and the report said 'the sweep stopped early, which
    says nothing about the data' and advised a resume that fails the same way."""
    from le_ray.report.verdict import pending_headline

    reason = "NonFiniteLossError: non-finite training loss at epoch 1, batch 1"
    lines = pending_headline({"bce": (0, 2), "localized_entropy": (0, 2)}, [("bce", "localized_entropy")], 0,
                             "le-ray repeats --name x", [reason, reason, "ValueError: boom"])
    assert lines == [f"No comparison is possible: 3 trial(s) failed (most often: {reason}, 2 times; failures/ holds "
                     "each traceback); a resume retries them with the same config, so it helps only once the data or "
                     "the environment is fixed (a config change needs a new sweep, --name <new name>). No two losses "
                     "share a stored seed (trials stored per loss: BCE 0 of 2, LE 0 of 2); resume with le-ray repeats "
                     "--name x."]
    assert "says nothing about the data" not in lines[0]
    partial = pending_headline({"bce": (2, 2), "focal": (0, 2)}, [("bce", "focal")], 1, "R", ["ValueError: boom"])
    assert partial[0].endswith("1 trial(s) failed (most often: ValueError: boom; failures/ holds each traceback); a "
                               "resume retries them with the same config, so it helps only once the data or the "
                               "environment is fixed (a config change needs a new sweep, --name <new name>); then "
                               "resume with R.")


def test_a_test_whose_nonzero_deltas_cannot_reach_alpha_is_untestable_not_a_null_result():
    """8 paired seeds but only 2 nonzero deltas: the wilcox exact test ranks 2, so its p is at least 0.5; before, the
    verdict read 'do not differ significantly' from n = 8."""
    two = _metrics([("accuracy", True, 0.001, -0.001, 0.003, 0.5, 0.5)], informative=[True]).with_columns(
        pl.lit(8).alias("n"), pl.lit(2).alias("n_nonzero"))
    lines = metric_sentences(_inputs(metrics=two))
    assert lines == ["LE vs BCE is untestable with 8 paired seeds, 2 with a nonzero delta in: accuracy (the smallest "
                     "exact two-sided Wilcoxon p at n = 2 is 0.5, not below alpha 0.05); this is no evidence that "
                     "they are alike."]
    # pratt and zsplit rank the zeros too, but a zero has no sign: scipy's smallest p over every sign pattern of the
    # 2 nonzero deltas is still 0.5, so those tests are as untestable (stats audit; it read "do not differ" before)
    from itertools import product

    from scipy.stats import wilcoxon
    for method in ("pratt", "zsplit"):
        smallest = min(wilcoxon([0.0] * 6 + [a * 1.0, b * 2.0], zero_method=method).pvalue
                       for a, b in product((1, -1), repeat=2))
        assert smallest == pytest.approx(0.5)
        assert metric_sentences(dataclasses.replace(_inputs(metrics=two), zero_method=method)) == lines
    cond = _conditions([(7, "a", 0.0005, 0.00068, 0.00025, 8, 0.5, 0.5)]).with_columns(pl.lit(2).alias("n_nonzero"))
    test = bottom_line(_inputs(conditions=cond, ratios=_ratios({7: (LE_RATIOS, BCE_RATIOS)})))[1][1]
    assert test.startswith("Per-ad test over 8 paired seeds, 2 with a nonzero delta:") and "untestable" in test


# ------------------------------------------------- the decades profile's and the Avazu sample's review


def test_one_click_is_singular_and_the_console_does_not_break_words_at_hyphens():
    """Decades d3: "fewer than 1 expected evaluation clicks"; the console wrapped "over-" / "predicts"."""
    line = caveat_lines([_finding("few_eval_clicks", "2 condition(s) with fewer than 1 expected evaluation clicks: 0, "
                                  "1; too few clicks to test")], seeds=3, alternative="two-sided", resampled=True,
                        truth=True)[0]
    assert "with fewer than 1 expected evaluation click: 0, 1;" in line
    ten = caveat_lines([_finding("few_eval_clicks", "fewer than 10 expected evaluation clicks: 0")], seeds=3,
                       alternative="two-sided", resampled=True, truth=True)[0]
    assert "fewer than 10 expected evaluation clicks: 0" in ten
    sentence = "LE vs BCE: Ad 2: LE over-predicts it by 41 % in the median; BCE under-predicts it by 2 %."
    for width in range(40, 70):
        lines = verdict_text(Verdict(bottom=[("T", [sentence * 3])]), width=width)
        assert not any(x.rstrip().endswith(("over-", "under-")) for x in lines), width


def test_ads_without_an_evaluation_click_have_no_rate_band_and_are_no_rare_ads():
    """Avazu sample (min_eval_clicks 0): ads with no evaluation click were named "ads 23160 (0 %), 19743 (0 %)" in the
    band < 0.1 % and counted as rare ads below 1 %, although ad 23160's training rate was 27 %."""
    from le_ray.report.bottom_line import rare_answer

    ads = pl.DataFrame({"condition": range(4), "ad_id": ["23160", "19743", "21665", "17753"],
                        "base_rate": [0.0, 0.0, 0.036, 0.2], "tested": [False, False, True, True],
                        "excluded": [True, True, False, False], "no_eval_click": [True, True, False, False],
                        "train_rate": [0.27, None, 0.078, 0.2]})
    lines = bands_overview(ads, (0.001, 0.01, 0.1))
    assert lines == ["< 0.1 %: no tested ad", "0.1–1 %: no tested ad", "1–10 %: 1 tested (ad 21665)",
                     "≥ 10 %: 1 tested (ad 17753)", "no evaluation click (rate not measured, so in no band; not "
                     "tested): ads 19743 and 23160 (training rate 27 %)"]
    assert not any("(0 %)" in x for x in lines)
    assert rare_headline(ads, "evaluation click rate", "filter") == [
        "No tested ad is below 1 % (evaluation click rate; 2 ad(s) without an evaluation click have no measured rate "
        "and are not counted): this data cannot answer the rare-ad question; filter."]
    rare = ads.with_columns(pl.Series("base_rate", [0.0, 0.0, 0.0005, 0.2]))  # ad 21665 rare and tested
    cond = _conditions([(2, "21665", 0.0005, 0.001, 0.002, 4, 0.125, 0.875)])
    assert "(0 %)" not in rare_answer([_inputs(conditions=cond)], rare)[0]
    truth = ads.drop("no_eval_click")  # the truth reference keeps its path: rate 0 in the lowest band
    assert bands_overview(truth, (0.001, 0.01, 0.1))[0].startswith("< 0.1 %: no tested ad; 2 left out of testing")


# ------------------------------------------------- direction and one-sided wording (stats audit, 2026-12-05)


def test_a_significant_test_is_won_by_the_side_its_ranks_favour_not_the_mean():
    """20 seeds: BCE's logloss is lower in 19, LE's far lower in one, so the mean delta favours LE (> 0) while the
    ranks favour BCE (rank-biserial -0.81); the two-sided test is significant because of the 19."""
    row = _metrics([("logloss", False, 0.000757, -0.000264, 0.00279, -0.81, 0.00495)], informative=[True])
    line = metric_sentences(_inputs(metrics=row))[0]
    assert line.startswith("BCE beats LE on logloss (lower is better): mean delta 0.000757")
    assert line.endswith("The mean delta points the other way, towards LE: the test ranks the seeds' differences "
                         "by size, and those ranks favour BCE, while larger differences on LE's side pull the average "
                         "towards LE; the test's direction is that of the ranks, not of the average, so read the size "
                         "with care.")
    assert "most seeds" not in line  # a rank sum can favour BCE with fewer than half the seeds (review)
    agree = _metrics([("logloss", False, -0.0003, -0.0004, -0.0002, -0.81, 0.00495)], informative=[True])
    assert "points the other way" not in metric_sentences(_inputs(metrics=agree))[0]
    # per ad: LE's mean gap is smaller (one seed where BCE is 10x off) but BCE's gap is smaller in most seeds
    cond = _conditions([(3, "a", 0.0005, 0.00095, 0.00044, 20, 0.0007, 0.0028)]).with_columns(
        pl.lit(0.00051).alias("delta_mean"), pl.lit(-0.81).alias("rank_biserial"), pl.lit(20).alias("n_nonzero"))
    v = _inputs(conditions=cond, ratios=_ratios({3: (BCE_RATIOS, LE_RATIOS)}))
    assert band_sentences(v) == ["LE vs BCE, ads at < 0.1 % (1 tested): BCE is closer to the ad's true click probability than LE on 1 "
                                 "(ad a; holm p <= 0.0028)."]
    test = bottom_line(v)[1][1]
    assert "LE's mean gap is smaller than BCE's" in test and ": significant at alpha 0.05" in test
    assert test.endswith("The mean gap difference points the other way, towards LE: the test ranks the seeds' "
                         "differences by size, and those ranks favour BCE, while larger differences on LE's side pull "
                         "the average towards LE; the test's direction is that of the ranks, not of the average, so "
                         "read the size with care.")
    assert rare_answer_of(v) == "LE vs BCE, BCE closer to the ad's true click probability on ad a (holm p = 0.0028)"


def rare_answer_of(v):
    from le_ray.report.bottom_line import rare_answer

    return rare_answer([v])[0].split(": ", 1)[1].rstrip(".")


@pytest.mark.parametrize("alternative,tested,other", [("greater", "LE", "BCE"), ("less", "BCE", "LE")])
def test_a_one_sided_non_rejection_never_reads_as_no_difference(alternative, tested, other):
    """focal worse than BCE in every seed under alternative=greater (candidate better): not significant, but that
    says only that the candidate is not better; the interval on the other side is said to be untested."""
    rows = _metrics([("logloss", False, -0.0017, -0.0019, -0.0015, -1.0, 1.0),
                     ("brier", False, 0.0002, 0.0001, 0.0003, 1.0, 1.0)], informative=[True, True])
    v = dataclasses.replace(_inputs(metrics=rows), alternative=alternative)
    line = metric_sentences(v)[0]
    assert line.startswith(f"{tested} is not significantly better than {other} (holm-adjusted p >= 0.05; one-sided "
                           f"({alternative}): the reverse is not tested) in: logloss, brier.")
    against = "logloss" if alternative == "greater" else "brier"
    assert f"For {against} the interval lies on {other}'s side, which the one-sided test ({alternative}) does not " \
           "test" in line
    assert "do not differ" not in line
    cond = _conditions([(3, "a", 0.0005, 0.0002, 0.0009, 10, 1.0, 1.0)])
    v = dataclasses.replace(_inputs(conditions=cond, ratios=_ratios({3: (BCE_RATIOS, LE_RATIOS)})),
                            alternative=alternative)
    assert band_sentences(v)[0].endswith(f"{tested} is not significantly closer to the ad's true click probability than {other} "
                                         f"(one-sided ({alternative}): the reverse is not tested).")
    assert f"not significant for {tested} closer (one-sided ({alternative}): the reverse is not tested)" in \
        bottom_line(v)[1][1]
    assert rare_answer_of(v) == (f"LE vs BCE, {tested} not significantly closer (holm p ≥ 1; one-sided ({alternative}): "
                                 "the reverse is not tested)")


def test_paired_seeds_that_all_tie_are_not_called_missing():
    cond = _conditions([(3, "a", 0.0005, 0.0002, 0.0002, 10, 1.0, 1.0)]).with_columns(pl.lit(0).alias("n_nonzero"))
    v = _inputs(conditions=cond, ratios=_ratios({3: (BCE_RATIOS, BCE_RATIOS)}))
    said = " ".join(bottom_line(v)[1]) + " ".join(band_sentences(v))
    assert "no seed is stored for both losses" not in said
    assert "each of the 10 paired seeds gives both the same value, so the test has no difference to rank" in said


def test_one_seeds_bootstrap_interval_is_not_printed_as_an_interval():
    cond = _conditions([(3, "a", 0.0005, 0.0009, 0.0002, 1, 1.0, 1.0)]).with_columns(
        pl.lit(0.0007).alias("ci_low"), pl.lit(0.0007).alias("ci_high"))
    test = bottom_line(_inputs(conditions=cond, ratios=_ratios({3: (BCE_RATIOS[:1], LE_RATIOS[:1])})))[1][1]
    assert test.startswith("Per-ad test over 1 paired seed: LE's mean gap is smaller") and "bootstrap CI" not in test


def test_a_p_below_alpha_is_read_as_significant_even_where_the_exact_bound_says_it_cannot_be():
    """An approximate p (older scipy with zeros or ties) can fall below the exact bound 2/2^nonzero: the bottom
    line must not print it beside "p >= alpha by construction" (review)."""
    cond = _conditions([(3, "a", 0.0005, 0.0009, 0.0002, 6, 0.035, 0.035)]).with_columns(pl.lit(5).alias("n_nonzero"))
    test = bottom_line(_inputs(conditions=cond, ratios=_ratios({3: (BCE_RATIOS, LE_RATIOS)})))[1][1]
    assert "holm p = 0.035: significant at alpha 0.05" in test and "by construction" not in test


def test_untestable_conditions_are_those_no_test_could_bring_below_alpha():
    """The per-ad gap figure marked ads it could not test as 'not significant' (figure audit). 3 paired seeds: the
    smallest exact p is 0.25; 8 ranked pairs in a Holm family of 3: 3 × 2/2^8 = 0.023 < 0.05, testable; 8 pairs with 2
    nonzero: untestable; a NaN p: untestable."""
    from le_ray.report.verdict import untestable_conditions

    cond = _conditions([(1, "a", 0.01, 0.1, 0.05, 3, 0.25, 0.5), (2, "b", 0.02, 0.1, 0.05, 8, 0.2, 0.4),
                        (3, "c", 0.03, 0.1, 0.05, 8, 0.5, 1.0), (4, "d", 0.04, 0.1, 0.05, 8, None, None)])
    cond = cond.with_columns(pl.Series("n_nonzero", [3, 8, 2, 8]))
    assert untestable_conditions(_inputs(conditions=cond)).to_list() == [True, False, True, True]
    # a p below alpha is significant whatever the exact bound says (5 nonzero pairs, holm p 0.035: the review's case)
    low = _conditions([(1, "a", 0.01, 0.1, 0.05, 5, 0.035, 0.035)]).with_columns(pl.lit(5).alias("n_nonzero"))
    assert untestable_conditions(_inputs(conditions=low)).to_list() == [False]
