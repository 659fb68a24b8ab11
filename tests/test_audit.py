"""The experiment audit on hand-made configs: each finding fires exactly when it should, error vs warning."""

import argparse
import math
import re
import shlex

import pytest

import numpy as np

from le_ray.sweep.audit import Audit, audit_experiment, batch_for_steps, expected_clicks_per_batch, setting_key
from le_ray.sweep.audit_text import SETTING_COLUMNS, audit_text, refusal, settings_table
from le_ray.cli.args import config_and_shadows, config_shadows_provenance
from le_ray.config import ConfigShadowWarning, load_config
from le_ray.data.prepare import le_base_rates, prepare_data

BASE = ["synthetic.samples_per_condition=6000", "synthetic.uniform_log10_means=[-0.8,-1,-1.1,-1.2]",
        "synthetic.uniform_log10_std=0.2", "training.loss_mode=all", "training.by_loss={}", "training.batch_size=256",
        "repeats.num_runs=9", "training.cross_batch.enabled=false", "repeats.resample_data=true"]


def _audit(*sets, shadows=()):
    cfg = load_config(sets=[*BASE, *sets])
    return audit_experiment(cfg, [prepare_data(cfg)], shadows), cfg


def _le_rates(cfg, data) -> np.ndarray:
    """LE's base rate per condition as a trial computes them (``le_base_rates`` with the config's prior)."""
    return le_base_rates(data, prior=cfg.training_for("localized_entropy").le.base_rate_prior,
                         use_true_rates=cfg.synthetic.use_true_base_rates_for_le)


def _cli_audit(*sets, profile=None):
    """The audit as a runner builds it: shadows and provenance from the parsed arguments."""
    args = argparse.Namespace(config=None, profile=profile, sets=[*BASE, *sets])
    cfg, shadows, origins = config_shadows_provenance(args)
    return audit_experiment(cfg, [prepare_data(cfg)], shadows, origins), cfg


def _one_liner(message):
    """The ``--set 'KEY=VALUE'`` a finding advises, as the argument the shell would pass."""
    return shlex.split(re.search(r"--set ('[^']+'|\S+)", message).group(1))[0]


def _codes(audit):
    return sorted({(f.severity, f.code) for f in audit.findings})


def test_sound_experiment_has_no_finding():
    audit, _ = _audit()
    assert audit.findings == [] and audit.excluded_conditions == ()
    assert "no finding" in audit_text(audit)


def test_settings_are_the_effective_ones():
    with pytest.warns(ConfigShadowWarning, match="training.by_loss.focal.batch_size = 128"):  # the layers on purpose
        audit, cfg = _audit("training.by_loss.focal.batch_size=128", "training.by_loss.focal.epochs=2")
    focal, bce = audit.settings["focal"], audit.settings["bce"]
    rows = len(prepare_data(cfg).train)
    assert (focal["batch_size"], focal["epochs"]) == (128, 2) and bce["batch_size"] == 256
    assert focal["steps_per_epoch"] == math.ceil(rows / 128) and focal["steps_total"] == 2 * math.ceil(rows / 128)


def test_few_steps_is_an_error_naming_the_most_specific_key():
    with pytest.warns(ConfigShadowWarning, match="focal.by_source.synthetic.batch_size = 5000"):
        audit, cfg = _audit("training.by_loss.focal.by_source.synthetic.batch_size=5000")
    assert _codes(audit) == [("error", "few_steps"), ("warning", "settings_differ")]
    finding = audit.errors[0]
    assert finding.keys[0] == "training.by_loss.focal.by_source.synthetic.batch_size" and "focal" in finding.message
    assert "--allow-unsound" in refusal(audit)
    with pytest.warns(ConfigShadowWarning, match="focal.by_source.synthetic.batch_size = 5000"):
        relaxed, _ = _audit("training.by_loss.focal.by_source.synthetic.batch_size=5000",
                            "repeats.min_steps_per_epoch=1")
    assert _codes(relaxed) == [("warning", "settings_differ")]


def test_few_steps_advice_is_a_one_liner_that_works():
    sets = ("training.by_loss.focal.by_source.synthetic.batch_size=5000", "training.by_loss.bce.batch_size=4000")
    with pytest.warns(ConfigShadowWarning, match="batch_size = (4000|5000) is more specific"):
        audit, _ = _audit(*sets)
    advice = {_one_liner(f.message) for f in audit.errors}
    assert len(audit.errors) == 2 and len(advice) == 1  # one command for every loss
    (assignment,) = advice
    assert assignment.startswith("training.by_loss.*.batch_size=")
    with pytest.warns(ConfigShadowWarning, match="--set training.batch_size=256 does not apply"):
        fixed, cfg = _audit(*sets, assignment)
    assert not fixed.errors
    batch = int(assignment.split("=")[1])
    assert {cfg.training_for(loss).batch_size for loss in cfg.losses} == {batch}
    assert all(s["steps_per_epoch"] >= cfg.repeats.min_steps_per_epoch for s in fixed.settings.values())


