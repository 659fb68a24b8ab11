"""Tune, then test: search-space validation, the honest protocol (disjoint rows and seeds), best settings reaching
the test sweep, and a tiny tune through `ray job submit`. Resuming a tune by name, and the resume line of a
stopped one, are in tests/test_tune_resume.py."""

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from le_ray.config import ConfigError, load_config
from le_ray.data.prepare import prepare_data, validation_split
from le_ray.sweep.plan import sweep_seeds
from le_ray.report.tuning import search_counts
from le_ray.runners.tune import apply_sample, best_overrides, search_record, tuning_budget, tuning_seed_range

from .tune_cases import TINY, _RayStarted, _no_ray, tiny_args


@pytest.mark.parametrize("assignment,fragment", [
    ('tune.space.bce.lrr={"uniform": [1, 2]}', 'tune.space.bce.lrr: unknown training key; expected one of'),
    ('tune.space.bce.lr={"loguniform": [0, 1]}', "tune.space.bce.lr.loguniform: got [0, 1]; expected low > 0"),
    ('tune.space.bce.lr={"uniform": [2, 1]}', "expected [low, high] with low < high"),
    ('tune.space.bce.batch_size={"int": [64, 100.5]}', "tune.space.bce.batch_size.int: got [64, 100.5]; expected two "
                                                       "integers"),
    ('tune.space.bce.cross_batch={"choice": [1]}', "tune.space.bce.cross_batch: cross_batch is a section"),
    ('tune.space.bce.lr={"gauss": 1}', 'expected one of {"loguniform": ...}'),
    ('tune.space.hinge.lr={"uniform": [1, 2]}', "tune.space.hinge: unknown loss"),
    ("tune.metric=loglos", 'tune.metric: got "loglos"; expected one of logloss'),
    ("tune.scheduler=pbt", "tune.scheduler"),
])
def test_space_errors_name_the_dotted_key(assignment, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(sets=[assignment])
    assert fragment in str(info.value)


@pytest.mark.parametrize("assignment,message", [
    ('tune.space.bce.weight_decay={"uniform": [-0.1, 0.1]}',
     "tune.space.bce.weight_decay.uniform: low end -0.1 is refused by training.weight_decay"),  # a float key: no int
    ('tune.space.bce.lr={"choice": ["fast", 0.01]}',
     'tune.space.bce.lr.choice: choice "fast" is refused by training.lr: got "fast"; expected a number > 0'),
    ('tune.space.bce.batch_size={"uniform": [100, 2000]}',
     'tune.space.bce.batch_size.uniform: draws floats, but training.batch_size takes integers: use {"int": [100, 2000]}'),
    ('tune.space.bce.lr={"uniform": [-0.1, 0.01]}',
     "tune.space.bce.lr.uniform: low end -0.1 is refused by training.lr: got -0.1; expected a number > 0"),
    ('tune.space.focal.focal.gamma={"uniform": [0.5, 1e400]}', "tune.space.focal.focal.gamma.uniform: got [0.5, "
                                                              "Infinity]; expected [low, high] with low < high, both finite"),
    ('tune.space.bce.eval_batch_size={"int": [0, 3]}',
     "tune.space.bce.eval_batch_size.int: low end 0 is refused by training.eval_batch_size: got 0; expected an "
     "integer >= 1"),
    ('tune.space.le.amp={"choice": ["off", "fp16"]}', 'tune.space.localized_entropy (le).amp.choice: choice "fp16" is '
                                                      'refused by training.amp'),
])
def test_a_space_that_can_draw_a_value_its_key_refuses_is_refused_before_any_search(assignment, message):
    """Before, these passed the config and failed inside every Ray Tune trial, after Ray had started."""
    with pytest.raises(ConfigError) as info:
        load_config(profile="quickstart_tune", sets=[assignment])
    assert message in str(info.value) and len(info.value.problems) == 1, str(info.value)


def test_a_space_within_its_keys_bounds_passes_and_its_samples_validate():
    cfg = load_config(profile="quickstart_tune", sets=['tune.space.bce.batch_size={"int": [100, 2000]}',
                                                       'tune.space.bce.lr_zero_after_epochs={"choice": [null, 2]}'])
    settings = apply_sample(cfg.training_for("bce"), {"batch_size": np.int64(512), "lr_zero_after_epochs": None,
                                                      "seed": 7})
    assert settings.batch_size == 512 and settings.lr_zero_after_epochs is None


def test_a_later_layers_distribution_replaces_the_profiles_instead_of_merging_into_it(tmp_path):
    """An alias's entry merges over the canonical one, and a user profile over its parent: a distribution of another
    kind used to merge into the profile's, giving the entry two distributions and an error against the profile's
    valid one."""
    cfg = load_config(profile="quickstart_tune", sets=['tune.space.le.lr={"uniform": [0.001, 0.01]}'])
    assert dict(cfg.tune.space["localized_entropy"]["lr"]) == {"uniform": (0.001, 0.01)}
    user = tmp_path / "mine.json"
    user.write_text(json.dumps({"experiment": {"definitions": {"mine": {
        "extends": "quickstart_tune", "tune": {"space": {"focal": {"focal.gamma": {"choice": [0.5, 1.0]}}}}}}}}))
    cfg = load_config(user, profile="mine")
    assert dict(cfg.tune.space["focal"]["focal.gamma"]) == {"choice": (0.5, 1.0)}
    assert dict(cfg.tune.space["focal"]["lr"]) == {"loguniform": (0.0005, 0.02)}


def test_a_problem_under_an_alias_names_the_alias_the_user_wrote():
    for assignment, path in [('tune.space.le.lr={"uniform": [-1, 1]}', "tune.space.localized_entropy (le).lr.uniform"),
                             ("training.by_loss.le.lr=-1", "training.by_loss.localized_entropy (le).lr")]:
        with pytest.raises(ConfigError) as info:
            load_config(sets=[assignment])
        assert [p.split(":")[0] for p in info.value.problems] == [path]
    with pytest.raises(ConfigError) as info:
        load_config(sets=['tune.space.localized_entropy.lr={"uniform": [-1, 1]}'])
    assert info.value.problems[0].startswith("tune.space.localized_entropy.lr.uniform: low end -1.0")


def test_two_distributions_in_one_entry_are_refused_as_such():
    with pytest.raises(ConfigError) as info:
        load_config(sets=['tune.space.bce.lr={"uniform": [0.001, 0.01], "loguniform": [0.001, 0.01]}'])
    assert info.value.problems == ['tune.space.bce.lr: got {"uniform": [0.001, 0.01], "loguniform": [0.001, 0.01]}; '
                                   'expected one distribution, not 2 (uniform, loguniform)']


def _sample(lr, curve, error=None):
    return {"config": {"lr": lr}, "seed": 1, "curve": curve, "final": curve[-1] if curve else None,
            "epochs": len(curve), "error": error}


def test_the_best_sample_is_ranked_at_the_epoch_the_full_length_samples_reached_and_failures_never_win():
    """ASHA stopped the 0.002 sample after 1 epoch, at a lower logloss than either full-length sample reached at
    epoch 3; and a sample that crashed after 2 epochs had the lowest value of all. Before, the best was picked by the
    last reported value of any sample, so the stopped (or crashed) one won against the 3-epoch samples."""
    cfg = load_config(profile="quickstart_tune")
    samples = [_sample(0.001, [0.40, 0.36, 0.35]), _sample(0.002, [0.30]), _sample(0.004, [0.39, 0.34, 0.33]),
               _sample(0.008, [0.31, 0.20], error="RuntimeError: CUDA out of memory"), _sample(0.016, [float("nan")])]
    record = search_record(cfg, "bce", samples)
    assert record["best"]["config"] == {"lr": 0.004} and record["ranked_epochs"] == 3
    assert search_counts(record) == {"samples": 5, "failed": 2, "stopped": 1, "epochs_trained": 10, "ranked": 2,
                                     "ranked_epochs": 3}
    auc = search_record(load_config(profile="quickstart_tune", sets=["tune.metric=roc_auc"]), "bce",
                        [_sample(0.001, [0.60, 0.71]), _sample(0.002, [0.80]), _sample(0.004, [0.62, 0.70])])
    assert auc["best"]["config"] == {"lr": 0.001}  # higher is better, still among the 2-epoch samples


def test_under_fifo_every_finished_sample_is_ranked_so_a_searched_epochs_can_win():
    """FIFO with epochs searched: a 2-epoch sample at 0.20 lost to a 5-epoch one at 0.42, because only the samples
    at the most epochs were ranked (the ASHA rule)."""
    from le_ray.report.tuning import tuning_table

    cfg = load_config(profile="quickstart_tune", sets=["tune.scheduler=fifo", 'tune.space.bce.epochs={"int": [1, 5]}'])
    samples = [_sample(0.001, [0.5, 0.20]), _sample(0.002, [0.6, 0.5, 0.45, 0.43, 0.42]),
               _sample(0.004, [], error="boom")]
    record = search_record(cfg, "bce", samples)
    assert record["best"]["config"] == {"lr": 0.001} and record["ranked_epochs"] is None
    assert search_counts(record) == {"samples": 3, "failed": 1, "stopped": 0, "epochs_trained": 7, "ranked": 2,
                                     "ranked_epochs": None}
    assert tuning_table({"metric": "logloss", "losses": [record]}).row(0, named=True)["ranked"] == \
        "2 (every finished sample)"


def test_a_best_sample_whose_curve_never_moved_is_flagged():
    """lr in [1e3, 1e4]: both BCE samples diverged to a constant prediction (logloss 0.30221 at every epoch), and the
    search picked one as BCE's best without a word."""
    cfg = load_config(profile="quickstart_tune", sets=["training.loss_mode=both"])
    flat = search_record(cfg, "bce", [_sample(5942.3, [0.30221] * 3), _sample(2000.0, [0.30221] * 3)])
    moved = search_record(cfg, "localized_entropy", [_sample(0.001, [0.4, 0.35, 0.33])])
    assert flat["best_flat"] and not moved["best_flat"]
    sentence = tuning_budget(cfg, 1000, [flat, moved])["sentence"]
    assert "WARNING: for BCE, the best sample's validation logloss stayed at 0.30221 over its 3 epochs, as a model " \
           "that diverged to a constant prediction does" in sentence and "for LE" not in sentence


def test_a_searched_epochs_makes_the_budget_unequal_and_says_its_range():
    """FIFO with BCE's epochs searched over 1–6 and LE at 3: the report said 'the same budget: 3 samples of up to 3
    epochs'."""
    cfg = load_config(profile="quickstart_tune", sets=["training.loss_mode=both", "tune.scheduler=fifo",
                                                       "training.by_loss.*.epochs=3",
                                                       'tune.space.bce.epochs={"int": [1, 6]}'])
    records = [search_record(cfg, loss, [_sample(0.001, [0.4, 0.3, 0.3])]) for loss in ("bce", "localized_entropy")]
    budget = tuning_budget(cfg, 1000, records)
    assert budget["same"] is False and budget["epochs"] == {"bce": "1–6 (searched)", "localized_entropy": 3}
    assert "epochs per sample BCE 1–6 (searched), LE up to 3" in budget["sentence"]


def test_the_budget_is_not_called_the_same_when_a_loss_lost_samples_and_says_what_asha_ranked():
    cfg = load_config(profile="quickstart_tune", sets=["training.loss_mode=both"])
    full = [_sample(0.001, [0.4, 0.3, 0.3, 0.3, 0.3]), _sample(0.002, [0.5])]
    records = [search_record(cfg, "bce", full + [_sample(0.003, [], error="ValueError")] * 4),
               search_record(cfg, "localized_entropy", full * 3)]
    budget = tuning_budget(cfg, 1000, records)
    assert budget["same"] is False and budget["counts"]["bce"]["failed"] == 4
    assert budget["sentence"].startswith("The losses were NOT tuned with the same budget")
    assert "samples that failed or ended without a finite logloss: BCE 4 of 6," in budget["sentence"]
    assert "each loss's best was ranked among its samples that trained the most epochs (BCE 1 at 5, LE 3 at 5 " \
           "epochs)" in budget["sentence"]
    even = tuning_budget(cfg, 1000, [records[1], {**records[1], "loss": "bce"}])
    assert even["same"] is True and even["sentence"].startswith("Each loss was tuned with the same budget: 6 samples")
    # lr is searched alike by both (and drawn first): the same lr values were tried (audit: LE and focal were tested
    # at one identical lr while the old sentence spoke only of identical whole spaces)
    assert ("Every search draws from the same random seed (project.seed 42): lr, searched alike by several losses, "
            "can take the same values in each (the first key drawn always does)") in even["sentence"]
    assert "(keys searched: BCE 1, LE 2): a loss searching more keys tries each less densely" in even["sentence"]
    apart = load_config(profile="quickstart_tune", sets=[
        "training.loss_mode=both", 'tune.space.localized_entropy={"lr": {"loguniform": [0.001, 0.01]}}'])
    said = tuning_budget(apart, 1000, [records[1], {**records[1], "loss": "bce"}])["sentence"]
    assert "same random seed" not in said and "keys searched" not in said  # other ranges, one key each
    fifo = load_config(profile="quickstart_tune", sets=["training.loss_mode=both", "tune.scheduler=fifo"])
    assert "ASHA" not in tuning_budget(fifo, 1000, [records[1], {**records[1], "loss": "bce"}])["sentence"]


def test_the_tuning_table_ranks_like_the_search_and_counts_failures():
    from le_ray.report.tuning import tuning_table

    cfg = load_config(profile="quickstart_tune")
    record = search_record(cfg, "bce", [_sample(0.001, [0.4, 0.35]), _sample(0.002, [0.3]),
                                        _sample(0.004, [0.4, 0.33]), _sample(0.008, [], error="boom")])
    row = tuning_table({"metric": "logloss", "losses": [record]}).row(0, named=True)
    assert (row["samples"], row["failed"], row["ranked"]) == (4, 1, "2 at epoch 2")
    assert (row["best logloss"], row["min"], row["max"]) == (0.33, 0.33, 0.35)
    one = search_record(cfg, "bce", [_sample(0.001, [0.4, 0.35]), _sample(0.002, [0.3])])  # one ranked at epoch 2
    row = tuning_table({"metric": "logloss", "losses": [one]}).row(0, named=True)
    assert row["ranked"] == "1 at epoch 2" and (row["min"], row["median"], row["max"]) == (None, None, None)


def test_space_accepts_aliases_and_nested_keys():
    cfg = load_config(sets=['tune.space.le.le.norm_strength={"uniform": [0.5, 2]}',
                            'tune.space.le.cross_batch.amplification_rate={"choice": [8, 64]}'])
    assert set(cfg.tune.space["localized_entropy"]) == {"le.norm_strength", "cross_batch.amplification_rate"}


@pytest.mark.parametrize("assignment,message", [
    ('tune.space.bce.focal.gamma={"uniform": [0.1, 2]}', "tune.space.bce.focal.gamma: only focal reads focal.*, so "
                                                        "searching it for bce changes nothing; search it under "
                                                        "tune.space.focal"),
    ('tune.space.focal.cross_batch.amplification_rate={"choice": [8]}', "tune.space.focal.cross_batch.amplification_"
                                                                       "rate: only localized_entropy reads cross_batch"),
    ('tune.space.le.focal={"gamma": {"uniform": [0.1, 2]}}', "tune.space.localized_entropy (le).focal.gamma: only "
                                                             "focal reads focal.*"),
    ('tune.space.bce.epochs={"int": [1, 3]}', "tune.space.bce.epochs: ASHA's budget is the epochs"),
])
def test_a_space_key_its_loss_never_reads_or_asha_cannot_search_is_refused(assignment, message):
    """Before, BCE spent its samples on focal.gamma (a no-op) and the report showed it as BCE's best setting."""
    with pytest.raises(ConfigError) as info:
        load_config(sets=[assignment])
    assert [p for p in info.value.problems if p.startswith(message)], info.value.problems
    load_config(sets=['tune.space.bce.epochs={"int": [1, 3]}', "tune.scheduler=fifo"])


def test_validation_rows_come_from_train_and_never_from_eval():
    cfg = load_config(sets=TINY)
    data = prepare_data(cfg)
    tuning = validation_split(data, 0.25, cfg.project.seed)
    train_ids, val_ids, eval_ids = (set(s.row_id.tolist()) for s in (tuning.train, tuning.eval, data.eval))
    assert not val_ids & eval_ids and not train_ids & eval_ids and not train_ids & val_ids
    assert train_ids | val_ids == set(data.train.row_id.tolist())
    assert len(val_ids) == int(0.25 * len(data.train)) and tuning.test is None
    assert tuning.fingerprint != data.fingerprint


def test_tuning_seeds_never_meet_the_test_seeds():
    cfg = load_config(sets=TINY)
    low, high = tuning_seed_range(cfg)
    assert max(sweep_seeds(cfg)) < low < high
    with pytest.raises(ConfigError, match="tune.seed_offset"):
        tuning_seed_range(load_config(sets=[*TINY, "tune.seed_offset=1", "repeats.num_runs=5"]))


def test_best_settings_reach_the_test_config():
    cfg = load_config(sets=TINY)
    tuned = apply_sample(cfg.training_for("le"), {"lr": np.float64(0.0042), "focal.gamma": 1.5, "seed": 7})
    assert tuned.lr == 0.0042 and tuned.focal.gamma == 1.5
    records = [{"loss": "bce", "best": {"config": {"lr": 0.0031}}},
               {"loss": "localized_entropy", "best": {"config": {"lr": 0.0042, "cross_batch.amplification_rate": 16}}}]
    sets = best_overrides(cfg, records)
    test = load_config(sets=[*TINY, *sets])
    assert test.training_for("bce").lr == 0.0031 and test.training_for("le").lr == 0.0042
    assert test.training_for("le").cross_batch.amplification_rate == 16


@pytest.mark.slow
@pytest.mark.ray
def test_tiny_tune_then_test_as_a_ray_job_and_resume(ray_head, tmp_path):
    """``python -m le_ray.tune`` submitted to a token-auth head (tests/conftest.py), then resubmitted after the
    BCE search's result file is lost: the search is restored from Ray Tune's experiment state, not run again."""
    sets = [s for s in TINY if not s.startswith("tune.space.le.")]  # LE has no space: tested as configured
    job = [sys.executable, "-m", "le_ray.tune", *tiny_args(sets), "--results-dir", str(tmp_path), "--name", "t"]
    first = ray_head.submit(*job)
    assert first.returncode == 0 and "succeeded" in first.stdout, first.stdout[-3000:] + first.stderr[-3000:]
    root = tmp_path / "t"
    summary = json.loads((root / "tune" / "summary.json").read_text())
    best = {r["loss"]: r["best"] for r in summary["losses"]}
    assert [len(r["samples"]) for r in summary["losses"]] == [2, 0] and best["localized_entropy"] is None
    stored = json.loads((root / "config.resolved.json").read_text())
    assert stored["training"]["by_loss"]["bce"]["by_source"]["synthetic"]["lr"] == best["bce"]["config"]["lr"]
    seeds = {s["seed"] for r in summary["losses"] for s in r["samples"]}
    assert seeds and not seeds & set(summary["test_seeds"])
    text = (root / "summary.md").read_text()
    assert "## Tuning" in text and "never seen while tuning" in text
    assert (root / "report" / "plots" / "tuning_curves.png").exists()
    (root / "tune" / "bce.json").unlink()  # as if interrupted after the BCE search
    second = ray_head.submit(*job, "--no-report")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    again = json.loads((root / "tune" / "bce.json").read_text())
    assert again["best"] == best["bce"]  # restored from Ray Tune's experiment state, not searched anew
    assert "resuming: 4 of 4 trials already stored" in second.stdout
    third = ray_head.submit(*job, "--no-report")  # every search and trial stored: no search, no trial, no Ray
    assert third.returncode == 0 and "every one of the 4 trials is stored" in third.stdout, third.stdout[-3000:]
    # ... and never refused for time (a GPU tune re-reported elsewhere): nothing is left to train
    fourth = ray_head.submit(*job, "--no-report", "--set", "repeats.max_estimated_hours=0.000001")
    assert fourth.returncode == 0 and "too_slow_here" not in fourth.stdout + fourth.stderr, fourth.stdout[-3000:]


def test_a_one_sample_search_is_said_before_searching_and_in_the_budget(tmp_path, monkeypatch, capsys):
    """Before, `tune.num_samples: 1` was taken silently, and the report called its only sample each loss's best."""
    from le_ray.report.tuning import tuning_markdown

    tune = _no_ray(monkeypatch)
    one = [*TINY, "tune.num_samples=1"]
    with pytest.raises(_RayStarted):
        tune.main([*tiny_args(one), "--results-dir", str(tmp_path), "--name", "t"])
    out = capsys.readouterr().out
    note = ("note: with 1 sample per loss (tune.num_samples 1) each loss's 'best' config is just that sample: the "
            "search compared no settings, so tuning decided nothing; raise tune.num_samples to compare settings")
    assert note in out.splitlines() and "1 sample each" in out
    cfg = load_config(profile="small_net", sets=one)
    records = [search_record(cfg, loss, [_sample(0.002, [0.4, 0.3])]) for loss in cfg.losses]
    sentence = tuning_budget(cfg, 1000, records)["sentence"]
    assert sentence.startswith("Each loss was tuned with the same budget: 1 sample of up to 2 epochs")
    assert sentence.endswith("Note: With 1 sample per loss (tune.num_samples 1) each loss's 'best' config is just "
                             "that sample: the search compared no settings, so tuning decided nothing.")
    summary = {"seed_range": [1, 2], "num_samples": 1, "scheduler": "asha", "metric": "logloss",
               "validation_rows": 10, "train_rows": 40, "test_seeds": [0], "losses": records}
    for budget in ({}, {"budget": {"sentence": sentence}}):  # a summary from before the note; one with it
        text = tuning_markdown({**summary, **budget}, None, tmp_path)[2]
        assert text.count("tuning decided nothing") == 1
    assert "Note:" not in tuning_budget(load_config(profile="small_net", sets=TINY), 1000, records)["sentence"]


def test_the_test_sweeps_settings_differ_says_a_tuned_value_is_each_losss_best(tmp_path):
    """Before, a tune's test sweep warned that lr differed between the losses and advised one lr for every loss,
    though each loss's lr differed because each was tuned (and a tuned value overrides any --set)."""
    import argparse

    import le_ray.runners.tune as tune

    def differ(sets, records):
        cfg = load_config(profile="small_net", sets=sets)
        args = argparse.Namespace(config=None, profile="small_net", sets=sets, allow_unsound=True)
        pre = tune._test_preflight(args, cfg, records, tmp_path, "t", lambda *a: None, prepare_data(cfg))
        return [f for f in pre.audit.findings if f.code == "settings_differ"]
    records = [{"loss": "bce", "best": {"config": {"lr": 0.003}}},
               {"loss": "localized_entropy", "best": {"config": {"lr": 0.006}}}]
    (both,) = differ(TINY, records)
    assert both.severity == "warning" and "BCE 0.003 (tuned); LE 0.006 (tuned)" in both.message
    assert "because lr was tuned per loss (tune.space.<loss>.lr): each loss is tested at its own best lr, which is " \
           "the intended comparison of tuned losses, so do not make the values equal" in both.message
    assert "--set" not in both.message and "tune.space.bce.lr" in both.keys
    only_bce = [s for s in TINY if not s.startswith("tune.space.le.")]
    (one,) = differ(only_bce, [records[0], {"loss": "localized_entropy", "best": None}])
    assert "lr was tuned for BCE (at its own best) but not for LE, which keeps the configured value, so the " \
           "comparison mixes tuned and untuned settings; search lr for every compared loss too " \
           "(tune.space.localized_entropy.lr)" in one.message


def test_a_tune_test_sweep_extended_by_name_still_says_its_values_were_tuned(tmp_path):
    """Before, `le-ray repeats --name X --extend` on a tune's test sweep replayed the tune's command without the
    tuned values: the audit labelled each tuned lr with the layer the untuned value came from and advised one lr
    for every loss."""
    from le_ray.config import merge_layers, resolve_config, to_dict
    from le_ray.runners.repeats import parse_arguments, preflight
    from le_ray.sweep.store import SweepStore

    records = [{"loss": "bce", "best": {"config": {"lr": 0.003}}},
               {"loss": "localized_entropy", "best": {"config": {"lr": 0.006}}}]
    cfg = load_config(profile="small_net", sets=TINY)
    stored = resolve_config(merge_layers(profile="small_net", sets=[*TINY, *best_overrides(cfg, records)]))
    store = SweepStore.open(tmp_path, "t")
    store.record_run(to_dict(stored), [*tiny_args(), "--name", "t", "--results-dir", str(tmp_path)])
    store.write_json("tune/summary.json", {"losses": records})

    argv = ["--name", "t", "--results-dir", str(tmp_path), "--extend", "--allow-unsound", "--set", "repeats.num_runs=3"]
    pre = preflight(parse_arguments(argv), lambda line: None)
    (message,) = [f.message for f in pre.audit.findings if f.code == "settings_differ"]
    assert "BCE 0.003 (tuned); LE 0.006 (tuned)" in message and "because lr was tuned per loss" in message
    store.write_json("tune/summary.json", {"losses": [{"best": {"config": {"lr": 0.003}}}]})  # damaged: no loss
    pre = preflight(parse_arguments(argv), lambda line: None)  # the labels fall back; the run goes on
    assert "(tuned)" not in next(f.message for f in pre.audit.findings if f.code == "settings_differ")


def test_the_search_stops_on_our_stop_flag_and_a_pickled_stopper_is_inert():
    import pickle

    from ray import cloudpickle
    from ray.tune.stopper import NoopStopper

    from le_ray.runners.tune import signal_stopper
    from le_ray.sweep.driver import StopFlag

    flag = StopFlag()
    stopper = signal_stopper(flag)
    assert not stopper.stop_all() and not stopper("t", {"logloss": 0.1})
    flag.signum = 2
    assert stopper.stop_all()
    for dump, load in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        assert isinstance(load(dump(stopper)), NoopStopper)  # Tune stores its run config for a restore
    assert not signal_stopper(None).stop_all()


def test_a_restored_search_gets_this_processs_stopper(tmp_path):
    """A restore keeps the stored run config, whose stopper was pickled inert: a Ctrl-C during a restored search
    waited for every sample to end, then dropped the whole search (audit). The Tuner this Ray builds holds its run
    config where the restore fix puts the live stopper."""
    from ray import tune as ray_tune
    from ray.tune.stopper import NoopStopper

    from le_ray.runners.tune import _with_stopper
    from le_ray.sweep.driver import StopFlag

    tuner = ray_tune.Tuner(lambda config: None, run_config=ray_tune.RunConfig(
        name="x", storage_path=str(tmp_path), stop=NoopStopper()))  # as restored: an inert stopper
    flag = StopFlag()
    stopper = _with_stopper(tuner, flag)._local_tuner._run_config.stop
    assert not stopper.stop_all()
    flag.signum = 2
    assert stopper.stop_all()


def test_a_search_stopped_by_a_signal_leaves_no_record_and_no_tune_folder_so_a_resume_searches_again(
        tmp_path, monkeypatch):
    import le_ray.runners.tune as tune
    from le_ray.sweep.driver import StopFlag, StopRequested

    flag, cfg = StopFlag(), load_config(profile="small_net", sets=TINY)

    class Stopped:
        def fit(self):
            (tmp_path / "bce" / "trial").mkdir(parents=True)  # what Ray Tune had written of the search
            flag.signum = 2
            return None
    monkeypatch.setattr(tune, "_tuner", lambda *a: Stopped())
    with pytest.raises(StopRequested):
        tune.run_search(cfg, "bce", None, tmp_path, lambda *a: None, flag)
    assert not (tmp_path / "bce").exists() and not (tmp_path / "bce.json").exists()


def test_an_audit_error_no_searched_key_can_change_refuses_the_tune_before_ray_and_any_search(
        tmp_path, monkeypatch, capsys):
    """Before, the audit ran only after every search: ~35 s of searching, then 'nothing was trained'."""
    tune = _no_ray(monkeypatch)
    few_steps = [*TINY, "training.batch_size=1024", "repeats.min_steps_per_epoch=5"]  # 1,944 train rows: 1 step
    assert tune.main([*tiny_args(few_steps), "--results-dir", str(tmp_path), "--name", "t"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("le-ray: tune refused before any search, nothing was trained") and "[few_steps] BCE" in err
    assert not (tmp_path / "t").exists()
    only_le = [*few_steps, 'tune.space.le.batch_size={"choice": [64]}']  # LE's search cannot change BCE's batch
    assert tune.main([*tiny_args(only_le), "--results-dir", str(tmp_path), "--name", "t1"]) == 2
    err = capsys.readouterr().err
    assert "[few_steps] BCE takes" in err and "[few_steps] LE" not in err
    tuned = [*few_steps, 'tune.space.bce.batch_size={"choice": [32, 64]}', 'tune.space.le.batch_size={"choice": [64]}']
    with pytest.raises(_RayStarted):  # a searched key can change the finding: the search goes ahead
        tune.main([*tiny_args(tuned), "--results-dir", str(tmp_path), "--name", "t2"])
    with pytest.raises(_RayStarted):
        tune.main([*tiny_args(few_steps), "--allow-unsound", "--results-dir", str(tmp_path), "--name", "t3"])
    out = capsys.readouterr().out  # the warnings no search can change are said before searching
    assert "before the searches, on the configured settings: WARNING [fixed_split]" in out
    assert "WARNING [few_steps]" not in out  # an error, refused or (--allow-unsound) not a warning


def test_a_tuning_split_too_small_to_train_on_is_refused_before_ray(tmp_path, monkeypatch, capsys):
    tune = _no_ray(monkeypatch)
    small = [*TINY, "repeats.min_steps_per_epoch=5", "tune.validation_split=0.8"]  # 1,944 train rows → 388 to tune
    assert tune.main([*tiny_args(small), "--results-dir", str(tmp_path), "--name", "t"]) == 2
    assert "tuning BCE: 389 tuning train rows (tune.validation_split 0.8 of 1,944) give 4 step(s) of batch 128 per " \
           "epoch; at least 5 (repeats.min_steps_per_epoch) are needed: lower tune.validation_split, or the batch " \
           "size to at most 77" in capsys.readouterr().err


def test_a_grace_period_that_reaches_every_searched_losss_epochs_is_refused():
    with pytest.raises(ConfigError) as info:
        load_config(profile="small_net", sets=[*TINY, "tune.grace_period=2"])
    assert info.value.problems == ["tune.grace_period: got 2; ASHA stops a sample only after it, so it must be below "
                                   "the epochs of a searched loss (bce 2, localized_entropy 2): lower it, or set "
                                   "tune.scheduler=fifo"]
    load_config(profile="small_net", sets=[*TINY, "tune.grace_period=2", "tune.scheduler=fifo"])


def test_a_search_whose_every_sample_failed_stops_the_tune_and_stores_nothing(tmp_path, monkeypatch):
    """Before, 'tuning BCE: no sample finished' and the test sweep ran on with the untuned settings as if tuned."""
    import le_ray.runners.tune as tune
    from le_ray.errors import UserError

    cfg = load_config(profile="small_net", sets=TINY)
    samples = [_sample(0.001, [], error="ray::trial_task()\nNonFiniteLossError: non-finite training loss at epoch 1"),
               _sample(0.002, [])]

    class Finished:
        num_terminated, num_errors = 1, 1

        def fit(self):
            (tmp_path / "bce" / "trial").mkdir(parents=True)  # what Ray Tune wrote of the search
            return self
    monkeypatch.setattr(tune, "_tuner", lambda *a: Finished())
    monkeypatch.setattr(tune, "_sample_rows", lambda grid, metric: samples)
    with pytest.raises(UserError) as info:
        tune.run_search(cfg, "bce", None, tmp_path, lambda *a: None)
    assert str(info.value) == ("tuning BCE: none of its 2 samples finished (1 failed; first: NonFiniteLossError: "
                               "non-finite training loss at epoch 1); nothing was tested, and nothing is stored for "
                               "this search: fix the cause and rerun the same command to search it again")
    assert not (tmp_path / "bce.json").exists() and not (tmp_path / "bce").exists()


def test_the_wall_line_names_the_tuning_searches():
    from le_ray.runners.repeats import wall_line

    line = wall_line({"ray": 3.0, "tuning": 40.0, "trials": 6.0, "report": 3.0}, 55.0)
    assert line.startswith("wall 55.0 s: Ray start 3.0 s, tuning searches 40.0 s, trials 6.0 s, report 3.0 s, the rest "
                           "3.0 s")


def test_a_tune_with_no_search_space_is_refused_before_ray(tmp_path, monkeypatch, capsys):
    """Before, `le-ray tune` without a profile announced '8 samples each', searched nothing and ran the default
    config's 30-trial test sweep (1M rows)."""
    tune = _no_ray(monkeypatch)
    assert tune.main(["--results-dir", str(tmp_path)]) == 2
    assert "tune.space: no search space for any compared loss (bce, localized_entropy)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_which_config_keys_a_search_may_change():
    from le_ray.runners.tune import _searched

    cfg = load_config(profile="quickstart_tune")  # lr searched for all three; focal.gamma for focal only
    assert _searched("training.by_loss.focal.by_source.synthetic.focal.gamma", cfg)
    assert not _searched("training.by_loss.bce.focal.gamma", cfg)
    assert _searched("training.lr", cfg) and not _searched("training.focal.gamma", cfg)  # global: every loss must
    assert not _searched("repeats.min_steps_per_epoch", cfg)


def test_a_trial_error_is_stored_as_its_exception_line_not_the_traceback_head():
    from le_ray.runners.tune import error_line

    text = ("Failure # 1\nTraceback (most recent call last):\n  File \"util.py\", line 12, in run\n    self._ret = "
            "self._target(*self)\nray.exceptions.RayTaskError(NonFiniteLossError): ray::_trainable() (pid=1)\n"
            "le_ray.training.loop.NonFiniteLossError: non-finite bce training loss (nan) at epoch 1, batch 2\n")
    assert error_line(text) == ("le_ray.training.loop.NonFiniteLossError: non-finite bce training loss (nan) at epoch "
                                "1, batch 2")
    assert error_line("something odd\nlast words") == "last words"


def test_a_test_sweep_continued_by_repeats_is_not_cut_back_by_a_tune_rerun(tmp_path):
    """`le-ray repeats --name t --extend --set repeats.num_runs=3` on a tune folder, then `le-ray tune --name t`:
    the rerun silently rebuilt the report on the tune's 2 seeds."""
    from le_ray.config import to_dict
    from le_ray.errors import ResultsError
    from le_ray.runners.tune import _test_store
    from le_ray.sweep.plan import plan_trials
    from le_ray.runners.repeats import Preflight

    cfg = load_config(profile="small_net", sets=TINY)
    extended = load_config(profile="small_net", sets=[*TINY, "repeats.num_runs=3"])
    root = tmp_path / "t"
    root.mkdir()
    (root / "config.resolved.json").write_text(json.dumps(to_dict(extended)))
    pre = Preflight(cfg, tmp_path, "t", True, plan_trials(cfg), None)
    with pytest.raises(ResultsError, match=r"was changed after the tune .*\n  - repeats.num_runs: 3 -> 2\n.*"
                                           r"`le-ray repeats --name t`"):
        _test_store(pre, root, [])
    (root / "config.resolved.json").write_text(json.dumps(to_dict(cfg)))
    assert _test_store(pre, root, []).root == root and pre.plan.done == set()


def test_a_ctr_tune_whose_test_seeds_redraw_the_split_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    """On the Avazu sample about 60 % of test seeds 43's and 44's evaluation rows were tuning rows (audit), while the
    report said the evaluation split was never seen while tuning. The refusal comes before the data are read."""
    tune = _no_ray(monkeypatch)
    monkeypatch.setattr(tune, "prepare_data", lambda *a, **k: pytest.fail("the data were prepared"))
    argv = ["--profile", "avazu_sample", "--set", "repeats.resample_data=true", "--set",
            'tune.space.bce.lr={"loguniform": [0.001, 0.01]}', "--results-dir", str(tmp_path), "--name", "t"]
    assert tune.main(argv) == 2
    err = capsys.readouterr().err
    assert "repeats.resample_data: got true for le-ray tune on a CTR file" in err and "evaluation.split=test" in err
    assert not (tmp_path / "t").exists()


def test_a_search_ray_tune_ends_early_without_our_signal_is_not_called_a_sigint(tmp_path, monkeypatch):
    import le_ray.runners.tune as tune
    from le_ray.errors import UserError
    from le_ray.sweep.driver import StopFlag

    cfg = load_config(profile="small_net", sets=[*TINY, "tune.num_samples=3"])

    class Cut:
        def fit(self):
            return SimpleNamespace(num_terminated=1, num_errors=0)
    monkeypatch.setattr(tune, "_tuner", lambda *a: Cut())
    with pytest.raises(UserError, match=r"ended with 1 of 3 samples finished \(not stopped by le_ray\)"):
        tune.run_search(cfg, "bce", None, tmp_path, lambda *a: None, StopFlag())


def test_the_tuning_curve_ranks_like_the_search():
    """Tune audit: the plot's best-so-far took an ASHA sample stopped at epoch 1 beside full-length ones, which the
    search never compares (the table's best can then sit above the curve)."""
    from le_ray.report.tuning import best_so_far, ranked_finals

    cfg = load_config(profile="quickstart_tune", sets=["training.loss_mode=both"])
    record = search_record(cfg, "bce", [_sample(0.001, [0.4, 0.3]), _sample(0.002, [0.1]), _sample(0.003, [0.5, 0.35])])
    assert record["ranked_epochs"] == 2 and record["best"]["final"] == 0.3
    assert ranked_finals(record) == [0.3, None, 0.35]
    assert best_so_far(ranked_finals(record), higher_is_better=False)[-1] == record["best"]["final"]
    fifo = search_record(load_config(profile="quickstart_tune", sets=["tune.scheduler=fifo"]), "bce",
                         [_sample(0.001, [0.4, 0.3]), _sample(0.002, [0.1])])
    assert ranked_finals(fifo) == [0.3, 0.1]  # FIFO ranks every sample at its own last epoch
