"""How long a sweep will take on the device it would run on, estimated before any training.

Model of the time (seconds; every quantity per sweep):

* work per training sample ``m`` = multiply-adds of the MLP, Σ_layers in·out (:func:`mlp_macs`);
* training rate of ONE trial alone, samples/s: :func:`training_rate`, interpolated log-log in ``m``
  between two anchors per device (a small net and the default net, :data:`ANCHORS`) and ∝ 1/m above the
  larger (compute-bound); on CPU it scales with the trial's threads (``ray.cpus_per_trial``);
* one trial: ``train_rows × epochs(loss) / rate × trial_over_training`` (setup, epoch-0 and per-epoch
  evaluation passes, final metrics);
* wall: ``FIXED_S + Σ_trials trial_s / (slots · efficiency)`` where slots are concurrent trials (CPU:
  ``cpus // cpus_per_trial``; GPU: ``gpus / gpus_per_trial``, and no more than the CPU bound, as Ray schedules
  them) and efficiency the share of a lone trial's rate each keeps when k share a GPU: the measured trials per
  minute of k packed trials over one alone (:func:`packed_speedup`), divided by k. The estimate "on
  one GPU" given beside a CPU estimate assumes a host of :data:`GPU_HOST_CPUS` cores, the one the GPU anchors
  were measured on.

Where the constants come from (keep this list true when a figure is remeasured):

* CPU anchors: bench/README.md, development VM (2 vCPUs, AMD EPYC): default_net 122–157k samples/s per
  trial at 2 threads (``train_throughput.py``; 70k per thread used), small_net at batch 2,048 ≈ 300k per
  thread (``repeats_overhead.py``, 2026-12-05: 298k/s per 1-thread trial counting its evaluation, two trials at
  once on the 2 cores; 190k/s before subnormals were flushed and the loop stopped reading the device, when
  150k was used). Whole trial ≈ 1.5×
  training (``train_throughput.py``: 9.3 s trial for 6.1 s training; ``sweep_scale.py``: 1.3–1.45×).
* GPU anchors: measured on one H200 by ``bench/gpu_check.py`` (2026-12-04, torch 2.11 + CUDA 13, CUDA-graph
  steps, TF32; bench/README, GPU check): in-trial BCE default_net at batch 32,768 18.9M samples/s, small_net at
  2,048 6.2M samples/s (capture and warm-up included; steady state 34.6M and 8.1M), whole trial 1.36-1.47×
  training. Packed trials: 2 / 4 / 8 at once on one GPU gave 1.24 / 1.41 / 1.48× (quickstart shape) and
  1.51 / 1.98 / 2.35× (default_net, 2.9M rows) the trials per minute of one alone.

An estimate is good to a factor of about two: it exists to refuse a sweep that would take hours on the
machine at hand (the audit's ``too_slow_here`` error), not to schedule one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from le_ray.training.shapes import input_width

__all__ = ["too_slow_before_preparation", "Anchor", "ANCHORS", "FIXED_S", "GPU_HOST_CPUS", "mlp_macs",
           "packed_speedup", "training_rate",
           "SweepEstimate", "estimate_sweep", "trial_device", "visible_cuda_devices", "estimate_for_config",
           "too_slow", "planned_synthetic_shape", "format_duration"]

FIXED_S = 15.0  # interpreter, imports, ray.init and worker start-up (bench/README: ~5–10 s each)
#: CPU cores of the one-GPU host the "on one GPU" estimate assumes: the H200 machine of the GPU anchors had 16
GPU_HOST_CPUS = 16


@dataclass(frozen=True)
class Anchor:
    """A device's training rate for one trial alone: ``samples_per_s`` at ``macs`` multiply-adds per sample."""
    macs: float
    samples_per_s: float


@dataclass(frozen=True)
class DeviceModel:
    """Two anchors (small net, default net), the whole-trial / training ratio, and what packing gives: rows
    (k, speed-up small, speed-up large) = trials per minute of k trials sharing one device over one alone, at
    each anchor's net (empty: trials never share a device)."""
    small: Anchor
    large: Anchor
    trial_over_training: float
    packed_speedup: tuple[tuple[int, float, float], ...]
    source: str


