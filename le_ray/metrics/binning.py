"""Bin rules of the ECE backends: which bin each prediction falls into.

Every rule maps predictions ``p`` [N] to integer bin indices [N] on an axis of K bins:

* ``custom`` (K = B): equal-width, right-closed.  Edges are ``e = np.linspace(0, 1, B + 1)``
  (the float64 values ``k·(1/B)``, which can differ from ``k/B`` by one ulp); bin k holds
  ``p ∈ (e_k, e_{k+1}]``, ``p ≤ 0`` goes to bin 0 and ``p > 1`` to bin B−1 — i.e.
  ``clip(np.digitize(p, e, right=True) − 1, 0, B−1)``.
* ``smooth`` / ``smooth_lib`` (K = G): ``numpy.histogram(clip(p, 0, 1), bins=G, range=(0, 1))``
  semantics on the same linspace edges: bin g holds ``p ∈ [e_g, e_{g+1})`` and the last bin
  is closed, ``[e_{G−1}, 1]``; p is clipped to [0, 1] first.
* ``adaptive`` (K = B): equal mass on the stable ascending order of p; the row at sorted
  position r of N goes to bin ``⌊((r+1)·B − 1)/N⌋``, i.e. bin k holds the positions
  ``[⌊kN/B⌋, ⌊(k+1)N/B⌋)`` (ties may be split; B > N leaves empty bins).
* ``adaptive_lib`` (K ≤ B): ``pandas.qcut(p, q=min(B, N), duplicates="drop", labels=False)``;
  ties stay together, so fewer bins are possible (all-equal p → one bin).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from le_ray.metrics.validation import _EceSpec


def _stable_argsort(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stable ascending order of p and the sorted values, ``(order [N], p[order] [N])``.

    Same result as ``np.argsort(p, kind="stable")`` but about twice as fast: a quicksort
    argsort, then tied runs are put back into index order by sorting the unique int64 keys
    ``group·N + index`` of the tied positions only (no second argsort).
    """
    order = np.argsort(p)
    ps = p[order]
    tied = ps[1:] == ps[:-1]
    if not tied.any():
        return order, ps
    n = p.size
    in_tie = np.zeros(n, dtype=bool)
    in_tie[1:] |= tied
    in_tie[:-1] |= tied
    pos = np.flatnonzero(in_tie)
    group = np.concatenate(([0], np.cumsum(~tied)))[pos]
    order[pos] = np.sort(group * n + order[pos]) % n
    return order, ps


@lru_cache(maxsize=64)
def _interior_edges(n_bins: int) -> np.ndarray:
    """Interior edges ``np.linspace(0, 1, K + 1)[1:-1]`` [K−1], read-only (shared by every call)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1].copy()
    edges.flags.writeable = False
    return edges


def _custom_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Right-closed equal-width bin of each p [N]: bin k holds (e_k, e_{k+1}], ends clipped."""
    return np.searchsorted(_interior_edges(n_bins), p, side="left")


def _histogram_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """numpy.histogram bin of clip(p, 0, 1) [N]: bin g holds [e_g, e_{g+1}), the last is closed."""
    return np.searchsorted(_interior_edges(n_bins), np.clip(p, 0.0, 1.0), side="right")


def _equal_mass_index(rank: np.ndarray, size, n_bins: int) -> np.ndarray:
    """Equal-mass bin ⌊((r+1)·B − 1)/n⌋ of sorted position r in a group of ``size`` n (scalar or [N])."""
    return ((rank + 1) * n_bins - 1) // np.maximum(size, 1)


def _qcut_index(p: np.ndarray, n_bins: int) -> tuple[np.ndarray, int]:
    """Bin codes from ``pandas.qcut(p, q=min(B, N), duplicates="drop", labels=False)``.

    Returns (codes [N], number of bins).  When every quantile edge coincides (all p equal)
    pandas yields NaN codes; that case is one bin holding everything.
    """
    if p.size == 0:
        return np.zeros(0, dtype=np.intp), 0
    import pandas as pd  # here, not at the top: only adaptive_lib needs it, and it costs every Ray worker ~0.4 s

    codes = np.asarray(pd.qcut(p, q=min(n_bins, p.size), duplicates="drop", labels=False), dtype=np.float64)
    if np.isnan(codes).any():
        return np.zeros(p.size, dtype=np.intp), 1
    idx = codes.astype(np.intp)
    return idx, int(idx.max()) + 1


def _grid_index(p: np.ndarray, spec: _EceSpec) -> np.ndarray:
    """Bin of each p [N] for the grid backends (custom: right-closed; smooth*: histogram rule)."""
    if spec.smooth:
        return _histogram_index(p, spec.grid)
    return _custom_index(p, spec.grid)


def _bin_index(p: np.ndarray, spec: _EceSpec, *, presorted: bool = False) -> tuple[np.ndarray, int]:
    """(bin index of each p [N], number of bins K) for ``spec``'s backend, rows in input order.

    ``presorted``: p is already stably sorted ascending (saves the adaptive sort).
    K is B (custom, adaptive), G (smooth*) or the number of qcut bins (adaptive_lib).
    """
    if spec.method == "adaptive":
        if presorted:
            rank = np.arange(p.size)
        else:
            rank = np.empty(p.size, dtype=np.intp)
            rank[_stable_argsort(p)[0]] = np.arange(p.size)
        return _equal_mass_index(rank, p.size, spec.bins), spec.bins
    if spec.method == "adaptive_lib":
        return _qcut_index(p, spec.bins)
    return _grid_index(p, spec), spec.grid


def _binned_p(p: np.ndarray, spec: _EceSpec) -> np.ndarray:
    """The p that is averaged per bin: clip(p, 0, 1) for smooth backends (histogram weights), else p."""
    return np.clip(p, 0.0, 1.0) if spec.smooth else p
