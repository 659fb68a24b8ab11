"""The one GPU benchmark (issue 19): about 4 minutes on one H200, one JSON, one table with targets and pass/fail.

    bash bench/gpu_run.sh                        # on the device: wheels, then this script, JSON + log into $OUT
    python bench/gpu_check.py [--out FILE] [--smoke] [--only a,b] [--skip a,b]

Stages, in order (each timed and wrapped: a crash is recorded in the JSON and the next stage runs; a CUDA error
that poisons the process's context moves the remaining stages into a fresh process; no stage starts after
``BUDGET_S``; a watchdog writes what exists and exits at ``HARD_S``):

``device``       the GPU, torch / CUDA versions, ``select_device``'s choice;
``agreement``    CUDA vs CPU in float32 through ``make_objective`` (the objectives trials use): BCE, focal, LE and
                 LE + history over 50 batches of 16,384 rows and 2,000 conditions — max relative difference of
                 the loss and of its logit gradient (target ≤ 1e-5), and of the LE history's window sums, judged
                 against float32 rounding: ≤ N·eps32 with N the number of batches accumulated;
``ceiling``      a plain-PyTorch loop of the same MLP shapes (default_net @ 32,768, small_net @ 2,048: gather,
                 forward, BCE, backward, fused Adam with ``capturable=True``, lr decay on the device), eager and
                 with the whole step captured in one ``torch.cuda.CUDAGraph``, at matmul precision highest and high;
``throughput``   in-trial samples/s per loss (BCE, LE, LE + history, focal) through ``run_trial``: default_net @
                 32,768 on 3.6M synthetic rows and the quickstart shape (small_net @ 2,048), each with
                 ``device.cuda_graphs`` off and auto; beside each, the same-run ceiling and le_ray / ceiling; the
                 steady step rate from CUDA events recorded at every ``on_step``; whole trial / training time;
``step_ratio``   LE + history, LE and focal step time / BCE step time at 50 and 2,000 conditions (batch 32,768,
                 graphs auto, median event-timed step);
``precision``    ``device.matmul_precision`` highest vs high: BCE default_net samples/s and eval logloss;
``pytest_gpu``   ``pytest -m gpu`` over every test file with a gpu mark;
``quickstart``   ``python -m le_ray.repeats --profile quickstart`` on the GPU (local Ray), results under /tmp: wall;
``packing``      1, 2, 4 and 8 BCE trials at once in separate processes on the one GPU (quickstart shape and
                 default_net, graphs auto): trials per minute and training samples per second of wall;
``launches``     one trial per shape (default_net one epoch, the quickstart trial) for BCE and LE + history under
                 ``torch.profiler``: kernels, GPU busy time, kernel and graph launch calls per step, busiest host ops
                 (the quantities issue 19 reported before this round: 12,851 / 57,882 launches per 99-step trial).

Targets (issue 19, one H200): BCE default_net @ 32,768 ≥ 25M samples/s and ≥ 0.85× the same-run ceiling;
small_net @ 2,048 ≥ 5M samples/s; LE + history ≤ 1.15× a BCE step, LE and focal ≤ 1.10×; whole trial ≤ 1.3×
training; the quickstart sweep ≤ 30 s wall; CUDA vs CPU as above; ``pytest -m gpu`` passes.

Without CUDA (or with ``--smoke``) every in-process stage runs on the CPU at tiny sizes to prove it works (the
JSON says ``"cuda": false`` and its figures mean nothing); ``packing`` then runs its trials in threads, and
``pytest_gpu`` / ``quickstart`` (subprocesses that need CUDA and Ray) only record their command lines.
Exit status 0 unless a stage crashed. The stages live in ``bench/gpu_bench/`` (a module per stage family, the
shared configs and trial timing, the table); this script runs them.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_bench, when run as a file from anywhere

from gpu_bench.ceiling import stage_ceiling  # noqa: E402
from gpu_bench.common import REPO, SIZES, STAGES  # noqa: E402
from gpu_bench.launches import stage_launches  # noqa: E402
from gpu_bench.packing import stage_packing  # noqa: E402
from gpu_bench.subprocesses import child_env, stage_pytest, stage_quickstart  # noqa: E402
from gpu_bench.table import print_table, table_rows  # noqa: E402
from gpu_bench.trials import (stage_agreement, stage_device, stage_precision, stage_step_ratio,  # noqa: E402
                              stage_throughput)

BUDGET_S = 330.0  # no stage starts after 5.5 minutes
HARD_S = 350.0  # the watchdog writes the JSON and the table, then exits


FUNCS = {"device": stage_device, "agreement": stage_agreement, "ceiling": stage_ceiling,
         "throughput": stage_throughput, "step_ratio": stage_step_ratio, "precision": stage_precision,
         "pytest_gpu": stage_pytest, "quickstart": stage_quickstart, "packing": stage_packing,
         "launches": stage_launches}


def _hard_stop(deadline: float) -> float:
    """Epoch seconds at which the watchdog stops the run: ``HARD_S - BUDGET_S`` after the last stage may start."""
    return deadline + HARD_S - BUDGET_S


def _cuda_healthy() -> bool:
    """Whether this process can go on using CUDA: no sticky CUDA error, and a caching allocator that can empty its
    cache (after a failed capture, torch 2.11's stays registered as capturing and asserts there)."""
    try:
        torch.ones(1, device="cuda").add_(1).item()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        return True
    except Exception:  # noqa: BLE001 - a sticky CUDA error poisons every later call in this process
        return False


def write(results: dict, out: Path) -> None:
    results["table"] = table_rows(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")


def _in_fresh_process(rest: list[str], args, results: dict, out: Path) -> None:
    """Run the remaining stages in a new process (this one's CUDA context is broken) and merge its results
    (``out``: this run's JSON, the default one when no ``--out`` was given; the child writes beside it)."""
    child = out.with_suffix(".rest.json")
    cmd = [sys.executable, __file__, "--out", str(child), "--only", ",".join(rest), "--deadline", str(args.deadline)]
    try:
        left = _hard_stop(args.deadline) - time.time()
        subprocess.run(cmd, cwd=REPO, env=child_env(), timeout=max(10.0, left))
        merged = json.loads(child.read_text())
    except Exception as exc:  # noqa: BLE001 - the child died or overran: say so, keep what this process has
        merged = {name: {"error": f"fresh process: {type(exc).__name__}: {str(exc)[:300]}"} for name in rest}
    for name in rest:
        results[name] = dict(merged.get(name, {"error": "fresh process wrote no result"}), fresh_process=True)


def run_stages(names: list[str], ctx: dict, args, out: Path) -> None:
    results = ctx["results"]
    for i, name in enumerate(names):
        if ctx["late"]():
            results[name] = {"skipped": f"time budget ({args.budget:.0f} s) reached"}
            continue
        started = time.perf_counter()
        # a stage that fills ctx["stage_out"] as it goes leaves what it measured to the watchdog and to a crash
        results[name] = ctx["stage_out"] = {}
        try:
            results[name] = FUNCS[name](ctx)
        except Exception as exc:  # noqa: BLE001 - one stage failing must not hide the others
            results[name] = {**ctx["stage_out"], "error": f"{type(exc).__name__}: {str(exc)[:800]}",
                             "traceback": traceback.format_exc()[-4000:]}  # the innermost frames: the failing op
        results[name]["seconds"] = round(time.perf_counter() - started, 2)
        print(f"{name:<11} {json.dumps(results[name], default=str)[:700]}", flush=True)
        write(results, out)
        if ctx["cuda"] and i + 1 < len(names) and not _cuda_healthy():
            print("CUDA context broken: the remaining stages run in a fresh process", flush=True)
            _in_fresh_process(names[i + 1:], args, results, out)
            return


def _watchdog(results: dict, out: Path, deadline: float) -> None:
    def fire() -> None:
        results["watchdog"] = f"stopped at {HARD_S:.0f} s: a stage overran"
        try:
            for attempt in range(3):  # the running stage may add a figure while the JSON is written: try again
                try:
                    write(results, out)
                    break
                except RuntimeError:  # dictionary changed size during iteration
                    time.sleep(0.05)
            print_table(results)
        finally:
            for child in multiprocessing.active_children():  # packing workers would hold gpu_run.sh's tee open
                child.kill()
            os._exit(3)
    timer = threading.Timer(max(1.0, _hard_stop(deadline) - time.time()), fire)
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(max(1.0, _hard_stop(deadline) - time.time() - 2), exit=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="the JSON to write (default: bench/results/gpu_check.json on "
                        "CUDA, the committed record; bench/results/gpu_check.smoke.json, git-ignored, otherwise)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, even when CUDA is there")
    parser.add_argument("--only", default="", help="comma-separated stages to run (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated stages to leave out")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds after which no stage starts "
                        f"(default {BUDGET_S:.0f}; the watchdog stops the script {HARD_S - BUDGET_S:.0f} s later)")
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)  # epoch s of the budget
    parser.add_argument("--pack-processes", action="store_true", help=argparse.SUPPRESS)  # smoke-test the pool
    args = parser.parse_args(argv)
    args.deadline = args.deadline or time.time() + args.budget
    cuda = torch.cuda.is_available() and not args.smoke
    names = [s for s in (args.only.split(",") if args.only else STAGES) if s and s not in args.skip.split(",")]
    unknown = [s for s in names if s not in FUNCS]
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; expected some of {', '.join(STAGES)}")
    if not cuda:
        print("no CUDA device (or --smoke): every stage runs on the CPU at tiny sizes; the figures mean nothing")
    results: dict = {"cuda": cuda, "host": platform.node(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    ctx = {"cuda": cuda, "dev": torch.device("cuda:0" if cuda else "cpu"), "size": SIZES["full" if cuda else "smoke"],
           "size_name": "full" if cuda else "smoke", "pack_processes": cuda or args.pack_processes,
           "results": results, "late": lambda: time.time() > args.deadline,
           "timeout": lambda own: max(5.0, min(own, args.deadline + 10 - time.time()))}
    # a CPU or --smoke run never overwrites the committed GPU record
    out = Path(args.out or REPO / "bench" / "results" / ("gpu_check.json" if cuda else "gpu_check.smoke.json"))
    _watchdog(results, out, args.deadline)
    run_stages(names, ctx, args, out)
    write(results, out)
    print_table(results)
    print(f"written {out}")
    return 1 if any("error" in v for v in results.values() if isinstance(v, dict)) else 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    sys.exit(main())
