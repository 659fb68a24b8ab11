"""Sweep report from stored records: comparison pairs, complete pairs only, exclusions, truth-based gaps, pooling;
and whole reports built in-process from a stored sweep folder (no Ray): the bottom line, ad ids in every per-ad
CSV, one list of caveats, no sentence twice, headed console tables, no leaked warnings."""

from pathlib import Path

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
    assert sorted(cond["ad_id"].to_list()) == ["ad_a", "ad_b", "ad_c"]
    assert dict(zip(cond["condition"], cond["ad_id"])) == {0: "ad_a", 1: "ad_b", 2: "ad_c"}
    assert (cond["delta_mean"] > 0).all() and set(cond["n"].to_list()) == {3}
    assert ((cond["ci_low"] <= cond["delta_mean"]) & (cond["delta_mean"] <= cond["ci_high"])).all()  # paired seeds only
    summary = tables.summary.filter((pl.col("loss") == "bce") & (pl.col("metric") == "logloss"))
    assert summary["n"][0] == 4


def test_excluded_conditions_are_not_tested():
    records = [_record(loss, s, shift) for s in (1, 2, 3, 4, 5, 6) for loss, shift in (("bce", 0.05),
                                                                                        ("localized_entropy", 0.0))]
    cond = _tables(records, excluded={2}).condition_tests["LE_vs_BCE"]
    assert sorted(cond["condition"].to_list()) == [0, 1]
    calib = _tables(records, excluded={2}).calibration
    assert calib.filter(pl.col("condition") == 2)["excluded"].all()


def test_an_ad_without_an_evaluation_click_is_not_tested_against_the_click_rate():
    """Against the evaluation click rate an ad with no click has no measured rate: its gap would be the mean
    prediction, so a "closer to the ad's rate" would only say which loss predicts lower (stats audit: the report
    called it untested in the bands and significant in the headline). Against the synthetic truth it is tested."""
    records = [_record(loss, s, shift, truth=True) for s in (1, 2, 3, 4, 5, 6) for loss, shift in (
        ("bce", 0.05), ("localized_entropy", 0.0))]
    for r in records:
        r["condition_sums"]["sum_y"][2] = 0.0  # the rarest ad's evaluation clicks
    tested = {name: sorted(_tables(records, *sets).condition_tests["LE_vs_BCE"]["condition"].to_list())
              for name, sets in (("rate", ("evaluation.synthetic_truth=false",)), ("truth", ()))}
    assert tested == {"rate": [0, 1], "truth": [0, 1, 2]}


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


# ------------------------------------------------------------------ whole reports from a stored sweep folder


def _sweep_record(loss, seed, rates, factor, rows, truth, data_seed):
    """One trial: predictions = truth × ``factor`` per ad × per-seed noise; labels drawn from ``data_seed`` (the
    same for every loss of a seed, and for every seed when the split is fixed)."""
    rng = np.random.default_rng([seed, len(loss)])
    cond = np.repeat(np.arange(rates.size), rows)
    p_true = rates[cond]
    y = (np.random.default_rng(data_seed).random(cond.size) < p_true).astype(float)
    noise = np.exp(rng.normal(0, 0.15, rates.size)[cond] + rng.normal(0, 0.05, cond.size))  # per ad and per row
    p = np.clip(p_true * factor[cond] * noise, 1e-7, 0.45)  # never >= 0.5: accuracy is 1 − click rate
    sums = metrics.condition_sums(p, y, cond, p_true=p_true if truth else None)
    return {"trial_id": f"{loss}-{seed}", "loss": loss, "seed": seed,
            "metrics": {k: float(v) for k, v in metrics.model_summary(p, y, cond).items()},
            "condition_sums": metrics.sums_to_record(sums), "timings": {"total": 1.0}, "node": "n", "device": "cpu",
            "samples_per_second": 1.0, "curves": {"epoch": [0, 1], "train_loss": [1, 0.5], "eval_loss": [1, 0.6]},
            "reliability": {"bin": [0, 1, 2], "count": [5, 3, 0], "avg_pred": [0.01, 0.1, None],
                            "avg_label": [0.012, 0.09, None]}}


def _settings(losses, **per_loss):
    base = {"epochs": 4, "batch_size": 256, "lr": 0.002, "lr_decay": 0.9999, "lr_category": 0.01,
            "lr_category_decay": 1.0, "lr_zero_after_epochs": None, "steps_per_epoch": 55, "steps_total": 220,
            "train_rows": 14000, "history": None}
    return {loss: {**base, **per_loss.get(loss, {})} for loss in losses}


