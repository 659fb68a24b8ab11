"""Faults survived, measured: each fault injected into a small sweep, against the same sweep undisturbed.

    python bench/fault_recovery.py [--out bench/results/fault_recovery.json]

Scenarios (a 2-loss × 4-seed synthetic sweep, each trial slowed by 1 s so faults land mid-sweep):

* ``worker killed``: one trial's worker process exits after its first optimiser step (Ray retries it);
* ``node removed``: a two-worker-node ``ray.cluster_utils.Cluster`` loses one node after the first stored trial;
* ``driver SIGKILL`` / ``driver SIGTERM``: the driver dies (or is stopped) after two stored trials; rerun resumes;
* ``driver SIGKILL in report``: the driver dies while writing the report; the rerun rebuilds it.

Per scenario: trials lost (stored at the end minus planned: must be 0), metrics identical to the undisturbed
sweep (bit for bit on the CPU), and the wall time from the start of the disturbed sweep to a complete folder (rerun
included) against the undisturbed one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TINY = ["synthetic.samples_per_condition=600", "synthetic.uniform_log10_means=[-0.8,-1,-1.2,-1.4]", "training.epochs=1",
        "training.loss_mode=both", "training.by_loss={}", "training.batch_size=256", "repeats.num_runs=4",
        "repeats.bootstrap_samples=200", "repeats.min_steps_per_epoch=1", "repeats.min_eval_clicks=1",
        "ray.cpus_per_trial=1", "ray.num_cpus=2", "plots.dpi=40"]


def _args(root: Path, name: str) -> list[str]:
    return [sys.executable, "-m", "le_ray.repeats", "--profile", "small_net",
            *[a for s in TINY for a in ("--set", s)], "--results-dir", str(root), "--name", name]


def _metrics(folder: Path) -> dict:
    out = {}
    for path in (folder / "trials").glob("*.json"):
        r = json.loads(path.read_text())
        out[(r["loss"], r["seed"])] = r["metrics"]
    return out


def _run(root: Path, name: str, env: dict | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(_args(root, name), check=True, capture_output=True, cwd=REPO, env={**os.environ, **(env or {})})
    return time.perf_counter() - started


def _kill_after(root: Path, name: str, stored: int, sig: int, env: dict, watch: str = "trials") -> float:
    """Start a driver, signal it once ``stored`` files are in ``watch``; the seconds until it ended."""
    started = time.perf_counter()
    proc = subprocess.Popen(_args(root, name), cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    folder = root / name / watch
    deadline = time.time() + 300
    while len(list(folder.glob("*.json" if watch == "trials" else "*.csv"))) < stored:
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{name}: the driver ended before the fault could be injected")
        time.sleep(0.1)
    os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
    proc.wait()
    return time.perf_counter() - started


def _row(fault: str, folder: Path, calm: dict, wall_s: float, calm_s: float) -> dict:
    """``wall_s``: the disturbed sweep from its start to a complete folder (a rerun included)."""
    got = _metrics(folder)
    return {"fault": fault, "trials_lost": len(calm) - len(got), "metrics_identical": got == calm,
            "wall_s": round(wall_s, 1), "extra_s": round(wall_s - calm_s, 1)}


def scenario_node(root: Path, calm: dict, calm_s: float) -> dict:
    import ray
    from ray.cluster_utils import Cluster

    from le_ray.config import load_config, to_dict
    from le_ray.runners.repeats import write_manifest
    from le_ray.sweep.audit import audit_experiment
    from le_ray.sweep.store import SweepStore
    from le_ray.sweep.driver import run_sweep
    from le_ray.sweep.plan import plan_trials

    cfg = load_config(profile="small_net", sets=TINY)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    removed: list[float] = []

    def echo(text, live=False):
        if not live and text.startswith("[") and not removed:
            cluster.remove_node(nodes[0], allow_graceful=False)
            removed.append(time.perf_counter())
    os.environ["LE_RAY_TEST_FAULT_SLEEP"] = "1"
    try:
        started = time.perf_counter()
        ray.init(address=cluster.address, log_to_driver=False)
        store = SweepStore.open(root, "node")
        store.record_run(to_dict(cfg), [])
        plan = plan_trials(cfg)
        write_manifest(store, cfg, plan, audit_experiment(cfg, plan.datasets), ray.cluster_resources())
        run_sweep(cfg, store, plan, echo=echo)
        finished = time.perf_counter()
    finally:
        del os.environ["LE_RAY_TEST_FAULT_SLEEP"]
        ray.shutdown()
        cluster.shutdown()
    return _row("worker node removed mid-sweep (in-process driver, 2 one-CPU nodes)", root / "node", calm,
                finished - started, calm_s)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "fault_recovery.json"))
    args = parser.parse_args(argv)
    slow = {"LE_RAY_TEST_FAULT_SLEEP": "1"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        calm_s = _run(root, "calm", slow)
        calm = _metrics(root / "calm")
        killed_s = _run(root, "worker", {**slow, "LE_RAY_TEST_FAULT_EXIT": "localized_entropy:43",
                                         "LE_RAY_TEST_FAULT_DIR": tmp})
        rows.append(_row("worker process killed mid-trial", root / "worker", calm, killed_s, calm_s))
        rows.append(scenario_node(root, calm, calm_s))
        for label, sig in (("driver SIGKILL mid-sweep, rerun", signal.SIGKILL),
                           ("driver SIGTERM (ray job stop), rerun", signal.SIGTERM)):
            name = f"driver-{int(sig)}"
            killed = _kill_after(root, name, 2, sig, slow)
            rows.append(_row(label, root / name, calm, killed + _run(root, name), calm_s))
        killed = _kill_after(root, "report", 1, signal.SIGKILL, {**slow, "LE_RAY_TEST_FAULT_REPORT_SLEEP": "5"},
                             watch="report/tables")
        rerun = _run(root, "report")
        row = _row("driver SIGKILL while writing the report, rerun", root / "report", calm, killed + rerun, calm_s)
        row["report_rebuilt"] = (root / "report" / "summary.md").exists()
        rows.append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"calm_wall_s": calm_s, "rows": rows}, indent=2) + "\n")
    print(f"undisturbed sweep: {calm_s:.1f} s")
    print("| fault injected | trials lost | metrics identical | wall s, rerun included | vs undisturbed s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['fault']} | {r['trials_lost']} | {'yes' if r['metrics_identical'] else 'NO'} | {r['wall_s']} "
              f"| {r['extra_s']:+} |")
    return 0 if all(r["trials_lost"] == 0 and r["metrics_identical"] for r in rows) else 1


if __name__ == "__main__":
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    sys.exit(main())
