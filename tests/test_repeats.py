"""The Ray sweep: end-to-end on local Ray, fake GPUs, two nodes, faults, resume, Ctrl-C, bad folders.

These start real Ray instances (a few seconds each), so the module shares one local instance
where it can and shuts it down before tests that need their own cluster.
"""

import json
import shlex
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import ray
import torch

from le_ray.sweep.audit import audit_experiment
from le_ray.config import load_config, to_dict
from le_ray.runners.repeats import main, write_manifest
from le_ray.report.sweep import build_report
from le_ray.sweep.store import SweepStore
from le_ray.sweep.driver import run_sweep
from le_ray.sweep.plan import plan_trials, sweep_seeds
from le_ray.training.trial import run_trial

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TINY = ["synthetic.samples_per_condition=400", "synthetic.uniform_log10_means=[-0.8,-1,-1.2,-1.4]", "training.epochs=1", "training.loss_mode=both",
        "training.by_loss.bce.by_source={}", "training.by_loss.localized_entropy.by_source={}",
        "training.by_loss.focal.by_source={}", "training.batch_size=256", "repeats.num_runs=2",
        "repeats.bootstrap_samples=200", "repeats.min_steps_per_epoch=1", "repeats.min_eval_clicks=1",
        "ray.cpus_per_trial=1", "plots.dpi=40"]


def tiny_cfg(*extra):
    return load_config(profile="small_net", sets=[*TINY, *extra])


def tiny_args(*extra) -> list[str]:
    """Command-line arguments equivalent to tiny_cfg (for subprocess drivers; --set replaces, a file would merge)."""
    return ["--profile", "small_net", *[arg for item in [*TINY, *extra] for arg in ("--set", item)]]


@pytest.fixture
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _sweep(cfg, root: Path, name: str = "s", echo=None):
    store = SweepStore.open(root, name)
    store.record_run(to_dict(cfg), [])
    plan = plan_trials(cfg)
    plan.done = store.finished_ids()
    write_manifest(store, cfg, plan, audit_experiment(cfg, plan.datasets), ray.cluster_resources())
    progress = run_sweep(cfg, store, plan, echo=echo or (lambda *a, **k: None))
    return store, plan, progress


def _metrics(store: SweepStore) -> dict:
    return {(r["loss"], r["seed"]): r["metrics"] for r in store.load_trials()}


def test_end_to_end_files_and_bit_identical_to_in_process(local_ray, tmp_path):
    cfg = tiny_cfg()
    store, plan, progress = _sweep(cfg, tmp_path)
    assert progress.done == 4 and progress.failed == 0
    summary = build_report(store.root, echo=lambda *a: None)
    for name in ("config.resolved.json", "manifest.json", "trials.parquet", "per_condition.parquet", "summary.md"):
        assert (store.root / name).exists(), name
    assert len(list((store.root / "trials").glob("*.json"))) == 4
    assert (store.root / "report" / "tables" / "metric_tests_LE_vs_BCE.csv").exists()
    assert (store.root / "report" / "plots" / "reliability.png").stat().st_size > 1000
    text = summary.read_text()
    assert "delta > 0 favours LE" in text and "Per-condition calibration" in text
    trials = pl.read_parquet(store.root / "trials.parquet")
    assert trials.height == 4 and {"seed", "loss", "logloss", "roc_auc", "node", "device"} <= set(trials.columns)
    per_cond = pl.read_parquet(store.root / "per_condition.parquet")
    assert per_cond.height == 4 * 4 and "value" in per_cond.columns
    # the same specs in-process give the same numbers, bit for bit
    threads = torch.get_num_threads()
    try:
        data = plan.data_by_seed[-1]
        stored = _metrics(store)
        for spec in plan.specs:
            local = run_trial(data, spec, num_threads=cfg.ray.cpus_per_trial)
            assert local.metrics == stored[(spec.loss, spec.seed)]
    finally:
        torch.set_num_threads(threads)
    manifest = json.loads((store.root / "manifest.json").read_text())
    assert manifest["packages"]["torch"] and manifest["data_fingerprints"] and manifest["cluster_resources"]["CPU"] == 2


def test_resume_skips_stored_trials_and_report_is_unchanged(local_ray, tmp_path):
    cfg = tiny_cfg()
    store, plan, _ = _sweep(cfg, tmp_path)
    build_report(store.root, echo=lambda *a: None)
    before = pl.read_parquet(store.root / "trials.parquet")
    victim = store.trial_path(plan.specs[1].trial_id)
    victim.unlink()  # as if the driver died before this trial finished
    store2, plan2, progress = _sweep(cfg, tmp_path)
    assert progress.already_done == 3 and progress.done == 1
    build_report(store2.root, echo=lambda *a: None)
    after = pl.read_parquet(store.root / "trials.parquet")
    metric_cols = ["trial_id", "seed", "loss", "logloss", "brier", "ece", "roc_auc", "accuracy"]
    assert before.select(metric_cols).sort("trial_id").equals(after.select(metric_cols).sort("trial_id"))