@pytest.mark.parametrize("rows,steps", [(1, 20), (19, 20), (20, 20), (6183, 20), (14058, 20), (1_000_000, 7)])
def test_batch_for_steps_is_the_largest_power_of_two_that_gives_the_steps(rows, steps):
    b = batch_for_steps(rows, steps)
    assert b >= 1 and b & (b - 1) == 0
    assert math.ceil(rows / b) >= steps or b == 1
    assert 2 * b > max(1, rows // steps)  # the next power of two would exceed rows // steps


def test_fixed_split_warns_only_when_seeds_share_the_data():
    audit, cfg = _audit("repeats.resample_data=false")
    finding = next(f for f in audit.findings if f.code == "fixed_split")
    assert finding.severity == "warning" and finding.keys == ("repeats.resample_data",)
    assert f"all {cfg.repeats.num_runs} seeds" in finding.message and "synthetic rows" in finding.message
    one_seed, _ = _audit("repeats.resample_data=false", "repeats.num_runs=1")
    assert "fixed_split" not in {f.code for f in one_seed.findings}
    assert "fixed_split" not in {f.code for f in _audit()[0].findings}


def test_settings_differ_names_each_value_and_its_source():
    audit, cfg = _cli_audit("training.by_loss.focal.lr=0.002", "training.by_loss.bce.lr_decay=0.99")
    differ = {f.message.split()[0]: f for f in audit.findings if f.code == "settings_differ"}
    assert set(differ) == {"lr", "lr_decay"} and all(f.severity == "warning" for f in differ.values())
    lr = differ["lr"].message
    assert "BCE 0.001 (shipped default)" in lr and "LE 0.001 (shipped default)" in lr and "focal 0.002 (--set)" in lr
    assert "mixes the effect of the loss" in lr
    assert set(differ["lr"].keys) == {"training.lr", "training.by_loss.focal.lr", "training.same_settings_for_all_losses"}
    steps = audit.settings["bce"]["steps_total"]
    assert f"{100 * 0.99 ** steps:.3g} % of its start lr after {steps:,} steps" in differ["lr_decay"].message
    record = {row["setting"]: row["losses"] for row in audit.to_record()["fairness"]}
    assert record["lr"]["focal"] == {"value": 0.002, "key": "training.by_loss.focal.lr", "source": "--set"}
    assert record["lr_decay"]["bce"]["value"] == 0.99 and record["lr_decay"]["focal"]["source"] == "default"


def test_settings_differ_writes_tuned_values_as_short_as_keeps_them_apart():
    """UX audit: tuned lrs were written at full float precision (0.01187122073706163)."""
    audit, _ = _cli_audit("training.by_loss.focal.lr=0.01187122073706163",
                          "training.by_loss.bce.lr=0.006549308121699947", "training.by_loss.localized_entropy.lr=0.0065491")
    lr = next(f.message for f in audit.findings if f.code == "settings_differ" and f.message.startswith("lr "))
    # one number of digits for all, the fewest (>= 4) that tell 0.006549308 from 0.0065491: 5
    assert "BCE 0.0065493 (--set)" in lr and "LE 0.0065491 (--set)" in lr and "focal 0.011871 (--set)" in lr
    from le_ray.config.messages import distinct_values
    assert distinct_values([0.99951, 0.99949, 0.99951]) == ["0.99951", "0.99949", "0.99951"]
    assert distinct_values([32768, True, None, 1e-3]) == ["32768", "true", "null", "0.001"]
    assert distinct_values([0.99997, 0.999]) == ["0.99997", "0.999"]  # a decay near 1 never reads as "1" (no decay)
    assert distinct_values([1.00001, 1.0]) == ["1.00001", "1"]


def test_settings_differ_one_liner_makes_the_losses_alike():
    audit, _ = _cli_audit("training.by_loss.focal.by_source.synthetic.lr=0.002", "training.by_loss.bce.lr=0.003")
    (finding,) = [f for f in audit.findings if f.code == "settings_differ"]
    fixed, cfg = _cli_audit("training.by_loss.focal.by_source.synthetic.lr=0.002", "training.by_loss.bce.lr=0.003",
                            _one_liner(finding.message))
    assert not [f for f in fixed.findings if f.code == "settings_differ"] and fixed.to_record()["fairness"] == []
    assert {cfg.training_for(loss).lr for loss in cfg.losses} == {cfg.training.lr}


def test_settings_differ_of_tuned_values_says_each_loss_is_at_its_own_best_not_to_equalise_them():
    """A tune's test sweep (values in the ``tuned`` layer, for keys in ``tune.space``): before, the finding advised
    one lr for every loss, though the lrs differed because each loss was tuned."""
    from le_ray.config import resolve_config
    from le_ray.config.load import merge_with_provenance

    def differ(space, tuned):
        data, origins = merge_with_provenance(sets=[*BASE, *space], tuned=tuned)
        cfg = resolve_config(data)
        audit = audit_experiment(cfg, [prepare_data(cfg)], (), origins)
        return [f for f in audit.findings if f.code == "settings_differ"]
    space = [f'tune.space.{loss}.lr={{"loguniform": [0.001, 0.01]}}' for loss in ("bce", "focal", "le")]
    tuned = [f"training.by_loss.{loss}.by_source.synthetic.lr={lr}"
             for loss, lr in (("bce", 0.003), ("focal", 0.005), ("localized_entropy", 0.002))]
    (every,) = differ(space, tuned)
    assert every.severity == "warning" and "BCE 0.003 (tuned); LE 0.002 (tuned); focal 0.005 (tuned)" in every.message
    assert "because lr was tuned per loss" in every.message and "intended comparison of tuned losses" in every.message
    assert "give every loss one value" not in every.message and "--set" not in every.message
    assert {"tune.space.bce.lr", "tune.space.focal.lr", "tune.space.localized_entropy.lr"} <= set(every.keys)
    (some,) = differ(space[:2], tuned[:2])  # LE not searched: its lr is the configured one
    assert "lr was tuned for BCE and focal (each at its own best) but not for LE, which keeps the configured value" \
        in some.message and "(tune.space.localized_entropy.lr)" in some.message
    (unsearched,) = differ([], tuned)  # values given last but no key in tune.space: not a tuned key
    assert "give every loss one value with --set" in unsearched.message and "tuned per loss" not in unsearched.message


def test_same_settings_for_all_losses_silences_the_fairness_warning():
    sets = ("training.by_loss.focal.by_source.synthetic.lr=0.01", "training.by_loss.localized_entropy.epochs=2",
            "training.by_loss.focal.focal.gamma=2.0", "training.by_loss.localized_entropy.cross_batch.enabled=true",
            "training.by_loss.localized_entropy.cross_batch.amplification_rate=1")
    differs, _ = _cli_audit(*sets)
    assert {f.message.split()[0] for f in differs.findings if f.code == "settings_differ"} == {"lr", "epochs"}
    alike, cfg = _cli_audit(*sets, "training.same_settings_for_all_losses=true")
    assert not [f for f in alike.findings if f.code == "settings_differ"]
    assert {(s["lr"], s["epochs"]) for s in alike.settings.values()} == {(cfg.training.lr, cfg.training.epochs)}
    assert cfg.training_for("focal").focal.gamma == 2.0  # a loss's own keys keep their per-loss values
    assert alike.settings["localized_entropy"]["history"] is not None


def test_per_loss_set_ignored_under_same_settings_is_reported():
    audit, _ = _cli_audit("training.same_settings_for_all_losses=true", "training.by_loss.bce.lr=0.01")
    finding = next(f for f in audit.findings if f.code == "shadowed_set")
    assert finding.keys == ("training.by_loss.bce.lr", "training.same_settings_for_all_losses")
    assert "has no effect on BCE" in finding.message and "--set training.lr=0.01" in finding.message


def test_one_shadowed_set_is_one_finding_with_a_working_one_liner():
    per_loss = [f"training.by_loss.{loss}.by_source.synthetic.batch_size=128" for loss in ("bce", "localized_entropy",
                                                                                             "focal")]
    audit, _ = _cli_audit(*per_loss, "training.batch_size=64")
    (finding,) = [f for f in audit.findings if f.code == "shadowed_set" and f.keys[0] == "training.batch_size"
                  and "=64 " in f.message]
    assert "BCE, LE and focal" in finding.message and len(finding.keys) == 4
    assignment = _one_liner(finding.message.split("at once with")[1])
    assert assignment == "training.by_loss.*.batch_size=64"
    fixed, cfg = _cli_audit(*per_loss, assignment)
    assert not [f for f in fixed.findings if f.code == "shadowed_set" and "=64 " in f.message]
    assert {cfg.training_for(loss).batch_size for loss in cfg.losses} == {64}


def test_setting_key_walks_the_layers():
    with pytest.warns(ConfigShadowWarning, match="batch_size = (64|32) is more specific"):
        cfg = load_config(sets=[*BASE, "training.by_loss.localized_entropy.batch_size=64",
                                "training.by_loss.bce.by_source.synthetic.batch_size=32"])
    assert setting_key(cfg, "bce", "batch_size") == "training.by_loss.bce.by_source.synthetic.batch_size"
    assert setting_key(cfg, "localized_entropy", "batch_size") == "training.by_loss.localized_entropy.batch_size"
    assert setting_key(cfg, "focal", "batch_size") == "training.batch_size"


def test_rare_condition_is_excluded_with_its_counts():
    audit, _ = _audit("synthetic.uniform_log10_means=[-0.8,-1,-1.1,-3.3]")
    codes = _codes(audit)
    assert ("warning", "few_eval_clicks") in codes or ("warning", "no_eval_click") in codes
    assert audit.excluded_conditions == (3,)
    row = audit.conditions[3]
    assert row["eval_clicks"] < 10 and row["train_rows"] > 0
    assert not audit.errors


def test_no_click_at_all_is_an_error_and_no_train_click_a_warning():
    audit, _ = _audit("synthetic.uniform_log10_means=[-9,-9,-9,-9]", "synthetic.uniform_log10_std=0.01")
    codes = _codes(audit)
    assert ("error", "no_train_clicks") in codes and ("warning", "no_train_click") in codes
    assert set(audit.excluded_conditions) == {0, 1, 2, 3}


def test_a_label_that_is_always_1_is_an_error(tmp_path):
    """The mirror of no_train_clicks: a click column of ones passed the audit and trained to NaN metrics."""
    import polars as pl
    from tests.sample_data import require_sample
    path = tmp_path / "ones.csv"
    pl.read_csv(require_sample("avazu", "avazu_sample.csv"), infer_schema=False).with_columns(
        click=pl.lit("1")).write_csv(path)
    cfg = load_config(profile="avazu_sample", sets=[f"ctr.datasets.avazu.train_path={str(path)!r}".replace("'", '"')])
    audit = audit_experiment(cfg, [prepare_data(cfg)])
    error = next(f for f in audit.errors if f.code == "no_train_non_clicks")
    rows = sum(c["train_rows"] for c in audit.conditions)
    assert f"every one of the {rows:,} training rows is a click" in error.message and rows > 1000
    assert "no_train_non_clicks" not in {f.code for f in _audit()[0].findings}  # a real label passes


def test_underpowered_and_single_loss():
    audit, _ = _audit("repeats.num_runs=3", "training.loss_mode=le")
    assert _codes(audit) == [("warning", "single_loss"), ("warning", "underpowered")]
    assert "0.25" in next(f for f in audit.findings if f.code == "underpowered").message  # 2 / 2**3


def test_history_capacity_beyond_train_rows_warns():
    with pytest.warns(ConfigShadowWarning, match="localized_entropy.cross_batch.enabled = true"):
        audit, _ = _audit("training.by_loss.localized_entropy.cross_batch.enabled=true",
                          "training.by_loss.localized_entropy.cross_batch.amplification_rate=2000")
    finding = next(f for f in audit.findings if f.code == "history_spans_epochs")
    assert finding.keys[0] == "training.cross_batch.max_window" and finding.conditions
    capacity = audit.settings["localized_entropy"]["history"]["capacity"]
    assert all(capacity[j] > audit.conditions[j]["train_rows"] for j in finding.conditions)
    with pytest.warns(ConfigShadowWarning, match="localized_entropy.cross_batch.enabled = true"):
        fine, _ = _audit("training.by_loss.localized_entropy.cross_batch.enabled=true",
                         "training.by_loss.localized_entropy.cross_batch.amplification_rate=2")
    assert not [f for f in fine.findings if f.code == "history_spans_epochs"]


def test_history_capacity_is_the_trials_at_a_float32_boundary():
    """A = 1000 · r_0 puts A / r_0 on an integer in float64 but not in float32, where a float32 trial builds its
    history: the audit reports the capacity that trial's history has."""
    import torch

    from le_ray.training.objectives import make_objective

    cfg = load_config(sets=[*BASE, "training.cross_batch.enabled=true"])
    rates = _le_rates(cfg, prepare_data(cfg))
    j = int(np.flatnonzero(rates.astype(np.float32) < rates)[0])
    a = 1000 * float(rates[j])
    audit, cfg = _audit("training.cross_batch.enabled=true", f"training.cross_batch.amplification_rate={a!r}")
    settings = cfg.training_for("localized_entropy")
    trial_rates = torch.tensor(rates, dtype=torch.float32)  # as run_trial holds them (device.dtype float32)
    history = make_objective("localized_entropy", settings, base_rates=trial_rates, num_conditions=len(rates),
                             device=torch.device("cpu"), dtype=torch.float32).history
    reported = audit.settings["localized_entropy"]["history"]["capacity"]
    assert reported == history.capacities().tolist()
    assert math.ceil(a / rates[j]) == 1000 and reported[j] == 1001  # the boundary is real: float64 says 1000


def test_le_without_history_and_rare_clicks_per_batch_warns():
    audit, _ = _audit("training.batch_size=8", "repeats.min_steps_per_epoch=1")
    finding = next(f for f in audit.findings if f.code == "le_batch_rate")
    assert finding.keys == ("training.batch_size", "training.cross_batch.enabled")
    with_history, _ = _audit("training.batch_size=8", "repeats.min_steps_per_epoch=1",
                             "training.cross_batch.enabled=true", "training.cross_batch.amplification_rate=1")
    assert not [f for f in with_history.findings if f.code == "le_batch_rate"]


def test_expected_clicks_per_batch_is_the_batch_share_times_the_rate():
    clicks = expected_clicks_per_batch(1000, [300, 100, 600, 0], np.array([0.01, 0.5, 0.002, 0.3]))
    assert np.allclose(clicks, [1000 * 0.3 * 0.01, 1000 * 0.1 * 0.5, 1000 * 0.6 * 0.002, 0.0])


def test_le_batch_rate_counts_a_condition_s_share_of_the_batch():
    # batch 16 over 4 equal conditions with rates 0.06-0.16: batch x rate >= 1 for each, but a batch holds
    # only 4 rows of each, so every condition expects < 1 click per batch
    audit, cfg = _audit("training.batch_size=16", "repeats.min_steps_per_epoch=1")
    finding = next(f for f in audit.findings if f.code == "le_batch_rate")
    data = prepare_data(cfg)
    rates = _le_rates(cfg, data)
    assert all(16 * r >= 1 for r in rates) and finding.conditions == (0, 1, 2, 3)


def test_le_history_warmup_names_the_conditions_without_a_click_per_batch():
    sets = ("training.cross_batch.enabled=true", "training.cross_batch.amplification_rate=2",
            "repeats.min_steps_per_epoch=1")
    audit, cfg = _audit("training.batch_size=16", *sets)
    finding = next(f for f in audit.findings if f.code == "le_history_warmup")
    assert finding.conditions == (0, 1, 2, 3) and finding.keys == ("training.batch_size",
                                                                   "training.cross_batch.amplification_rate",
                                                                   "training.cross_batch.warm_start")
    assert "or start the windows full at the base rates (training.cross_batch.warm_start=true" in finding.message
    rows = [c["train_rows"] for c in audit.conditions]
    rates = _le_rates(cfg, prepare_data(cfg))
    first = 16 * rows[0] / sum(rows) * rates[0]
    assert f"0 ({first:.2g} per batch: first click after ~{math.ceil(1 / first)} steps" in finding.message
    steps = audit.settings["localized_entropy"]["steps_total"]  # the run's length said once, up front (UX audit)
    assert f"expect fewer than 1 click per batch in this run of {steps:,} steps: 3 (" in finding.message
    assert finding.message.count(" steps)") == 0
    assert not [f for f in audit.findings if f.code == "le_batch_rate"]  # that one is for LE without history
    roomy, _ = _audit("training.batch_size=512", *sets)
    assert not [f for f in roomy.findings if f.code == "le_history_warmup"]
    warm, _ = _audit("training.batch_size=16", *sets, "training.cross_batch.warm_start=true")  # windows start full
    assert not [f for f in warm.findings if f.code == "le_history_warmup"]
    (variant,) = [f for f in warm.findings if f.code == "le_warm_start"]
    assert variant.keys == ("training.cross_batch.warm_start",) and "not empty as in the reference LE" in variant.message
    assert not [f for f in audit.findings if f.code == "le_warm_start"]


def test_shadowed_set_reaches_the_audit():
    import argparse

    args = argparse.Namespace(config=None, profile=None, sets=[*BASE, "training.by_loss.bce.epochs=3",
                                                              "training.epochs=7"])
    cfg, shadows = config_and_shadows(args)
    audit = audit_experiment(cfg, [prepare_data(cfg)], shadows)
    finding = next(f for f in audit.findings if f.code == "shadowed_set")
    assert finding.keys == ("training.epochs", "training.by_loss.bce.epochs")


def test_counts_are_the_minimum_over_resampled_data():
    cfg = load_config(sets=[*BASE, "repeats.resample_data=true"])
    datasets = [prepare_data(cfg, seed=s) for s in (1, 2)]
    merged_audit = audit_experiment(cfg, datasets)
    merged = merged_audit.conditions
    single = [audit_experiment(cfg, [d]).conditions for d in datasets]
    for j, row in enumerate(merged):
        assert row["eval_clicks"] == min(s[j]["eval_clicks"] for s in single)
    assert merged_audit.data_draws == 2 and merged_audit.to_record()["data_draws"] == 2
    assert "SMALLEST over the 2 seeds' data draws" in audit_text(merged_audit)
    assert "SMALLEST" not in audit_text(audit_experiment(cfg, datasets[:1]))


def test_the_audit_table_names_the_true_rates_split_and_drops_columns_no_ad_fills():
    """UX audit: `true_rate` did not say which split it is the mean of, and CTR data printed two all-n/a columns."""
    from le_ray.sweep.audit_text import conditions_shown
    rows = [{"condition": j, "value": f"v{j}", "train_rows": 10, "eval_rows": 5, "eval_expected_clicks": None,
             "true_rate": None} for j in range(3)]
    assert conditions_shown(rows).columns == ["ad_id", "train_rows", "eval_rows"]
    rows[1]["true_rate"] = 0.01
    assert conditions_shown(rows).columns == ["ad_id", "train_rows", "eval_rows", "eval_true_rate"]


@pytest.mark.parametrize("loss", ["bce", "localized_entropy", "focal"])
def test_record_round_trip_is_plain_json(loss):
    import json

    audit, _ = _audit(f"training.loss_mode={loss}")
    record = json.loads(json.dumps(audit.to_record()))
    assert set(record) == {"settings", "conditions", "findings", "excluded_conditions", "fairness", "data_draws"}
    assert list(record["settings"]) == [loss]


def test_settings_table_is_one_row_per_loss_shared_by_audit_and_summary():
    """The one effective-settings table: the audit text shows every column with the full history cell,
    summary.md (:func:`le_ray.report.summary_md._settings_table`) drops ``lr_category_decay`` and shows ``A = rate``."""
    from le_ray.report.summary_md import _settings_table

    base = {"epochs": 2, "batch_size": 256, "lr": 0.002, "lr_decay": 0.999, "lr_category": None,
            "lr_category_decay": 0.9999, "steps_per_epoch": 55, "steps_total": 110, "history": None}
    settings = {"bce": base, "localized_entropy": {**base, "history": {"amplification_rate": 12.5,
                                                                      "max_window": 1_000_000, "capacity": [3, 4]}}}
    full = settings_table(settings)
    assert full.columns == ["loss", *SETTING_COLUMNS, "history"]
    assert full["loss"].to_list() == ["BCE", "LE"]
    assert full["history"].to_list() == ["off", "A=12.5, max 1,000,000"]
    brief = _settings_table({"settings": settings})
    assert brief.columns == [c for c in full.columns if c != "lr_category_decay"]
    assert brief["history"].to_list() == ["off", "A = 12.5"]
    assert brief.drop("history").equals(full.drop("history", "lr_category_decay"))
    old = {"bce": {k: v for k, v in base.items() if k != "steps_total"}}  # a manifest from before a column existed
    assert settings_table(old)["steps_total"].to_list() == [None]
    assert settings_table({}).width == 0
    assert "A=12.5, max 1,000,000" in audit_text(Audit(settings, [{"condition": 0, "value": "a", "train_rows": 1}]))
    settings["localized_entropy"]["history"]["warm_start"] = True  # a record without the key: a cold start (above)
    assert settings_table(settings)["history"].to_list() == ["off", "A=12.5, max 1,000,000, warm start"]
    assert _settings_table({"settings": settings})["history"].to_list() == ["off", "A = 12.5, warm start"]


def test_one_run_audit_drops_only_the_findings_about_a_sweeps_seeds_and_wall_time():
    from le_ray.sweep.audit import ERROR, WARNING, Finding, one_run_audit

    findings = [Finding(WARNING, code, code, ()) for code in ("underpowered", "fixed_split", "few_eval_clicks",
                                                               "settings_differ")]
    findings += [Finding(ERROR, "too_slow_here", "slow", ()), Finding(ERROR, "few_steps", "one step", ())]
    audit = Audit({}, [], findings)
    kept = one_run_audit(audit)
    assert [f.code for f in kept.findings] == ["few_eval_clicks", "settings_differ", "few_steps"]
    assert [f.code for f in kept.errors] == ["few_steps"] and len(audit.findings) == 6


def test_with_the_synthetic_truth_a_seed_drawing_few_clicks_does_not_exclude_an_ad():
    """The truth-based per-ad tests do not read the realised clicks: the rule counts the expected ones (Σ p_true)."""
    sets = [*BASE, "synthetic.uniform_log10_means=[-0.8,-1,-1.1,-2.3]"]
    datasets = [prepare_data(load_config(sets=sets), seed=s) for s in range(6)]
    merged = audit_experiment(load_config(sets=sets), datasets).conditions[3]
    eval_p = [np.bincount(d.eval.cond, weights=d.eval.p_true, minlength=4)[3] for d in datasets]
    assert merged["eval_expected_clicks"] == pytest.approx(min(eval_p), abs=0.05)
    realised = merged["eval_clicks"]
    assert realised + 1 < merged["eval_expected_clicks"]  # one of the six draws fell short of its expectation
    need = f"repeats.min_eval_clicks={realised + 1}"
    with_truth = audit_experiment(load_config(sets=[*sets, need]), datasets)
    assert 3 not in with_truth.excluded_conditions
    without = audit_experiment(load_config(sets=[*sets, need, "evaluation.synthetic_truth=false"]), datasets)
    assert 3 in without.excluded_conditions
    finding = next(f for f in without.findings if f.code == "few_eval_clicks")
    assert "expected" not in finding.message
    few = audit_experiment(load_config(sets=[*sets, "repeats.min_eval_clicks=1000"]), datasets)
    finding = next(f for f in few.findings if f.code == "few_eval_clicks")
    assert "fewer than 1000 expected evaluation clicks" in finding.message and " expected)" in finding.message
    assert "needs no evaluation click: --set repeats.min_eval_clicks=0 tests them too" in finding.message
    assert "too few clicks to test" in next(f for f in without.findings if f.code == "few_eval_clicks").message
    # one run makes no test: its finding says what the clicks do to it
    for audit, extra in ((few, ["repeats.min_eval_clicks=1000"]), (without, [need, "evaluation.synthetic_truth=false"])):
        swept = next(f for f in audit.findings if f.code == "few_eval_clicks").message
        one_run = audit_experiment(load_config(sets=[*sets, *extra]), datasets, one_run=True)
        run = next(f for f in one_run.findings if f.code == "few_eval_clicks").message
        assert run.split("; ")[0] == swept.split("; ")[0] and "min_eval_clicks=0" not in run
        assert run.endswith("; this run's per-ad numbers for them rest on a few clicks and are noisy (a sweep leaves "
                            "them out of its per-condition tests)")
    every = audit_experiment(load_config(sets=[*sets, "repeats.min_eval_clicks=0"]), datasets)
    assert not every.excluded_conditions and not [f for f in every.findings if f.code == "few_eval_clicks"]


def test_single_condition_is_a_warning_naming_it():
    audit, _ = _audit("synthetic.num_conditions=1", "synthetic.uniform_log10_means=[-0.8]")
    found = [f for f in audit.findings if f.code == "single_condition"]
    assert len(found) == 1 and found[0].severity == "warning" and found[0].keys == ("synthetic.num_conditions",)
    assert "only one ad: synthetic.num_conditions is 1" in found[0].message and "BCE rescaled" in found[0].message
    assert "single_condition" not in {f.code for f in _audit()[0].findings}


def _criteo_audit(tmp_path, frame):
    import json

    path = tmp_path / "c.csv"
    frame.write_csv(path)
    cfg = load_config(profile="criteo_sample", sets=[f"ctr.datasets.criteo.train_path={json.dumps(str(path))}"])
    return audit_experiment(cfg, [prepare_data(cfg)])


def test_ctr_single_ad_and_blank_ad_id_are_warnings(tmp_path):
    import polars as pl

    from tests.sample_data import require_sample

    raw = pl.read_csv(require_sample("criteo", "criteo_sample.csv"), infer_schema=False).head(3000)
    one = _criteo_audit(tmp_path, raw.with_columns(C1=pl.lit("05db9164")))
    single = [f for f in one.findings if f.code == "single_condition"]
    assert len(single) == 1 and single[0].severity == "warning"
    assert "column 'C1' (ctr.datasets.criteo.condition_col) holds the single value '05db9164'" in single[0].message
    blank = _criteo_audit(tmp_path, raw.with_columns(
        C1=pl.when(pl.int_range(pl.len()).is_between(200, 260)).then(None).otherwise("C1")))
    found = [f for f in blank.findings if f.code == "blank_condition"]
    assert len(found) == 1 and found[0].severity == "warning"
    j = found[0].conditions[0]
    row = blank.conditions[j]
    assert row["value"] == "" and row["train_rows"] + row["eval_rows"] == 61
    assert re.search(rf"{row['train_rows']} train and {row['eval_rows']} evaluation rows have an empty 'C1' "
                     r"\(ctr\.datasets\.criteo\.condition_col\); the first at data row 201 \(line 202 of the file\) "
                     r"of '.*c\.csv': they are kept as one ad whose ad_id is blank", found[0].message)
    assert "blank_condition" not in {f.code for f in one.findings} | {f.code for f in _audit()[0].findings}


def test_le_history_warmup_says_when_a_click_or_a_full_window_lies_beyond_the_run():
    """Step counts past the run's total are said to be (a window 'full after ~305 steps' of a 46-step run read as
    if it filled)."""
    from le_ray.sweep.audit import _warmup_steps

    assert _warmup_steps(0.5, 40, 100) == "first click after ~2 steps, window full after ~40"
    assert _warmup_steps(0.5, 305, 46) == "first click after ~2 steps, window full after ~305, beyond this run's 46"
    assert _warmup_steps(0.001, 5000, 46) == "first click expected after ~1,000 steps, beyond this run's 46"


def test_an_ad_expecting_a_fraction_of_a_click_is_tested_against_the_truth_with_min_eval_clicks_0():
    """Expected clicks were rounded to 0.1 before the rules read them: an ad expecting 0.03 evaluation clicks read
    as expecting none and stayed out even with repeats.min_eval_clicks 0 (the per-ad test against the truth needs
    no click); "none" now means no evaluation row, and 1 click is singular."""
    sets = [*BASE, "synthetic.uniform_log10_means=[-0.8,-1,-1.1,-4.8]", "synthetic.uniform_log10_std=0"]
    cfg = load_config(sets=[*sets, "repeats.min_eval_clicks=0"])
    data = prepare_data(cfg)
    audit = audit_experiment(cfg, [data])
    rare = audit.conditions[3]
    assert 0 < rare["eval_expected_clicks"] < 0.05 and rare["eval_rows"] > 0
    assert not [f for f in audit.findings if f.code in ("no_eval_click", "few_eval_clicks")]
    assert set(audit.excluded_conditions) <= {j for f in audit.findings if f.code == "no_train_click"
                                              for j in f.conditions}  # it is left out only if it has no train click
    one = audit_experiment(load_config(sets=[*sets, "repeats.min_eval_clicks=1"]), [data])
    finding = next(f for f in one.findings if f.code == "few_eval_clicks")
    assert "fewer than 1 expected evaluation click:" in finding.message and 3 in one.excluded_conditions


# ----------------------------------------------- settings that leave nothing to measure or do nothing


def _finding(audit, code):
    return next(f for f in audit.findings if f.code == code)


def test_an_unlabelled_evaluation_split_refuses_a_sweep_but_not_a_diagnostic_run():
    """evaluation.split test without its labels trained every trial of a sweep, then the report failed."""
    from le_ray.sweep.audit import one_run_audit
    audit, _ = _audit("data.use_test_set=true", "evaluation.split=test", "evaluation.use_test_labels=false")
    assert ("error", "unlabelled_evaluation") in _codes(audit)
    assert "unlabelled_evaluation" not in {f.code for f in one_run_audit(audit).findings}
    labelled, _ = _audit("data.use_test_set=true", "evaluation.split=test", "evaluation.use_test_labels=true")
    assert "unlabelled_evaluation" not in {f.code for f in labelled.findings}


def test_an_unlabelled_test_file_asked_for_its_labels_is_named_not_told_to_set_what_is_set():
    """UX audit: with evaluation.use_test_labels=true on a test file without a click column, the finding advised
    setting evaluation.use_test_labels=true."""
    from le_ray.sweep.audit_settings import settings_findings
    sets = ["data.use_test_set=true", "evaluation.split=test", "ctr.datasets.avazu.test_path=/data/test.csv"]
    asked = _finding_of(settings_findings(load_config(profile="avazu_sample", sets=[
        *sets, "evaluation.use_test_labels=true"]), [], labelled=False), "unlabelled_evaluation")
    assert "the test file (/data/test.csv) has no label column 'click'" in asked.message
    assert "use_test_labels=true" not in asked.message and "ctr.datasets.avazu.test_path" in asked.keys
    not_asked = _finding_of(settings_findings(load_config(profile="avazu_sample", sets=[
        *sets, "evaluation.use_test_labels=false"]), [], labelled=False), "unlabelled_evaluation")
    assert "with evaluation.use_test_labels=true" in not_asked.message


def _finding_of(findings, code):
    return next(f for f in findings if f.code == code)


def test_an_lr_that_is_zero_from_the_first_epoch_is_an_error_unless_the_embedding_trains_on():
    audit, _ = _audit("training.lr_zero_after_epochs=0")
    errors = [f for f in audit.errors if f.code == "lr_zero_from_start"]
    assert len(errors) == 3 and "nothing trains" in errors[0].message  # one per loss
    assert errors[0].keys == ("training.lr_zero_after_epochs", "training.lr_category")
    fine, _ = _audit("training.lr_zero_after_epochs=0", "training.lr_category=0.01")
    assert "lr_zero_from_start" not in {f.code for f in fine.findings}


def test_settings_a_loss_never_reads_are_named_as_having_no_effect():
    audit, _ = _audit("training.by_loss.bce.focal.gamma=3", "training.by_loss.focal.cross_batch.amplification_rate=8")
    said = {f.keys[0]: f.message for f in audit.findings if f.code == "no_effect"}
    assert set(said) == {"training.by_loss.bce.focal", "training.by_loss.focal.cross_batch"}
    assert "BCE does not read the focal section (only focal does)" in said["training.by_loss.bce.focal"]
    amp, _ = _audit("training.amp=bf16", "device.dtype=float64")
    assert [f.keys for f in amp.findings if f.code == "no_effect"][0] == ("training.amp", "device.dtype")
    assert "no_effect" not in {f.code for f in _audit("training.amp=bf16")[0].findings}
    assert "no_effect" not in {f.code for f in _audit("training.by_loss.*.focal.gamma=3")[0].findings}  # focal only
    warm, _ = _audit("training.cross_batch.warm_start=true")  # BASE turns the history off
    assert [f.keys for f in warm.findings if f.code == "no_effect"] == [("training.cross_batch.warm_start",
                                                                         "training.cross_batch.enabled")]


def test_minimum_counts_above_the_evaluation_rows_are_named():
    """ece_min_count above the rows made every ECE 0 ("calibrated"); per_condition_min_count above every ad's rows
    dropped every per-ad test without naming the key."""
    audit, _ = _audit("evaluation.ece_min_count=10000000", "repeats.per_condition_min_count=10000000")
    assert {"ece_min_count_above_rows", "per_ad_min_count_above_rows"} <= {f.code for f in audit.warnings}
    assert "every ECE comes out 0 by construction" in _finding(audit, "ece_min_count_above_rows").message
    assert not {"ece_min_count_above_rows", "per_ad_min_count_above_rows"} & {f.code for f in _audit()[0].findings}


def test_a_filter_keeping_more_ads_than_max_conditions_says_they_are_merged():
    from tests.sample_data import require_sample
    path = str(require_sample("avazu", "avazu_sample.csv")).replace("\\", "/")
    sets = [f'ctr.datasets.avazu.train_path="{path}"', "ctr.datasets.avazu.filter.k=25",
            "ctr.datasets.avazu.max_conditions=10"]
    cfg = load_config(profile="avazu_sample", sets=sets)
    merged = _finding(audit_experiment(cfg, [prepare_data(cfg)]), "conditions_merged")
    assert "the filter keeps 25 ads but ctr.datasets.avazu.max_conditions is 10: the 15 least frequent" in merged.message
    cfg = load_config(profile="avazu_sample", sets=sets[:2])
    assert "conditions_merged" not in {f.code for f in audit_experiment(cfg, [prepare_data(cfg)]).findings}


def test_settings_differ_suggests_a_batch_that_the_few_steps_finding_accepts():
    """Tune/run audit: few_steps asked for a batch of at most 309 while settings_differ, in the same output, advised
    'training.by_loss.*.batch_size=25000' (the training.* default), which brought the error back."""
    cfg = load_config(sets=[*(s for s in BASE if not s.startswith("training.batch_size")),
                            "training.by_loss.bce.batch_size=4096", "training.by_loss.localized_entropy.batch_size=8192",
                            "training.by_loss.focal.batch_size=4096", "repeats.min_steps_per_epoch=10"])
    audit = audit_experiment(cfg, [prepare_data(cfg)])
    assert any(f.code == "few_steps" for f in audit.findings)
    differ = next(f for f in audit.findings if f.code == "settings_differ" and "batch_size differs" in f.message)
    suggested = int(re.search(r"batch_size=(\d+)", differ.message).group(1))
    rows = min(int(s["train_rows"]) for s in audit.settings.values())
    assert suggested == rows // 10 and suggested < 4096  # every loss keeps at least 10 steps per epoch
