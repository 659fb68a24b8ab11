"""Docs that cannot drift: the README's numbers about a profile are computed from the profile here, run times are
the one measured and dated figure, and every ``le-ray`` example (README, help texts, profile descriptions) runs as
written — commands that need no cluster and no training run for real (``config``, ``prepare``, ``help``); those
that would train have their arguments parsed and their config resolved exactly as the runner does."""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import shlex
from pathlib import Path

import pytest

from le_ray.cli.commands import COMMANDS, QUICKSTART_TIME
from le_ray.cli.console import main as le_ray, top_parser
from le_ray.config import load_config, profiles
from le_ray.data.synthetic import expected_condition_rate
from le_ray.glossary import TESTED_METRICS
from le_ray.stats import min_pairs_for_alpha

from .sample_data import require_sample

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
TEXT = re.sub(r"\s+", " ", README)  # the README's prose with line breaks folded
NUMBER = r"([\d,]+(?:\.\d+)?)"


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def _find(pattern: str, text: str = TEXT) -> tuple[str, ...]:
    found = re.search(pattern, text)
    assert found, f"README no longer says {pattern!r}"
    return found.groups()


# ---------------------------------------------------------------- examples ---------------------------------------

def readme_examples() -> list[str]:
    """Every ``le-ray`` line of the README's bash blocks (its trailing ``# comment`` dropped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            if line.startswith("le-ray "):
                out.append(re.sub(r"\s+#\s.*$", "", line).strip())
    return out


def help_examples() -> list[str]:
    """The examples of every command's help, of ``le-ray --help`` and of the profile descriptions."""
    out = [text for command in COMMANDS.values() for text, _ in command.examples]
    out += [line.strip() for line in top_parser().epilog.splitlines() if line.strip().startswith("le-ray ")]
    for profile in profiles().values():
        out += re.findall(r"`(le-ray [^`]+)`", profile.description)
    return out


EXAMPLES = sorted(set(readme_examples()) | set(help_examples()))


def test_the_examples_are_found():
    assert len(readme_examples()) >= 10 and len(help_examples()) >= len(COMMANDS)
    assert {shlex.split(e)[1] for e in EXAMPLES} <= set(COMMANDS) | {"help"}


def _runner(name: str):
    entry = importlib.import_module(COMMANDS[name].module)
    return importlib.import_module(entry.main.__module__)


def _store_the_named_sweep(module, rest: list[str]) -> None:
    """A quickstart sweep stored under the example's ``--name`` and results folder, as ``le-ray repeats`` leaves it
    before Ray starts; a relative ``--results-dir`` is redirected to the test's results folder first (in place)."""
    from le_ray.config import to_dict
    from le_ray.config.load import merge_layers
    from le_ray.sweep.store import SweepStore, resolve_results_dir

    if "--results-dir" in rest and not Path(rest[rest.index("--results-dir") + 1]).is_absolute():
        rest[rest.index("--results-dir") + 1] = os.environ["LE_RAY_RESULTS"]
    given = rest[rest.index("--results-dir") + 1] if "--results-dir" in rest else None
    name, argv = rest[rest.index("--name") + 1], ["--profile", "quickstart"]
    cfg = module.sweep_config(module.parse_arguments(argv))[0]
    results = resolve_results_dir(given, merge_layers()["output"]["results_dir"])
    SweepStore.open(results, name).record_run(to_dict(cfg), [*argv, "--name", name])


def _resolve_training_command(name: str, rest: list[str]):
    """What the runner does before any work, without training: parse, then resolve the config."""
    from le_ray.cli.args import config_and_shadows
    from le_ray.config.resolve import tuned_optimiser_keys

    module = _runner(name)
    if name == "repeats":
        if "--name" in rest and not {"--profile", "--config"} & set(rest):
            _store_the_named_sweep(module, rest)  # the example resumes or extends a sweep stored before
        return module.sweep_config(module.parse_arguments(rest))[0]
    args = module._parser().parse_args(rest)
    cfg = config_and_shadows(args)[0]
    if name == "tune":
        module.tuning_seed_range(cfg)
        assert tuned_optimiser_keys(cfg) == []
    return cfg