# small_net on synthetic data: 11 inputs → 128 → 64 → 1 = 9,664 MACs; default_net: 7 → 256-256-128-64 → 1
# = 108,352 MACs (see mlp_macs). CPU figures are per torch thread.
ANCHORS: dict[str, DeviceModel] = {
    "cpu": DeviceModel(Anchor(9_664, 300_000.0), Anchor(108_352, 70_000.0), 1.5, (),
                       "measured on a 2-vCPU VM (bench/README: train_throughput, repeats_overhead), per thread"),
    # packing: gpu_check.py's packing stage, quickstart shape (small) and default_net on 2.9M rows (large)
    "cuda": DeviceModel(Anchor(9_664, 6_200_000.0), Anchor(108_352, 18_900_000.0), 1.45,
                        ((1, 1.0, 1.0), (2, 1.24, 1.51), (4, 1.41, 1.98), (8, 1.48, 2.35)),
                        "measured on one H200 (bench/README: GPU check, 2026-12-04)"),
}


def mlp_macs(input_width: int, hidden_sizes: Sequence[int]) -> int:
    """Multiply-adds per sample of the MLP ``input_width → hidden_sizes… → 1``: Σ in·out over its Linears."""
    widths = [int(input_width), *(int(h) for h in hidden_sizes), 1]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def _net_position(model: DeviceModel, macs: float) -> float:
    """Where ``macs`` sits between the small (0) and large (1) anchor, in log macs, clamped to [0, 1]."""
    t = math.log(max(macs, 1.0) / model.small.macs) / math.log(model.large.macs / model.small.macs)
    return min(max(t, 0.0), 1.0)


def packed_speedup(device: str, sharing: float, macs: float) -> float:
    """Trials per minute of ``sharing`` trials on one device over one trial alone, for a net of ``macs``.

    From the device's measured rows (k = 1, 2, 4, 8): linear in log k between rows, flat beyond the last
    (more trials than measured are assumed to add nothing), and between the two anchors' nets linear in log
    macs. 1 for a device whose trials never share it, or ``sharing`` <= 1."""
    rows = ANCHORS[device].packed_speedup
    if not rows or sharing <= 1:
        return 1.0
    t = _net_position(ANCHORS[device], macs)
    log_ks = [math.log(k) for k, *_ in rows]
    values = [(1 - t) * small + t * large for _, small, large in rows]
    return float(np.interp(math.log(sharing), log_ks, values))  # np.interp holds the end values beyond the rows


def training_rate(device: str, macs: float, threads: int = 1) -> float:
    """Samples/s of one trial alone on ``device`` ("cpu" or "cuda") for a net of ``macs`` per sample.

    Log-log interpolation between the device's two anchors; above the larger anchor the rate falls as
    1/macs (the matrix products dominate); below the smaller it stays at the smaller's rate (per-step
    overhead dominates). On CPU the rate is per thread, times ``threads``.
    """
    model = ANCHORS[device]
    lo, hi = model.small, model.large
    if macs <= lo.macs:
        rate = lo.samples_per_s
    elif macs >= hi.macs:
        rate = hi.samples_per_s * hi.macs / macs
    else:
        t = _net_position(model, macs)
        rate = math.exp((1 - t) * math.log(lo.samples_per_s) + t * math.log(hi.samples_per_s))
    return rate * (max(1, threads) if device == "cpu" else 1)


@dataclass(frozen=True)
class SweepEstimate:
    """The estimate and what it rests on (plain data; seconds)."""
    device: str
    why: str
    wall_s: float
    trial_s: dict[str, float]
    trials: int
    slots: float
    rate: float
    source: str

    def to_record(self) -> dict[str, Any]:
        return dict(self.__dict__)