def test_fake_gpus_fractional_pinning_and_cpu_training(tmp_path, monkeypatch):
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        monkeypatch.setenv("LE_RAY_TEST_FAULT_SLEEP", "4")
        cfg = tiny_cfg("ray.gpus_per_trial=0.5")
        store, _, progress = _sweep(cfg, tmp_path)
    finally:
        ray.shutdown()
    records = store.load_trials()
    assert progress.done == 4
    assert all(len(r["gpu_ids"]) == 1 for r in records)
    assert {r["gpu_ids"][0] for r in records} == {"0", "1"}
    assert all("torch sees no CUDA" in r["device"] for r in records)  # trained on CPU
    # four at a time: every trial's sleep overlaps every other's
    starts = sorted(r["started_at"] for r in records)
    ends = sorted(r["finished_at"] for r in records)
    assert starts[-1] < ends[0]


def test_two_nodes_trials_on_both_and_data_fetched_across(tmp_path):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        os.environ["LE_RAY_TEST_FAULT_SLEEP"] = "2"
        try:
            store, _, progress = _sweep(tiny_cfg(), tmp_path)
            ref = next(iter(progress.data_refs.values()))
            locations = ray.experimental.get_object_locations([ref])[ref]["node_ids"]
        finally:
            del os.environ["LE_RAY_TEST_FAULT_SLEEP"]
        build_report(store.root, echo=lambda *a: None)
        nodes = set(pl.read_parquet(store.root / "trials.parquet")["node"].to_list())
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(nodes) == 2
    assert len(set(locations)) == 2  # the data object was copied to the second node's store


def test_killed_worker_is_retried_with_same_numbers(local_ray, tmp_path, monkeypatch):
    cfg = tiny_cfg()
    reference, _, _ = _sweep(cfg, tmp_path, "reference")
    seed = sweep_seeds(cfg)[1]
    monkeypatch.setenv("LE_RAY_TEST_FAULT_EXIT", f"localized_entropy:{seed}")
    monkeypatch.setenv("LE_RAY_TEST_FAULT_DIR", str(tmp_path))
    store, plan, progress = _sweep(cfg, tmp_path, "faulty")
    assert progress.failed == 0 and progress.done == 4
    assert list(tmp_path.glob("exited-*")), "the fault hook did not fire"
    assert _metrics(store) == _metrics(reference)


def test_always_failing_trial_is_recorded_and_others_finish(local_ray, tmp_path, monkeypatch):
    cfg = tiny_cfg()
    seed = sweep_seeds(cfg)[0]
    monkeypatch.setenv("LE_RAY_TEST_FAULT_RAISE", f"bce:{seed}")
    store, plan, progress = _sweep(cfg, tmp_path)
    assert progress.failed == 1 and progress.done == 3
    failure = next(iter(store.failures().values()))
    assert "always fails" in failure["traceback"] and failure["loss"] == "bce"
    summary = build_report(store.root, echo=lambda *a: None).read_text()
    assert "Missing trials" in summary and f"bce seed {seed}" in summary and "FAILED" in summary
    tests = pl.read_csv(store.root / "report" / "tables" / "metric_tests_LE_vs_BCE.csv")
    assert set(tests["n"].to_list()) == {1}  # complete pairs only