def _redirected(argv: list[str], tmp_path: Path) -> list[str]:
    """``argv`` with what it would write moved to ``tmp_path``: the --json file and output.dir."""
    out = [str(tmp_path / Path(a).name) if i and argv[i - 1] == "--json" else a for i, a in enumerate(argv)]
    return [*out, "--set", f"output.dir={tmp_path}"]


EXPECTED_EXIT = {"avazu_top6_by_count": 2}  # the README's example of a profile the data cannot support


def _needs_sample(argv: list[str]) -> None:
    """Skip (or, in CI, fail) when an example reads the shipped samples and they are not where it says."""
    text = " ".join(argv)
    for name in ("avazu", "criteo"):
        if f"{name}_sample" in text or f"shared/data/{name}" in text:
            require_sample(name, f"{name}_sample.csv")
            if not (REPO / ".." / "shared" / "data" / name / f"{name}_sample.csv").is_file():
                why = f"the example reads ../shared/data/{name}; the sample lies elsewhere"
                if os.environ.get("CI"):  # CI has ../shared beside the clone: a missing sample is a failure there
                    pytest.fail(why)
                pytest.skip(why)


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_runs_as_written(example, tmp_path, monkeypatch, capsys):
    argv = shlex.split(example)[1:]
    name, rest = argv[0], argv[1:]
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("LE_RAY_RESULTS", str(tmp_path / "results"))
    if name == "help":
        with pytest.raises(SystemExit) as done:
            le_ray(argv)
        assert done.value.code == 0
    elif name in ("config", "prepare"):
        _needs_sample(argv)
        code = le_ray(argv if name == "config" and rest[0] == "profiles" else _redirected(argv, tmp_path))
        expected = next((c for p, c in EXPECTED_EXIT.items() if p in argv), 0)
        assert code == expected, capsys.readouterr().err
    elif name in ("repeats", "tune", "run"):
        cfg = _resolve_training_command(name, rest)
        assert cfg.losses
    else:  # report / compare read stored results: the arguments must parse
        _runner(name)._parser().parse_args(rest)


def test_readme_error_example_prints_what_the_readme_shows(capsys):
    shown = _find(r"\$ (le-ray config show[^\n]*)\nle-ray: (invalid configuration[^\n]*)\n((?:  - [^\n]*\n)+)",
                  README)
    assert le_ray(shlex.split(shown[0])[1:]) == 2
    err = capsys.readouterr().err
    assert f"le-ray: {shown[1]}" in err
    for line in shown[2].splitlines():  # "..." stands for a shortened part of the line
        pattern = ".*".join(re.escape(piece) for piece in line.split("..."))
        assert any(re.fullmatch(pattern, printed) for printed in err.splitlines()), line


# ---------------------------------------------------------------- run times --------------------------------------

def _minutes(text: str) -> float:
    minutes, seconds = _find(r"(\d+) min (\d+) s", text)
    return int(minutes) + int(seconds) / 60


def test_the_quickstart_run_time_is_the_measured_one_everywhere():
    low, high = (float(x.replace("½", ".5")) for x in _find(r"^(\d+½?) to (\d+½?) minutes", QUICKSTART_TIME))
    measured = _find(r"measured (\d+ min \d+ s) to (\d+ min \d+ s) on 2 CPU cores, (\d{4}-\d{2}-\d{2})\)")
    assert low <= _minutes(measured[0]) <= _minutes(measured[1]) <= high
    assert QUICKSTART_TIME in TEXT and QUICKSTART_TIME in profiles()["quickstart"].description
    assert QUICKSTART_TIME in top_parser().epilog and QUICKSTART_TIME in COMMANDS["repeats"].examples[0][1]
    quoted = [c.description for c in COMMANDS.values()] + [w for c in COMMANDS.values() for _, w in c.examples]
    quoted += [p.description for p in profiles().values()]
    for text in quoted:  # no other 2-core run time: only the measured one is quoted
        assert not re.search(r"minutes? on 2 (CPU )?cores", text.replace(QUICKSTART_TIME, "")), text


# ---------------------------------------------------------------- the quickstart ---------------------------------

@pytest.fixture(scope="module")
def quickstart():
    return load_config(profile="quickstart")


