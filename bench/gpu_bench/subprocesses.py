"""Stages that run le_ray in a child process: ``pytest_gpu`` (``pytest -m gpu``) and ``quickstart`` (the
quickstart sweep on local Ray), with the wall split read back from the trial files."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpu_bench.common import REPO


def child_env() -> dict:
    """The environment of a child process: unbuffered, no Ray usage stats, the repository on PYTHONPATH."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_DISABLE_USAGE_STATS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run_command(cmd: list[str], timeout: float) -> dict:
    """Run ``cmd`` in its own session; past ``timeout`` SIGTERM the whole group (le_ray stops cleanly and Ray's
    local daemons go with it), then SIGKILL. Returns returncode (None on timeout), stdout, stderr, wall_s."""
    import signal

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 8), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                out, err = proc.communicate(timeout=grace)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                out, err = "", ""
        return {"returncode": None, "timed_out": True, "stdout": out or "", "stderr": err or "",
                "wall_s": time.perf_counter() - started}
    return {"returncode": proc.returncode, "stdout": out, "stderr": err, "wall_s": time.perf_counter() - started}


def gpu_test_files() -> list[str]:
    """Test files that carry a gpu mark (``pytest.mark.gpu``)."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())


def stage_pytest(ctx: dict) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *gpu_test_files()]
    if not ctx["cuda"]:
        return {"skipped": "no CUDA (smoke)", "command": cmd}
    done = run_command(cmd, ctx["timeout"](150))
    lines = done["stdout"].strip().splitlines()
    return {"returncode": done["returncode"], "summary": lines[-1:], "command": cmd, "wall_s": done["wall_s"],
            "failures": [line for line in lines if line.startswith(("FAILED", "ERROR"))][:20],
            "tail": (done["stdout"] + done["stderr"])[-3000:] if done["returncode"] != 0 else ""}


def sweep_spans(root: Path, launched_at: float | None = None, ended_at: float | None = None) -> dict:
    """From the stored trial files: trials, devices, first start → last finish, mean in-trial samples/s, and where
    a sweep trial's time goes. ``launched_at`` / ``ended_at`` (epoch seconds around the driver process) split the
    rest of the wall: launch → first trial start (imports, data, Ray start, worker start-up and warm-up) and
    last trial finish → process exit (report, Ray shutdown)."""
    records = [json.loads(p.read_text()) for p in sorted((root / "trials").glob("*.json"))]
    if not records:
        return {"trials": 0}
    start, end = min(r["started_at"] for r in records), max(r["finished_at"] for r in records)
    phases = ("attach_data", "setup", "train", "train_loop", "evaluate", "host_summary", "total")
    out = {"trials": len(records), "devices": sorted({r["device"].split(" ")[0] for r in records}),
           "trials_span_s": end - start, "gpu_ids": sorted({",".join(r.get("gpu_ids", [])) for r in records}),
           "mean_trial_s": statistics.mean(r["timings"]["total"] for r in records),
           "mean_samples_per_s": statistics.mean(r["samples_per_second"] for r in records),
           # median seconds per phase over the sweep's trials, and the task's wall (start → finish in the worker)
           "median_phases_s": {k: statistics.median(r["timings"].get(k, float("nan")) for r in records) for k in phases},
           "median_task_s": statistics.median(r["finished_at"] - r["started_at"] for r in records),
           "workers": len({r.get("worker_pid") for r in records})}
    if launched_at is not None:
        out["launch_to_first_trial_s"] = start - launched_at
    if ended_at is not None:
        out["last_trial_to_exit_s"] = ended_at - end
    return out


def stage_quickstart(ctx: dict) -> dict:
    results = Path(tempfile.mkdtemp(prefix="le_ray_gpu_check_"))
    cmd = [sys.executable, "-m", "le_ray.repeats", "--profile", "quickstart", "--results-dir", str(results),
           "--name", "quickstart"]
    if not ctx["cuda"]:
        return {"skipped": "no CUDA (smoke): starts Ray", "command": cmd}
    launched_at = time.time()
    done = run_command(cmd, ctx["timeout"](180))
    lines = done["stdout"].splitlines()
    return {"returncode": done["returncode"], "wall_s": done["wall_s"],
            "data_line": [line for line in lines if line.startswith("data prepared")][:1],
            "wall_line": [line for line in lines if line.startswith("wall ")][:1],  # the driver's own phase split
            **sweep_spans(results / "quickstart", launched_at, launched_at + done["wall_s"]),
            "tail": (done["stdout"] + done["stderr"])[-2500:] if done["returncode"] != 0 else ""}