def test_unwritable_results_folder_refused_before_training(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    import le_ray.runners.repeats as repeats

    monkeypatch.setattr(repeats, "plan_trials", lambda *a, **k: pytest.fail("training data was prepared"))
    code = main(["--profile", "small_net", "--results-dir", str(blocker / "results"), "--name", "x"])
    assert code == 2
    assert "not a folder" in capsys.readouterr().err


def test_relative_results_dir_refused_under_ray_job(monkeypatch, capsys):
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    code = main(["--profile", "small_net", "--results-dir", "results", "--name", "x"])
    assert code == 2
    assert "absolute --results-dir" in capsys.readouterr().err


def test_resample_data_pairs_losses_per_seed():
    cfg = tiny_cfg("repeats.resample_data=true")
    plan = plan_trials(cfg)
    seeds = sweep_seeds(cfg)
    assert set(plan.data_by_seed) == set(seeds)
    by_seed = {}
    for spec in plan.specs:
        by_seed.setdefault(spec.seed, set()).add(spec.data_fingerprint)
    assert all(len(f) == 1 for f in by_seed.values())  # both losses of a seed share data
    assert len({next(iter(f)) for f in by_seed.values()}) == len(seeds)  # data differ across seeds


def _driver(tmp_path: Path, name: str, env_extra: dict, *extra: str) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    return subprocess.Popen([sys.executable, "-m", "le_ray.repeats", *tiny_args("repeats.num_runs=3"), "--results-dir",
                             str(tmp_path / "res"), "--name", name, *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for_trials(folder: Path, n: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while len(list(folder.glob("*.json"))) < n:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no trial finished in time"
        time.sleep(0.2)


def test_driver_killed_then_rerun_resumes_to_same_report(tmp_path):
    if ray.is_initialized():
        ray.shutdown()
    proc = _driver(tmp_path, "sweep", {"LE_RAY_TEST_FAULT_SLEEP": "1"})
    _wait_for_trials(tmp_path / "res" / "sweep" / "trials", 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = len(list((tmp_path / "res" / "sweep" / "trials").glob("*.json")))
    assert 2 <= stored < 6
    assert not list((tmp_path / "res" / "sweep" / "trials").glob(".tmp-*"))
    rerun = _driver(tmp_path, "sweep", {})
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert f"resuming: {stored} of 6" in out
    fresh = _driver(tmp_path, "fresh", {})
    out2, _ = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, out2
    cols = ["seed", "loss", "logloss", "brier", "ece", "ece_small", "roc_auc", "pr_auc", "accuracy"]
    a = pl.read_parquet(tmp_path / "res" / "sweep" / "trials.parquet").select(cols).sort(["loss", "seed"])
    b = pl.read_parquet(tmp_path / "res" / "fresh" / "trials.parquet").select(cols).sort(["loss", "seed"])
    assert a.equals(b)
    ta = pl.read_csv(tmp_path / "res" / "sweep" / "report" / "tables" / "metric_tests_LE_vs_BCE.csv")
    tb = pl.read_csv(tmp_path / "res" / "fresh" / "report" / "tables" / "metric_tests_LE_vs_BCE.csv")
    assert ta.equals(tb)


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stop_signal_keeps_finished_trials_and_prints_the_resume_command(tmp_path, signum, code):
    if ray.is_initialized():
        ray.shutdown()
    proc = _driver(tmp_path, "sweep", {"LE_RAY_TEST_FAULT_SLEEP": "3"})
    trials = tmp_path / "res" / "sweep" / "trials"
    _wait_for_trials(trials, 1, proc)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == code, out
    assert "SIGTERM received" not in out and "PC: @" not in out and "Traceback" not in out
    line = next(line for line in out.splitlines() if line.startswith("stopped ("))
    assert " of 6 trials stored in " in line and "resume with: python -m le_ray.repeats" in line
    files = list(trials.iterdir())
    assert files and all(f.suffix == ".json" and not f.name.startswith(".tmp") for f in files)
    for f in files:
        json.loads(f.read_text())  # complete JSON
    stored = int(line.split("): ")[1].split(" of ")[0])
    assert stored == len(files)
    command = shlex.split(line.split("resume with: ")[1])
    rerun = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, timeout=300,
                           env={k: v for k, v in os.environ.items() if not k.startswith("LE_RAY_TEST_FAULT")})
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"resuming: {stored} of 6" in rerun.stdout
    assert len(list(trials.glob("*.json"))) == 6


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_job_agent(ray_cli: str, dash: int, env: dict, deadline: float) -> None:
    """Poll the jobs API until a job agent answers (``ray job list`` succeeds); retry connection errors and 5xx
    "No available agent" answers until ``deadline``."""
    while True:
        probe = subprocess.run([ray_cli, "job", "list", "--address", f"http://127.0.0.1:{dash}"], env=env,
                               capture_output=True, text=True, timeout=120)
        if probe.returncode == 0:
            return
        assert time.time() < deadline, f"the job agent never came up: {probe.stdout[-2000:]}{probe.stderr[-2000:]}"
        time.sleep(1.0)


def test_ray_job_submit_with_token_auth(tmp_path):
    """A local head (`ray start --head`, token auth, dashboard on 127.0.0.1) runs the sweep as a job."""
    if ray.is_initialized():
        ray.shutdown()
    import secrets

    ray_cli = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_DISABLE_USAGE_STATS": "1"}
    env.pop("RAY_ADDRESS", None)
    gcs, dash = _free_port(), _free_port()
    head = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={gcs}", "--num-cpus=2",
                             "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        results = tmp_path / "results"
        repo = Path(__file__).resolve().parents[1]
        submit = [ray_cli, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--runtime-env",
                  "jobs/runtime_env.yaml", "--", sys.executable, "-m", "le_ray.repeats", *tiny_args(),
                  "--results-dir", str(results), "--name", "job"]
        _wait_for_job_agent(ray_cli, dash, env, deadline=time.time() + 180)
        done = subprocess.run(submit, env=env, cwd=repo, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "succeeded" in done.stdout
        sweep = results / "job"
        assert (sweep / "summary.md").exists() and (sweep / "trials.parquet").exists()
        assert len(list((sweep / "trials").glob("*.json"))) == 4
        manifest = json.loads((sweep / "manifest.json").read_text())
        assert manifest["ray_job"] is True
        # the same submission with a relative results dir is refused with a clear message
        bad = subprocess.run(submit[:-4] + ["--results-dir", "results", "--name", "job2"], env=env, cwd=repo,
                             capture_output=True, text=True, timeout=600)
        assert bad.returncode != 0 and "absolute --results-dir" in bad.stdout + bad.stderr
        # a tiny tune-then-test as a job on the same head
        tune = [*submit[:submit.index("le_ray.repeats")], "le_ray.tune", *tiny_args(
            "tune.num_samples=2", 'tune.space.bce.lr={"loguniform": [0.001, 0.01]}'),
            "--results-dir", str(results), "--name", "tune-job"]
        tuned = subprocess.run(tune, env=env, cwd=repo, capture_output=True, text=True, timeout=900)
        assert tuned.returncode == 0 and "succeeded" in tuned.stdout, tuned.stdout[-3000:] + tuned.stderr[-3000:]
        summary = json.loads((results / "tune-job" / "tune" / "summary.json").read_text())
        assert [len(r["samples"]) for r in summary["losses"]] == [2, 0]  # LE has no space: tested as configured
        assert (results / "tune-job" / "summary.md").exists()
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- reliability


def _main_args(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return [*tiny_args(), "--results-dir", str(tmp_path / "res"), "--name", name, *extra]


def test_resume_with_another_config_is_refused_naming_the_keys(tmp_path, capsys):
    if ray.is_initialized():
        ray.shutdown()
    assert main(_main_args(tmp_path, "s", "--no-report")) == 0
    folder = tmp_path / "res" / "s"
    config_before = (folder / "config.resolved.json").read_text()
    trials_before = sorted(p.name for p in (folder / "trials").glob("*.json"))
    capsys.readouterr()
    code = main(_main_args(tmp_path, "s", "--set", "training.lr=0.5", "--set", "model.embed_dim=3",
                           "--set", "repeats.num_runs=3"))
    err = capsys.readouterr().err
    assert code == 2
    assert "model.embed_dim: 8 -> 3" in err and "training.lr: 0.001 -> 0.5" in err
    assert "repeats.num_runs: 2 -> 3" in err and "--name" in err and "--extend" in err
    assert (folder / "config.resolved.json").read_text() == config_before
    assert sorted(p.name for p in (folder / "trials").glob("*.json")) == trials_before
    assert len(list((folder / "config.history").glob("*.json"))) == 1


def test_extend_with_more_seeds_reuses_stored_trials(tmp_path, capsys):
    if ray.is_initialized():
        ray.shutdown()
    assert main(_main_args(tmp_path, "s", "--no-report")) == 0
    folder = tmp_path / "res" / "s"
    first = {p.name: p.stat().st_mtime_ns for p in (folder / "trials").glob("*.json")}
    assert len(first) == 4
    capsys.readouterr()
    assert main(_main_args(tmp_path, "s", "--set", "repeats.num_runs=3", "--extend")) == 0
    out = capsys.readouterr().out
    assert "resuming: 4 of 6 trials already stored" in out
    after = {p.name: p.stat().st_mtime_ns for p in (folder / "trials").glob("*.json")}
    assert len(after) == 6 and all(after[name] == t for name, t in first.items())  # untouched
    assert len(list((folder / "config.history").glob("*.json"))) == 2
    trials = pl.read_parquet(folder / "trials.parquet")
    assert trials.height == 6 and sorted(set(trials["seed"].to_list())) == sweep_seeds(tiny_cfg("repeats.num_runs=3"))
    assert json.loads((folder / "config.resolved.json").read_text())["repeats"]["num_runs"] == 2  # never rewritten


def test_preflight_failures_leave_no_folder_and_start_no_ray(tmp_path, capsys, monkeypatch):
    if ray.is_initialized():
        ray.shutdown()
    import le_ray.sweep.driver as driver

    monkeypatch.setattr(driver, "connect_ray", lambda cfg: pytest.fail("Ray was started"))
    missing = main(["--profile", "avazu_top6_by_count", "--set", "ctr.datasets.avazu.train_path=/nope/train.csv",
                    "--results-dir", str(tmp_path / "res"), "--name", "a"])
    assert missing == 2 and "ctr.datasets.avazu.train_path: file not found" in capsys.readouterr().err
    unsound = main(_main_args(tmp_path, "b", "--set", "repeats.min_steps_per_epoch=100"))
    err = capsys.readouterr().err
    assert unsound == 2 and "few_steps" in err and "--allow-unsound" in err
    assert not (tmp_path / "res").exists()


def test_unreadable_manifest_on_resume_names_the_file(tmp_path, capsys):
    folder = tmp_path / "res" / "s"
    (folder / "trials").mkdir(parents=True)
    (folder / "config.resolved.json").write_text(json.dumps(to_dict(tiny_cfg())))
    (folder / "manifest.json").write_text("{ broken")
    code = main(_main_args(tmp_path, "s"))
    err = capsys.readouterr().err
    assert code == 2 and "manifest.json" in err and "cannot be read as JSON" in err and "Traceback" not in err


def _listening(procs) -> set[str]:
    import psutil

    addresses = set()
    for proc in procs:
        try:
            addresses |= {c.laddr.ip for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return addresses


def test_local_ray_listens_on_loopback_only(tmp_path):
    import psutil

    from le_ray.sweep.driver import connect_ray

    if ray.is_initialized():
        ray.shutdown()
    connect_ray(tiny_cfg("ray.num_cpus=2"))
    try:
        store, _, progress = _sweep(tiny_cfg(), tmp_path)  # workers start and serve too
        procs = psutil.Process().children(recursive=True)
        addresses = _listening([psutil.Process(), *procs])
    finally:
        ray.shutdown()
    assert progress.done == 4 and len(procs) >= 4 and addresses
    loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
    assert addresses <= loopback, f"listening beyond loopback: {sorted(addresses - loopback)}"


def test_node_removed_mid_sweep_completes_with_identical_metrics(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cfg = tiny_cfg("repeats.num_runs=3")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    removed: list[float] = []

    def echo(text, live=False):  # after the first stored trial, take a worker node away
        if not live and text.startswith("[") and not removed:
            cluster.remove_node(workers[0], allow_graceful=False)
            removed.append(time.perf_counter())
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        monkeypatch.setenv("LE_RAY_TEST_FAULT_SLEEP", "1")
        disturbed, _, progress = _sweep(cfg, tmp_path, "disturbed", echo=echo)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert removed and progress.failed == 0 and progress.done == 6
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        calm, _, _ = _sweep(cfg, tmp_path, "calm")
    finally:
        ray.shutdown()
    assert _metrics(disturbed) == _metrics(calm)


def test_driver_killed_during_report_then_rebuilt_report_is_the_same(tmp_path):
    if ray.is_initialized():
        ray.shutdown()
    proc = _driver(tmp_path, "sweep", {"LE_RAY_TEST_FAULT_REPORT_SLEEP": "60"})
    tables = tmp_path / "res" / "sweep" / "report" / "tables"
    deadline = time.time() + 300
    while not list(tables.glob("metric_tests_*.csv")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "the report phase never started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    folder = tmp_path / "res" / "sweep"
    assert not (folder / "summary.md").exists()
    rerun = _driver(tmp_path, "sweep", {})
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and "resuming: 6 of 6" in out, out
    assert (folder / "summary.md").exists() and not list(folder.rglob(".tmp-*"))
    fresh = _driver(tmp_path, "fresh", {})
    out2, _ = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, out2
    for table in sorted(tables.glob("*.csv")):
        assert pl.read_csv(table).equals(pl.read_csv(tmp_path / "res" / "fresh" / "report" / "tables" / table.name)), \
            table.name


def test_unsound_real_profile_refuses_naming_the_batch_size_keys(tmp_path, capsys):
    from .sample_data import require_sample

    train = require_sample("avazu", "avazu_sample.csv")
    args = ["--profile", "avazu_top6_by_count", "--set", f"ctr.datasets.avazu.train_path={train}",
            "--set", "ctr.datasets.avazu.test_path=null", "--results-dir", str(tmp_path / "res"), "--name", "x"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "few_steps" in err and "training.by_loss.localized_entropy.by_source.avazu.batch_size" in err
    assert "training.by_loss.bce.by_source.avazu.batch_size" in err and "--allow-unsound" in err
    assert not (tmp_path / "res").exists()