def _stored_sweep(root, profile, sets, rates, factors, values, *, rows, findings=(), settings=None, keep=None):
    """A sweep folder as `le-ray repeats` leaves it; ``keep(loss, seed)``: which planned trials are stored (all by
    default; a stopped sweep keeps fewer, and its manifest still plans them all)."""
    from le_ray.config import to_dict
    from le_ray.sweep.audit import Audit, fairness_record
    from le_ray.sweep.store import SweepStore

    cfg = load_config(profile=profile, sets=["plots.dpi=30", "repeats.bootstrap_samples=100", *sets])
    store = SweepStore.open(root, "s")
    store.record_run(to_dict(cfg), ["le-ray", "repeats"])
    truth = cfg.data.source == "synthetic"
    records = [_sweep_record(loss, s, rates, factors[loss], rows, truth, s if cfg.repeats.resample_data else 0)
               for s in range(cfg.repeats.num_runs) for loss in cfg.losses]
    for r in records:
        if keep is None or keep(r["loss"], r["seed"]):
            store.write_trial(r)
    conditions = [{"condition": j, "value": values[j], "train_rows": rows, "train_clicks": int(rows * r),
                   "eval_rows": rows, "eval_clicks": int(rows * r), "true_rate": float(r) if truth else None}
                  for j, r in enumerate(rates)]
    audit = Audit(settings or _settings(cfg.losses), conditions, list(findings), fairness=fairness_record(cfg, None))
    store.write_json("manifest.json", {"data": {"condition_values": values, "train_rows": rows * rates.size,
                                                "eval_rows": rows * rates.size, "num_conditions": rates.size},
                                       "audit": audit.to_record(),
                                       "trials": [{k: r[k] for k in ("trial_id", "loss", "seed")} for r in records]})
    return store, records


def _build(store):
    import warnings

    from le_ray.report.sweep import build_report

    echoed = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # e.g. numpy's "All-NaN slice" must not leak
        text = build_report(store.root, echo=echoed.append).read_text()
    return text, "\n".join(str(x) for x in echoed)


def _verdict_lines(text):
    """The verdict's non-empty lines, without the italic note that defines its terms (it comes first)."""
    body = text.split("## Verdict\n", 1)[1]
    return [line for line in body.splitlines() if line.strip() and not line.startswith("_Calibration ratio")]


def _sentences(markdown):
    """Every prose sentence of a Markdown document (tables, images and headings left out)."""
    import re

    out = []
    for line in markdown.splitlines():
        line = line.strip().removeprefix("- ").replace("**", "").strip("_ ")
        if not line or line.startswith(("|", "![", "#")):
            continue
        out += [x.strip() for x in re.split(r"(?<=[.!?])\s+(?=[A-Z`])", line) if len(x.split()) >= 4]
    return out


def _no_sentence_twice(text):
    from collections import Counter

    twice = [s for s, n in Counter(_sentences(text)).items() if n > 1]
    assert not twice, twice


def _per_ad_csvs(store, values):
    """Every CSV the report wrote with a condition column; each must carry the matching ad_id."""
    found = []
    for path in sorted((store.root / "report" / "tables").glob("*.csv")):
        table = pl.read_csv(path, infer_schema_length=None, schema_overrides={"ad_id": pl.String})
        if "condition" in table.columns:
            assert "ad_id" in table.columns, path.name
            assert all(values[c] == a for c, a in zip(table["condition"], table["ad_id"])), path.name
            found.append(path.name)
    return found


QUICK_RATES = 10 ** np.array([-2.0, -2.3, -2.6, -3.3])


def test_quickstart_like_report_opens_with_the_rarest_ads_calibration(tmp_path):
    factors = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 1.4])}
    store, records = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both"], QUICK_RATES, factors,
                                   ["0", "1", "2", "3"], rows=3000)
    text, console = _build(store)
    # the expected numbers, by hand from the stored sums: ratio_s = Σp / Σp_true of ad 3 in seed s
    sums = {(r["loss"], r["seed"]): metrics.sums_from_record(r["condition_sums"]) for r in records}
    ratio = {loss: np.median([s.sum_p[3] / s.sum_t[3] for (l, _), s in sums.items() if l == loss])
             for loss in ("bce", "localized_entropy")}
    rate = sum(s.sum_t[3] for (l, _), s in sums.items() if l == "bce") / sum(
        s.n[3] for (l, _), s in sums.items() if l == "bce")
    answer, first = _verdict_lines(text)[:2]
    assert answer.startswith("**Does LE calibrate rare ads better? On the 3 tested ads below 1 % (ads 3, ")
    assert first.startswith("**LE vs BCE, rarest tested ad (< 0.1 %).** Ad 3 (true click probability "
                            f"{100 * rate:.2g} %)")
    for loss, name in (("localized_entropy", "LE"), ("bce", "BCE")):
        way = "over-predicts" if ratio[loss] > 1 else "under-predicts"
        assert f"{name} {way} it by" in first and f"(ratio {ratio[loss]:.3g}, seed range" in first
    assert "Per-ad test over 10 paired seeds: BCE's mean gap is smaller than LE's" in first
    assert ": significant at alpha" in first  # LE 1.4× the truth vs BCE 1×, over 10 seeds
    assert "No tested ad is below" not in text  # quickstart has a rare ad
    assert {"condition_tests_LE_vs_BCE.csv", "per_condition_pooled_bce.csv", "per_condition_pooled_le.csv",
            "calibration_ratio_by_seed.csv"} <= set(_per_ad_csvs(store, ["0", "1", "2", "3"]))
    assert "ad_id" in pl.read_parquet(store.root / "per_condition.parquet").columns
    _no_sentence_twice(text)
    verdict_at = console.index("== verdict")
    verdict = console[verdict_at:]
    order = [verdict.index(x) for x in ("Does LE calibrate rare ads better?", "Calibration ratio = ",
                                        "LE vs BCE, rarest tested ad (< 0.1 %): Ad 3")]
    assert order == sorted(order)  # the answer, the terms, then the bottom line that uses them
    assert "(report/tables/condition_tests_LE_vs_BCE.csv) ==" in console
    assert "(report/tables/metric_tests_LE_vs_BCE.csv) ==" in console and "see the CSV" not in console


