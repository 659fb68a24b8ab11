"""Two stored sweeps compared arm against arm (le_ray/report/sweep_pair.py, le-ray compare-sweeps): the tests are
those scipy computes on the paired per-seed values, the settings that differ are named, and pairs on different data
are refused before any statistic."""

import json

import numpy as np
import polars as pl
import pytest
from scipy.stats import wilcoxon

from le_ray import metrics
from le_ray.errors import UserError
from le_ray.report.sweep_pair import compare_arms, load_arm, pair_markdown, setting_changes
from le_ray.runners.compare_sweeps import main

from .test_sweep_report import QUICK_RATES, _stored_sweep

VALUES = ["0", "1", "2", "3"]
COLD = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.05, 1.6])}
WARM = {"bce": np.ones(4), "localized_entropy": np.array([1.0, 1.0, 1.0, 1.05])}


def _sweep(tmp_path, name, factors, *sets):
    store, records = _stored_sweep(tmp_path / name, "quickstart", ["training.loss_mode=both", *sets], QUICK_RATES,
                                   factors, VALUES, rows=3000)
    return store, records


def test_the_tests_are_scipys_on_the_paired_values_and_the_verdict_names_the_arms(tmp_path):
    (a, ra), (b, rb) = _sweep(tmp_path, "cold", COLD), _sweep(tmp_path, "warm", WARM,
                                                                "training.cross_batch.warm_start=true")
    pair = compare_arms(load_arm(a.root, "le", "baseline"), load_arm(b.root, "le", "candidate"))
    le = {(r["seed"], name): r for name, recs in (("a", ra), ("b", rb)) for r in recs if r["loss"] == "localized_entropy"}
    seeds = sorted({s for s, _ in le})
    tests = pair.metric_tests.filter(pl.col("metric") == "logloss").row(0, named=True)
    delta = np.array([le[s, "a"]["metrics"]["logloss"] - le[s, "b"]["metrics"]["logloss"] for s in seeds])
    assert tests["n"] == len(seeds) and tests["mean_delta"] == pytest.approx(delta.mean())
    assert tests["p_value"] == pytest.approx(wilcoxon(delta).pvalue)
    # per-ad: gap_s = |Σp − Σp_true| / n of the rarest ad; delta = baseline's gap − candidate's
    gaps = {k: [abs(s.sum_p[3] - s.sum_t[3]) / s.n[3] for s in
                (metrics.sums_from_record(le[seed, k]["condition_sums"]) for seed in seeds)] for k in ("a", "b")}
    ad3 = pair.condition_tests.filter(pl.col("ad_id") == "3").row(0, named=True)
    assert ad3["delta_mean"] == pytest.approx(np.mean(np.subtract(gaps["a"], gaps["b"])))
    assert ad3["p_value"] == pytest.approx(wilcoxon(np.subtract(gaps["a"], gaps["b"])).pvalue)
    title, sentences = pair.verdict.bottom[0]
    text = " ".join(sentences)
    assert title.startswith("LE (warm/s) vs LE (cold/s), rarest tested ad") and "LE (warm/s)'s mean gap is smaller" in text
    assert ": significant at alpha" in text  # 1.6× vs 1.05× the truth on every seed
    assert "training.cross_batch.warm_start: False → True" in pair.verdict.caveats[0]
    assert "differ in one setting" in pair.verdict.caveats[0] and "any of them" not in pair.verdict.caveats[0]
    assert "rather than the loss" not in " ".join(x for _, s in pair.verdict.bottom for x in s)


def test_changes_list_each_differing_setting_and_only_sections_the_losses_read(tmp_path):
    (a, _), (b, _) = _sweep(tmp_path, "a", COLD), _sweep(tmp_path, "b", COLD, "training.by_loss.bce.by_source.synthetic.lr=0.01",
                                                          "training.focal.gamma=3", "model.dropout=0.1")
    same = setting_changes(load_arm(a.root, "le", "baseline"), load_arm(b.root, "le", "candidate"))
    assert same == ["model.dropout: 0.2 → 0.1"]  # BCE's lr and focal's gamma do not touch LE's trials
    bce = setting_changes(load_arm(a.root, "bce", "baseline"), load_arm(b.root, "bce", "candidate"))
    assert bce == ["model.dropout: 0.2 → 0.1", "training.lr: 0.004 → 0.01"]
    across = setting_changes(load_arm(a.root, "bce", "baseline"), load_arm(a.root, "le", "candidate"))
    assert across[0] == "loss: BCE → LE"
    caveat = compare_arms(load_arm(a.root, "bce", "baseline"), load_arm(b.root, "bce", "candidate")).verdict.caveats[0]
    assert "differ in 2 settings" in caveat and "may come from any of them" in caveat


