"""The sweep driver's life cycle without a Ray cluster (review findings): trial ids that a display-only key leaves
alone, refusals before any work (``--name`` of no stored sweep, ``--extend`` that drops or has no sweep), stop signals
while Ray starts and during the report, and the commands printed to resume or submit.

Ray is never started here: ``ray.init``, the trials and the report are stand-ins that do what matters to the driver
(Ray's SIGTERM handlers, stored trial files, atomic report files); tests/test_repeats.py runs the real ones.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from le_ray.config import config_fingerprint, load_config, to_dict, to_plain
from le_ray.errors import ResultsError
from le_ray.sweep.store import SweepStore, check_resume
from le_ray.training.spec import TrialSpec, trial_id

REPO = Path(__file__).resolve().parents[1]
#: the rest of a complete trial record (le_ray.sweep.store.RECORD_KEYS), for stored trials whose numbers no test reads
NO_NUMBERS = {"metrics": {}, "timings": {}, "node": "n", "device": "cpu", "samples_per_second": 0.0}
TINY = ["synthetic.samples_per_condition=400", "synthetic.uniform_log10_means=[-0.8,-1,-1.2,-1.4]",
        "training.epochs=1", "training.loss_mode=both", "training.by_loss.bce.by_source={}",
        "training.by_loss.localized_entropy.by_source={}", "training.by_loss.focal.by_source={}",
        "training.batch_size=256", "repeats.num_runs=2", "repeats.min_steps_per_epoch=1", "repeats.min_eval_clicks=1"]


def _args(*extra: str) -> list[str]:
    return ["--profile", "small_net", *[a for item in [*TINY, *extra] for a in ("--set", item)]]


def _wait(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.01)


def _stored(results: Path, name: str, *extra: str) -> tuple[SweepStore, list[TrialSpec]]:
    """A sweep folder as `le-ray repeats <tiny> --name <name>` leaves it with every trial stored (records trimmed to
    what resume and the stopped line read)."""
    from le_ray.sweep.plan import plan_trials

    argv = [*_args(*extra), "--results-dir", str(results), "--name", name]
    cfg = load_config(profile="small_net", sets=[*TINY, *extra])
    store = SweepStore.open(results, name)
    store.record_run(to_dict(cfg), argv)
    specs = plan_trials(cfg).specs
    for spec in specs:
        store.write_trial({"trial_id": spec.trial_id, "loss": spec.loss, "seed": spec.seed, **NO_NUMBERS})
    return store, specs


# --------------------------------------------------------------------------- 1: display-only keys and trial ids


def test_display_only_evaluation_key_is_hashed_at_the_value_every_stored_sweep_used():
    from le_ray.training.spec import DISPLAY_ONLY_EVALUATION

    default = json.loads((REPO / "configs" / "default.json").read_text())["evaluation"]
    assert all(default[key] == value for key, value in DISPLAY_ONLY_EVALUATION.items())
    for profile in (REPO / "configs" / "profiles").glob("*.json"):  # no profile changes it
        assert not set(DISPLAY_ONLY_EVALUATION) & set(re.findall(r'"(\w+)"\s*:', profile.read_text())), profile.name
    cfg = load_config(profile="small_net", sets=TINY)
    settings = cfg.training_for("bce")
    training = to_plain(settings)
    del training["cross_batch"]["warm_start"]  # a key added since, at the value stored sweeps ran: not hashed
    whole = {"model": cfg.model, "training": training, "evaluation": cfg.evaluation, "dtype": cfg.device.dtype,
             "deterministic": cfg.device.deterministic, "loss": "bce", "seed": 42, "data": "fp"}
    assert trial_id(cfg, "bce", 42, "fp", settings) == f"bce-s42-{config_fingerprint(whole)}"  # ids kept
    other = load_config(profile="small_net", sets=[*TINY, "evaluation.print_per_condition_top_k=5"])
    assert trial_id(other, "bce", 42, "fp", other.training_for("bce")) == trial_id(cfg, "bce", 42, "fp", settings)
    changed = load_config(profile="small_net", sets=[*TINY, "evaluation.ece_bins=7"])  # a key that changes numbers
    assert trial_id(changed, "bce", 42, "fp", changed.training_for("bce")) != trial_id(cfg, "bce", 42, "fp", settings)


def test_resume_with_only_a_display_key_changed_finds_every_stored_trial(tmp_path):
    from le_ray.runners.repeats import parse_arguments, preflight

    store, specs = _stored(tmp_path, "s")
    pre = preflight(parse_arguments(["--name", "s", "--results-dir", str(tmp_path), "--set",
                                     "evaluation.print_per_condition_top_k=5"]), lambda *a, **k: None)
    assert pre.resuming and pre.cfg.evaluation.print_per_condition_top_k == 5
    pre.plan.done = store.finished_ids()  # what main does next
    assert {s.trial_id for s in pre.plan.specs} == {s.trial_id for s in specs} and pre.plan.pending == []


# --------------------------------------------------------------------------- 6, 7: refused before any work


@pytest.fixture
def nothing_prepared(monkeypatch):
    import le_ray.runners.repeats as repeats

    monkeypatch.setattr(repeats, "plan_trials", lambda *a, **k: pytest.fail("the data were prepared"))


def test_name_of_no_stored_sweep_without_a_profile_is_refused_naming_the_closest(tmp_path, capsys, nothing_prepared):
    from le_ray.runners.repeats import main

    (tmp_path / "small-sweep").mkdir()
    (tmp_path / "small-sweep" / "config.resolved.json").write_text("{}")
    assert main(["--name", "smal-sweep", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no stored sweep 'smal-sweep' under '{tmp_path}'" in err
    assert 'did you mean "small-sweep"?' in err and "give --profile or --config to start a new sweep" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small-sweep"]  # nothing created
    assert main(["--name", "x", "--results-dir", str(tmp_path / "none")]) == 2  # no results folder at all
    assert "no stored sweep 'x'" in capsys.readouterr().err and not (tmp_path / "none").exists()


def test_extend_without_a_stored_sweep_is_refused(tmp_path, capsys, nothing_prepared):
    from le_ray.runners.repeats import main

    assert main([*_args(), "--extend", "--results-dir", str(tmp_path)]) == 2
    assert "--extend adds seeds or losses to a stored sweep: give its --name" in capsys.readouterr().err
    assert main([*_args(), "--extend", "--name", "nope", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no stored sweep 'nope' under '{tmp_path}'" in err and "drop it to start a new sweep" in err
    assert not list(tmp_path.iterdir())


def test_extend_that_drops_seeds_or_losses_is_refused_naming_both_values(tmp_path, nothing_prepared):
    from le_ray.runners.repeats import parse_arguments, preflight

    _stored(tmp_path, "s", "repeats.num_runs=3")
    with pytest.raises(ResultsError, match=r"--extend only adds seeds or losses.*\n  - repeats.num_runs: 3 -> 2"):
        preflight(parse_arguments(["--name", "s", "--results-dir", str(tmp_path), "--extend", "--set",
                                   "repeats.num_runs=2"]), lambda *a, **k: None)
    old = to_dict(load_config(profile="small_net", sets=[*TINY, "training.loss_mode=all"]))
    for mode, refused in (("both", True), ("bce", True), ("all", False)):
        new = to_dict(load_config(profile="small_net", sets=[*TINY, "training.loss_mode=all", "repeats.num_runs=4",
                                                              f"training.loss_mode={mode}"]))
        if refused:
            with pytest.raises(ResultsError, match=f'training.loss_mode: "all" -> "{mode}"'):
                check_resume(tmp_path, old, new, extend=True)
        else:  # more seeds, the same losses: an extension
            assert [c.key for c in check_resume(tmp_path, old, new, extend=True)] == ["repeats.num_runs"]


def test_a_change_the_active_source_never_reads_does_not_refuse_a_resume(tmp_path):
    """Keys of another data source (its data section, its per-source training values) leave every trial id as it
    was: a resume with them changed goes on; the active source's own keys still refuse."""
    old = to_dict(load_config(profile="quickstart"))
    unread = ["ctr.datasets.criteo.filter.k=7", "training.by_loss.bce.by_source.avazu.lr=0.5"]
    new = to_dict(load_config(profile="quickstart", sets=unread))
    changes = check_resume(tmp_path, old, new, extend=False)
    assert {c.key for c in changes} == {"ctr.datasets.criteo.filter.k", "training.by_loss.bce.by_source.avazu.lr"}
    with pytest.raises(ResultsError, match="training.by_loss.bce.by_source.synthetic.lr"):
        check_resume(tmp_path, old, to_dict(load_config(profile="quickstart", sets=[
            "training.by_loss.bce.by_source.synthetic.lr=0.5"])), extend=False)
    ctr_old = to_dict(load_config(profile="avazu_sample"))
    for key, refused in (("synthetic.samples_per_condition=10", False), ("ctr.datasets.criteo.filter.k=3", False),
                         ("ctr.datasets.avazu.filter.k=3", True), ("training.by_loss.bce.by_source.ctr.lr=0.5", True)):
        ctr_new = to_dict(load_config(profile="avazu_sample", sets=[key]))
        if refused:
            with pytest.raises(ResultsError, match=key.split("=")[0]):
                check_resume(tmp_path, ctr_old, ctr_new, extend=False)
        else:
            check_resume(tmp_path, ctr_old, ctr_new, extend=False)