def _tune_summary(losses):
    return {"metric": "logloss", "num_samples": 4, "scheduler": "fifo", "seed_range": [1000, 2000],
            "validation_rows": 500, "train_rows": 4500, "test_seeds": [0, 1, 2],
            "losses": [{"loss": loss, "space": {"lr": [0.001, 0.01]}, "samples": [{"final": 0.3}, {"final": 0.2}],
                        "best": {"final": 0.2, "config": {"lr": 0.002}}} for loss in losses]}


def test_avazu_like_report_says_no_rare_ad_and_lists_each_caveat_once(tmp_path):
    import json

    from le_ray.sweep.audit import Finding

    rates = np.array([0.04, 0.06, 0.09, 0.12, 0.2])
    values = ["17753", "18993", "20345", "21611", "22104"]
    factors = {"bce": np.ones(5), "localized_entropy": np.full(5, 1.02), "focal": np.full(5, 0.8)}
    findings = [Finding("warning", "few_eval_clicks", "1 condition(s) with fewer than 20 evaluation clicks: 17753 "
                        "(3 train / 2 eval clicks); too few clicks to test", ("repeats.min_eval_clicks",), (0,)),
                Finding("warning", "settings_differ", "the losses train with different settings: lr_decay 0.9999 "
                        "(BCE), 0.9995 (LE), 0.999 (focal)", ("training.same_settings_for_all_losses",))]
    settings = _settings(("bce", "localized_entropy", "focal"), localized_entropy={"lr_decay": 0.9995},
                         focal={"lr_decay": 0.999})
    store, _ = _stored_sweep(tmp_path, "avazu_sample", ["repeats.num_runs=6"], rates, factors, values, rows=1500,
                             findings=findings, settings=settings)
    (store.root / "tune").mkdir()
    (store.root / "tune" / "summary.json").write_text(json.dumps(_tune_summary(["bce", "localized_entropy", "focal"])))
    text, console = _build(store)
    lines = _verdict_lines(text)
    assert lines[0].startswith("**No tested ad is below 1 % (evaluation click rate): this data cannot answer the "
                               "rare-ad question; on a file large enough that its lowest-rate ads keep at least 10 "
                               "evaluation clicks each, keep those ads with `--set ctr.datasets.avazu.filter.mode="
                               "bottom_k --set ctr.datasets.avazu.filter.metric=rate` (check first with `le-ray "
                               "prepare --profile avazu_sample --set ctr.datasets.avazu.filter.mode=bottom_k")
    assert lines[1].startswith("**LE vs BCE, rarest tested ad (1–10 %).** Ad 18993")  # 17753 was excluded
    assert "lr_decay 0.9995 for LE vs 0.9999 for BCE" in lines[1]
    caveats = text.split("### Caveats\n", 1)[1].split("\n## ", 1)[0]
    bullets = [x for x in caveats.splitlines() if x.startswith("- ")]
    assert [b.startswith("- Audit warning `") for b in bullets[:2]] == [True, True]
    assert sum("`settings_differ`" in b for b in bullets) == 1 and sum("`few_eval_clicks`" in b for b in bullets) == 1
    assert sum(b.startswith("- One train/evaluation split serves all 6 seeds") for b in bullets) == 1
    assert sum(b.startswith("- Each holm correction bounds the chance of any false positive within one family") and
               "nothing corrects across the 6 families (3 comparison(s) × metrics and ads)" in b for b in bullets) == 1
    assert sum("tuned by `le-ray tune` with the same budget (4 samples" in b for b in bullets) == 1
    assert text.count("17753 (3 train / 2 eval clicks)") == 1  # the ad list appears once
    # predictions never reach 0.5 on one fixed split: accuracy is constant, uninformative, out of the family
    tests = pl.read_csv(store.root / "report" / "tables" / "metric_tests_LE_vs_BCE.csv")
    acc = tests.filter(pl.col("metric") == "accuracy").row(0, named=True)
    assert acc["informative"] is False and (acc["p_adjusted"] is None or np.isnan(acc["p_adjusted"]))
    assert "accuracy is uninformative for LE vs BCE" in text
    assert "over the 8 informative metrics of LE vs BCE" in text
    assert set(_per_ad_csvs(store, values)) >= {"condition_tests_focal_vs_BCE.csv", "per_condition_pooled_focal.csv"}
    _no_sentence_twice(text)
    assert "caveats:" in console and "No tested ad is below 1 %" in console
    # the ratios read against the evaluation noise of ad 18993 (90 clicks in 1,500 rows) and focal's shift (×0.8)
    from scipy.stats import binomtest

    import re

    readings = next(x for x in lines if x.startswith("**Reading these ratios.**"))
    k = int(re.search(r"Ad 18993's evaluation rate rests on (\d+) clicks in 1,500 rows", readings).group(1))
    ci = binomtest(k, 1500).proportion_ci(confidence_level=0.95, method="wilson")
    assert (f"(95% Wilson interval) would give a calibrated model a ratio of {ci.low * 1500 / k:.2f}–"
            f"{ci.high * 1500 / k:.2f}, so") in readings
    assert f"its training rate is 6 %, {0.06 * 1500 / k:.2f}× the evaluation rate" in readings
    shift = re.search(r"usually those clicked most often\), focal predicts (0\.\d\d)× the evaluation click rate "
                      r"\(under-predicts overall\)", readings)
    assert shift and 0.7 < float(shift.group(1)) < 0.85  # drawn at 0.8 × the rate
    assert "LE predicts" not in readings  # 1.02×: within 10 % of 1
    assert "| metric | n | n_nonzero |" in text and "count = the ad's evaluation rows (the one split every seed " \
                                                  "shares)" in text


