"""Sizes a trial's tensors will have, from the config and the data alone: numpy, no torch.

The sweep's audit and runtime estimate need them before any trial runs, in the driver, which never imports
torch (seconds of its start-up, more with a CUDA build); :mod:`le_ray.training.model` and
:mod:`le_ray.training.cross_batch` build their tensors from these same functions.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np

__all__ = ["input_width", "window_capacities"]

ArrayLike = Union[np.ndarray, Sequence[float]]


def input_width(num_numeric: int, num_categorical: int, embed_dim: int, cat_embed_dim: int) -> int:
    """Width of the MLP's first layer: numeric features + the condition embedding + one embedding per categorical
    feature."""
    return num_numeric + embed_dim + num_categorical * cat_embed_dim


def window_capacities(base_rates: ArrayLike, amplification_rate: float, max_window: int,
                      max_entries: ArrayLike | None = None) -> np.ndarray:
    """Entries int64 [C] of each condition's LE history window, from base rates r [C] (A = amplification rate)::

        cap_j = clamp(ceil(A / r_j), 1, max_window)   for 0 < r_j < 1
        cap_j = clamp(ceil(A), 1, max_window)          for finite r_j >= 1
        cap_j = max_window                             for r_j <= 0 or non-finite

    so a window holds about A positives. With ``max_entries`` [C] (an upper bound on the entries condition j will
    ever receive) the result is the ring size max(1, min(cap_j, max_entries_j)): a window never holds more than
    was pushed, so the window is unchanged while memory stays <= Σ_j max_entries_j. float64 throughout.
    """
    if not (math.isfinite(amplification_rate) and amplification_rate > 0):
        raise ValueError(f"amplification_rate must be finite and > 0, got {amplification_rate}")
    if int(max_window) < 1:
        raise ValueError(f"max_window must be >= 1, got {max_window}")
    r = np.asarray(base_rates, dtype=np.float64).reshape(-1)
    a, top = float(amplification_rate), float(int(max_window))
    with np.errstate(invalid="ignore"):
        inside = (r > 0) & (r < 1)  # False for NaN
        edge = np.where(np.isfinite(r) & (r >= 1), float(math.ceil(a)), top)  # rate >= 1: the window's rate, 1
    ratio = np.ceil(a / np.where(inside, r, 1.0))
    cap = np.clip(np.where(inside, ratio, edge), 1.0, top).astype(np.int64)
    if max_entries is None:
        return cap
    limit = np.asarray(max_entries).reshape(-1).astype(np.int64)
    if limit.size != cap.size:
        raise ValueError(f"max_entries has {limit.size} entries, base_rates {cap.size}")
    return np.maximum(np.minimum(cap, limit), 1)