def test_a_general_training_key_every_loss_overrides_does_not_refuse_a_resume(tmp_path):
    """UX audit: `--set training.lr=0.01` on a quickstart sweep was refused as "training.lr: 0.001 -> 0.01", though
    every loss takes its lr from by_source and no trial changes. It resumes now, exactly when every trial id keeps."""
    from le_ray.training.spec import trial_id

    def ids(cfg):
        return {trial_id(cfg, loss, 0, "data", cfg.training_for(loss)) for loss in ("bce", "localized_entropy", "focal")}

    base = ["training.loss_mode=all"]
    cases = (([], True), (["training.same_settings_for_all_losses=true"], False),  # then every loss reads training.lr
             (["training.by_loss.focal.by_source={}"], False))  # focal reads training.lr
    for extra, resumes in cases:
        old_cfg = load_config(profile="quickstart", sets=[*base, *extra])
        with warnings.catch_warnings():  # the shadowed --set is warned about (ConfigShadowWarning): not the point here
            warnings.simplefilter("ignore")
            new_cfg = load_config(profile="quickstart", sets=[*base, *extra, "training.lr=0.01"])
        assert (ids(old_cfg) == ids(new_cfg)) is resumes, extra  # the rule agrees with the trial ids
        old, new = to_dict(old_cfg), to_dict(new_cfg)
        if resumes:
            assert [c.key for c in check_resume(tmp_path, old, new, extend=False)] == ["training.lr"]
        else:
            with pytest.raises(ResultsError, match="training.lr: 0.001 -> 0.01"):
                check_resume(tmp_path, old, new, extend=False)