def test_console_table_names_the_csv_when_columns_are_cut():
    from le_ray.report.sweep import console_table

    wide = pl.DataFrame({f"column_{j}": [1.0] for j in range(12)})
    cut = console_table(wide, "metric_tests_LE_vs_BCE.csv", width=40)
    assert cut.splitlines()[-1].endswith("; see report/tables/metric_tests_LE_vs_BCE.csv)")
    assert "more columns: column_" in cut.splitlines()[-1]
    assert "see report" not in console_table(wide, "x.csv", width=1000)


def test_tuning_section_states_the_budget_record_of_the_tune_runner():
    from le_ray.report.tuning import tuning_markdown

    summary = _tune_summary(["bce", "focal"])
    unequal = "The losses were NOT tuned with the same budget: 4 samples each, epochs per loss 3 (BCE), 5 (focal)."
    text = "\n".join(tuning_markdown({**summary, "budget": {"same": False, "sentence": unequal}}, None, Path(".")))
    assert unequal in text and "Each loss was tuned with the same budget" not in text
    legacy = "\n".join(tuning_markdown(summary, None, Path(".")))  # a summary written before the budget record
    assert "Each loss was tuned with 4 samples of its search space" in legacy


@pytest.mark.parametrize("switch", ["plots.enabled=false", "output.save_plots=false"])
def test_report_draws_no_figure_when_plots_are_switched_off(tmp_path, switch):
    factors = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 1.4])}
    store, _ = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both", switch], QUICK_RATES, factors,
                             ["0", "1", "2", "3"], rows=3000)
    text, _ = _build(store)
    assert "## Verdict" in text and "![" not in text
    assert not list((store.root / "report").rglob("*.png"))


# ------------------------------------------------- stopped sweeps and seeds too few to test (review findings)


@pytest.mark.parametrize("stored", ["le_only", "disjoint"])
def test_stopped_sweep_says_no_comparison_is_possible_yet_not_that_ads_had_too_few_clicks(tmp_path, stored):
    """Trials run LE-first: a stop leaves LE trials only (or seeds no two losses share); the audit excluded no ad."""
    factors = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 1.4])}
    keep = {"le_only": lambda loss, seed: loss == "localized_entropy" and seed < 3,
            "disjoint": lambda loss, seed: (seed < 2) == (loss == "bce") and seed < 5}[stored]
    store, _ = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both"], QUICK_RATES, factors,
                             ["0", "1", "2", "3"], rows=3000, keep=keep)
    text, console = _build(store)
    verdict = text.split("## Verdict\n", 1)[1].split("\n## ", 1)[0]
    counts = {"le_only": "BCE 0 of 10, LE 3 of 10", "disjoint": "BCE 2 of 10, LE 3 of 10"}[stored]
    assert _verdict_lines(text)[0] == (
        f"**No comparison is possible yet: no two losses share a stored seed (trials stored per loss: {counts}), so "
        "nothing could be tested: the sweep stopped early, which says nothing about the data. It can be resumed with "
        f"`le-ray repeats --name s --results-dir {store.root.parent}` (stored trials are kept), or this report "
        "rebuilt once paired seeds are stored.**")
    assert "too few clicks" not in verdict and "rare-ad question" not in text
    assert "- < 0.1 %: no tested ad; 1 untested (ad 3: no two losses share a stored seed yet)" in verdict
    assert "smallest exact" not in verdict  # no paired seed: no power to state
    assert "No comparison is possible yet" in console
    _no_sentence_twice(text)


def test_one_paired_seed_is_untestable_and_the_caveat_counts_the_seeds_stored(tmp_path):
    factors = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 1.4])}
    store, _ = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both"], QUICK_RATES, factors,
                             ["0", "1", "2", "3"], rows=3000, keep=lambda loss, seed: loss != "bce" or seed == 0)
    text, _ = _build(store)
    verdict = text.split("## Verdict\n", 1)[1].split("\n## ", 1)[0]
    assert "differ significantly" not in verdict and "not significant" not in verdict
    assert "LE vs BCE is untestable with 1 paired seed in: logloss" in verdict
    assert "untestable on all 4 with 1 paired seed" not in verdict  # ads spread over bands: counted per band
    assert verdict.count("holm p = 1, but untestable with 1 paired seed (the smallest exact two-sided Wilcoxon p at "
                         "n = 1 is 1, not below alpha 0.05)") == 1  # quickstart's rarest band holds one ad
    assert ("- With 1 paired seed (1 of 10 seeds stored) the smallest exact two-sided Wilcoxon p is 1: no test of 1 "
            "paired seed can reach alpha 0.05") in verdict
    assert "With 10 seeds" not in verdict and "10 paired seeds" not in verdict
    assert ("The losses' tables pool different seeds (BCE 1 (without seeds 1, 2, 3, 4, 5, 6, 7, 8, 9); LE 10), so "
            "one ad's rows differ across them") in text  # the pooled per-ad tables sum each loss's own seeds
    _no_sentence_twice(text)