def _rates(cfg) -> list[float]:
    return [expected_condition_rate(m, cfg.synthetic.uniform_log10_std)
            for m in cfg.synthetic.uniform_log10_means[:cfg.synthetic.num_conditions]]


def test_quickstart_shape_comes_from_the_profile(quickstart):
    cfg = quickstart
    ads, rows = _find(r"(\d+) synthetic ads × ([\d,]+) rows")
    assert int(ads) == cfg.synthetic.num_conditions and _num(rows) == cfg.synthetic.samples_per_condition
    rarest, *others = _find(r"mean click rate of about ([\d.]+) % \(the others ([\d.]+) %, ([\d.]+) % and ([\d.]+) %\)")
    rates = sorted(_rates(cfg))
    assert [float(x) / 100 for x in (rarest, *sorted(others, key=float))] == pytest.approx(rates, rel=0.05)
    assert all(cfg.training_for(loss).epochs == int(_find(r"small net, (\d+) epochs")[0]) for loss in cfg.losses)
    assert int(_find(r"(\d+) seeds, with the data redrawn")[0]) == cfg.repeats.num_runs and cfg.repeats.resample_data
    assert "BCE, LE and focal" in TEXT and set(cfg.losses) == {"bce", "localized_entropy", "focal"}
    assert int(_find(r"Its design: (\d+) % of the rows are the evaluation split")[0]) == round(
        100 * (1 - cfg.data.train_split))


def test_quickstart_clicks_steps_and_history_come_from_the_profile(quickstart):
    cfg, rarest = quickstart, min(_rates(quickstart))
    per_ad = cfg.synthetic.samples_per_condition
    train_per_ad = per_ad * cfg.data.train_split
    eval_clicks, train_clicks, rows, rate = _find(
        rf"about (\d+) evaluation clicks expected .*? about (\d+) training clicks expected \({NUMBER} training rows "
        r"× ([\d.]+) %")
    assert int(eval_clicks) == round(per_ad * (1 - cfg.data.train_split) * rarest)
    assert int(train_clicks) == round(train_per_ad * rarest) and _num(rows) == train_per_ad
    assert float(rate) / 100 == pytest.approx(rarest, rel=0.05)
    steps, total, batch = _find(rf"give (\d+) optimiser steps per epoch \({NUMBER} training rows / {NUMBER}\)")
    train_rows = math.floor(cfg.data.train_split * cfg.synthetic.num_conditions * per_ad)
    assert _num(total) == train_rows
    assert {cfg.training_for(loss).batch_size for loss in cfg.losses} == {_num(batch)}
    assert int(steps) == math.ceil(train_rows / _num(batch))
    amplification, window, fits = _find(rf"\((\d+) / rate ≈ {NUMBER} rows\) fits in its {NUMBER} training rows")
    le = cfg.training_for("localized_entropy").cross_batch
    assert le.enabled and int(amplification) == le.amplification_rate
    assert _num(window) == pytest.approx(le.amplification_rate / rarest, rel=0.02) and _num(fits) == train_per_ad
    assert _num(window) < _num(fits)


def test_quickstart_smallest_training_clicks_over_the_draws(quickstart):
    from le_ray.data.prepare import prepare_data
    from le_ray.sweep.plan import sweep_seeds

    stated = int(_find(r"the audit prints the smallest over the (?:\d+) draws, (\d+)\)")[0])
    rare = min(range(quickstart.synthetic.num_conditions), key=lambda j: quickstart.synthetic.uniform_log10_means[j])
    fewest = min(int(prepare_data(quickstart, seed=s).train_condition_positives[rare]) for s in sweep_seeds(quickstart))
    assert stated == fewest


def test_quickstart_history_warmup_is_the_audit_s(quickstart):
    from le_ray.data.prepare import prepare_data
    from le_ray.sweep.audit import audit_experiment, expected_clicks_per_batch

    clicks, batch = _find(
        rf"the rarest ad expects about ([\d.]+) clicks in a batch of {NUMBER} \(`le_history_warmup`\)")
    data = prepare_data(quickstart)
    audit = audit_experiment(quickstart, [data])
    (finding,) = [f for f in audit.findings if f.code == "le_history_warmup"]
    rare = min(range(quickstart.synthetic.num_conditions), key=lambda j: quickstart.synthetic.uniform_log10_means[j])
    assert finding.conditions == (rare,) and quickstart.training_for("le").batch_size == _num(batch)
    expected = expected_clicks_per_batch(int(_num(batch)), data.train_condition_counts, _le_rates(quickstart, data))
    assert round(float(expected[rare]), 1) == float(clicks)