def test_arms_without_a_tested_rare_ad_say_the_data_cannot_answer_the_rare_ad_question(tmp_path):
    """UX audit: the sweep's headline said so, the comparison of two such sweeps did not."""
    common = 10 ** np.array([-1.0, -1.2, -1.5, -1.9])  # every ad at 1.2 % or more
    arms = [_stored_sweep(tmp_path / n, "quickstart", ["training.loss_mode=both"], common, f, VALUES, rows=3000)[0]
            for n, f in (("a", COLD), ("b", WARM))]
    pair = compare_arms(load_arm(arms[0].root, "le", "baseline"), load_arm(arms[1].root, "le", "candidate"))
    assert len(pair.verdict.headline) == 1
    assert pair.verdict.headline[0].startswith("No tested ad is below 1 % (true click probability")
    assert "cannot answer the rare-ad question" in pair_markdown(pair)
    (a, _), (b, _) = _sweep(tmp_path, "rare-a", COLD), _sweep(tmp_path, "rare-b", WARM)  # ad 3 at 0.05 %: tested
    assert compare_arms(load_arm(a.root, "le", "baseline"), load_arm(b.root, "le", "candidate")).verdict.headline == []


def test_one_setting_is_not_called_the_cause_when_the_sweeps_ran_other_code_or_devices(tmp_path):
    """Review: with one setting changed, the caveat called a significant difference that setting's effect even when
    the two sweeps ran another le_ray commit, other packages or other devices."""
    import json

    (a, _), (b, _) = _sweep(tmp_path, "a", COLD), _sweep(tmp_path, "b", WARM, "training.cross_batch.warm_start=true")
    manifest = json.loads((b.root / "manifest.json").read_text())
    (b.root / "manifest.json").write_text(json.dumps({**manifest, "git_commit": "feedface" * 5,
                                                      "packages": {"torch": "2.11.0+cu130"}}))
    caveat = compare_arms(load_arm(a.root, "le", "baseline"), load_arm(b.root, "le", "candidate")).verdict.caveats[0]
    assert "differ in one setting" in caveat and "that setting's effect" not in caveat
    assert "le_ray commit None → feedfacefeed" in caveat and "torch None → 2.11.0+cu130" in caveat
    assert "may come from either" in caveat


def test_the_runs_differences_name_thread_counts_and_matmul_precisions():
    """Review: compare-sweeps named another commit, packages or devices, but not two CPU sweeps run with other
    torch thread counts (they order the float sums) or another float32 matmul precision."""
    from pathlib import Path

    from le_ray.config import load_config
    from le_ray.report.sweep_pair import Arm, run_differences

    cfg = load_config(profile="quickstart")
    records = [{"device": "cpu (no accelerator)", "matmul_precision": "highest", "torch_threads": 1}] * 2

    def arm(recs):
        return Arm(Path("x"), cfg, "le", {"git_commit": "c" * 40}, recs, "x")

    assert run_differences(arm(records), arm(records)) == []
    other = [{**r, "torch_threads": 2} for r in records]
    assert run_differences(arm(records), arm(other)) == ["torch threads 1 → 2"]
    old = [{k: v for k, v in r.items() if k != "torch_threads"} for r in records]  # stored before the field
    tf32 = [{**r, "matmul_precision": "high"} for r in old]
    assert run_differences(arm(old), arm(tf32 + records[:1])) == [
        "float32 matmul precisions highest → high, highest", "torch threads not recorded → 1, not recorded"]


def test_identical_arms_say_that_only_noise_differs(tmp_path):
    (a, _), (b, _) = _sweep(tmp_path, "a", COLD), _sweep(tmp_path, "b", COLD)
    pair = compare_arms(load_arm(a.root, "le", "baseline"), load_arm(b.root, "le", "candidate"))
    assert "trained with the same settings" in pair.verdict.caveats[0]
    assert not pair.metric_tests["informative"].any()  # every paired delta is 0: nothing to test


def test_different_data_are_refused_by_fingerprint_and_by_the_stored_sums(tmp_path):
    (a, _), (b, _) = _sweep(tmp_path, "a", COLD), _sweep(tmp_path, "b", WARM)
    for store, prints in ((a, {"0": "f0", "1": "f1"}), (b, {"0": "f0", "1": "XX"})):
        manifest = json.loads((store.root / "manifest.json").read_text())
        (store.root / "manifest.json").write_text(json.dumps({**manifest, "data_fingerprints": prints}))
    with pytest.raises(UserError, match=r"seed 1 on different data \(data fingerprint f1 for LE \(a/s\), XX for LE \(b/s\)\)"):
        compare_arms(load_arm(a.root, "le", "baseline"), load_arm(b.root, "le", "candidate"))
    (c, _) = _sweep(tmp_path, "c", WARM, "repeats.resample_data=false")  # one split for every seed: other rows
    manifest = json.loads((a.root / "manifest.json").read_text())  # no fingerprints on one side: the sums decide
    (a.root / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "data_fingerprints"}))
    with pytest.raises(UserError, match=r"evaluated seed 1 on different rows \(ad 0: n 3000 vs 3000, sum_y \d+ vs \d+, sum_t 30 vs 30\)"):
        compare_arms(load_arm(a.root, "le", "baseline"), load_arm(c.root, "le", "candidate"))