def test_truth_based_rate_is_named_true_rate_and_base_rate_is_the_click_rate(tmp_path):
    """One summary.md, one meaning per column name: base_rate = Σy / n (the evaluation click rate) in every table;
    the pooled true click probability Σ p_true / n is true_rate, in the per-ad tests as in the pooled tables."""
    factors = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 1.4])}
    store, records = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both", "repeats.num_runs=6"],
                                   QUICK_RATES, factors, ["0", "1", "2", "3"], rows=3000)
    text, console = _build(store)
    folder = store.root / "report" / "tables"
    tests = pl.read_csv(folder / "condition_tests_LE_vs_BCE.csv").sort("condition")
    assert "true_rate" in tests.columns and "base_rate" not in tests.columns
    sums = [metrics.sums_from_record(r["condition_sums"]) for r in records if r["loss"] == "bce"]
    by_hand = sum(s.sum_t for s in sums) / sum(s.n for s in sums)  # the data are redrawn per seed: pooled
    assert tests["true_rate"].to_numpy() == pytest.approx(by_hand[tests["condition"].to_numpy()], rel=1e-12)
    pooled = pl.read_csv(folder / "per_condition_pooled_bce.csv").sort("condition")
    assert pooled["true_rate"].to_numpy() == pytest.approx(by_hand, rel=1e-12)
    assert pooled["base_rate"].to_numpy() == pytest.approx(sum(s.sum_y for s in sums) / sum(s.n for s in sums))
    assert "true_rate" in pl.read_csv(folder / "calibration_ratio_by_seed.csv").columns
    header = "| ad_id | count | true_rate | baseline_gap | candidate_gap |"
    assert text.split("### Per-ad calibration (LE vs BCE)", 1)[1].split("\n## ", 1)[0].count(header) == 1
    assert "true_rate = the ad's pooled true click probability" in text
    assert "true_rate" in console.split("per-ad calibration tests", 1)[1]


def test_trials_that_ran_on_mixed_hardware_or_precision_get_a_caveat():
    from le_ray.report.summary_md import mixed_runtime_lines
    from le_ray.report.sweep import _ran_on

    alike = [{"device": "cuda:0 (NVIDIA H200)", "matmul_precision": "high"},
             {"device": "cuda:1 (NVIDIA H200)", "matmul_precision": "high"}]
    assert _ran_on(alike) == {"device": {"cuda": 2}, "matmul_precision": {"high": 2}, "torch_threads": {}}
    assert mixed_runtime_lines(_ran_on(alike)) == []
    mixed = [*alike, {"device": "cpu (no accelerator)", "matmul_precision": "highest"}]
    lines = mixed_runtime_lines(_ran_on(mixed))
    assert len(lines) == 1
    assert ("device kinds cpu (1), cuda (2); float32 matmul precisions high (2), highest (1) trials" in lines[0])
    # a CPU sweep resumed with another ray.cpus_per_trial: the thread count orders the float sums (reproducibility
    # audit: 1 vs 2 threads moved 120 numbers of one BCE record, up to 1.6e-5 relative); a GPU trial's host threads
    # and a record from before torch_threads was stored are not counted
    cpu = [{"device": "cpu (the Ray task holds no GPU)", "matmul_precision": "highest", "torch_threads": t}
           for t in (1, 1, 2, None)]
    assert _ran_on(cpu)["torch_threads"] == {"1": 2, "2": 1}
    assert mixed_runtime_lines(_ran_on(cpu)) == [
        "The stored trials ran on more than one setting: CPU thread counts 1 (2), 2 (1) trials. Their numbers differ "
        "by float rounding, far below the seed-to-seed spread, but not every seed of a comparison ran alike."]
    assert mixed_runtime_lines(_ran_on([{**r, "torch_threads": t} for r, t in zip(alike, (4, 8))])) == []


def test_the_multiplicity_caveat_names_what_each_correction_bounds():
    from le_ray.report.summary_md import multiplicity_caveat

    assert multiplicity_caveat("holm", 1) == (
        "Each holm correction bounds the chance of any false positive within one family (a comparison's informative "
        "metrics, or its tested ads); nothing corrects across the 2 families (1 comparison(s) × metrics and ads), so "
        "the chance of at least one false positive somewhere in this report is higher than alpha.")
    assert multiplicity_caveat("bh", 3).startswith("Each bh correction bounds the false discovery rate within one "
                                                   "family, not the chance of any false positive")
    assert multiplicity_caveat("none", 2).startswith("No correction is applied (repeats.per_condition_correction is "
                                                     "none): each p stands alone across the 4 families")


