"""The ``packing`` stage: 1, 2, 4 and 8 BCE trials at once on the one GPU, in separate processes (threads in
the smoke run): trials per minute and the packing ``ray.gpus_per_trial: null`` should choose."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import statistics
import time

from gpu_bench.common import SIZES, TrialSpec, default_sets, load_config, prepare_data, run_trial

# per worker process (spawned by the pool): its configs and prepared data, set once by pack_worker_init
_WORKER: dict = {}


def packing_configs(size: dict) -> dict:
    """The two packed shapes: the quickstart profile and default_net (1 epoch), graphs auto."""
    quick = load_config(profile="quickstart", sets=[*size["small_sets"], "device.cuda_graphs=auto"])
    return {"quickstart": quick, "default_net": load_config(sets=[*default_sets(size, 1), "device.cuda_graphs=auto"])}


def pack_worker_init(size_name: str) -> None:
    """Per worker process: both datasets once, then one short trial (CUDA context, cuBLAS, first capture)."""
    size = SIZES[size_name]
    for name, cfg in packing_configs(size).items():
        _WORKER[name] = (cfg, prepare_data(cfg))
    cfg, data = _WORKER["quickstart"]
    run_trial(data, TrialSpec.make(cfg, "bce", 0, data.fingerprint), num_threads=1)


def pack_worker_ready(hold_s: float) -> int:
    """Holds its worker for ``hold_s`` so that every worker of the pool starts (and initialises) at once."""
    time.sleep(hold_s)
    return os.getpid()


def packed_trial(name: str, seed: int, start_at: float) -> dict:
    """One BCE trial of shape ``name`` starting at ``start_at`` (epoch seconds), with 1 CPU thread."""
    cfg, data = _WORKER[name]
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    result = run_trial(data, TrialSpec.make(cfg, "bce", seed, data.fingerprint), num_threads=1)
    return {"start": started, "end": time.time(), "samples_per_s": result.samples_per_second,
            "train_samples": result.samples_per_second * result.timings["train"], "device": result.device,
            "pid": os.getpid()}


def _group(pool, name: str, k: int) -> dict:
    start_at = time.time() + 0.5
    runs = [f.result() for f in [pool.submit(packed_trial, name, 100 + i, start_at) for i in range(k)]]
    wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return {"wall_s": wall, "trials_per_min": 60.0 * k / wall, "train_samples_per_s_of_wall":
            sum(r["train_samples"] for r in runs) / wall, "mean_in_trial_samples_per_s":
            statistics.mean(r["samples_per_s"] for r in runs), "processes": len({r["pid"] for r in runs}),
            "devices": sorted({r["device"].split(" ")[0] for r in runs})}


def stage_packing(ctx: dict) -> dict:
    """k = 1, 2, 4, 8 trials at once per shape (processes on CUDA, threads in the smoke run); speed-up vs k = 1."""
    ks = ctx["size"]["pack_ks"]
    processes = ctx.get("pack_processes", ctx["cuda"])
    if processes:
        pool = cf.ProcessPoolExecutor(max(ks), mp_context=multiprocessing.get_context("spawn"),
                                      initializer=pack_worker_init, initargs=(ctx["size_name"],))
    else:
        pack_worker_init(ctx["size_name"])
        pool = cf.ThreadPoolExecutor(max(ks))
    out: dict = ctx["stage_out"]  # each shape's groups stored as they come
    out["mode"] = "processes" if processes else "threads (smoke)"
    with pool:
        started = time.perf_counter()
        hold, pids = (1.0 if processes else 0.0), set()
        ready_by = started + ctx["timeout"](120)  # within the run's deadline
        while len(pids) < max(ks) and time.perf_counter() < ready_by:  # until every worker has initialised
            pids = {f.result() for f in [pool.submit(pack_worker_ready, hold) for _ in range(max(ks))]}
            if not processes:
                break
        out.update(workers=len(pids), workers_ready_s=time.perf_counter() - started)
        for name in ("quickstart", "default_net"):
            groups = out[name] = {}  # stored as each k comes
            for k in ks:
                if ctx["late"]():
                    out["partial"] = "time budget reached"
                    break
                groups[str(k)] = _group(pool, name, k)
            for g in groups.values():
                g["speedup_vs_1"] = g["trials_per_min"] / groups["1"]["trials_per_min"] if "1" in groups else None
            out[name] = groups
            if groups:  # the packing to choose: the fewest trials per GPU within 5% of the best throughput
                best = max(g["trials_per_min"] for g in groups.values())
                out[f"{name}_choose_k"] = min(int(k) for k, g in groups.items() if g["trials_per_min"] >= 0.95 * best)
    return out