def _le_rates(cfg, data):
    from le_ray.data.prepare import le_base_rates

    return le_base_rates(data, prior=cfg.training_for("le").le.base_rate_prior,
                         use_true_rates=cfg.synthetic.use_true_base_rates_for_le)


def test_quickstart_seeds_and_learning_rates(quickstart):
    seeds, needed, metrics, needed_again = _find(
        r"(\d+) seeds are one more than the (\d+) an exact Wilcoxon test needs to reach 0\.05 after a Holm correction "
        r"over the (\d+) metrics \(its smallest p with (\d+) seeds")
    assert int(metrics) == len(TESTED_METRICS) and int(seeds) == quickstart.repeats.num_runs == int(needed) + 1
    assert min_pairs_for_alpha(0.05, m_tests=int(metrics), correction="holm", alternative="two-sided") == int(needed)
    assert needed == needed_again and 2 / 2 ** int(needed) < 0.05 / int(metrics) <= 2 / 2 ** (int(needed) - 1)
    bce_le, focal = _find(r"BCE and LE train with lr ([\d.]+) and focal with ([\d.]+)")
    assert quickstart.training_for("bce").lr == quickstart.training_for("le").lr == float(bce_le)
    assert quickstart.training_for("focal").lr == float(focal)


# ---------------------------------------------------------------- real samples -----------------------------------

def test_avazu_sample_paragraph_comes_from_the_profile():
    cfg = load_config(profile="avazu_sample")
    avazu = cfg.active_ctr
    k, train, evaluation, cap, batch, epochs, history, seeds = _find(
        r"`avazu_sample`: the (\d+) most frequent C14 ads, (\d+) / (\d+) train / eval split .*? capped at (\d+) values, "
        r"batch (\d+), (\d+) epochs, LE history A = (\d+), (\d+) seeds")
    assert (avazu.filter.k, avazu.condition_col, avazu.categorical_max_values) == (int(k), "C14", int(cap))
    assert (round(100 * cfg.data.train_split), int(train) + int(evaluation)) == (int(train), 100)
    for loss in cfg.losses:
        s = cfg.training_for(loss)
        assert (s.batch_size, s.epochs) == (int(batch), int(epochs))
    assert cfg.training_for("le").cross_batch.amplification_rate == int(history)
    assert cfg.repeats.num_runs == int(seeds) and not cfg.repeats.resample_data


def test_avazu_sample_data_and_audit_as_the_readme_says(monkeypatch):
    from le_ray.data.prepare import prepare_data
    from le_ray.sweep.audit import audit_experiment

    _needs_sample(["avazu_sample"])
    monkeypatch.chdir(REPO)
    cfg = load_config(profile="avazu_sample")
    data = prepare_data(cfg)
    import numpy as np

    eval_clicks = np.bincount(data.eval.cond, weights=data.eval.y, minlength=data.num_conditions)
    assert eval_clicks.min() >= int(_find(r"every kept ad has ≥ (\d+) evaluation clicks")[0])
    rates = data.train_condition_positives / data.train_condition_counts
    floor, rarest = _find(r"Every kept ad's click rate is above (\d+) % \(the rarest ([\d.]+) % in the train split\)")
    assert rates.min() > float(floor) / 100 and round(100 * rates.min(), 1) == float(rarest)
    audit = audit_experiment(cfg, [data])
    assert not audit.errors
    assert {"settings_differ", "fixed_split", "le_history_warmup"} <= {f.code for f in audit.warnings}
    ads, kept, batch, fill, steps = _find(
        rf"and that (\d+) of the (\d+) ads expect fewer than 1 click per batch of (\d+) \(`le_history_warmup`; "
        rf"their LE windows fill within the first (\d+) of the {NUMBER} steps\)")
    (warmup,) = [f for f in audit.findings if f.code == "le_history_warmup"]
    le = audit.settings["localized_entropy"]
    rows = np.array([c["train_rows"] for c in audit.conditions])
    per_batch = le["batch_size"] * rows / rows.sum()
    fills = np.asarray(le["history"]["capacity"])[list(warmup.conditions)] / per_batch[list(warmup.conditions)]
    assert (len(warmup.conditions), data.num_conditions, le["batch_size"]) == (int(ads), int(kept), int(batch))
    assert math.ceil(fills.max()) == int(fill) and le["steps_total"] == _num(steps)
    stated = dict(zip(("bce", "localized_entropy", "focal"), map(float, _find(
        r"lr_decay differs between the losses \(the per-loss Avazu defaults: BCE ([\d.]+), LE ([\d.]+), focal ([\d.]+)\)"))))
    (row,) = [r for r in audit.fairness]
    assert row["setting"] == "lr_decay" and {loss: v["value"] for loss, v in row["losses"].items()} == stated