# --------------------------------------------------------------------------- 2, 3: stop signals


@pytest.fixture
def stops(monkeypatch):
    """The flags of the driver's stop_on_signals, and the test's own SIGINT/SIGTERM handlers around the test (a
    signal that no handler of the driver takes is recorded there instead of ending the session)."""
    import le_ray.runners.repeats as repeats

    flags, late = [], []
    real = repeats.stop_on_signals

    @contextmanager
    def recording():
        with real() as flag:
            flags.append(flag)
            yield flag
    monkeypatch.setattr(repeats, "stop_on_signals", recording)
    previous = {s: signal.signal(s, lambda *a: late.append(a)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flags
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _fake_ray_init(monkeypatch, flags, signum):
    """``ray.init`` as far as signals go: it installs Ray's SIGTERM handler (exit at once, through the function Ray
    uses), the stop signal arrives, then the core worker puts its own handler on SIGTERM (SIG_IGN stands in)."""
    import inspect

    import ray
    from ray._private import node, utils, worker

    # connect_ray mutes the function the real ray.init installs its SIGTERM handlers with: a Ray that installs them
    # another way must fail here, not make an early `ray job stop` exit without a word
    assert "ray._private.utils.set_sigterm_handler(" in inspect.getsource(worker.init)
    assert "ray._private.utils.set_sigterm_handler(" in inspect.getsource(node.Node._register_shutdown_hooks)

    def init(**kwargs):
        utils.set_sigterm_handler(lambda s, frame: sys.exit(s))
        os.kill(os.getpid(), signum)
        _wait(lambda: flags and flags[0].signum == signum, "the driver's stop handler took the signal")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return SimpleNamespace(dashboard_url="")
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_while_ray_starts_keeps_the_folder_and_prints_the_resume_command(tmp_path, monkeypatch, capsys, stops,
                                                                            signum, code):
    import le_ray.runners.repeats as repeats

    _fake_ray_init(monkeypatch, stops, signum)
    handlers = []
    real_connect = repeats.connect_ray

    def connect(*args, **kwargs):
        context = real_connect(*args, **kwargs)
        handlers.append(signal.getsignal(signal.SIGTERM))
        return context
    monkeypatch.setattr(repeats, "connect_ray", connect)
    monkeypatch.setattr(repeats, "execute", lambda *a, **k: pytest.fail("the sweep went on after the stop"))
    assert repeats.main([*_args("ray.address=auto"), "--results-dir", str(tmp_path), "--name", "s"]) == code
    out = capsys.readouterr().out
    assert handlers == [stops[0].handler]  # ours again after ray.init, not the core worker's
    root = tmp_path / "s"
    assert (f"stopped ({signal.Signals(signum).name}): 0 of 4 trials stored in {root}; resume with: python -m "
            f"le_ray.repeats --profile small_net") in out
    assert (root / "config.resolved.json").is_file() and len(list((root / "config.history").glob("*.json"))) == 1


def test_stop_during_the_report_ends_it_at_once_and_names_le_ray_report(tmp_path, monkeypatch, capsys, stops):
    import ray

    import le_ray.report.sweep as sweep_report
    import le_ray.runners.repeats as repeats
    from le_ray.atomic import atomic_write_text
    from le_ray.sweep.driver import SweepProgress

    def trials(cfg, store, plan, *, echo, stop=None):  # every trial stored
        for spec in plan.pending:
            store.write_trial({"trial_id": spec.trial_id, "loss": spec.loss, "seed": spec.seed, **NO_NUMBERS})
        return SweepProgress(total=len(plan.specs), already_done=0, done=len(plan.specs))

    def report(root, *, echo, render):  # a first file written, then Ctrl-C
        atomic_write_text(Path(root) / "trials.parquet", "first step")
        os.kill(os.getpid(), signal.SIGINT)
        _wait(lambda: stops[0].signum is not None, "the stop handler took the signal")
        return atomic_write_text(Path(root) / "summary.md", "the report went on after the stop")
    monkeypatch.setattr(repeats, "connect_ray", lambda cfg, stop=None: None)
    monkeypatch.setattr(repeats, "warm_up_workers", lambda *a, **k: [])
    monkeypatch.setattr(repeats, "write_manifest", lambda *a, **k: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {})
    monkeypatch.setattr(repeats, "run_sweep", trials)
    monkeypatch.setattr(sweep_report, "build_report", report)
    assert repeats.main([*_args(), "--results-dir", str(tmp_path), "--name", "s"]) == 130
    out = capsys.readouterr().out
    root = tmp_path / "s"
    assert (f"stopped (SIGINT) after the trials: 4 of 4 trials stored in {root}; build the report with: le-ray "
            f"report {root}") in out and "resume with" not in out
    assert not (root / "summary.md").exists() and (root / "trials.parquet").read_text() == "first step"
    assert not list(root.rglob(".tmp-*"))


def test_a_stop_during_a_ray_call_in_the_report_is_raised_when_the_call_returns():
    from le_ray.sweep.driver import StopRequested, stop_on_signals

    inside = []
    with stop_on_signals() as flag:
        with pytest.raises(StopRequested) as stopped:
            with flag.raising("stopping the report"):
                with flag.deferred():  # e.g. the figures drawn by Ray tasks: the handler must not raise in ray.wait
                    os.kill(os.getpid(), signal.SIGTERM)
                    _wait(lambda: flag.signum is not None, "the stop handler took the signal")
                    inside.append("not raised inside")
                pytest.fail("not raised when the Ray call returned")
    assert inside and stopped.value.exit_code == 143 and not flag.at_once


# --------------------------------------------------------------------------- 4, 5: the printed commands


def _dry_run(submit_args: list[str]) -> str:
    """What `jobs/submit.sh --dry-run <submit_args>` would submit (it fails on arguments it does not take)."""
    done = subprocess.run(["bash", "jobs/submit.sh", "--dry-run", *submit_args], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_command_local_cluster_prints_is_one_submit_sh_takes(tmp_path):
    line = re.search(r'echo "submit with: (.*)"', (REPO / "jobs" / "local_cluster.sh").read_text()).group(1)
    words = shlex.split(line.replace("${DASHBOARD_PORT:-8265}", "8265").replace(r"\$PWD", str(tmp_path)))
    assert words[:2] == ["RAY_AUTH_MODE=token", "RAY_ADDRESS=http://127.0.0.1:8265"] and words[2] == "jobs/submit.sh"
    submitted = _dry_run(words[3:])
    assert submitted.endswith(f"python -m le_ray.repeats --profile quickstart --results-dir {tmp_path}/results")


def test_resume_command_is_local_or_a_job_submission_under_ray_job_submit(monkeypatch):
    from le_ray.runners.repeats import resume_command

    argv = ["--profile", "quickstart", "--set", "repeats.num_runs=3", "--name", "old", "--no-resume"]
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    local = resume_command(argv, Path("/r"), "s")
    assert local == "python -m le_ray.repeats --profile quickstart --set repeats.num_runs=3 --results-dir /r --name s"
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    job = resume_command(argv, Path("/r"), "s")
    assert job == "jobs/submit.sh -- --profile quickstart --set repeats.num_runs=3 --results-dir /r --name s"
    assert _dry_run(shlex.split(job)[1:]).endswith(f"python -m le_ray.repeats {local.split(' ', 3)[3]}")
    assert resume_command(argv, Path("/r"), "s", "le_ray.tune").startswith("python -m le_ray.tune ")  # not a repeats


def test_a_failed_trials_reason_is_its_own_exception_not_rays_wrapper():
    from ray.exceptions import RayTaskError

    from le_ray.sweep.driver import failure_reason

    class NonFiniteLossError(RuntimeError):
        pass

    wrapped = RayTaskError("trial_task", "Traceback (most recent call last): ...",
                           NonFiniteLossError("non-finite training loss at epoch 1, batch 3\nconditions: 7"),
                           proctitle="\x1b[36mray::trial_task()\x1b[39m", pid=5, ip="127.0.0.1").as_instanceof_cause()
    assert failure_reason(wrapped) == "NonFiniteLossError: non-finite training loss at epoch 1, batch 3"
    assert failure_reason(ValueError("\x1b[31mplain\x1b[0m")) == "ValueError: plain"


@pytest.mark.parametrize("name,why", [
    ("", "it is empty"), ("a/b", "it contains /"), ("..", "it is . or .."),
    ("--dash", "it starts with - (a command would read it as an option)"),
    ("two\nlines", "it contains a control character (a newline or tab)"), ("x" * 201, "it is 201 bytes long, over 200"),
])
def test_a_folder_name_a_resume_command_could_not_repeat_is_refused_before_any_work(tmp_path, name, why, capsys):
    """An empty --name (an unset $NAME) used to start a new sweep under a timestamp; '--dash' was accepted and every
    printed resume command then failed; a 300-character name crashed with OSError: File name too long."""
    from le_ray.runners import repeats, run, tune

    message = f"--name {name!r}: expected a plain folder name, but {why}"
    for module in (repeats, run, tune):
        argv = ["--profile", "quickstart_tune" if module is tune else "small_net", f"--name={name}", "--results-dir" if module is not run else "--output-dir",
                str(tmp_path)]
        assert module.main(argv) == 2, module
        assert message in capsys.readouterr().err, module
    assert list(tmp_path.iterdir()) == []
    from le_ray.sweep.store import plain_folder_name
    assert plain_folder_name("my-sweep_2.1") == "my-sweep_2.1"


def test_run_and_prepare_without_a_profile_start_from_the_quickstart_like_repeats(monkeypatch):
    """Before, `le-ray prepare` and `le-ray run` with no profile used configs/default.json (1M rows, default_net,
    two losses) while `le-ray repeats` used the quickstart, so auditing a README repeats command with prepare
    audited another experiment."""
    from le_ray.cli.args import DEFAULT_PROFILE, with_default_profile
    from le_ray.runners import prepare, run

    seen = []
    monkeypatch.setattr(prepare, "config_shadows_provenance", lambda args: seen.append(args.profile) or 1 / 0)
    monkeypatch.setattr(run, "config_shadows_provenance", lambda args: seen.append(args.profile) or 1 / 0)
    for module in (prepare, run):
        with pytest.raises(ZeroDivisionError):
            module.main(["--set", "training.epochs=2"])
        with pytest.raises(ZeroDivisionError):
            module.main(["--profile", "small_net"])
    assert seen == [DEFAULT_PROFILE, "small_net"] * 2
    import argparse
    assert with_default_profile(argparse.Namespace(profile=None, config="mine.json")).profile is None


def test_a_resumed_command_keeps_only_the_last_set_of_each_key():
    """After --extend the stored command read '--set repeats.num_runs=2 ... --set repeats.num_runs=3'."""
    from le_ray.runners.repeats import effective_argv

    stored = ["--profile", "quickstart", "--set", "repeats.num_runs=2", "--set", "training.lr=0.01", "--name", "s"]
    now = ["--name", "s", "--extend", "--set", "repeats.num_runs=3", "--set=training.lr=0.02"]
    assert effective_argv(stored, now) == ["--profile", "quickstart", "--name", "s", "--extend", "--set",
                                           "repeats.num_runs=3", "--set=training.lr=0.02"]
    assert effective_argv(["--set", "a=1", "--set", "b=2"], []) == ["--set", "a=1", "--set", "b=2"]
