"""Config loading, resolution order, per-loss/per-source settings and validation errors."""

import dataclasses
import json
import subprocess
import sys

import pytest

from le_ray.config import (
    ConfigError, config_fingerprint, deep_merge, load_config, losses_of, parse_set, profile_names, to_dict,
    training_for,
)


def test_default_config_resolves_with_reference_defaults():
    cfg = load_config()
    assert cfg.model.hidden_sizes == (256, 256, 128, 64)
    assert (cfg.model.embed_dim, cfg.model.cat_embed_dim, cfg.model.activation, cfg.model.norm) == (4, 8, "silu", "none")
    assert cfg.model.dropout == pytest.approx(0.01)
    assert cfg.data.source == "synthetic" and cfg.source_key == "synthetic"
    assert cfg.synthetic.uniform_log10_means == (-2.0, -2.3, -2.6, -4.0)
    assert cfg.synthetic.num_conditions * cfg.synthetic.samples_per_condition == 1_000_000


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.training.lr = 1.0  # type: ignore[misc]
    assert isinstance(cfg.model.hidden_sizes, tuple)
    with pytest.raises(TypeError):
        cfg.training.by_loss["bce"] = {}  # read-only mapping


@pytest.mark.parametrize("loss,lr,batch,extra", [
    ("bce", 0.004, 32768, {}),
    ("le", 0.004, 16384, {"cross_batch": True}),
    ("focal", None, 25000, {}),
])
def test_synthetic_per_loss_defaults(loss, lr, batch, extra):
    s = training_for(load_config(), loss)
    if lr is not None:
        assert s.lr == pytest.approx(lr)
    assert s.batch_size == batch
    assert s.cross_batch.enabled == extra.get("cross_batch", False)
    if loss == "le":
        assert s.cross_batch.amplification_rate == 64
    if loss == "focal":
        assert (s.focal.alpha, s.focal.gamma) == (pytest.approx(0.2), pytest.approx(0.5))


@pytest.mark.parametrize("dataset,loss,expected", [
    ("avazu", "bce", dict(lr=0.0064, batch_size=16384)),
    ("avazu", "localized_entropy", dict(lr=0.0005, lr_decay=0.9995, batch_size=25000)),
    ("criteo", "bce", dict(lr=0.0064, lr_decay=0.9995)),
    ("criteo", "localized_entropy", dict(lr=0.00025)),
    ("yambda", "bce", dict(lr=0.01024)),
    ("yambda", "le", dict(lr=0.0005, batch_size=16384)),
    ("criteo", "focal", dict(epochs=3, batch_size=25000)),
    ("avazu", "focal", dict(epochs=3)),
])
def test_ctr_per_loss_per_source_table(dataset, loss, expected):
    cfg = load_config(sets=["data.source=ctr", f"data.ctr_dataset={dataset}"])
    s = training_for(cfg, loss)
    for key, value in expected.items():
        assert getattr(s, key) == pytest.approx(value), key


def test_by_source_falls_back_to_ctr_key():
    cfg = load_config(sets=["data.source=ctr", "data.ctr_dataset=yambda",
                            'training.by_loss.bce.by_source.ctr={"epochs": 7}',
                            "training.by_loss.bce.by_source.yambda.lr=0.5"])
    # yambda has its own entry, so ctr is not used for bce
    assert training_for(cfg, "bce").epochs == cfg.training.epochs
    cfg2 = load_config(sets=["data.source=ctr", "data.ctr_dataset=criteo",
                             'training.by_loss.localized_entropy.by_source={"ctr": {"epochs": 7}}'])
    assert training_for(cfg2, "le").epochs == 7


def test_resolution_order_file_profile_overrides_set(tmp_path):
    user = {"training": {"lr": 0.5},
            "experiment": {"active": "mine",
                           "definitions": {"mine": {"training": {"lr": 0.25, "epochs": 9}}},
                           "overrides": {"training": {"epochs": 11}}}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(user))
    cfg = load_config(path)
    assert cfg.training.lr == 0.25 and cfg.training.epochs == 11  # profile beats file, overrides beat profile
    cfg = load_config(path, sets=["training.epochs=2"])
    assert cfg.training.epochs == 2
    cfg = load_config(path, profile="small_net")  # --profile replaces experiment.active
    assert cfg.training.lr == 0.5 and cfg.model.hidden_sizes == (64, 32)
    assert cfg.experiment.active == "small_net"


def test_profile_extends_chain():
    cfg = load_config(profile="quickstart")
    assert cfg.model.name == "small"  # from small_net via extends
    assert losses_of(cfg.training.loss_mode) == ("bce", "localized_entropy", "focal")


def test_every_profile_resolves():
    names = profile_names()
    for required in ("small_net", "wide_net", "large_net", "quickstart", "avazu_top10_by_count",
                     "avazu_top6_by_count", "avazu_top200_mix30", "criteo_top20_by_count", "yambda_top200"):
        assert required in names
    for name in names:
        load_config(profile=name)