def estimate_sweep(device: str, *, train_rows: int, epochs_by_loss: Mapping[str, int], seeds: int, macs: float,
                   slots: float, threads: int = 1, sharing: float = 1.0, why: str = "",
                   stored: Mapping[str, int] | None = None) -> SweepEstimate:
    """Wall time of ``seeds`` trials per loss (module docstring), less the ``stored`` ones (loss → trials a resumed
    sweep already holds; they do not run again); ``slots`` concurrent trials (≥ 1), ``sharing`` of them on each
    device (GPU packing: each keeps :func:`packed_speedup` / ``sharing`` of a lone trial's rate)."""
    model = ANCHORS[device]
    rate = training_rate(device, macs, threads)
    trial_s = {loss: train_rows * epochs / rate * model.trial_over_training for loss, epochs in epochs_by_loss.items()}
    pending = {loss: max(seeds - int((stored or {}).get(loss, 0)), 0) for loss in trial_s}
    slots = max(1.0, float(slots))
    efficiency = packed_speedup(device, sharing, macs) / sharing if sharing > 1 else 1.0
    total = sum(trial_s[loss] * pending[loss] for loss in trial_s)
    # trials are indivisible: the sweep lasts at least one trial, however many slots there are
    longest = max((trial_s[loss] for loss in trial_s if pending[loss]), default=0.0)
    wall = FIXED_S + max(total / (slots * efficiency), longest)
    return SweepEstimate(device, why, wall, trial_s, sum(pending.values()), slots, rate, model.source)


def trial_device(ray_address: str | None, gpus_per_trial: float | None, *, cuda_available: bool,
                 ray_job: bool) -> tuple[str, str]:
    """("cuda" | "cpu", why): where the sweep's trials will train, as far as the driver can tell before Ray.

    An explicit ``ray.gpus_per_trial`` decides; else a visible CUDA device, or a cluster (``ray.address`` /
    ``RAY_ADDRESS``: le_ray's cluster profiles target GPU nodes, and the driver cannot see the workers) → cuda;
    else the local CPU.
    """
    if gpus_per_trial is not None:
        return ("cuda", f"ray.gpus_per_trial = {gpus_per_trial:g}") if gpus_per_trial > 0 else \
            ("cpu", "ray.gpus_per_trial = 0")
    if cuda_available:
        return "cuda", "a CUDA device is visible"
    if ray_address or ray_job:
        return "cuda", "a Ray cluster (assumed to have GPU workers: the driver cannot see them)"
    return "cpu", "no CUDA device and no Ray cluster: local CPU trials"


def visible_cuda_devices() -> int:
    """The CUDA devices this process can see (CUDA_VISIBLE_DEVICES applies), asked of the CUDA driver library
    itself: ``cuInit`` and ``cuDeviceGetCount`` through ctypes, what ``torch.cuda.device_count`` ends up asking.

    Not through torch because the sweep's driver never imports it (seconds of start-up before Ray starts,
    more with a CUDA build) and needs nothing else of it. 0 without a CUDA driver (no ``libcuda.so.1``: a CPU
    machine, macOS) or when the driver reports an error (no device, CUDA_VISIBLE_DEVICES empty). Creates no
    context and takes no GPU memory.
    """
    import ctypes

    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


def estimate_for_config(cfg, *, train_rows: int, input_width: int, epochs_by_loss: Mapping[str, int],
                        cuda_available: bool | None = None, cpu_count: int | None = None,
                        stored: Mapping[str, int] | None = None) -> SweepEstimate:
    """:func:`estimate_sweep` for ``cfg``'s sweep on the device :func:`trial_device` picks.

    Slots (:func:`le_ray.sweep.driver.concurrent_trials`): ``ray.num_cpus`` (else this machine's cores)
    ``// ray.cpus_per_trial``, and on GPUs no more than ``ray.num_gpus`` (else the visible CUDA devices, at least
    1) shared ``1 / gpus_per_trial`` ways (auto: :func:`le_ray.sweep.driver.auto_gpus_per_trial`).
    """
    from le_ray.sweep.driver import auto_gpus_per_trial, concurrent_trials
    from le_ray.sweep.plan import sweep_seeds

    devices = visible_cuda_devices()
    cuda = devices > 0 if cuda_available is None else cuda_available
    device, why = trial_device(cfg.ray.address, cfg.ray.gpus_per_trial, cuda_available=cuda,
                               ray_job=bool(os.environ.get("RAY_ADDRESS")))
    macs = mlp_macs(input_width, cfg.model.hidden_sizes)
    per_trial = max(1, cfg.ray.cpus_per_trial)
    cluster = {"CPU": float(cfg.ray.num_cpus or cpu_count or os.cpu_count() or 1)}
    share = 0.0
    if device == "cuda":
        cluster["GPU"] = float(cfg.ray.num_gpus or (devices if cuda else 0) or 1)
        share = cfg.ray.gpus_per_trial or auto_gpus_per_trial(cfg.model.hidden_sizes, train_rows, cluster["GPU"])
    slots = concurrent_trials(cluster, per_trial, share)
    return estimate_sweep(device, train_rows=train_rows, epochs_by_loss=epochs_by_loss,
                          seeds=len(sweep_seeds(cfg)), macs=macs, slots=slots, threads=per_trial,
                          sharing=slots / cluster["GPU"] if share else 1.0, why=why, stored=stored)