def test_criteo_sample_paragraph_comes_from_the_profile():
    cfg = load_config(profile="criteo_sample")
    k, train, batch, epochs, seeds = _find(r"`criteo_sample`: the (\d+) most frequent C1 values, (\d+) / \d+ split, "
                                           r"batch (\d+), (\d+) epochs, (\d+) seeds")
    assert (cfg.active_ctr.filter.k, cfg.active_ctr.condition_col) == (int(k), "C1")
    assert round(100 * cfg.data.train_split) == int(train) and cfg.repeats.num_runs == int(seeds)
    assert {(cfg.training_for(l).batch_size, cfg.training_for(l).epochs) for l in cfg.losses} == {(int(batch),
                                                                                                  int(epochs))}


def test_avazu_top6_example_numbers_are_what_prepare_reports(tmp_path, monkeypatch):
    from le_ray.runners.prepare import main

    (command,) = [e for e in readme_examples() if "avazu_top6_by_count" in e]
    argv = shlex.split(command)[2:]
    _needs_sample(argv)
    monkeypatch.chdir(REPO)
    assert main([*argv, "--json", str(tmp_path / "a.json"), "--set", f"output.dir={tmp_path}"]) == 2
    data = json.loads((tmp_path / "a.json").read_text())
    source, ads, kept, train, bce, le = _find(
        rf"on the {NUMBER}-row sample: its (\d+) ads keep {NUMBER} rows after balancing \({NUMBER} for training\), so "
        rf"batches of {NUMBER} \(BCE\) and {NUMBER} \(LE\) give one optimiser step per epoch")
    settings = data["audit"]["settings"]
    assert (_num(source), int(ads), _num(kept)) == (data["source_rows"], len(data["conditions"]), data["labelled_rows"])
    assert settings["bce"]["train_rows"] == _num(train)
    assert (settings["bce"]["batch_size"], settings["localized_entropy"]["batch_size"]) == (_num(bce), _num(le))
    assert {s["steps_per_epoch"] for s in settings.values()} == {1}


# ---------------------------------------------------------------- profiles ---------------------------------------

def _check_description(name: str, text: str) -> int:
    """Check every number a profile description states against the resolved profile; returns how many."""
    cfg, checked = load_config(profile=name), 0
    model = cfg.model
    rules = (
        (r"hidden ([\d-]+)", lambda m: tuple(map(int, m.split("-"))) == model.hidden_sizes),
        (r"dropout ([\d.]+)", lambda m: float(m) == model.dropout),
        (r"embeddings (\d+)/(\d+)", lambda e, c: (int(e), int(c)) == (model.embed_dim, model.cat_embed_dim)),
        (r"condition embedding (\d+)", lambda e: int(e) == model.embed_dim),
        (r"(\d+) seeds", lambda n: int(n) == cfg.repeats.num_runs),
        (r"top-(\d+)|the (\d+) most frequent", lambda a, b: int(a or b) == (
            cfg.active_ctr.filter.preselect_k if cfg.active_ctr.filter.mode == "top_count_rate_mix"
            else cfg.active_ctr.filter.k)),
        (r"([\d.]+) GPU and (\d+) CPUs per trial", lambda g, c: (float(g), int(c)) == (cfg.ray.gpus_per_trial,
                                                                                     cfg.ray.cpus_per_trial)),
        (r"auto GPU share and (\d+) CPUs per trial", lambda c: (None, int(c)) == (cfg.ray.gpus_per_trial,
                                                                                 cfg.ray.cpus_per_trial)),
        (r"(\d+) synthetic ads", lambda n: int(n) == cfg.synthetic.num_conditions),
        (r"(\d+) samples per loss", lambda n: int(n) == cfg.tune.num_samples),
        (r"batch (\d+)", lambda b: {cfg.training_for(l).batch_size for l in cfg.losses} == {int(b)}),
    )
    for pattern, holds in rules:
        for found in re.finditer(pattern, text):
            assert holds(*found.groups()), f"profile {name}: {found.group(0)!r} is not what the profile resolves to"
            checked += 1
    return checked


