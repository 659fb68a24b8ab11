"""The experiment audit on hand-made configs: each finding fires exactly when it should, error vs warning."""

import math

import pytest

from le_ray.sweep.audit import audit_experiment, audit_text, refusal, setting_key
from le_ray.cli.args import config_and_shadows
from le_ray.config import load_config
from le_ray.data.prepare import prepare_data

BASE = ["synthetic.samples_per_condition=6000", "synthetic.uniform_log10_means=[-0.8,-1,-1.1,-1.2]",
        "synthetic.uniform_log10_std=0.2", "training.loss_mode=all", "training.by_loss={}", "training.batch_size=256",
        "repeats.num_runs=9", "training.cross_batch.enabled=false"]


def _audit(*sets, shadows=()):
    cfg = load_config(sets=[*BASE, *sets])
    return audit_experiment(cfg, [prepare_data(cfg)], shadows), cfg


def _codes(audit):
    return sorted({(f.severity, f.code) for f in audit.findings})


def test_sound_experiment_has_no_finding():
    audit, _ = _audit()
    assert audit.findings == [] and audit.excluded_conditions == ()
    assert "no finding" in audit_text(audit)


def test_settings_are_the_effective_ones():
    audit, cfg = _audit("training.by_loss.focal.batch_size=128", "training.by_loss.focal.epochs=2")
    focal, bce = audit.settings["focal"], audit.settings["bce"]
    rows = len(prepare_data(cfg).train)
    assert (focal["batch_size"], focal["epochs"]) == (128, 2) and bce["batch_size"] == 256
    assert focal["steps_per_epoch"] == math.ceil(rows / 128) and focal["steps_total"] == 2 * math.ceil(rows / 128)


def test_few_steps_is_an_error_naming_the_most_specific_key():
    audit, cfg = _audit("training.by_loss.focal.by_source.synthetic.batch_size=5000")
    assert _codes(audit) == [("error", "few_steps")]
    finding = audit.errors[0]
    assert finding.keys[0] == "training.by_loss.focal.by_source.synthetic.batch_size" and "focal" in finding.message
    assert "--allow-unsound" in refusal(audit)
    relaxed, _ = _audit("training.by_loss.focal.by_source.synthetic.batch_size=5000", "repeats.min_steps_per_epoch=1")
    assert relaxed.findings == []


def test_setting_key_walks_the_layers():
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


def test_underpowered_and_single_loss():
    audit, _ = _audit("repeats.num_runs=3", "training.loss_mode=le")
    assert _codes(audit) == [("warning", "single_loss"), ("warning", "underpowered")]
    assert "0.25" in next(f for f in audit.findings if f.code == "underpowered").message  # 2 / 2**3


def test_history_capacity_beyond_train_rows_warns():
    audit, _ = _audit("training.by_loss.localized_entropy.cross_batch.enabled=true",
                      "training.by_loss.localized_entropy.cross_batch.amplification_rate=2000")
    finding = next(f for f in audit.findings if f.code == "history_spans_epochs")
    assert finding.keys[0] == "training.cross_batch.max_window" and finding.conditions
    capacity = audit.settings["localized_entropy"]["history"]["capacity"]
    assert all(capacity[j] > audit.conditions[j]["train_rows"] for j in finding.conditions)
    fine, _ = _audit("training.by_loss.localized_entropy.cross_batch.enabled=true",
                     "training.by_loss.localized_entropy.cross_batch.amplification_rate=2")
    assert not [f for f in fine.findings if f.code == "history_spans_epochs"]


def test_le_without_history_and_rare_clicks_per_batch_warns():
    audit, _ = _audit("training.batch_size=8", "repeats.min_steps_per_epoch=1")
    finding = next(f for f in audit.findings if f.code == "le_batch_rate")
    assert finding.keys == ("training.batch_size", "training.cross_batch.enabled")
    with_history, _ = _audit("training.batch_size=8", "repeats.min_steps_per_epoch=1",
                             "training.cross_batch.enabled=true", "training.cross_batch.amplification_rate=1")
    assert not [f for f in with_history.findings if f.code == "le_batch_rate"]


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
    merged = audit_experiment(cfg, datasets).conditions
    single = [audit_experiment(cfg, [d]).conditions for d in datasets]
    for j, row in enumerate(merged):
        assert row["eval_clicks"] == min(s[j]["eval_clicks"] for s in single)


@pytest.mark.parametrize("loss", ["bce", "localized_entropy", "focal"])
def test_record_round_trip_is_plain_json(loss):
    import json

    audit, _ = _audit(f"training.loss_mode={loss}")
    record = json.loads(json.dumps(audit.to_record()))
    assert set(record) == {"settings", "conditions", "findings", "excluded_conditions"}
    assert list(record["settings"]) == [loss]
