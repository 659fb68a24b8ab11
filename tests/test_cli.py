"""The command line: help with examples and the same prog both ways, --version, suggestions, submit.sh, resume by
name, the console (no ANSI codes off a terminal, readable sizes). README numbers: tests/test_docs.py."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from le_ray.cli.console import main
from le_ray.cli.commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_has_prog_examples_and_exits_0(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.startswith(f"usage: le-ray {name}") and "examples:" in out
    assert COMMANDS[name].examples[0][0] in out
    for env in COMMANDS[name].environment:
        assert env in out


@pytest.mark.parametrize("name", ["repeats", "run", "prepare", "tune"])
def test_python_m_entry_shows_the_same_prog(name):
    out = subprocess.run([sys.executable, "-m", COMMANDS[name].module, "--help"], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.startswith(f"usage: le-ray {name}")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_argument_has_help(name):
    import importlib

    entry = importlib.import_module(COMMANDS[name].module)
    module = importlib.import_module(entry.main.__module__)  # the runner behind a thin entry point
    parser = module._config_parser() if name == "config" else module._parser()
    missing = [a.dest for a in parser._actions if a.help in (None, "") and a.dest != "help"]
    assert not missing, f"le-ray {name}: arguments without help: {missing}"


def test_top_level_help_version_and_help_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "usage: le-ray" in out and "``" not in out
    assert all(name in out for name in COMMANDS) and "le-ray help <command>" in out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.match(r"le_ray \d+\.\d+\.\d+", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        main(["help", "report"])
    assert capsys.readouterr().out.startswith("usage: le-ray report")


def test_misspelled_command_profile_key_and_loss_get_suggestions(capsys):
    assert main(["repats"]) == 2
    assert 'did you mean "repeats"' in capsys.readouterr().err
    assert main(["config", "show", "--profile", "quikstart"]) == 2
    assert 'did you mean "quickstart"' in capsys.readouterr().err
    assert main(["config", "show", "--set", "training.epochz=3"]) == 2
    assert 'did you mean "epochs"' in capsys.readouterr().err
    assert main(["config", "show", "--set", "training.loss_mode=focl"]) == 2
    assert 'did you mean "focal"' in capsys.readouterr().err


def test_config_profiles_lists_descriptions_and_parents(capsys):
    assert main(["config", "profiles"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("quickstart "))
    assert "README's main job" in line and "(extends small_net)" in line


def test_config_show_effective_prints_each_loss(capsys):
    import json

    assert main(["config", "show", "--profile", "quickstart", "--effective"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == {"bce", "localized_entropy", "focal"}
    assert shown["localized_entropy"]["cross_batch"]["enabled"] is True
    assert "note:" not in capsys.readouterr().err


def test_config_profiles_refuses_the_options_of_config_show(capsys):
    """UX audit: `config profiles --effective --set training.lr=5` listed the profiles and ignored both."""
    assert main(["config", "profiles", "--effective", "--set", "training.lr=5"]) == 2
    err = capsys.readouterr().err
    assert "--set, --effective belong(s) to `le-ray config show`" in err
    assert main(["config", "profiles"]) == 0 and "quickstart" in capsys.readouterr().out


def test_config_show_without_a_profile_says_it_is_not_what_repeats_trains_by_default(capsys):
    """UX audit: `config show --effective` showed configs/default.json (batch 32,768) while `repeats` trains the
    quickstart (batch 2,048) when given neither --profile nor --config."""
    import json

    assert main(["config", "show", "--effective"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("note: without --profile or --config this starts from configs/default.json;")
    assert "--profile quickstart" in captured.err
    assert main(["config", "show", "--profile", "quickstart", "--effective"]) == 0
    quickstart = json.loads(capsys.readouterr().out)
    assert json.loads(captured.out)["bce"]["batch_size"] != quickstart["bce"]["batch_size"]  # why the note is needed


def test_config_show_names_a_shadowed_set_as_the_audit_does_not_as_a_python_warning(capsys, recwarn):
    import json

    assert main(["config", "show", "--profile", "quickstart", "--set", "training.batch_size=512"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["training"]["batch_size"] == 512
    lines = captured.err.splitlines()
    assert len(lines) == 3 and all(line.startswith("WARNING [shadowed_set] --set training.batch_size=512 does not "
                                                   "apply to ") for line in lines)
    assert not [w for w in recwarn if "ConfigShadowWarning" in type(w.message).__name__]


def test_submit_sh_parses_its_own_options_before_the_separator():
    out = subprocess.run(["bash", "jobs/submit.sh", "--no-wait", "--address", "http://127.0.0.1:1", "--dry-run", "--",
                          "--profile", "quickstart", "--results-dir", "/tmp/r"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert "ray job submit --address http://127.0.0.1:1" in out and "--no-wait --" in out
    assert out.strip().endswith("python -m le_ray.repeats --profile quickstart --results-dir /tmp/r")
    bad = subprocess.run(["bash", "jobs/submit.sh", "--wat", "--", "x"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "unknown option --wat" in bad.stderr
    helped = subprocess.run(["bash", "jobs/submit.sh", "--help"], capture_output=True, text=True, cwd=REPO)
    assert helped.returncode == 0 and "--no-wait" in helped.stdout


SMALL = ["--set", "synthetic.samples_per_condition=4000", "--set", "repeats.num_runs=2", "--set",
         "synthetic.uniform_log10_means=[-1,-1.2,-1.4,-1.6]", "--set", "repeats.min_steps_per_epoch=1"]


def _stored_sweep(tmp_path, argv):
    """A sweep folder as `le-ray repeats <argv>` leaves it before Ray starts (config.resolved.json, config.history)."""
    from le_ray.config import to_dict
    from le_ray.runners.repeats import parse_arguments, sweep_config
    from le_ray.sweep.store import SweepStore

    args = parse_arguments(argv)
    cfg = sweep_config(args)[0]
    SweepStore.open(tmp_path, args.name).record_run(to_dict(cfg), argv)
    return cfg


def test_repeats_resumes_a_stored_sweep_by_name_without_its_profile(tmp_path):
    from le_ray.errors import ResultsError
    from le_ray.runners.repeats import parse_arguments, preflight, stored_sweep_root

    stored = _stored_sweep(tmp_path, ["--profile", "wide_net", *SMALL, "--name", "mine", "--results-dir", str(tmp_path)])
    by_name = ["--name", "mine", "--results-dir", str(tmp_path)]
    args = parse_arguments(by_name)
    assert args.profile is None and stored_sweep_root(args) == tmp_path / "mine"
    lines = []
    pre = preflight(args, lines.append)
    assert pre.resuming and pre.cfg == stored and pre.cfg.model.name == "wide"
    assert pre.command == ["--profile", "wide_net", *SMALL, *by_name]  # what config.history records
    assert lines[0].startswith("resuming sweep mine with the config it stores (profile wide_net)")
    with pytest.raises(ResultsError, match="no stored sweep 'other'"):  # a typo never starts the default profile
        parse_arguments(["--name", "other", "--results-dir", str(tmp_path)])
    extended = preflight(parse_arguments([*by_name, "--extend", "--set", "repeats.num_runs=3"]), lines.append)
    assert extended.cfg.repeats.num_runs == 3 and extended.cfg.model.name == "wide"
    refused = []  # a refused rerun is not announced as a resume first (UX audit)
    with pytest.raises(ResultsError, match="--no-resume was given"):
        preflight(parse_arguments([*by_name, "--no-resume"]), refused.append)
    assert not any(line.startswith("resuming") for line in refused)


def test_a_refused_rerun_prints_the_stored_command_line(tmp_path):
    from le_ray.errors import ResultsError
    from le_ray.runners.repeats import parse_arguments, preflight

    _stored_sweep(tmp_path, ["--profile", "wide_net", *SMALL, "--name", "mine", "--results-dir", str(tmp_path)])
    with pytest.raises(ResultsError) as refused:
        preflight(parse_arguments(["--profile", "quickstart", *SMALL, "--name", "mine", "--results-dir",
                                   str(tmp_path)]), lambda line: None)
    text = str(refused.value)
    assert "model.name" in text and "This sweep was last run with:" in text
    stored = text.split("This sweep was last run with:\n  ")[1].splitlines()[0]
    assert stored.startswith("python -m le_ray.repeats --profile wide_net --set")
    assert stored.endswith(f"--results-dir {tmp_path} --name mine")
    with pytest.raises(ResultsError, match="This sweep was last run with"):  # a trial key over the stored config
        preflight(parse_arguments(["--name", "mine", "--results-dir", str(tmp_path), "--set", "model.embed_dim=3"]),
                  lambda line: None)


def test_echo_writes_no_ansi_codes_off_a_terminal(monkeypatch):
    import io

    from le_ray.cli.echo import Echo, plain_output_when_redirected

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich would colour a pipe when asked to
    stream = io.StringIO()
    echo = Echo(stream)
    echo("[bold red]audit[/] ERROR 1,234 rows")
    echo("progress 1/2", live=True)
    echo.close()
    assert "\x1b" not in stream.getvalue() and "[bold red]audit[/] ERROR 1,234 rows" in stream.getvalue()
    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    assert plain_output_when_redirected(io.StringIO()) is True
    import os

    assert os.environ["RAY_COLOR_PREFIX"] == "0"  # Ray's worker-log prefixes without colour codes


@pytest.mark.parametrize("n,text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
                                    (5 * 1024 ** 2, "5.0 MiB"), (3 * 1024 ** 3 + 1024 ** 3 // 2, "3.5 GiB"),
                                    (None, "unknown")])
def test_human_size(n, text):
    from le_ray.config.messages import human_size

    assert human_size(n) == text


def test_resume_and_no_resume_together_are_refused_by_the_parser(capsys):
    from le_ray.runners.repeats import parse_arguments

    with pytest.raises(SystemExit) as refused:
        parse_arguments(["--resume", "--no-resume", "--profile", "quickstart"])
    assert refused.value.code == 2 and "not allowed with argument --resume" in capsys.readouterr().err


def test_a_deprecated_key_is_one_warning_line_not_a_python_warning_report(capsys):
    from le_ray.cli.console import config_main

    assert config_main(["show", "--profile", "quickstart", "--set", "ctr.dataset=criteo"]) == 0
    err = capsys.readouterr().err
    assert err == "le-ray: WARNING ctr.dataset is deprecated; use data.ctr_dataset\n"


def test_a_sweep_started_with_allow_unsound_resumes_by_name(tmp_path):
    """--allow-unsound is no config key: config.history records it as repeats.allow_unsound=true, so that the
    documented resume by name (the stored config) starts the sweep again instead of refusing its audit errors."""
    from le_ray.config import to_dict
    from le_ray.errors import UserError
    from le_ray.runners.repeats import parse_arguments, preflight, sweep_config
    from le_ray.sweep.store import SweepStore

    argv = ["--profile", "quickstart", *SMALL, "--set", "repeats.min_steps_per_epoch=100000", "--name", "unsound",
            "--results-dir", str(tmp_path)]
    with pytest.raises(UserError, match="few_steps"):
        preflight(parse_arguments(argv), lambda line: None)
    pre = preflight(parse_arguments([*argv, "--allow-unsound"]), lambda line: None)
    assert pre.cfg.repeats.allow_unsound and pre.command[-2:] == ["--set", "repeats.allow_unsound=true"]
    assert "--allow-unsound" not in pre.command
    SweepStore.open(tmp_path, "unsound").record_run(to_dict(pre.cfg), pre.command)
    replayed = sweep_config(parse_arguments(pre.command))[0]  # the stored command gives the stored config
    assert to_dict(replayed) == to_dict(pre.cfg)
    resumed = preflight(parse_arguments(["--name", "unsound", "--results-dir", str(tmp_path)]), lambda line: None)
    assert resumed.resuming and resumed.audit.errors  # still unsound, started again as it was


def test_options_must_be_spelled_out(capsys):
    """An abbreviated option (argparse's prefix matching) would not match the full spellings le_ray prints back in
    the resume line and config.history (--no-res kept the folder from resuming)."""
    from le_ray.runners.repeats import parse_arguments

    with pytest.raises(SystemExit) as refused:
        parse_arguments(["--no-res", "--name", "x"])
    assert refused.value.code == 2 and "unrecognized arguments: --no-res" in capsys.readouterr().err


def test_a_rerun_is_estimated_on_its_pending_trials_only(tmp_path):
    """too_slow_here counts the trials still to train: a stored sweep whose every trial is stored reports again
    (e.g. a GPU sweep copied to a workstation, rerun by name with a report key) instead of being refused for time."""
    import numpy as np

    from le_ray.errors import UserError
    from le_ray.runners.repeats import parse_arguments, preflight
    from le_ray.sweep.plan import plan_trials, sweep_seeds
    from le_ray.sweep.store import SweepStore

    from .test_sweep_report import _sweep_record

    argv = ["--profile", "quickstart", *SMALL, "--set", "repeats.max_estimated_hours=0.000001", "--name", "slow",
            "--results-dir", str(tmp_path)]
    cfg = _stored_sweep(tmp_path, argv)
    with pytest.raises(UserError, match="too_slow_here"):
        preflight(parse_arguments(argv), lambda line: None)
    store, rates = SweepStore(tmp_path / "slow"), np.array([0.1, 0.06, 0.04, 0.025])

    def store_trials(trial_ids):
        for trial_id in trial_ids:
            loss, seed = trial_id.split("-s")[0], int(trial_id.split("-s")[1].split("-")[0])
            store.write_trial({**_sweep_record(loss, seed, rates, np.ones(4), 100, True, seed), "trial_id": trial_id})

    # ids of another data draw (same loss and seed, another fingerprint): a resume trains them all again
    store_trials(f"{loss}-s{seed}-0123abcd" for loss in cfg.losses for seed in sweep_seeds(cfg))
    by_name = ["--name", "slow", "--results-dir", str(tmp_path)]
    with pytest.raises(UserError, match="too_slow_here"):
        preflight(parse_arguments(by_name), lambda line: None)
    store_trials(spec.trial_id for spec in plan_trials(cfg).specs)  # every planned trial
    pre = preflight(parse_arguments(by_name), lambda line: None)
    assert not [f for f in pre.audit.findings if f.code == "too_slow_here"]


def test_a_report_only_rerun_keeps_the_training_runs_provenance(monkeypatch):
    """manifest.json's environment: a rerun that trains nothing keeps the commit and packages that trained the
    trials; a resume that trains with other code records the earlier run's in earlier_runs."""
    import le_ray.runners.repeats as repeats

    now = {"le_ray_version": "0.2", "git_commit": "new", "python": "3.11", "platform": "p", "host": "h",
           "packages": {"torch": "2.13"}}
    monkeypatch.setattr(repeats, "environment_manifest", lambda: dict(now))
    trained = {**now, "git_commit": "old", "created": "2026-12-01T00:00:00Z"}
    kept = repeats._environment(trained, trained=False)
    assert kept["git_commit"] == "old" and kept["created"] == "2026-12-01T00:00:00Z" and "reported" in kept
    resumed = repeats._environment(trained, trained=True)
    assert resumed["git_commit"] == "new" and resumed["earlier_runs"] == [trained]
    assert "earlier_runs" not in repeats._environment({**trained, "git_commit": "new"}, trained=True)
    again = repeats._environment({**resumed, "created": "2026-12-02T00:00:00Z"}, trained=False)
    assert again["earlier_runs"] == [trained] and again["git_commit"] == "new"
    assert repeats._environment(None, trained=True)["git_commit"] == "new"
    listed_later = {**trained, "git_commit": "new", "packages": {}}  # written before torch was in the package list
    assert "earlier_runs" not in repeats._environment(listed_later, trained=True)
    upgraded = {**trained, "git_commit": "new", "packages": {"torch": "2.11"}}
    assert repeats._environment(upgraded, trained=True)["earlier_runs"] == [upgraded]


def test_a_resume_says_why_stored_pairs_train_again_under_a_new_id(tmp_path):
    """Review: a CTR sweep stored before the data fingerprint hashed the file's bytes gets new trial ids, so a resume
    trained every trial again without a word; it now says how many, why, and that the old files stay unused."""
    import le_ray.runners.repeats as repeats
    from le_ray.config import load_config
    from le_ray.sweep.plan import SweepPlan
    from le_ray.training.spec import TrialSpec

    cfg = load_config(profile="quickstart")
    specs = [TrialSpec.make(cfg, loss, seed, "new-print") for loss in ("bce", "focal") for seed in (1, 2)]
    old = TrialSpec.make(cfg, "bce", 1, "old-print").trial_id
    plan = SweepPlan(specs, {}, done={specs[1].trial_id, old})
    line = repeats.superseded_line(plan, tmp_path)
    assert line is not None and line.startswith("1 of the trials to train have a stored trial of the same loss and "
                                                "seed under another id") and repr(str(tmp_path / "trials")) in line
    assert repeats.superseded_line(SweepPlan(specs, {}, done={specs[1].trial_id}), tmp_path) is None


def test_ctrl_c_while_the_data_are_prepared_stops_without_a_traceback(tmp_path, monkeypatch, capsys):
    import le_ray.runners.repeats as repeats

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(repeats, "plan_trials", interrupted)
    assert repeats.main(["--profile", "quickstart", *SMALL, "--name", "x", "--results-dir", str(tmp_path)]) == 130
    assert "stopped (SIGINT) before the sweep started: no sweep file was written, nothing was trained" in \
        capsys.readouterr().out
    assert not (tmp_path / "x").exists()


def test_a_store_write_that_fails_mid_sweep_ends_with_the_resume_command(tmp_path, monkeypatch, capsys):
    """run_sweep turns a failed trial write into a SweepWriteError after cancelling what is outstanding
    (tests/test_store_faults.py); the command adds the exact command that resumes the sweep."""
    import le_ray.runners.repeats as repeats
    from le_ray.sweep.store import SweepWriteError

    def full_disk(*args, **kwargs):
        raise SweepWriteError("cannot write trial bce-s42-x into '/r/s/trials': No space left on device; ...")

    monkeypatch.setattr(repeats, "_run", full_disk)
    argv = ["--profile", "quickstart", *SMALL, "--name", "s", "--results-dir", str(tmp_path)]
    assert repeats.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("le-ray: cannot write trial bce-s42-x into '/r/s/trials': No space left on device")
    assert err.rstrip().endswith(f"; resume with: {repeats.resume_command(argv, tmp_path, 's')}")


@pytest.mark.parametrize("code,one_line", [(28, True), (30, True), (5, False)])  # ENOSPC, EROFS; EIO stays a bug
def test_a_storage_error_ends_in_one_line_and_other_os_errors_keep_their_traceback(code, one_line, capsys):
    import errno as errnos

    from le_ray.cli.args import exit_on_user_error

    assert code in (errnos.ENOSPC, errnos.EROFS, errnos.EIO)

    @exit_on_user_error
    def command(argv=None):
        raise OSError(code, "refused", "/results/s/trials.parquet")

    if one_line:
        assert command([]) == 2
        assert capsys.readouterr().err.startswith(f"le-ray: [Errno {code}] refused: '/results/s/trials.parquet'")
    else:
        with pytest.raises(OSError):
            command([])


def test_an_extend_stopped_before_its_first_new_trial_can_be_run_back_at_its_size(tmp_path):
    """Resume audit: an --extend to 3 seeds stopped while Ray started bound the folder to 3 seeds for good (the
    original 2-seed command was refused, and --extend refuses fewer seeds)."""
    import numpy as np

    from le_ray.config import to_dict
    from le_ray.errors import ResultsError
    from le_ray.runners.repeats import parse_arguments, preflight
    from le_ray.sweep.plan import plan_trials, sweep_seeds
    from le_ray.sweep.store import SweepStore

    from .test_sweep_report import _sweep_record

    two = ["--profile", "quickstart", *SMALL, "--name", "ext", "--results-dir", str(tmp_path)]
    cfg = _stored_sweep(tmp_path, two)
    store, rates = SweepStore(tmp_path / "ext"), np.array([0.1, 0.06, 0.04, 0.025])
    for spec in plan_trials(cfg).specs:  # the 2-seed sweep finished
        store.write_trial({**_sweep_record(spec.loss, spec.seed, rates, np.ones(4), 100, True, spec.seed),
                           "trial_id": spec.trial_id})
    three = preflight(parse_arguments([*two, "--extend", "--set", "repeats.num_runs=3"]), lambda line: None)
    store.record_run(to_dict(three.cfg), [*two, "--extend", "--set", "repeats.num_runs=3"])  # then stopped
    assert preflight(parse_arguments(two), lambda line: None).resuming  # back at 2 seeds: nothing stored is lost
    third = sweep_seeds(three.cfg)[-1]
    spec = next(s for s in three.plan.specs if s.seed == third)
    store.write_trial({**_sweep_record(spec.loss, third, rates, np.ones(4), 100, True, third), "trial_id": spec.trial_id})
    with pytest.raises(ResultsError, match="holds trials of another config"):  # a 3rd seed's trial is stored now
        preflight(parse_arguments(two), lambda line: None)
