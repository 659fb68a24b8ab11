"""Config loading, resolution order, per-loss/per-source settings and validation errors."""

import json
import pickle
import subprocess
import sys

import pytest
from pydantic import ValidationError

from le_ray.config import (
    ConfigError, ConfigShadowWarning, config_fingerprint, deep_merge, load_config, losses_of, parse_set, profile_names,
    profiles, read_json, to_dict,
)


def test_config_is_frozen():
    cfg = load_config()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.training.lr = 1.0  # type: ignore[misc]
    assert isinstance(cfg.model.hidden_sizes, tuple)
    with pytest.raises(TypeError):
        cfg.training.by_loss["bce"] = {}  # read-only mapping


def test_config_pickles_with_its_resolved_settings():
    cfg = load_config(sets=["training.by_loss.bce.by_source.synthetic.lr=0.125"])
    assert cfg.training_for("bce").lr == 0.125
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg and again.training_for("bce").lr == 0.125


def _layered(tmp_path, layers):
    """A config whose training.by_loss is exactly ``layers["by_loss"]`` (--set replaces, a file would merge)."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"training": {k: v for k, v in layers.items() if k != "by_loss"}}))
    return path, [f"training.by_loss={json.dumps(layers['by_loss'])}"]


def test_per_loss_precedence_source_beats_loss_beats_training(tmp_path):
    path = _layered(tmp_path, {"epochs": 2, "lr": 0.1, "batch_size": 100, "by_loss": {
        "bce": {"lr": 0.2, "by_source": {"synthetic": {"lr": 0.3}, "avazu": {"lr": 0.4, "batch_size": 7}}},
        "le": {"epochs": 4, "by_source": {"ctr": {"epochs": 5}}},
        "focal": {}}})
    path, by_loss = path
    syn = load_config(path, sets=by_loss)
    assert (syn.training_for("bce").lr, syn.training_for("bce").batch_size, syn.training_for("bce").epochs) == (0.3, 100, 2)
    assert syn.training_for("localized_entropy").epochs == 4 and syn.training_for("le").lr == 0.1
    avazu = load_config(path, sets=["data.source=ctr", "data.ctr_dataset=avazu", *by_loss])
    assert (avazu.training_for("bce").lr, avazu.training_for("bce").batch_size) == (0.4, 7)
    assert avazu.training_for("le").epochs == 5  # no avazu layer: the ctr layer applies
    assert avazu.training_for("focal").lr == 0.1


def test_nested_layer_merges_key_by_key(tmp_path):
    path = _layered(tmp_path, {"cross_batch": {"enabled": False, "amplification_rate": 8.0, "max_window": 10},
                               "by_loss": {"le": {"by_source": {"synthetic": {"cross_batch": {"enabled": True}}}}}})
    s = load_config(path[0], sets=path[1]).training_for("le").cross_batch
    assert (s.enabled, s.amplification_rate, s.max_window) == (True, 8.0, 10)


def test_by_source_falls_back_to_ctr_key():
    cfg = load_config(sets=["data.source=ctr", "data.ctr_dataset=yambda",
                            'training.by_loss.bce.by_source.ctr={"epochs": 7}',
                            "training.by_loss.bce.by_source.yambda.lr=0.5"])
    # yambda has its own entry, so ctr is not used for bce
    assert cfg.training_for("bce").epochs == cfg.training.epochs
    cfg2 = load_config(sets=["data.source=ctr", "data.ctr_dataset=criteo",
                             'training.by_loss.localized_entropy.by_source={"ctr": {"epochs": 7}}'])
    assert cfg2.training_for("le").epochs == 7


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
    cfg = load_config(path, profile="wide_net")  # --profile replaces experiment.active
    assert cfg.training.lr == 0.5 and cfg.model.name == "wide"
    assert cfg.experiment.active == "wide_net"


def test_profile_extends_chain(tmp_path):
    user = {"experiment": {"definitions": {
        "base": {"description": "b", "training": {"lr": 0.5, "epochs": 3}},
        "child": {"description": "c", "extends": "base", "training": {"epochs": 9}},
        "loop": {"extends": "loop"}}}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(user))
    cfg = load_config(path, profile="child")
    assert (cfg.training.lr, cfg.training.epochs) == (0.5, 9)
    with pytest.raises(ConfigError, match="cycle"):
        load_config(path, profile="loop")


def test_profile_files_carry_description_and_user_definitions_win(tmp_path):
    found = profiles()
    assert found and all(p.description for p in found.values())
    assert all(parent in found for p in found.values() for parent in p.extends)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"experiment": {"definitions": {"small_net": {"description": "mine",
                                                                             "model": {"embed_dim": 3}}}}}))
    assert profiles(read_json(path))["small_net"].description == "mine"
    assert load_config(path, profile="small_net").model.embed_dim == 3


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
    ("training.loss_mode=hinge", "training.loss_mode: got \"hinge\"; expected one of bce, localized_entropy (le), focal, "
                                 "both (BCE + LE), all, or a list of losses"),
    ("training.loss_mode=bth", 'did you mean "both"?'),
    ("model.activation=swishy", "model.activation"),
    ("model.norm=bn", "model.norm"),
    ("evaluation.ece_method=fancy", "evaluation.ece_method: got \"fancy\"; expected one of \"custom\""),
    ("ctr.datasets.avazu.filter.mode=topk", "ctr.datasets.avazu.filter.mode"),
    ("model.dropout=[0.1, 0.1]", "model.dropout: got a list of 2; expected one value or a list of 4"),
    ("training.typo=1", "training.typo: unknown key"),
    ("training.by_loss.le.by_source.avazu.lr=0", "training.by_loss.localized_entropy (le).by_source.avazu.lr: got 0"),
    ("training.by_loss.le.by_source.mars={}", "by_source.mars: unknown source"),
    ("training.by_loss.hinge={}", "training.by_loss.hinge: unknown loss"),
    ("training.focal.alpha=2", "training.focal.alpha"),
    ("repeats.per_condition_correction=bonferroni", "repeats.per_condition_correction"),
    # 0 passed validation and failed in the report, after every trial had trained
    ("repeats.bootstrap_samples=0", "repeats.bootstrap_samples: got 0; expected an integer >= 1"),
    # each of these passed validation and then failed (or trained nonsense) after the data were prepared
    ("training.lr_decay=1.5", "training.lr_decay: got 1.5; expected a number > 0 and <= 1"),
    ("training.by_loss.bce.lr_category_decay=1.01", "training.by_loss.bce.lr_category_decay: got 1.01; expected a "
                                                    "number > 0 and <= 1"),
    ("plots.dpi=10000", "plots.dpi: got 10000; expected an integer >= 30 and <= 1200"),
    ("synthetic.age_sigma_range=[0,0,1]", "synthetic.age_sigma_range: got [0.0, 0.0, 1.0]; expected low > 0"),
    ("synthetic.sigmoid_s_range=[0,1,3]", "synthetic.sigmoid_s_range: got [0.0, 1.0, 3.0]; expected low > 0"),
    ("synthetic.base_mu_ln=86", "synthetic.base_mu_ln: got 86.0 with base_sigma_ln 1.5; expected base_mu_ln + 8 * "
                                "base_sigma_ln <= 80"),
    ("synthetic.interest_scale_log10_range=[400,400,1]", "expected log10 scales within [-30, 30]"),
    ('model.name="../.."', "model.name: got '../..'; expected a folder name (no / or \\, not only dots)"),
    ('model.name=".."', "model.name: got '..'; expected a folder name"),
    ("evaluation.ece_bins=1000000000", "evaluation.ece_bins: got 1000000000; expected an integer >= 1 and <= 100000"),
    ("synthetic.sigmoid_mu_range=[5,7,1e10]", "1 <= points <= 1,000,000"),  # np.linspace of 80 GB
    # Infinity satisfies "> 0": without the finiteness rule it passed validation and failed later, mid-run
    ("training.lr=Infinity", "training.lr: got Infinity; expected a finite number > 0"),
    ("training.weight_decay=Infinity", "training.weight_decay: got Infinity; expected a finite number >= 0"),
    ("training.by_loss.bce.lr=-Infinity", "training.by_loss.bce.lr: got -Infinity; expected a finite number > 0"),
    ("training.lr=NaN", "training.lr: got NaN; expected a finite number > 0"),
])
def test_bad_values_name_key_value_and_allowed(assignment, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(sets=[assignment])
    assert fragment in str(info.value)


@pytest.mark.parametrize("sets, fragment", [
    (["synthetic.test_split=0", "data.use_test_set=true", "evaluation.split=test"],
     'evaluation.split: got "test" but synthetic.test_split is 0, so there is no test split'),
    (["data.source=ctr", "data.ctr_dataset=avazu", "ctr.datasets.avazu.test_path=null",
      "ctr.datasets.avazu.split_test_from_train=false", "data.use_test_set=true", "evaluation.split=test"],
     "ctr.datasets.avazu.test_path is null and ctr.datasets.avazu.split_test_from_train is false"),
    (["ctr.datasets.criteo.filter.mode=top_count_rate_mix", "ctr.datasets.criteo.filter.high_k=0",
      "ctr.datasets.criteo.filter.middle_k=0", "ctr.datasets.criteo.filter.low_k=0"],
     "ctr.datasets.criteo.filter.high_k: got 0, with middle_k and low_k 0; expected at least one of them >= 1"),
])
def test_settings_that_leave_nothing_to_evaluate_or_keep_are_refused_at_load(sets, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(sets=sets)
    assert fragment in str(info.value)
    assert load_config(sets=sets[:-1])  # the same config without its last setting loads


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
    cfg = load_config(sets=["ctr.defaults.device_counter_cap=7", "ctr.datasets.criteo.device_counter_cap=3"])
    assert cfg.ctr.datasets["avazu"].device_counter_cap == 7 and cfg.ctr.datasets["yambda"].device_counter_cap == 7
    assert cfg.ctr.datasets["criteo"].device_counter_cap == 3
    assert cfg.ctr.datasets["avazu"].condition_col == "C14"
    assert cfg.ctr.datasets["criteo"].condition_col == "C1"


def test_fingerprint_stable_and_sensitive():
    a, b = load_config(), load_config()
    assert config_fingerprint(to_dict(a)) == config_fingerprint(to_dict(b))
    c = load_config(sets=["model.embed_dim=5"])
    assert config_fingerprint(to_dict(a)) != config_fingerprint(to_dict(c))


def test_deep_merge_replaces_lists_and_scalars():
    assert deep_merge({"a": {"b": 1, "c": [1, 2]}}, {"a": {"c": [3]}}) == {"a": {"b": 1, "c": [3]}}


def test_cli_config_show_and_error():
    out = subprocess.run([sys.executable, "-m", "le_ray.cli", "config", "show", "--profile", "wide_net",
                          "--set", "training.lr=0.01"], capture_output=True, text=True, check=True)
    shown = json.loads(out.stdout)
    assert shown["model"]["name"] == "wide" and shown["training"]["lr"] == 0.01
    bad = subprocess.run([sys.executable, "-m", "le_ray.cli", "config", "show", "--set", "training.lr=-2"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "training.lr: got -2" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("assignment,fragment", [
    ("model.norm=bn", 'model.norm: got "bn"; expected one of "none", "batch", "layer" or a list, each one of'),
    ("ctr.datasets.avazo={}", 'ctr.datasets.avazo: unknown key; allowed keys here: avazu, criteo, yambda; '
                              'did you mean "avazu"?'),
    ("evaluation.ece_methd=custom", 'did you mean "ece_method"?'),
    ("training.loss_mode=bcee", 'did you mean "bce"?'),
    ("model.hidden_sizes=[64,0]", "model.hidden_sizes[1]: got 0; expected an integer >= 1"),
    ("report.rate_bands=[0.5,0.1]", "report.rate_bands: got [0.5, 0.1]; expected one or more edges strictly between"),
    ("report.rate_bands=[0.001,0.01,0.01]", "report.rate_bands: got [0.001, 0.01, 0.01]; expected one or more edges"),
    ("report.rate_bands=[]", "report.rate_bands: got []; expected one or more edges"),
    ("report.rate_bands=[0,0.1]", "report.rate_bands: got [0.0, 0.1]; expected one or more edges strictly between 0"),
])
def test_messages_collapse_unions_and_suggest(assignment, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(sets=[assignment])
    assert fragment in str(info.value)
    assert len(info.value.problems) == 1


def test_unknown_profile_suggests_the_close_one():
    with pytest.raises(ConfigError, match='did you mean "quickstart"'):
        load_config(profile="quickstrt")


def test_shadowed_set_warns_with_both_keys_and_the_winner():
    with pytest.warns(ConfigShadowWarning) as record:
        cfg = load_config(sets=["training.by_loss.bce.by_source.synthetic.batch_size=512", "training.batch_size=512"])
    messages = [str(w.message) for w in record]
    assert len(messages) == 1 and "training.by_loss.localized_entropy.by_source.synthetic.batch_size = 16384" in \
        messages[0] and "--set training.batch_size=512" in messages[0]
    assert cfg.training_for("le").batch_size == 16384 and cfg.training_for("bce").batch_size == 512


def test_unshadowed_set_is_silent(recwarn):
    cfg = load_config(sets=["training.eval_batch_size=512"])
    assert cfg.training_for("le").eval_batch_size == 512
    assert not [w for w in recwarn if issubclass(w.category, ConfigShadowWarning)]


SOURCES = {"synthetic": [], "avazu": ["data.source=ctr", "data.ctr_dataset=avazu"],
           "criteo": ["data.source=ctr", "data.ctr_dataset=criteo"], "yambda": ["data.source=ctr",
                                                                                "data.ctr_dataset=yambda"]}


@pytest.mark.parametrize("source", list(SOURCES))
def test_wildcard_set_reaches_every_loss_on_every_source(source, recwarn):
    # the defaults set batch_size per loss AND per source: a plain training.batch_size would be shadowed
    cfg = load_config(sets=[*SOURCES[source], "training.loss_mode=all", "training.by_loss.*.batch_size=64",
                            "training.by_loss.*.lr_decay=0.99", "training.by_loss.*.focal.gamma=1.5"])
    default_gamma = load_config().training.focal.gamma
    for loss in cfg.losses:  # focal.* is focal's own section: the wildcard sets it for focal only
        s = cfg.training_for(loss)
        assert (s.batch_size, s.lr_decay, s.focal.gamma) == (64, 0.99, 1.5 if loss == "focal" else default_gamma)
    assert not [w for w in recwarn if issubclass(w.category, ConfigShadowWarning)]


def test_wildcard_expands_only_where_a_source_holds_the_key():
    from le_ray.config.load import expand_set

    data = {"training": {"by_loss": {"le": {"by_source": {"avazu": {"lr": 1}, "criteo": {"epochs": 2}}}}}}
    paths = {".".join(p) for p in expand_set(data, ["training", "by_loss", "*", "lr"])}
    assert paths == {"training.by_loss.le.lr", "training.by_loss.le.by_source.avazu.lr", "training.by_loss.bce.lr",
                     "training.by_loss.localized_entropy.lr", "training.by_loss.focal.lr"}
    assert expand_set(data, ["training", "lr"]) == [["training", "lr"]]
    # a loss-specific section goes to the loss that reads it, alias included (else the audit's no_effect warnings)
    sections = {".".join(p) for p in expand_set(data, ["training", "by_loss", "*", "cross_batch", "max_window"])}
    assert sections == {"training.by_loss.le.cross_batch.max_window",
                        "training.by_loss.localized_entropy.cross_batch.max_window"}
    assert [".".join(p) for p in expand_set(data, ["training", "by_loss", "*", "by_source", "avazu", "focal",
                                                   "gamma"])] == ["training.by_loss.focal.by_source.avazu.focal.gamma"]


def test_wildcard_wins_over_an_alias_in_a_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"training": {"by_loss": {"le": {"by_source": {"synthetic": {"batch_size": 7}}}}}}))
    cfg = load_config(path, sets=["training.by_loss.*.batch_size=96"])
    assert cfg.training_for("le").batch_size == 96 and cfg.training_for("bce").batch_size == 96


@pytest.mark.parametrize("assignment", ["training.*.lr=1", "training.by_loss.*=1", "model.*=2",
                                        "training.by_loss.bce.by_source.*.lr=1", "training.by_loss.*.*.lr=1"])
def test_wildcard_elsewhere_is_a_clear_error(assignment):
    with pytest.raises(ConfigError, match=r"\* is allowed only in training\.by_loss\.\*\.<key>"):
        load_config(sets=[assignment])


def test_same_settings_for_all_losses_takes_optimiser_keys_from_training():
    from le_ray.config.schema import LOSS_SPECIFIC_KEYS, OPTIMISER_SETTING_KEYS, TRAINING_SETTING_KEYS

    sets = ["training.loss_mode=all", "training.lr=0.003", "training.batch_size=1024", "training.amp=bf16",
            "training.by_loss.focal.by_source.synthetic.focal.gamma=3.0", "training.by_loss.bce.eval_batch_size=99"]
    with pytest.warns(ConfigShadowWarning, match="does not apply"):
        differ = load_config(sets=sets)
    alike = load_config(sets=[*sets, "training.same_settings_for_all_losses=true"])  # nothing shadows: no warning
    for loss in alike.losses:
        mine, before = alike.training_for(loss), differ.training_for(loss)
        for key in OPTIMISER_SETTING_KEYS:
            assert getattr(mine, key) == getattr(alike.training, key)
        for key in set(TRAINING_SETTING_KEYS) - set(OPTIMISER_SETTING_KEYS):  # the loss's own and the run's keys
            assert getattr(mine, key) == getattr(before, key)
    assert alike.training_for("focal").focal.gamma == 3.0 and alike.training_for("bce").eval_batch_size == 99
    assert alike.training_for("le").cross_batch.enabled and not alike.training_for("bce").cross_batch.enabled
    assert differ.training_for("bce").lr != differ.training_for("focal").lr  # the defaults do differ
    assert set(LOSS_SPECIFIC_KEYS) <= set(TRAINING_SETTING_KEYS) - set(OPTIMISER_SETTING_KEYS)


def test_provenance_names_the_layer_that_set_each_key(tmp_path):
    from le_ray.config.load import provenance

    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"training": {"weight_decay": 0.1}, "experiment": {
        "overrides": {"training": {"amp": "bf16"}},
        "definitions": {"p": {"extends": "small_net", "training": {"by_loss": {"le": {"epochs": 2}}}}}}}))
    origins = provenance(path, profile="p", sets=["training.by_loss.*.lr_decay=0.9", "training.lr=0.5"],
                         tuned=["training.by_loss.bce.by_source.synthetic.lr=0.25"])
    assert origins.origin("training.weight_decay") == "--config mine.json"
    assert origins.origin("model.hidden_sizes") == "profile small_net"
    assert origins.origin("training.by_loss.localized_entropy.epochs") == "profile p"  # alias le normalised
    assert origins.origin("training.amp") == "experiment.overrides"
    assert origins.origin("training.lr") == "--set"
    assert origins.origin("training.by_loss.focal.by_source.synthetic.lr_decay") == "default"  # not held: not set
    assert origins.origin("training.by_loss.bce.lr_decay") == "--set"
    assert origins.origin("training.by_loss.bce.by_source.synthetic.lr") == "tuned"
    assert origins.origin("training.by_loss.localized_entropy.by_source.synthetic.lr") == "default"
    assert origins.origin("training.by_loss.localized_entropy.by_source.synthetic.lr_decay") == "--set"


def test_shadow_message_offers_the_every_loss_one_liner_that_silences_it(recwarn):
    from le_ray.config import merge_layers, resolve_config, shadowed_sets

    sets = ["training.loss_mode=all", "training.epochs=3", "training.by_loss.focal.by_source.synthetic.epochs=9"]
    (shadow,) = shadowed_sets(merge_layers(sets=sets), sets, ("synthetic",), ("bce", "localized_entropy", "focal"))
    assert "--set 'training.by_loss.*.epochs=3'" in shadow.message
    fixed = [*sets, "training.by_loss.*.epochs=3"]
    data = merge_layers(sets=fixed)
    assert all(s.set_key != "training.by_loss.*.epochs" for s in shadowed_sets(
        data, fixed, ("synthetic",), ("bce", "localized_entropy", "focal")))
    assert {resolve_config(data).training_for(loss).epochs for loss in ("bce", "localized_entropy", "focal")} == {3}


def test_set_literal_round_trips_through_parse_set():
    import shlex

    from le_ray.config.resolve import set_literal

    for value in (64, 0.5, None, True, "bf16", "5", [1, 2], "a b"):
        (word,) = shlex.split(set_literal("training.x", value))
        assert parse_set(word) == (["training", "x"], value)


def test_empty_tune_space_means_no_search_and_same_settings_refuses_tuned_optimiser_keys():
    from le_ray.config.resolve import tuned_optimiser_keys

    cfg = load_config(profile="quickstart_tune", sets=["tune.space.focal={}"])
    assert dict(cfg.tune.space["focal"]) == {} and tuned_optimiser_keys(cfg) == []
    alike = load_config(profile="quickstart_tune", sets=["training.same_settings_for_all_losses=true"])
    problems = tuned_optimiser_keys(alike)
    assert {p.split(":")[0] for p in problems} == {"tune.space.bce.lr", "tune.space.localized_entropy.lr",
                                                   "tune.space.focal.lr"}


def test_per_loss_set_that_its_source_entry_overrides_warns(recwarn):
    with pytest.warns(ConfigShadowWarning, match=r"training\.by_loss\.bce\.by_source\.synthetic\.lr = 0\.004 is more"):
        cfg = load_config(sets=["training.by_loss.bce.lr=0.01"])
    assert cfg.training_for("bce").lr == 0.004  # the warning tells the truth: the set did not apply
    load_config(sets=["data.source=ctr", "data.ctr_dataset=yambda", "training.by_loss.bce.lr_decay=0.9"])
    assert not [w for w in recwarn if issubclass(w.category, ConfigShadowWarning)]  # yambda's entry has no lr_decay


def test_loss_keys_come_from_the_registry_and_aliases_merge_over_their_canonical_entry():
    from le_ray.config.load import canonical_loss_keys
    from le_ray.registry import loss_key

    assert loss_key("le") == "localized_entropy" and loss_key("bce") == "bce"
    assert loss_key("LE") is None and loss_key("*") is None and loss_key(5) is None  # keys match as written
    by_loss = {"localized_entropy": {"epochs": 1, "lr": 3}, "bce": {}, "le": {"epochs": 2}, "foo": {"x": 1}}
    data = {"training": {"lr": 1, "by_loss": by_loss},
            "tune": {"space": {"le": {"lr": {"uniform": [0, 1]}}}}}
    before = json.dumps(data)
    out = canonical_loss_keys(data)
    assert json.dumps(data) == before  # the input is left as it is
    assert out["training"] == {"lr": 1, "by_loss": {"localized_entropy": {"epochs": 2, "lr": 3}, "bce": {},
                                                    "foo": {"x": 1}}}
    assert out["tune"] == {"space": {"localized_entropy": {"lr": {"uniform": [0, 1]}}}}
    odd = {"training": {"by_loss": {"le": 5}}}  # not an object: left for validation to name
    assert canonical_loss_keys(odd) == odd


@pytest.mark.parametrize("count", [3, 6])
def test_uniform_log10_means_count_must_equal_num_conditions(count):
    # fewer conditions than means used to drop the last means (the rare ad) silently; more was refused
    with pytest.raises(ConfigError) as info:
        load_config(sets=[f"synthetic.num_conditions={count}"])
    assert (f"synthetic.uniform_log10_means: got 4 value(s) but synthetic.num_conditions = {count}; expected one "
            "mean per condition") in str(info.value)
    assert load_config(sets=[f"synthetic.num_conditions={count}", "synthetic.condition_mode=random"])  # means unused
    assert load_config(sets=[f"synthetic.num_conditions={count}",
                             f"synthetic.uniform_log10_means={[-2.0] * count}"]).synthetic.num_conditions == count


def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path):
    """JSON keeps the last of two equal keys without a word: lr 0.1 then 0.2 trained with 0.2."""
    path = tmp_path / "twice.json"
    path.write_text('{"training": {"lr": 0.1, "epochs": 2, "lr": 0.2}}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"config file {str(path)!r}: key 'lr' appears twice in one object (JSON would "
                                   "keep the last silently); keep one"]


def test_a_deprecated_dataset_key_that_contradicts_the_current_one_is_refused(tmp_path):
    import warnings

    from le_ray.config.resolve import DeprecatedKeyWarning

    path = tmp_path / "both.json"
    path.write_text('{"data": {"ctr_dataset": "yambda"}, "ctr": {"dataset": "criteo"}}')
    with warnings.catch_warnings(), pytest.raises(ConfigError) as info:
        warnings.simplefilter("ignore", DeprecatedKeyWarning)
        load_config(path)
    assert "ctr.dataset (deprecated): got 'criteo', but data.ctr_dataset is 'yambda'; give only data.ctr_dataset" \
        in info.value.problems
    with pytest.warns(DeprecatedKeyWarning, match="ctr.dataset is deprecated; use data.ctr_dataset"):
        assert load_config(sets=["ctr.dataset=criteo"]).data.ctr_dataset == "criteo"


def test_a_profile_typo_is_named_where_it_was_written(tmp_path):
    """Before: 'trainig: unknown key; allowed keys here: project, ...' as if at the top of the config, and nothing at
    all when the profile was not the active one; a missing parent was blamed on --profile."""
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"experiment": {"definitions": {
        "p": {"description": "x", "trainig": {"lr": 0.1}}, "x": {"extends": "nosuch"}}}}))
    for profile in ("p", "quickstart"):
        with pytest.raises(ConfigError) as info:
            load_config(path, profile=profile)
        assert info.value.problems[0].startswith("experiment.definitions.p.trainig: unknown section in profile 'p'; "
                                                 "expected one of project, experiment,")
        assert info.value.problems[0].endswith('did you mean "training"?')
    path.write_text(json.dumps({"experiment": {"definitions": {"x": {"extends": "nosuch"}}}}))
    with pytest.raises(ConfigError) as info:
        load_config(path, profile="x")
    assert info.value.problems[0].startswith("profile 'x' (experiment.definitions.x): extends: got 'nosuch'")


def test_a_config_stored_before_a_key_was_added_reads_resumes_and_keeps_its_trial_ids():
    """Sweep folders stored before ``training.cross_batch.warm_start`` existed: their config resolves with the
    value they ran with, a rerun on the same settings finds no change, and their trials keep their ids (a hash of
    the config without the key: here one stored by le_ray before the key, the quickstart's BCE seed 42, whose
    data fingerprint is that of the profile's first data draw)."""
    from le_ray.config import resolve_config, to_dict
    from le_ray.sweep.plan import plan_trials
    from le_ray.sweep.store import config_changes

    stored = to_dict(load_config(profile="quickstart"))  # what a sweep folder stores, less the key
    del stored["training"]["cross_batch"]["warm_start"]
    cfg = resolve_config(stored)
    assert cfg.training.cross_batch.warm_start is False
    assert config_changes(stored, to_dict(load_config(profile="quickstart"))) == []
    warm = config_changes(stored, to_dict(load_config(profile="quickstart", sets=["training.cross_batch.warm_start=true"])))
    assert [(c.key, c.old, c.new) for c in warm] == [("training.cross_batch.warm_start", False, True)]
    ids = {spec.trial_id for spec in plan_trials(cfg).specs}
    assert "bce-s42-e6048bfd06bccf7b" in ids  # stored by the quickstart at commit fd5c9c8, before the key
    warm_ids = {s.trial_id for s in plan_trials(load_config(profile="quickstart", sets=[
        "training.by_loss.localized_entropy.by_source.synthetic.cross_batch.warm_start=true"])).specs}
    assert len(ids & warm_ids) == 20 and len(warm_ids - ids) == 10  # only LE's trials change
