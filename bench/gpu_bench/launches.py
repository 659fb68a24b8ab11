"""The ``launches`` stage: one trial per loss under ``torch.profiler``, counted the way issue 19 counted before
this round (one default_net BCE trial of 99 steps: 12,851 kernel launches and 176 ms of GPU work in ~650 ms of
wall; the LE + history trial 57,882 launches).

Per trial (default_net @ 32,768 for one epoch and the quickstart trial as it is, BCE and LE + history, graphs
auto): optimiser
steps, kernels the GPU ran (copies and fills counted apart) and the sum of all device activity (GPU busy
seconds), runtime launch calls (``cudaLaunchKernel*``) and graph launches (``cudaGraphLaunch``) the host made, the
host's busiest operators by self time, its 15 most frequent other calls (``INVALID``: ones the profiler could not
name), and the wall under the profiler (inflated by it: the throughput stage's figures are the speed ones).
On the CPU (smoke) only host operators exist; the counts of device work are 0.
"""

from __future__ import annotations

import time
from collections import Counter

import torch
from torch.autograd import DeviceType

from gpu_bench.common import LOSSES, cached_data, shape_config
from le_ray.training.trial import TrialSpec, run_trial

#: what the host calls to start one kernel, and one whole captured graph (CUDA runtime / driver API names).
#: ``__cudaLaunchKernel``: CUDA 13 routes ``<<<...>>>`` launches through it, under a callback id of its own.
KERNEL_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "__cudaLaunchKernel")
GRAPH_CALLS = ("cudaGraphLaunch", "cuGraphLaunch")
#: device activity that is a copy or a fill, not a kernel (still GPU busy time)
COPY_PREFIXES = ("Memcpy", "Memset")


def count_events(events, steps: int) -> dict:
    """Counts over profiler ``events`` (FunctionEvent-like: ``name``, ``device_type``, ``time_range.elapsed_us()``,
    ``self_cpu_time_total`` in µs) of a trial that took ``steps`` optimiser steps."""
    device = [e for e in events if e.device_type == DeviceType.CUDA]
    copies = sum(e.name.startswith(COPY_PREFIXES) for e in device)
    names = Counter(e.name for e in events if e.device_type == DeviceType.CPU)
    host = Counter()
    for e in events:
        if e.device_type == DeviceType.CPU and e.name.startswith("aten::"):
            host[e.name] += e.self_cpu_time_total
    launches = sum(names[n] for n in KERNEL_CALLS)
    # the host's other calls by count: runtime calls the profiler could not name show up as "INVALID", so the
    # launch count can be read against them if a CUDA version's launch entry point is missing from KERNEL_CALLS
    other = Counter({n: c for n, c in names.items() if not n.startswith("aten::")})
    return {"steps": steps, "kernels": len(device) - copies, "copies_and_fills": copies,
            "gpu_busy_s": sum(e.time_range.elapsed_us() for e in device) / 1e6,
            "kernel_launch_calls": launches, "graph_launches": sum(names[n] for n in GRAPH_CALLS),
            "launch_calls_per_step": launches / steps if steps else None,
            "aten_ops": sum(c for n, c in names.items() if n.startswith("aten::")),
            "top_host_ops_ms": {n: round(us / 1000, 2) for n, us in host.most_common(8)},
            "top_other_host_calls": dict(other.most_common(15))}


def profiled_trial(cfg, loss: str, data, cuda: bool) -> dict:
    """One ``run_trial`` under the profiler (CPU activity, and CUDA's when ``cuda``)."""
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    spec = TrialSpec.make(cfg, loss, cfg.project.seed, data.fingerprint)
    steps = []
    started = time.perf_counter()
    with torch.profiler.profile(activities=activities) as prof:
        run_trial(data, spec, on_step=lambda epoch, step: steps.append(step))
        if cuda:
            torch.cuda.synchronize()
    wall = time.perf_counter() - started
    return {**count_events(prof.events(), len(steps)), "profiled_wall_s": wall}


def stage_launches(ctx: dict) -> dict:
    """BCE and LE + history: default_net (one epoch) and the quickstart trial, graphs auto (each stored as it
    comes, in ``ctx["stage_out"]``)."""
    out: dict = ctx["stage_out"]
    for shape in ("default_net", "small_net"):
        data = cached_data(ctx, shape_config(shape, ctx["size"]))
        for name in ("bce", "le+history"):
            if ctx["late"]():
                out["partial"] = "time budget reached"
                return out
            loss, history = LOSSES[name]
            one_epoch = ("training.epochs=1",) if shape == "default_net" else ()  # the quickstart trial as it is
            cfg = shape_config(shape, ctx["size"], history, ("device.cuda_graphs=auto", *one_epoch))
            out[f"{shape}/{name}"] = profiled_trial(cfg, loss, data, ctx["cuda"])
    return out