def test_ece_small_leaves_a_comparisons_family_when_its_trials_mixed_its_two_rules():
    """Avazu sample: BCE's seeds 43 and 47 had a prediction <= 0.01 and took the 19-25 rows below it, every other
    trial its model's 10 % quantile (~937 rows); the paired test compared the two anyway, inside the Holm family."""
    from le_ray.report.sweep_stats import _with_adjusted, _without_mixed_ece_small

    tests = pl.DataFrame({"metric": ["logloss", "ece_small"], "p_value": [0.01, 0.02], "informative": [True, True]})
    trials = pl.DataFrame({"loss": ["bce", "bce", "localized_entropy", "localized_entropy", "focal"],
                           "seed": [42, 43, 42, 43, 42], "ece_small_threshold": [0.01, 0.036, 0.05, 0.04, 0.01]})
    mixed = _with_adjusted(_without_mixed_ece_small(tests, trials, ("bce", "localized_entropy"), 0.01), "holm")
    assert mixed["informative"].to_list() == [True, False] and mixed["left_out"][1].startswith("its trials mixed")
    assert mixed["p_adjusted"][0] == pytest.approx(0.01) and np.isnan(mixed["p_adjusted"][1])  # a family of one
    one_rule = _without_mixed_ece_small(tests, trials, ("localized_entropy", "localized_entropy"), 0.01)
    assert one_rule.equals(tests)  # every threshold a quantile: one rule, kept in the family
    assert _without_mixed_ece_small(tests, trials.drop("ece_small_threshold"), ("bce", "focal"), 0.01).equals(tests)


# ------------------------------------------------- the decades review: figure titles, the rare-ad caption, per-ad rows


def test_paired_delta_figure_title_names_the_favoured_loss_once():
    """The sweep titled the figure "(> 0 favours LE)" and the plot added "(delta > 0 favours the candidate)": the
    direction twice. One note now, the one naming the loss."""
    from le_ray.report import plots
    from le_ray.report.sweep import _pair_jobs

    records = [_record(loss, s, shift) for s in (1, 2, 3) for loss, shift in (("bce", 0.05), ("localized_entropy", 0))]
    jobs = _pair_jobs(plots, 30, _tables(records), load_config(sets=["repeats.bootstrap_samples=100"]))
    _, job = jobs["deltas_LE_vs_BCE"]
    title = job.draw(*job.args, **job.kwargs)._suptitle.get_text()
    assert title == "LE vs BCE: paired metric deltas by seed (delta > 0 favours LE)"
    _, gaps = jobs["condition_gaps_LE_vs_BCE"]  # 3 seeds: no per-ad test can reach alpha
    assert gaps.args[0]["untestable"].to_list() == [True] * gaps.args[0].height


@pytest.mark.parametrize("truth, resampled, reasons", [
    (False, False, None),
    (True, False, ["the reference is the true click probability of the synthetic rows, free of evaluation noise"]),
    (False, True, ["the data are redrawn per seed (repeats.resample_data), so the evaluation split and its clicks "
                   "differ per seed"]),
    (True, True, ["the reference is the true click probability", "the data are redrawn per seed"])])
def test_rare_ad_caption_describes_the_noise_band_only_where_the_figure_draws_one(truth, resampled, reasons):
    """The caption described a grey evaluation-noise band in every report; the figure draws one only against the
    evaluation clicks of one fixed split (the same rule, :func:`noise_bands`, now decides both)."""
    from le_ray.report.summary_md import _noise_caption, noise_bands

    caption = _noise_caption(truth, resampled)
    assert noise_bands(truth, resampled) == (reasons is None)
    if reasons is None:
        assert caption.startswith("A grey band behind an ad") and "No evaluation-noise band" not in caption
    else:
        assert caption.startswith("No evaluation-noise band is drawn: ") and "grey band" not in caption
        assert all(r in caption for r in reasons)


def test_pooled_per_ad_rows_follow_the_true_rate_and_mark_the_ads_left_untested(tmp_path):
    """Synthetic rows: the pooled tables listed ads by their evaluation click rate (noisy at tiny rates: an ad came
    before one with a higher true rate), and an ad the audit left out (too few clicks) showed its huge ratio like a
    tested one. Rows now follow true_rate and a tested column marks the excluded ad; the rare-ad caption says why no
    band is drawn (truth reference, data redrawn per seed), as the figure's job does."""
    from le_ray.report.sweep import build_report, render_here
    from le_ray.sweep.audit import Finding

    rates = np.array([0.02, 0.0019, 0.0021, 0.0005])
    factors = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 30.0])}
    findings = [Finding("warning", "few_eval_clicks", "1 condition(s) with fewer than 10 expected evaluation clicks: 3",
                        ("repeats.min_eval_clicks",), (3,))]
    store, _ = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both"], rates, factors, ["0", "1", "2", "3"],
                             rows=3000, findings=findings)
    jobs = []
    text = build_report(store.root, echo=lambda *_: None,
                        render=lambda js: (jobs.extend(js), render_here(js))[1]).read_text()
    picture = text.split("## Calibration by base rate (the rare-ad picture)", 1)[1].split("\n## ", 1)[0]
    assert "No evaluation-noise band is drawn: the reference is the true click probability" in picture
    assert "grey band" not in picture
    assert [j.kwargs["noise"] for j in jobs if j.draw.__name__ == "plot_calibration_by_rate"] == [False]
    pooled = text.split("## Per ad, pooled over seeds", 1)[1]
    for loss in ("BCE", "LE"):
        table = pooled.split(f"### {loss}\n", 1)[1].split("\n\n", 2)[1]
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
        assert table.splitlines()[0].startswith("| ad_id | tested | count | base_rate | true_rate |")
        assert [r[0] for r in rows] == ["0", "2", "1", "3"]  # by true rate, descending
        assert [r[1] for r in rows] == ["yes", "yes", "yes", "no (too few clicks)"]
    csv = pl.read_csv(store.root / "report" / "tables" / "per_condition_pooled_bce.csv")
    assert csv["condition"].to_list()[:3] == [0, 1, 2]  # the click rates put ad 1 before ad 2 (true rate 1.1×)
    assert "rows by true_rate" in pooled
    _no_sentence_twice(text)


