"""Input checks and ECE settings, applied once at the public boundary of ``le_ray.metrics``.

Private helpers elsewhere in the package assume arrays that passed these checks:
predictions ``p`` and labels ``y`` are finite 1-D float64 arrays of one shape ``[N]``,
condition ids are int64 ``[N]`` with values ≥ 0, and ECE settings are an ``_EceSpec``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_METHODS = ("custom", "adaptive", "adaptive_lib", "smooth", "smooth_lib")
SMOOTH_METHODS = ("smooth", "smooth_lib")
RATIO_EPS = 1e-12  # denominators ≤ RATIO_EPS give NaN ratios


def _check_array(a, name: str) -> np.ndarray:
    """Convert to a finite 1-D float64 array or raise ValueError naming ``name``."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _check_pair(p, y) -> tuple[np.ndarray, np.ndarray]:
    """Validate predictions ``p`` and labels ``y`` (1-D, same shape, finite)."""
    p_arr = _check_array(p, "p")
    y_arr = _check_array(y, "y")
    if p_arr.shape != y_arr.shape:
        raise ValueError(f"shape mismatch: p has shape {p_arr.shape}, y has shape {y_arr.shape}")
    return p_arr, y_arr


def _check_truth(p_true, n: int) -> np.ndarray | None:
    """Validate the true click probabilities ``p_true`` ([n], finite) or pass None through."""
    if p_true is None:
        return None
    t = _check_array(p_true, "p_true")
    if t.shape != (n,):
        raise ValueError(f"shape mismatch: p_true has shape {t.shape}, expected ({n},)")
    return t


def _check_conditions(conditions, n: int) -> np.ndarray:
    """Validate condition ids: 1-D, length n, integral, ≥ 0; returns int64 ids."""
    c = np.asarray(conditions)
    if c.ndim != 1 or c.shape[0] != n:
        raise ValueError(f"shape mismatch: conditions has shape {c.shape}, expected ({n},)")
    if c.dtype.kind not in "iub":
        cf = np.asarray(c, dtype=np.float64)
        if not np.isfinite(cf).all() or (cf != np.round(cf)).any():
            raise ValueError("conditions must be integer ids (found non-integral or NaN values)")
        c = cf
    c = c.astype(np.int64, copy=False)
    if c.size and c.min() < 0:
        raise ValueError("conditions must be non-negative integer ids 0..C-1")
    return c


def _check_num_conditions(num_conditions, cond: np.ndarray) -> int:
    """Number of conditions C: ``num_conditions`` if given (must exceed every id), else max id + 1."""
    needed = int(cond.max()) + 1 if cond.size else 0
    if num_conditions is None:
        return needed
    if isinstance(num_conditions, bool) or int(num_conditions) != num_conditions or num_conditions < needed:
        raise ValueError(f"num_conditions must be an integer ≥ max id + 1 = {needed}, got {num_conditions!r}")
    return int(num_conditions)


def _check_min_count(min_count) -> int:
    """A non-negative integer ``min_count`` (bins / conditions with fewer rows are skipped)."""
    if isinstance(min_count, bool) or int(min_count) != min_count or min_count < 0:
        raise ValueError(f"min_count must be a non-negative integer, got {min_count!r}")
    return int(min_count)


@dataclass(frozen=True)
class _EceSpec:
    """Validated ECE settings.

    ``bins``: B of custom / adaptive / adaptive_lib; ``grid``: G of the smooth backends
    (equal to B for custom, 0 for the adaptive backends); ``bandwidth``: Gaussian σ as a
    fraction of [0, 1] (σ = bandwidth·G grid bins).
    """

    method: str
    bins: int
    min_count: int
    bandwidth: float
    grid: int

    @property
    def smooth(self) -> bool:
        """True for the kernel-smoothed backends (smooth, smooth_lib)."""
        return self.method in SMOOTH_METHODS

    @property
    def n_bins(self) -> int:
        """Length K of the backend's bin axis: G for smooth backends, B otherwise."""
        return self.grid if self.smooth else self.bins


def _ece_spec(method="custom", bins=20, min_count=1, smooth_bandwidth=0.05,
              smooth_grid_bins=400) -> _EceSpec:
    """Validate ECE keyword arguments once and resolve the grid size (None → max(200, 10·bins))."""
    if method not in ECE_METHODS:
        raise ValueError(f"unknown ECE method {method!r}; expected one of {', '.join(ECE_METHODS)}")
    if isinstance(bins, bool) or int(bins) != bins or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    min_count = _check_min_count(min_count)
    if not np.isfinite(smooth_bandwidth) or smooth_bandwidth < 0:
        raise ValueError(f"smooth_bandwidth must be finite and ≥ 0, got {smooth_bandwidth!r}")
    g = max(200, 10 * int(bins)) if smooth_grid_bins is None else smooth_grid_bins
    if isinstance(g, bool) or int(g) != g or g < 2:
        raise ValueError(f"smooth_grid_bins must be an integer ≥ 2 (or None), got {smooth_grid_bins!r}")
    grid = {"custom": int(bins), "smooth": int(g), "smooth_lib": int(g)}.get(method, 0)
    return _EceSpec(method, int(bins), min_count, float(smooth_bandwidth), grid)


def _check_small(max_prob, quantile) -> None:
    """Validate the small-probability subset settings of ece_small (finite max_prob, quantile in [0, 1])."""
    if not np.isfinite(max_prob):
        raise ValueError(f"max_prob must be finite, got {max_prob!r}")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must lie in [0, 1], got {quantile!r}")


def _ratio(num, den) -> np.ndarray:
    """Elementwise num/den, NaN where den ≤ 0 (empty bins / conditions); no warnings."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)