def too_slow(cfg, *, train_rows: int, input_width: int, epochs_by_loss: Mapping[str, int],
             cuda_available: bool | None = None, cpu_count: int | None = None,
             stored: Mapping[str, int] | None = None) -> str | None:
    """Why ``cfg``'s sweep should not start here (its estimate exceeds ``repeats.max_estimated_hours``), or None.
    ``stored``: loss → trials a resumed sweep already holds, left out of the estimate (a rerun with every trial
    stored only reports, and is never too slow).

    The sentence gives the estimate, what it rests on, the estimate on one GPU when the device is a CPU, and the
    keys that change the outcome.
    """
    common = dict(train_rows=train_rows, input_width=input_width, epochs_by_loss=epochs_by_loss, stored=stored)
    here = estimate_for_config(cfg, cuda_available=cuda_available, cpu_count=cpu_count, **common)
    limit = cfg.repeats.max_estimated_hours
    if here.trials == 0 or here.wall_s <= limit * 3600:  # nothing to train: a rerun that only reports
        return None
    gpu = estimate_for_config(cfg, cuda_available=True, cpu_count=GPU_HOST_CPUS, **common)
    elsewhere = "" if here.device == "cuda" else f"; on one H200-class GPU about {format_duration(gpu.wall_s)}"
    kept = sum((stored or {}).values())
    return (f"estimated {format_duration(here.wall_s)} on {here.device} ({here.why}): {here.trials} trials"
            f"{f' (besides the {kept} already stored)' if kept else ''} on "
            f"{train_rows:,} training rows at ~{here.rate:,.0f} samples/s per trial, {here.slots:g} at once "
            f"({here.source}){elsewhere}; longer than repeats.max_estimated_hours = {limit:g}. Run it on a GPU "
            "cluster (jobs/submit.sh, ray.address), shrink it (repeats.num_runs, training.epochs, the data), raise "
            "repeats.max_estimated_hours, or start anyway with --allow-unsound")


def too_slow_before_preparation(cfg, stored: Mapping[str, int] | None = None) -> str | None:
    """:func:`too_slow` from the config alone, for synthetic data (:func:`planned_synthetic_shape`); None for other
    sources, whose rows are known only after preparation, and for a sweep that may start here."""
    shape = planned_synthetic_shape(cfg)
    if shape is None:
        return None
    epochs = {loss: cfg.training_for(loss).epochs for loss in cfg.losses}
    return too_slow(cfg, train_rows=shape[0], input_width=shape[1], epochs_by_loss=epochs, stored=stored)


def planned_synthetic_shape(cfg) -> tuple[int, int] | None:
    """(training rows, model input width) of synthetic data from the config alone — before generating 10⁸ rows
    only to refuse them — or None for other sources (their rows are known after preparation)."""
    if cfg.data.source != "synthetic":
        return None
    syn = cfg.synthetic
    labelled = syn.num_conditions * syn.samples_per_condition
    if cfg.data.use_test_set:
        labelled -= math.floor(syn.test_split * labelled)
    width = input_width(len(syn.numeric_features), 0, cfg.model.embed_dim, cfg.model.cat_embed_dim)  # no categoricals
    return math.floor(cfg.data.train_split * labelled), width


def format_duration(seconds: float) -> str:
    """``1 h 05 min``, ``12 min``, ``2.5 min``, ``40 s``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"
