"""Expected calibration error (ECE): per-bin sums → per-bin averages → ECE, for five backends.

``ECE = Σ_b (n_b / N) · |avg_pred_b − avg_label_b|`` (probability units, in [0, 1]) over the
bins whose raw count ``n_b ≥ min_count``; skipped bins still count in N (so skipping can
only lower the ECE).  Bin rules are in ``le_ray.metrics.binning``.  Averages:

* ``custom`` / ``adaptive`` / ``adaptive_lib``: avg_pred_b = Σp_b / n_b, avg_label_b = Σy_b / n_b.
* ``smooth``: the per-bin histograms of counts, Σ clip(p, 0, 1) and Σy on the G-bin grid are
  each convolved with a normalised Gaussian kernel of σ = bandwidth·G grid bins, radius
  ceil(4σ), zero padding outside [0, 1]; avg = smoothed Σ / smoothed count.  Bandwidth 0
  means no smoothing.
* ``smooth_lib``: as smooth, smoothing with
  ``scipy.ndimage.gaussian_filter1d(mode="nearest", truncate=4.0)``.

Averages (and gaps) are NaN in bins with raw count < min_count or a zero (smoothed) count;
the ECE sums the bins whose gap is defined.  Every array helper works along the last axis,
so one call handles one histogram [K] or one per condition [C, K].
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import polars as pl

from le_ray.metrics.binning import _bin_index, _binned_p, _grid_index, _stable_argsort
from le_ray.metrics.validation import _check_pair, _check_small, _ece_spec, _EceSpec, _ratio

__all__ = ["ece", "ece_table", "reliability_curve", "ece_small"]


@lru_cache(maxsize=64)
def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised Gaussian kernel [2r+1] on offsets −r..r, r = ceil(4σ) grid bins; read-only."""
    radius = int(np.ceil(4.0 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    kernel.flags.writeable = False
    return kernel


def _smooth(h: np.ndarray, sigma: float, lib: bool) -> np.ndarray:
    """Gaussian smoothing of histograms [..., G] along the last axis (σ in grid bins, 0 = none)."""
    h = np.asarray(h, dtype=np.float64)
    if sigma <= 0:
        return h
    # imported here: only the smooth ECE methods need scipy.ndimage, and it costs every Ray worker ~0.15 s
    from scipy.ndimage import convolve1d, gaussian_filter1d

    if lib:
        return gaussian_filter1d(h, sigma, axis=-1, mode="nearest", truncate=4.0)
    return convolve1d(h, _gaussian_kernel(sigma), axis=-1, mode="constant", cval=0.0)


def _bin_means(counts: np.ndarray, sums, spec: _EceSpec) -> list[np.ndarray]:
    """Per-bin averages [..., K] of each per-bin sum in ``sums`` ([..., K] each).

    avg = Σ / n (smoothed Σ / smoothed n for smooth backends); NaN where the raw count
    < min_count or the (smoothed) count is 0.
    """
    den = counts
    nums = list(sums)
    if spec.smooth and spec.bandwidth > 0:
        sigma, lib = spec.bandwidth * spec.grid, spec.method == "smooth_lib"
        den = _smooth(counts, sigma, lib)
        nums = [_smooth(s, sigma, lib) for s in nums]
    skip = counts < spec.min_count
    return [np.where(skip, np.nan, _ratio(s, den)) for s in nums]


def _ece_rows(counts: np.ndarray, avg_pred: np.ndarray, avg_target: np.ndarray) -> np.ndarray:
    """ECE along the last axis: Σ_b n_b·|avg_pred_b − avg_target_b| / Σ_b n_b over defined gaps.

    Shapes [..., K] → [...]; NaN where Σ_b n_b = 0 (no rows).
    """
    gap = np.abs(avg_pred - avg_target)
    weighted = np.where(np.isfinite(gap), counts * gap, 0.0)
    return _ratio(weighted.sum(axis=-1), counts.sum(axis=-1))


def _bin_sums(idx: np.ndarray, n_bins: int, weights) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-bin (count [K] int64, [Σ w_b for each w in weights] [K]) via np.bincount."""
    counts = np.bincount(idx, minlength=n_bins)
    return counts, [np.bincount(idx, weights=w, minlength=n_bins) for w in weights]


def _bin_table(p, y, spec: _EceSpec, *, presorted=False, idx=None):
    """(counts [K], avg_pred [K], avg_label [K]) of validated arrays; ``idx`` = precomputed bins."""
    if idx is None:
        idx, n_bins = _bin_index(p, spec, presorted=presorted)
    else:
        n_bins = spec.n_bins
    counts, sums = _bin_sums(idx, n_bins, (_binned_p(p, spec), y))
    avg_pred, avg_label = _bin_means(counts, sums, spec)
    return counts, avg_pred, avg_label


def _ece_value(p, y, spec: _EceSpec, *, presorted=False, idx=None) -> float:
    """ECE of validated arrays (NaN when empty)."""
    return float(_ece_rows(*_bin_table(p, y, spec, presorted=presorted, idx=idx)))


def _small_threshold(p: np.ndarray, max_prob: float, quantile: float, presorted: bool) -> float:
    """max_prob if some p ≤ max_prob, else the numpy linear ``quantile`` of p (NaN when empty)."""
    if p.size == 0:
        return float("nan")
    has_small = p[0] <= max_prob if presorted else bool((p <= max_prob).any())
    return float(max_prob) if has_small else float(np.quantile(p, quantile))


def _ece_pair(p, y, spec: _EceSpec, max_prob, quantile, *, presorted=False):
    """(ece, ece_small, threshold, subset_size) of validated arrays, sharing one sort / grid index.

    For a p-sorted input the small subset {p ≤ threshold} is a prefix, so the adaptive bins
    of the subset come without a second sort; grid bins of the subset are a subset of the
    full grid bins.
    """
    if spec.method == "adaptive" and not presorted:
        order, p = _stable_argsort(p)
        y, presorted = y[order], True
    grid = _grid_index(p, spec) if spec.grid else None
    full = _ece_value(p, y, spec, presorted=presorted, idx=grid)
    thr = _small_threshold(p, max_prob, quantile, presorted)
    if np.isnan(thr):
        return full, float("nan"), thr, 0
    sub = slice(0, int(np.searchsorted(p, thr, side="right"))) if presorted else p <= thr
    small = _ece_value(p[sub], y[sub], spec, presorted=presorted, idx=None if grid is None else grid[sub])
    return full, small, thr, int(p[sub].size)


def ece(p, y, *, method: str = "custom", bins: int = 20, min_count: int = 1,
        smooth_bandwidth: float = 0.05, smooth_grid_bins: int | None = 400) -> float:
    """Expected calibration error (probability units, in [0, 1]) — see the module docstring.

    ``ECE = Σ_b (n_b/N)·|mean p_b − mean y_b|`` over bins with n_b ≥ min_count, for the
    backend ``method`` ∈ ECE_METHODS; ``smooth_grid_bins=None`` means max(200, 10·bins).
    NaN on empty input; ValueError on an unknown method or invalid settings.
    """
    p, y = _check_pair(p, y)
    spec = _ece_spec(method, bins, min_count, smooth_bandwidth, smooth_grid_bins)
    return _ece_value(p, y, spec)


def ece_table(p, y, *, method: str = "custom", bins: int = 20, min_count: int = 1,
              smooth_bandwidth: float = 0.05, smooth_grid_bins: int | None = 400) -> pl.DataFrame:
    """Per-bin calibration table for the ECE backend ``method`` (same arguments as ``ece``).

    Columns: bin (0-based), count (raw samples in the bin, always shown), avg_pred,
    avg_label (smoothed for smooth backends) and abs_gap = |avg_pred − avg_label|; the three
    averages are NaN in bins with count < min_count (and in empty bins).
    Rows: B (custom, adaptive), ≤ B (adaptive_lib), G (smooth, smooth_lib).
    """
    p, y = _check_pair(p, y)
    spec = _ece_spec(method, bins, min_count, smooth_bandwidth, smooth_grid_bins)
    counts, avg_pred, avg_label = _bin_table(p, y, spec)
    return pl.DataFrame({
        "bin": np.arange(counts.size, dtype=np.int64),
        "count": counts.astype(np.int64),
        "avg_pred": avg_pred,
        "avg_label": avg_label,
        "abs_gap": np.abs(avg_pred - avg_label),
    })


def reliability_curve(p, y, *, bins: int = 20, method: str = "custom", **ece_kwargs) -> pl.DataFrame:
    """Reliability-diagram data: exactly ``ece_table(p, y, method=method, bins=bins, ...)``."""
    return ece_table(p, y, method=method, bins=bins, **ece_kwargs)


def ece_small(p, y, *, max_prob: float = 0.01, quantile: float = 0.1, **ece_kwargs) -> dict:
    """ECE on the small-probability subset {p ≤ threshold} with the same backend settings.

    threshold = max_prob when some p ≤ max_prob; otherwise the ``quantile`` quantile of p
    (numpy's default linear method).  Returns {"ece_small", "threshold", "subset_size"};
    ECE normalised by the subset size.  Empty input → NaN, NaN, 0.
    """
    p, y = _check_pair(p, y)
    _check_small(max_prob, quantile)
    spec = _ece_spec(**ece_kwargs)
    thr = _small_threshold(p, max_prob, quantile, presorted=False)
    if np.isnan(thr):
        return {"ece_small": float("nan"), "threshold": float("nan"), "subset_size": 0}
    sub = p <= thr
    return {"ece_small": _ece_value(p[sub], y[sub], spec), "threshold": thr,
            "subset_size": int(np.count_nonzero(sub))}