def test_the_reason_ads_were_left_out_names_min_eval_clicks_only_when_that_rule_covers_them():
    """An ad without a training click is left out whatever its evaluation clicks: the verdict's reason then stays
    general; with repeats.min_eval_clicks 0 the click rule reads as 'fewer than 1' (no click), never 'fewer than 0'."""
    from types import SimpleNamespace

    from le_ray.config import load_config
    from le_ray.report.summary_md import _exclusion_why

    def ctx(findings, excluded, *sets):
        audit = {"findings": [{"code": c, "conditions": js} for c, js in findings], "excluded_conditions": excluded}
        return SimpleNamespace(manifest={"audit": audit}, cfg=load_config(sets=list(sets)),
                               tables=SimpleNamespace(truth=False))
    few = [("few_eval_clicks", [0, 1])]
    assert _exclusion_why(ctx(few, [0, 1])).startswith("fewer than 10 evaluation clicks (`repeats.min_eval_clicks`")
    assert _exclusion_why(ctx([*few, ("no_train_click", [2])], [0, 1, 2])).startswith("too few clicks to test (no training click")
    none = ctx([("no_eval_click", [3])], [3], "repeats.min_eval_clicks=0")
    assert _exclusion_why(none).startswith("fewer than 1 evaluation click (")


@pytest.mark.parametrize("clicks, said", [(0, "at least 1 evaluation click each"),
                                          (1, "at least 1 evaluation click each"),
                                          (10, "at least 10 evaluation clicks each")])
def test_the_rare_ad_advice_never_asks_for_0_evaluation_clicks(clicks, said):
    """Avazu sample with repeats.min_eval_clicks=0: the headline advised "keep at least 0 evaluation clicks each"."""
    from le_ray.report.summary_md import rare_advice

    advice = rare_advice(load_config(profile="avazu_sample", sets=[f"repeats.min_eval_clicks={clicks}"]))
    assert said in advice and "at least 0 " not in advice


def test_the_noise_band_caption_takes_its_confidence_from_the_bottom_line(monkeypatch):
    """The caption wrote "95%" by hand beside bottom_line.NOISE_CONFIDENCE, which sets the band it describes. The
    caption must follow the bottom line's constant itself (a local copy in summary_md passed the earlier check)."""
    from le_ray.report import bottom_line, summary_md

    assert summary_md.NOISE_CONFIDENCE is bottom_line.NOISE_CONFIDENCE
    said = f"the {bottom_line.NOISE_CONFIDENCE:.0%} Wilson range of a calibrated model's ratio"
    assert said in summary_md._noise_caption(False, False)
    monkeypatch.setattr(summary_md, "NOISE_CONFIDENCE", 0.9)
    assert "the 90% Wilson range of a calibrated model's ratio" in summary_md._noise_caption(False, False)


@pytest.mark.parametrize("truth", [False, True])
def test_an_ad_without_an_evaluation_click_is_marked_unmeasured_only_against_the_click_rate(truth):
    """Avazu sample (min_eval_clicks 0): ad 23160 had no evaluation click, so its "rate" 0 put it in the band < 0.1 %
    and among the rare ads; the ads table now marks it (evaluation-click reference only) with its training rate."""
    from types import SimpleNamespace

    from le_ray.report.summary_md import _ads

    calib = pl.DataFrame({"loss": ["bce"] * 4, "seed": [0, 1, 0, 1], "condition": [0, 0, 1, 1],
                          "ad_id": ["23160"] * 2 + ["21665"] * 2, "ratio": [float("inf")] * 2 + [1.0, 1.1],
                          "n": [30] * 4, "ref_sum": [0.0, 0.0, 1.0, 1.0], "base_rate": [0.0, 0.0, 1 / 30, 1 / 30]})
    audit = {"conditions": [{"condition": 0, "train_rows": 100, "train_clicks": 27}], "findings": [],
             "excluded_conditions": [0], "data_draws": 1}
    ctx = SimpleNamespace(tables=SimpleNamespace(calibration=calib, condition_tests={}, truth=truth),
                          manifest={"audit": audit}, cfg=load_config(sets=["repeats.resample_data=false"]))
    ads = _ads(ctx).sort("condition")
    assert ads["no_eval_click"].to_list() == ([False, False] if truth else [True, False])
    assert ads["train_rate"].to_list() == [0.27, None]


