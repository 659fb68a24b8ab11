"""Device choice (CUDA → MPS → CPU), dtype policy, seeding and determinism.

Inside a Ray task the caller passes the GPU ids Ray assigned: a task that holds no GPU is not
isolated from the node's GPUs, so ``torch.cuda.is_available()`` alone must not put it on one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from le_ray.config.schema import DeviceConfig

__all__ = ["DeviceChoice", "select_device", "torch_dtype", "seed_all", "set_determinism", "configure_threads",
           "tune_host_allocator", "flush_denormals", "apply_matmul_precision", "MATMUL_PRECISIONS"]

MATMUL_PRECISIONS = ("auto", "highest", "high")


@dataclass(frozen=True)
class DeviceChoice:
    """Where a trial runs and why (``reason`` is printed in run headers and trial records)."""
    device: torch.device
    dtype: torch.dtype
    reason: str


def torch_dtype(name: str, device_type: str = "cpu") -> torch.dtype:
    """``float32`` or ``float64``; MPS has no float64, so it falls back to float32 there."""
    if name not in ("float32", "float64"):
        raise ValueError(f"device.dtype: got {name!r}; expected float32 or float64")
    if name == "float64" and device_type == "mps":
        return torch.float32
    return torch.float64 if name == "float64" else torch.float32


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(cfg: DeviceConfig, *, assigned_gpu_ids: Sequence[int | str] | None = None,
                  cuda_available: bool | None = None, mps_available: bool | None = None) -> DeviceChoice:
    """Pick the trial's device.

    ``assigned_gpu_ids`` is None outside Ray (then any visible CUDA device counts) and the list of
    GPU ids Ray assigned inside a Ray task (empty → CPU, whatever the node has). Under Ray,
    ``CUDA_VISIBLE_DEVICES`` is set to exactly the assigned ids, so ``cuda:0`` is the first of them.
    The availability flags are injectable for tests.
    """
    cuda_ok = torch.cuda.is_available() if cuda_available is None else cuda_available
    mps_ok = _mps_available() if mps_available is None else mps_available
    if assigned_gpu_ids is not None and len(assigned_gpu_ids) == 0:
        device, reason = torch.device("cpu"), "cpu (the Ray task holds no GPU)"
    elif cuda_ok:
        where = f"Ray GPU ids {list(assigned_gpu_ids)}" if assigned_gpu_ids else "visible CUDA device"
        device, reason = torch.device("cuda:0"), f"cuda:0 ({where})"
    elif assigned_gpu_ids:
        device, reason = torch.device("cpu"), f"cpu (Ray assigned GPU ids {list(assigned_gpu_ids)} but torch sees no CUDA)"
    elif cfg.use_mps and mps_ok:
        device, reason = torch.device("mps"), "mps (device.use_mps)"
    else:
        device, reason = torch.device("cpu"), "cpu (no accelerator)"
    return DeviceChoice(device, torch_dtype(cfg.dtype, device.type), reason)


def seed_all(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG, torch (CPU) and every CUDA device."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def set_determinism(enabled: bool) -> None:
    """``device.deterministic``: deterministic kernels (warn-only where none exists) and no cuDNN autotune."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled


def apply_matmul_precision(setting: str, device: torch.device | str) -> str:
    """Apply ``device.matmul_precision`` for a trial on ``device``; return the precision in effect.

    ``"highest"``: float32 matrix products in IEEE FP32; ``"high"``: on CUDA, TF32 tensor cores
    (inputs rounded to a 10-bit mantissa, FP32 accumulation: about 1e-3 relative error per product,
    several times the throughput); ``"auto"``: ``"high"`` on CUDA, ``"highest"`` elsewhere. Set with
    :func:`torch.set_float32_matmul_precision`, which is process-wide, and only for CUDA: on any other
    device the result is ``"highest"`` whatever the setting, so CPU and MPS numbers never change
    (a precision left at ``"high"`` by an earlier CUDA trial in the same process is reset).
    float64 products are never affected.
    """
    if setting not in MATMUL_PRECISIONS:
        raise ValueError(f"device.matmul_precision: got {setting!r}; expected one of {', '.join(MATMUL_PRECISIONS)}")
    if torch.device(device).type != "cuda":
        if torch.get_float32_matmul_precision() != "highest":
            torch.set_float32_matmul_precision("highest")
        return "highest"
    effective = "high" if setting == "auto" else setting
    torch.set_float32_matmul_precision(effective)
    return effective


def configure_threads(num_threads: int | None) -> int:
    """Set torch's intra-op thread count when given; return the count in effect."""
    if num_threads is not None and num_threads != torch.get_num_threads():
        torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def flush_denormals() -> bool:
    """Make CPU float arithmetic treat subnormal numbers (|x| < 1.2e-38 in float32) as 0, in and out.

    A model that drives some predictions to almost 0 (LE from a cold start on rare ads: logits near -25) carries
    gradients and Adam moments of ~1e-40, and x86 cores handle each subnormal operand in microcode: an
    element-wise op ran 15x slower on them here, and such an LE trial's epoch took 172 s instead of 34 s on 2
    cores (README, "Testing LE's claim at scale"). Flushed, those values become 0, far below anything a float32 step can add to a weight. The
    mode is per thread and a new thread inherits its creator's, so this must run before torch starts its
    intra-op threads (before the process's first parallel op), as a trial's set-up and a worker's warm-up do;
    later calls change only the calling thread. Returns False where the CPU cannot flush (then nothing changes)."""
    return bool(torch.set_flush_denormal(True))


def tune_host_allocator(threshold_bytes: int = 1 << 30) -> bool:
    """Keep large CPU tensors in glibc's heap instead of fresh ``mmap`` pages per allocation.

    A training step allocates and frees activation tensors of tens of MB (batch 32,768 × 256
    float32 = 32 MB). Above glibc's mmap threshold each one is a new mapping whose pages the
    kernel must fault in and zero, which costs more than the arithmetic of an element-wise op
    on this kind of VM. Raising ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` lets freed blocks be
    reused. Process-wide and idempotent; returns False where glibc's ``mallopt`` is unavailable
    (macOS, musl) and changes nothing there. Memory stays at the process's peak instead of being
    returned to the OS between steps.
    """
    name = ctypes.util.find_library("c")
    if not name or os.environ.get("LE_RAY_NO_MALLOPT"):
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok_mmap = mallopt(m_mmap_threshold, int(threshold_bytes))
    ok_trim = mallopt(m_trim_threshold, int(threshold_bytes) * 2)
    return bool(ok_mmap and ok_trim)