def test_parse_set_json_else_string():
    assert parse_set("a.b=1") == (["a", "b"], 1)
    assert parse_set("a=[1,2]") == (["a"], [1, 2])
    assert parse_set("a=hello") == (["a"], "hello")
    assert parse_set('a="x=y"') == (["a"], "x=y")
    with pytest.raises(ConfigError, match="dotted.key=VALUE"):
        parse_set("novalue")


@pytest.mark.parametrize("mode,expected", [
    ("bce", ("bce",)), ("le", ("localized_entropy",)), ("both", ("bce", "localized_entropy")),
    ("all", ("bce", "localized_entropy", "focal")), ("bce,le", ("bce", "localized_entropy")),
    (["focal", "localized_entropy"], ("focal", "localized_entropy")),
])
def test_loss_mode_forms(mode, expected):
    assert losses_of(mode) == expected


@pytest.mark.parametrize("assignment,fragment", [
    ("training.lr=0", "training.lr: got 0; expected a number > 0"),
    ("training.lr=-1", "training.lr: got -1"),
    ("training.lr_decay=0", "training.lr_decay"),
    ("data.train_split=1", "data.train_split: got 1; expected a number > 0 and < 1"),
    ("data.train_split=0", "data.train_split"),
    ("training.batch_size=0", "training.batch_size: got 0"),
    ("training.epochs=\"five\"", "training.epochs: got \"five\"; expected an integer"),
    ("training.loss_mode=hinge", "training.loss_mode: got \"hinge\"; expected one of bce, localized_entropy (le), focal"),
    ("model.activation=swishy", "model.activation"),
    ("model.norm=bn", "model.norm"),
    ("evaluation.ece_method=fancy", "evaluation.ece_method: got \"fancy\"; expected one of \"custom\""),
    ("ctr.datasets.avazu.filter.mode=topk", "ctr.datasets.avazu.filter.mode"),
    ("model.dropout=[0.1, 0.1]", "model.dropout: got a list of 2; expected one value or a list of 4"),
    ("training.typo=1", "training.typo: unknown key"),
    ("training.by_loss.le.by_source.avazu.lr=0", "training.by_loss.localized_entropy.by_source.avazu.lr: got 0"),
    ("training.by_loss.le.by_source.mars={}", "by_source.mars: unknown source"),
    ("training.by_loss.hinge={}", "training.by_loss.hinge: unknown loss"),
    ("training.focal.alpha=2", "training.focal.alpha"),
    ("repeats.per_condition_correction=bonferroni", "repeats.per_condition_correction"),
])
def test_bad_values_name_key_value_and_allowed(assignment, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(sets=[assignment])
    assert fragment in str(info.value)


def test_all_problems_reported_together():
    with pytest.raises(ConfigError) as info:
        load_config(sets=["training.lr=0", "data.train_split=2", "nope=1"])
    assert len(info.value.problems) == 3


def test_unknown_profile_and_bad_file(tmp_path):
    with pytest.raises(ConfigError, match="got 'nope'; expected one of"):
        load_config(profile="nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.json")


def test_legacy_filter_keys_map_with_warning():
    with pytest.warns(FutureWarning, match="filter_top_k"):
        cfg = load_config(sets=["ctr.datasets.criteo.filter_top_k=3"])
    assert cfg.ctr.datasets["criteo"].filter.k == 3 and cfg.ctr.datasets["criteo"].filter.mode == "top_k"


def test_ctr_defaults_merge_under_datasets():
    cfg = load_config(sets=["ctr.defaults.categorical_max_values=7"])
    assert all(d.categorical_max_values == 7 for d in cfg.ctr.datasets.values())
    assert cfg.ctr.datasets["avazu"].condition_col == "C14"
    assert cfg.ctr.datasets["criteo"].condition_col == "C1"


def test_fingerprint_stable_and_sensitive():
    a, b = load_config(), load_config()
    assert config_fingerprint(to_dict(a)) == config_fingerprint(to_dict(b))
    c = load_config(sets=["training.lr=0.002"])
    assert config_fingerprint(to_dict(a)) != config_fingerprint(to_dict(c))


def test_deep_merge_replaces_lists_and_scalars():
    assert deep_merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}}


def test_cli_config_show_and_error():
    out = subprocess.run([sys.executable, "-m", "le_ray.cli", "config", "show", "--profile", "small_net",
                          "--set", "training.lr=0.01"], capture_output=True, text=True, check=True)
    shown = json.loads(out.stdout)
    assert shown["model"]["hidden_sizes"] == [64, 32] and shown["training"]["lr"] == 0.01
    bad = subprocess.run([sys.executable, "-m", "le_ray.cli", "config", "show", "--set", "training.lr=-2"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "training.lr: got -2" in bad.stderr and "Traceback" not in bad.stderr