def test_the_command_writes_the_summary_and_tables_and_refuses_bad_arguments(tmp_path, capsys, monkeypatch):
    (a, _), (b, _) = _sweep(tmp_path, "cold", COLD), _sweep(tmp_path, "warm", WARM)
    monkeypatch.chdir(tmp_path)
    assert main([str(a.root), str(b.root)]) == 0  # LE by default: both sweeps train it
    out = tmp_path / "comparison" / "s-le_vs_s-le"
    printed = " ".join(capsys.readouterr().out.split())  # the verdict is wrapped to the terminal
    assert "LE (warm/s) vs LE (cold/s), rarest tested ad" in printed and f"comparison: {out / 'summary.md'}" in printed
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# le_ray comparison of two sweeps: LE (warm/s) vs LE (cold/s)")
    tests = pl.read_csv(out / "tables" / "metric_tests.csv")
    assert set(tests["candidate"]) == {"LE (warm/s)"} and (out / "tables" / "condition_tests.csv").is_file()
    assert set(pl.read_csv(out / "tables" / "calibration_ratio_by_seed.csv")["arm"]) == {"LE (cold/s)", "LE (warm/s)"}
    (out / "tables" / "stale.csv").write_text("x\n1\n")  # an earlier comparison's table in a reused folder
    assert main([str(a.root), str(b.root), "--out", str(out)]) == 0
    assert not (out / "tables" / "stale.csv").exists() and (out / "summary.md").is_file()
    capsys.readouterr()
    for argv, message in (([str(a.root), str(tmp_path)], "is not a le_ray sweep folder (no manifest.json)"),
                          ([str(a.root), str(b.root), "--loss", "focal"], "trains BCE, LE, not focal"),
                          ([str(a.root), str(b.root), "--loss", "nope"], "--loss: got \"nope\""),
                          ([str(a.root), str(a.root)], "both arms are LE (s)")):
        assert main(argv) == 2
        assert message in capsys.readouterr().err, argv


def test_the_caveats_name_unpaired_seeds_excluded_ads_findings_and_non_finite_values(tmp_path):
    """What the sweep report says, compare-sweeps says too (review): seeds of one arm only, ads an audit left out,
    each sweep's audit findings (once when both hold them) and stored values that are not finite."""
    (a, _), (b, _) = _sweep(tmp_path, "a", COLD), _sweep(tmp_path, "b", WARM)
    (b.root / "trials" / "localized_entropy-9.json").unlink()  # seed 9 only in a
    record = json.loads((b.root / "trials" / "localized_entropy-4.json").read_text())
    record["metrics"]["logloss"] = None
    (b.root / "trials" / "localized_entropy-4.json").write_text(json.dumps(record))
    for store, extra in ((a, {"code": "few_eval_clicks", "message": "ad 0 has few clicks"}),
                         (b, {"code": "fixed_split", "message": "one split"})):
        manifest = json.loads((store.root / "manifest.json").read_text())
        findings = [{"severity": "warning", "code": "le_history_warmup", "message": "windows start empty",
                     "keys": []}, {"severity": "warning", "keys": [], **extra},
                    {"severity": "warning", "code": "settings_differ", "message": "lr differs between the losses",
                     "keys": []},  # about BCE vs LE within one sweep: nothing to do with LE vs LE
                    {"severity": "error", "code": "few_steps", "message": "BCE takes 1 step per epoch", "keys": []}]
        audit = {**manifest["audit"], "findings": findings, "excluded_conditions": [0] if store is a else []}
        (store.root / "manifest.json").write_text(json.dumps({**manifest, "audit": audit}))
    pair = compare_arms(load_arm(a.root, "le", "baseline"), load_arm(b.root, "le", "candidate"))
    caveats = "\n".join(pair.verdict.caveats)
    assert "Seeds stored in one arm only are left out of every test (seeds 9 only in LE (a/s))." in caveats
    assert "Either sweep's audit left ad 0 (" in caveats and 0 not in pair.condition_tests["condition"].to_list()
    assert caveats.count("windows start empty") == 1 and "(both sweeps) windows start empty" in caveats
    assert "(LE (a/s)) ad 0 has few clicks" in caveats and "(LE (b/s)) one split" in caveats
    assert "lr differs between the losses" not in caveats and "BCE takes" not in caveats
    assert "Some stored values are not finite (null, NaN or infinite): LE (b/s) seed 4: logloss." in caveats
    assert "(9 of 10 seeds stored)" in caveats


def test_display_only_keys_are_no_setting_difference_and_sweeps_without_per_ad_sums_compare(tmp_path):
    (a, _), (b, _) = _sweep(tmp_path, "a", COLD), _sweep(tmp_path, "b", COLD,
                                                          "evaluation.print_per_condition_top_k=5")
    assert setting_changes(load_arm(a.root, "le", "baseline"), load_arm(b.root, "le", "candidate")) == []
    for store in (a, b):
        for path in (store.root / "trials").glob("*.json"):
            record = json.loads(path.read_text())
            path.write_text(json.dumps({**record, "condition_sums": {}}))
    pair = compare_arms(load_arm(a.root, "le", "baseline"), load_arm(b.root, "le", "candidate"))
    assert pair.condition_tests.height == 0 and pair.metric_tests.height