def test_a_sweep_resumed_with_other_code_says_so(tmp_path):
    import json

    factors = {"bce": np.ones(4), "localized_entropy": np.ones(4)}
    store, _ = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both", "plots.enabled=false"], QUICK_RATES,
                             factors, ["0", "1", "2", "3"], rows=500)
    manifest = json.loads((store.root / "manifest.json").read_text())
    earlier = [{"created": "2026-12-01T00:00:00Z", "le_ray_version": "0.0.9", "git_commit": "0123456789abcdef"}]
    (store.root / "manifest.json").write_text(json.dumps({**manifest, "le_ray_version": "0.1.0", "git_commit": "fedcba",
                                                          "earlier_runs": earlier}))
    text, _ = _build(store)
    assert "| le_ray | 0.1.0 (commit fedcba); earlier run 2026-12-01T00:00:00Z: 0.0.9 (commit 0123456789ab) |" in text
    assert ("- The sweep was resumed with other code or packages than an earlier run of it (2026-12-01T00:00:00Z: "
            "le_ray 0.0.9 (commit 0123456789ab);") in text


def test_a_sweep_stopped_before_its_first_trial_is_reported_as_such(tmp_path):
    from le_ray.config import to_dict
    from le_ray.errors import ResultsError
    from le_ray.report.sweep import build_report
    from le_ray.sweep.store import SweepStore

    store = SweepStore.open(tmp_path, "early")
    store.record_run(to_dict(load_config(profile="quickstart")), ["--profile", "quickstart"])
    with pytest.raises(ResultsError, match=r"stopped before its first trial \(it has no manifest.json yet\), so there "
                                           r"is nothing to report; resume it with `le-ray repeats --name early"):
        build_report(store.root)


def test_non_finite_stored_values_leave_their_pairs_out_and_are_named(tmp_path):
    """A NaN prediction sum was counted as a prediction of 0 in the per-ad test, and a null metric was dropped from
    its test without a word (stats audit)."""
    import json

    factors = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 1.4])}
    store, records = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both", "plots.enabled=false"],
                                   QUICK_RATES, factors, ["0", "1", "2", "3"], rows=3000)
    path = store.trials_dir / "localized_entropy-4.json"
    record = json.loads(path.read_text())
    record["metrics"]["logloss"] = None
    record["condition_sums"]["sum_p"][3] = float("nan")
    path.write_text(json.dumps(record))
    text, _ = _build(store)
    assert ("- Some stored values are not finite (null, NaN or infinite): LE seed 4: logloss, ad 3's predictions. "
            "Each test leaves that seed's pair out") in text
    cond = pl.read_csv(store.root / "report" / "tables" / "condition_tests_LE_vs_BCE.csv")
    assert cond.filter(pl.col("condition") == 3)["n"][0] == 9 and set(cond.filter(pl.col("condition") != 3)["n"]) == {10}


def test_a_report_cut_short_leaves_no_stale_summary_beside_new_tables(tmp_path, monkeypatch):
    """resume audit: a stop during the report left the old summary.md ("no comparison possible yet") beside the new
    tables of every trial."""
    import le_ray.report.sweep as sweep_report

    factors = {"bce": np.ones(4), "localized_entropy": np.ones(4)}
    store, _ = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both", "plots.enabled=false"], QUICK_RATES,
                             factors, ["0", "1", "2", "3"], rows=500)
    _build(store)
    assert (store.root / "summary.md").is_file()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_report, "_write_tables", stopped)
    with pytest.raises(KeyboardInterrupt):
        sweep_report.build_report(store.root, echo=lambda *a: None)
    assert (store.root / "trials.parquet").is_file() and not (store.root / "summary.md").exists()


def test_summary_md_shows_at_most_max_ad_rows_of_a_per_ad_table_and_says_where_the_rest_are(tmp_path, monkeypatch):
    """Scalability audit: a 20,000-ad sweep's summary.md was 82,000 lines (every per-ad table in full with
    per_condition_top_k 0); now up to MAX_AD_ROWS rows each (here patched to 2 of 4 ads), naming the file of the rest."""
    import le_ray.report.summary_md as summary_md

    monkeypatch.setattr(summary_md, "MAX_AD_ROWS", 2)
    factors = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 1.4])}
    store, _ = _stored_sweep(tmp_path, "quickstart", ["training.loss_mode=both", "repeats.num_runs=6"], QUICK_RATES,
                             factors, ["0", "1", "2", "3"], rows=3000)
    text, _ = _build(store)
    assert "_2 more rows in `report/tables/condition_tests_LE_vs_BCE.csv`._" in text
    assert "_2 more rows in `manifest.json` (audit.conditions)._" in text
    assert text.count("_2 more rows in `report/tables/per_condition_pooled_") == 2  # both losses' pooled tables
    monkeypatch.setattr(summary_md, "MAX_AD_ROWS", 500)
    assert "more rows in" not in _build(store)[0]  # 4 ads: every one shown