def test_every_number_in_a_profile_description_is_the_profile_s():
    checked = {name: _check_description(name, p.description) for name, p in profiles().items()}
    assert checked["quickstart"] >= 2 and checked["avazu_sweep_gpu"] >= 3 and checked["large_net"] >= 3


def test_readme_profile_table_comes_from_the_profiles():
    seeds, losses, gpus = _find(r"cluster sweeps: (\d+) seeds × (\d+) losses, ([\w./ ]+) GPU per trial")
    sweeps = [load_config(profile=p) for p in ("avazu_sweep_gpu", "criteo_sweep_gpu")]
    assert {(c.repeats.num_runs, len(c.losses)) for c in sweeps} == {(int(seeds), int(losses))}
    assert [c.ray.gpus_per_trial for c in sweeps] == [None if g.strip() == "auto" else float(g) for g in gpus.split("/")]
    default = load_config().model
    hidden, activation, dropout = _find(r"default model: hidden ([\d-]+), (\w+), dropout ([\d.]+)")
    assert (tuple(map(int, hidden.split("-"))), default.activation, default.dropout) == (
        default.hidden_sizes, activation.lower(), float(dropout))
    samples = int(_find(r"tune-then-test demo on the quickstart data: (\d+) samples per loss")[0])
    assert samples == load_config(profile="quickstart_tune").tune.num_samples


def test_the_same_settings_example_trains_every_loss_alike_and_soundly():
    from le_ray.config.schema import OPTIMISER_SETTING_KEYS

    (command,) = [e for e in readme_examples() if "same_settings_for_all_losses=true" in e]
    cfg = _resolve_training_command("repeats", shlex.split(command)[2:])
    for key in OPTIMISER_SETTING_KEYS:
        assert len({json.dumps(getattr(cfg.training_for(loss), key)) for loss in cfg.losses}) == 1, key
    train_rows = math.floor(cfg.data.train_split * cfg.synthetic.num_conditions * cfg.synthetic.samples_per_condition)
    assert math.ceil(train_rows / cfg.training.batch_size) >= cfg.repeats.min_steps_per_epoch


# ---------------------------------------------------------------- decades ------------------------------------------

@pytest.mark.slow  # prepares 10M synthetic rows (~8 s)
def test_decades_rarest_ads_and_their_clicks_per_batch_are_the_audit_s():
    """The README's four rarest decades ads and their expected clicks per batch, from the audit at 1/10 of the rows
    (a condition's share of a batch and its rate do not depend on the row count; 1/10 keeps ~30 clicks per rare ad)."""
    from le_ray.data.prepare import prepare_data
    from le_ray.sweep.audit import audit_experiment, expected_clicks_per_batch

    low, high, batch = _find(rf"The four rarest expect ([\d.]+)–([\d.]+) clicks in a batch of {NUMBER}\.")
    cfg = load_config(profile="decades", sets=["synthetic.samples_per_condition=1000000"])
    data = prepare_data(cfg)
    (finding,) = [f for f in audit_experiment(cfg, [data]).findings if f.code == "le_history_warmup"]
    rarest = sorted(range(cfg.synthetic.num_conditions), key=lambda j: cfg.synthetic.uniform_log10_means[j])[:4]
    assert finding.conditions == tuple(sorted(rarest)) and cfg.training_for("le").batch_size == _num(batch)
    clicks = expected_clicks_per_batch(int(_num(batch)), data.train_condition_counts, _le_rates(cfg, data))[rarest]
    assert (float(f"{clicks.min():.1g}"), float(f"{clicks.max():.1g}")) == (float(low), float(high))
