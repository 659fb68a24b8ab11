"""A trained model's evaluation, computed where its logits are and read back to the host once.

After training, everything a trial record needs from the evaluation split (N rows, C conditions) is
computed on the trial's device and copied to the host in ONE transfer (:class:`_HostRead`, one float64
buffer):

* The model summary of :func:`le_ray.metrics.model_summary`, assembled on the host by
  :func:`le_ray.metrics.summary_from_sums` from statistics computed here: the per-condition sums below, the
  same sums with every row as ONE condition (the split's own ECE bins, ece_small subset and threshold),
  Σ (p − y)², and ROC-AUC / average precision from p's stable order, sorted on the device once
  (:func:`_curve_terms`). The host used to receive p and scan it itself: 40–70 ms at 0.7M rows and
  0.7–0.9 s at 10M on the development VM (given the device's order), beside a GPU trial's training of a few tenths of a second.
* ``p = sigmoid(z)`` in float64 [N], only where the caller keeps the predictions (``keep_p``).
* The additive per-condition sums of :func:`le_ray.metrics.condition_sums` (n, Σy, Σp, Σp², Σy·p,
  Σ BCE, tp / fp / fn / tn, Σ p_true), its sparse ECE bins and small-p bins, and the equal-mass
  reliability bins of :func:`le_ray.metrics.ece_table` (``method="adaptive"``): all of them one
  ``index_add_`` over one flattened float64 buffer per chunk of rows (sections [C·k] | bins [G·k] |
  small bins [G·k] | reliability [B·3]; a row's slot is ``offset + group·k + column``).
* The evaluation loss under every loss definition (``eval_compare``) and the per-condition LE
  statistics, stacked on the device.

Exactness (why the device path gives the numbers of the numpy path, to float64 summation order):
bin edges are the very float64 array :mod:`le_ray.metrics.binning` uses, searched with the same side
(custom: ``side="left"``; smooth: ``side="right"`` on clip(p, 0, 1)); equal-mass ranks come from
``torch.sort(stable=True)``, the same order as numpy's stable argsort (ties by row); the ece_small
quantile fallback repeats numpy's linear quantile operation by operation (each a separately rounded
float64 op); counts are float64 sums of ones (exact below 2**53).  Sums differ from numpy's only by
summation order (and, on CUDA without ``device.deterministic``, vary in the last bits run to run).
``adaptive_lib`` (pandas.qcut edges per condition) has no exact device equivalent: it keeps the numpy
path, as do CPU (so CPU records stay bit-identical to the numpy path) and MPS (no float64).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from le_ray import metrics
from le_ray.data.arrays import Split
from le_ray.data.batches import TensorSplit
# Private helpers imported on purpose: one definition of the ECE settings and of the bin edges.
from le_ray.metrics.binning import _interior_edges
from le_ray.metrics.pointwise import PROB_CLIP
from le_ray.metrics.validation import _check_small, _ece_spec, _EceSpec
from le_ray.training.losses import LE_STAT_KEYS, le_stat_tensors
from le_ray.training.objectives import Objective

__all__ = ["Evaluation", "DEVICE_ECE_METHODS", "LE_STAT_KEYS", "sums_on_device", "stable_order",
           "device_condition_sums", "device_reliability", "le_stat_tensors", "evaluate_predictions"]

DEVICE_ECE_METHODS = ("custom", "adaptive", "smooth", "smooth_lib")  # exact on the device; adaptive_lib is not
_DENSE_BIN_KEYS = 1 << 18  # (condition, bin) key spaces up to this size are summed densely, larger ones compacted
_CHUNK_ROWS = 1 << 19  # rows per scatter: bounds the [rows, Σk] index and value matrices (~90 MB each at Σk = 22)


class _HostRead:
    """Device tensors gathered into one float64 buffer, copied to the host in one transfer."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device("cpu") if device.type == "mps" else device  # MPS has no float64
        self._parts: list[Tensor] = []
        self._host: list[np.ndarray] = []

    def add(self, tensor: Tensor) -> int:
        """Queue ``tensor`` (any shape; flattened, as float64); returns its slot."""
        self._parts.append(tensor.detach().reshape(-1).to(self.device).to(torch.float64))
        return len(self._parts) - 1

    def read(self) -> None:
        """The one device → host copy; afterwards ``self[slot]`` is the slot's float64 numpy array."""
        sizes = np.cumsum([t.numel() for t in self._parts])
        flat = torch.cat(self._parts).cpu().numpy() if self._parts else np.zeros(0)
        self._host = np.split(flat, sizes[:-1]) if self._parts else []

    def __getitem__(self, slot: int) -> np.ndarray:
        return self._host[slot]


def _upload(array: np.ndarray, device: torch.device) -> Tensor:
    """A float64 copy of ``array`` on ``device``; to CUDA through pinned memory without blocking (a pageable
    copy would wait for the device's queued work: a synchronisation in the middle of the plan)."""
    host = torch.tensor(np.asarray(array, dtype=np.float64))
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def sums_on_device(device: torch.device, ece_method: str) -> bool:
    """True where the device path is exact and worth it: CUDA (float64 everywhere) and a device backend."""
    return device.type == "cuda" and ece_method in DEVICE_ECE_METHODS


@dataclass(frozen=True)
class _Ranks:
    """Orders of p on the device: n [C] rows per condition, start [C] first position of each condition in
    the grouped order, grouped_p [N] p sorted by (condition, p), rank [N] each row's position in the stable
    order of all p, rank_in_condition [N] its position within its condition's stable order."""
    n: Tensor
    start: Tensor
    grouped_p: Tensor
    rank: Tensor
    rank_in_condition: Tensor


def stable_order(p: Tensor) -> Tensor:
    """The stable ascending order of p [N] (ties by row index): numpy's ``argsort(kind="stable")``, on p's device."""
    return torch.sort(p, stable=True).indices


def _ranks(p: Tensor, cond: Tensor, num_conditions: int, order: Tensor | None = None) -> _Ranks:
    """Two stable sorts: by p (ties by row; ``order`` when already sorted), then by condition; within a condition
    rows stay in p order."""
    order = stable_order(p) if order is None else order
    # one condition: the stable sort by condition is the identity, so the grouped order is p's order itself
    grouped = order if num_conditions == 1 else order.index_select(
        0, torch.sort(cond.index_select(0, order), stable=True).indices)
    n = torch.zeros(num_conditions, dtype=torch.long, device=p.device).index_add_(0, cond, torch.ones_like(cond))
    start = torch.cumsum(n, 0) - n
    pos = torch.arange(p.numel(), device=p.device)
    rank = torch.empty_like(pos).index_put_((order,), pos)
    within = pos - start.index_select(0, cond.index_select(0, grouped))
    return _Ranks(n, start, p.index_select(0, grouped), rank, torch.empty_like(pos).index_put_((grouped,), within))


def _small_thresholds(r: _Ranks, max_prob: float, quantile: float) -> Tensor:
    """ece_small threshold of each condition [C] float64: max_prob where its smallest p ≤ max_prob, else
    ``np.quantile(p_j, quantile)`` (linear); NaN for absent conditions.

    numpy's linear quantile of n sorted values a: v = (n−1)·q, lo = ⌊v⌋, t = v − lo, and
    a[lo] + (a[lo+1] − a[lo])·t, or a[lo+1] − (a[lo+1] − a[lo])·(1 − t) where t ≥ 0.5; the largest
    value when v ≥ n − 1.  Each step is one float64 op here too, so the result is the same number.
    """
    size = r.grouped_p.numel()
    if size == 0:
        return torch.full(r.n.shape, math.nan, dtype=torch.float64, device=r.n.device)
    last = r.n - 1
    v = last.to(torch.float64) * float(quantile)
    lo = torch.floor(v)
    above = v >= last
    i_lo = torch.where(above, last, lo.long())
    i_hi = torch.where(above, last, lo.long() + 1)
    a = r.grouped_p.index_select(0, (r.start + i_lo).clamp(0, size - 1))
    b = r.grouped_p.index_select(0, (r.start + i_hi).clamp(0, size - 1))
    t = v - lo
    diff = b - a
    fallback = torch.where(t >= 0.5, b - diff * (1 - t), a + diff * t)
    smallest = r.grouped_p.index_select(0, r.start.clamp(0, size - 1))
    thr = torch.where(smallest <= max_prob, torch.full_like(fallback, float(max_prob)), fallback)
    return torch.where(r.n > 0, thr, torch.full_like(thr, math.nan))


def _row_bins(p: Tensor, cond: Tensor, spec: _EceSpec, r: _Ranks, small: Tensor) -> tuple[Tensor, Tensor]:
    """Bin of every row for the full ECE and for the small-subset ECE, ([N], [N]) long, as metrics.sums.

    custom: ``searchsorted(edges, p, "left")``; smooth*: ``searchsorted(edges, clip(p, 0, 1), "right")``;
    adaptive: ⌊((r+1)·B − 1)/n_j⌋ and ⌊((r+1)·B − 1)/m_j⌋ with r the rank within the condition and m_j
    its small-subset size (the subset is a prefix of the condition's p order). Rows outside the subset
    get small bin 0; their sums are masked to zero.
    """
    if spec.grid:
        edges = _upload(_interior_edges(spec.grid), p.device)
        if spec.smooth:
            idx = torch.searchsorted(edges, p.clamp(0.0, 1.0), side="right")
        else:
            idx = torch.searchsorted(edges, p, side="left")
        return idx, idx
    m = torch.zeros_like(r.n).index_add_(0, cond, small.long())
    top = (r.rank_in_condition + 1) * spec.bins - 1
    full = top // r.n.index_select(0, cond).clamp_min(1)
    sub = top // m.index_select(0, cond).clamp_min(1)
    return full, torch.where(small, sub, torch.zeros_like(sub))


@dataclass(frozen=True)
class _Groups:
    """Scatter groups of one bin section: ``group`` [N] slot of each row, ``size`` slots, ``keys`` the
    (condition·K + bin) key of each slot (None: dense, slot = key)."""
    group: Tensor
    size: int
    keys: Tensor | None


def _bin_groups(key: Tensor, size: int, mask: Tensor | None) -> _Groups:
    """Dense slots for key spaces ≤ _DENSE_BIN_KEYS; above, the distinct keys (``torch.unique``, one host
    sync), rows outside ``mask`` all in one extra key ``size`` whose sums stay zero (dropped on decoding)."""
    if size <= _DENSE_BIN_KEYS:
        return _Groups(key, size, None)
    if mask is not None:
        key = torch.where(mask, key, torch.full_like(key, size))
    keys, inverse = torch.unique(key, sorted=True, return_inverse=True)
    return _Groups(inverse, int(keys.numel()), keys)


@dataclass(frozen=True)
class _Rows:
    """Per-row inputs of the scatter ([N] each) and the section sizes."""
    p: Tensor
    y: Tensor
    t: Tensor | None
    cond: Tensor
    binned_p: Tensor
    small: Tensor  # float64 0/1
    full: _Groups
    sub: _Groups
    reliability_bin: Tensor
    num_conditions: int
    reliability_bins: int

    def widths(self) -> list[int]:
        """Columns per section: additive 10 (+Σt), bins 3 (+Σt), small bins 3 (+Σt), reliability 3."""
        extra = 0 if self.t is None else 1
        return [10 + extra, 3 + extra, 3 + extra, 3]

    def sizes(self) -> list[int]:
        return [self.num_conditions, self.full.size, self.sub.size, self.reliability_bins]


def _row_values(r: _Rows, s: slice) -> list[tuple[Tensor, list[Tensor]]]:
    """(group [n], value columns [n] each) of every section for the rows ``s``, in ``_Rows.widths`` order.

    Additive: 1, y, p, p², y·p, BCE(clip(p, 1e-12, 1−1e-12), y), tp, fp, fn, tn (p ≥ 0.5 vs y ≥ 0.5), t;
    bins: 1, binned p, y, t; small bins: the same times the subset mask; reliability: 1, p, y.
    """
    p, y = r.p[s], r.y[s]
    one = torch.ones_like(p)
    q = p.clamp(PROB_CLIP, 1.0 - PROB_CLIP)
    ce = -(y * torch.log(q) + (1.0 - y) * torch.log1p(-q))
    pred, true = p >= 0.5, y >= 0.5
    confusion = [(pred & true), (pred & ~true), (~pred & true), (~pred & ~true)]
    t = [] if r.t is None else [r.t[s]]
    pb, small = r.binned_p[s], r.small[s]
    return [(r.cond[s], [one, y, p, p * p, y * p, ce, *[m.to(p.dtype) for m in confusion], *t]),
            (r.full.group[s], [one, pb, y, *t]),
            (r.sub.group[s], [small, pb * small, y * small, *[x * small for x in t]]),
            (r.reliability_bin[s], [one, p, y])]


def _scatter(r: _Rows) -> Tensor:
    """All sections' sums in one float64 buffer [Σ size·k]: one ``index_add_`` per chunk of rows."""
    widths, sizes = r.widths(), r.sizes()
    offsets = np.concatenate(([0], np.cumsum([k * g for k, g in zip(widths, sizes)])))
    out = torch.zeros(int(offsets[-1]), dtype=torch.float64, device=r.p.device)
    columns = {k: torch.arange(k, device=r.p.device) for k in set(widths)}
    for start in range(0, r.p.numel(), _CHUNK_ROWS):
        parts = _row_values(r, slice(start, start + _CHUNK_ROWS))
        index = [int(off) + group.unsqueeze(1) * k + columns[k] for (group, _), off, k in zip(parts, offsets, widths)]
        values = [torch.stack(cols, dim=1) for _, cols in parts]
        out.index_add_(0, torch.cat(index, dim=1).reshape(-1), torch.cat(values, dim=1).reshape(-1))
    return out


def _decode_bins(values: np.ndarray, keys: np.ndarray | None, n_bins: int, has_t: bool) -> metrics.BinSums:
    """Sparse BinSums from the section's sums [slots, k] (rows with count 0 dropped; keys ascending)."""
    count = values[:, 0]
    keys = np.arange(count.size) if keys is None else np.rint(keys).astype(np.int64)
    keep = np.flatnonzero(count > 0)
    key = keys[keep]
    return metrics.BinSums(key // n_bins, key % n_bins, np.rint(count[keep]).astype(np.int64), values[keep, 1],
                           values[keep, 2], values[keep, 3] if has_t else None)


def _decode_sums(section: list[np.ndarray], keys: list[np.ndarray | None], thr: np.ndarray, spec: _EceSpec,
                 has_t: bool) -> metrics.ConditionSums:
    """ConditionSums from the additive section [C, k], the two bin sections and the thresholds [C]."""
    add = section[0]
    ints = {f: np.rint(add[:, i]).astype(np.int64) for f, i in (("n", 0), ("tp", 6), ("fp", 7), ("fn", 8), ("tn", 9))}
    floats = {f: add[:, i] for f, i in (("sum_y", 1), ("sum_p", 2), ("sum_p2", 3), ("sum_yp", 4), ("sum_ce", 5))}
    return metrics.ConditionSums(
        ece_method=spec.method, n_bins=spec.n_bins, **ints, **floats, sum_t=add[:, 10] if has_t else None,
        bins=_decode_bins(section[1], keys[0], spec.n_bins, has_t),
        small_bins=_decode_bins(section[2], keys[1], spec.n_bins, has_t), small_threshold=thr)


def _reliability_table(values: np.ndarray) -> dict[str, list]:
    """``ece_table(p, y, method="adaptive")``'s columns from per-bin (count, Σp, Σy) [B, 3]; NaN where empty."""
    count = np.rint(values[:, 0]).astype(np.int64)
    avg = [np.divide(values[:, j], count, out=np.full(count.size, np.nan), where=count > 0) for j in (1, 2)]
    return {"bin": list(range(count.size)), "count": count.tolist(), "avg_pred": avg[0].tolist(),
            "avg_label": avg[1].tolist(), "abs_gap": np.abs(avg[0] - avg[1]).tolist()}


def _check_inputs(p: Tensor, y: Tensor, cond: Tensor, p_true: Tensor | None, num_conditions) -> None:
    """Shapes, dtypes and C (host metadata only: nothing is read from the device)."""
    n = p.shape
    for name, t in (("y", y), ("conditions", cond), ("p_true", p_true)):
        if t is not None and t.shape != n:
            raise ValueError(f"shape mismatch: {name} has shape {tuple(t.shape)}, p has shape {tuple(n)}")
    if p.dim() != 1 or p.dtype != torch.float64:
        raise ValueError(f"p must be a 1-D float64 tensor (exact sums), got {p.dtype} of shape {tuple(n)}")
    if cond.dtype != torch.long:
        raise ValueError(f"conditions must be an int64 tensor of ids 0..C-1, got {cond.dtype}")
    if isinstance(num_conditions, bool) or not isinstance(num_conditions, int) or num_conditions < 1:
        raise ValueError(f"num_conditions must be a positive integer (C; the device path does not infer it), "
                         f"got {num_conditions!r}")


def _plan_sums(reader: _HostRead, p: Tensor, y: Tensor, cond: Tensor, p_true: Tensor | None, num_conditions: int,
               spec: _EceSpec, max_prob: float, quantile: float, reliability_bins: int, order: Tensor | None = None
               ) -> Callable[[], tuple[metrics.ConditionSums, dict[str, list]]]:
    """Queue the sums, thresholds and reliability bins in ``reader``; returns their decoder (call after read).
    ``order``: p's :func:`stable_order` when the caller has it."""
    r = _ranks(p, cond, num_conditions, order)
    thr = _small_thresholds(r, max_prob, quantile)
    small = p <= thr.index_select(0, cond)
    full_idx, small_idx = _row_bins(p, cond, spec, r, small)
    size = num_conditions * spec.n_bins
    full = _bin_groups(cond * spec.n_bins + full_idx, size, None)
    sub = _bin_groups(cond * spec.n_bins + small_idx, size, small)
    rel = ((r.rank + 1) * reliability_bins - 1) // max(p.numel(), 1)
    rows = _Rows(p, y, p_true, cond, p.clamp(0.0, 1.0) if spec.smooth else p, small.to(torch.float64),
                 full, sub, rel, num_conditions, reliability_bins)
    buffer, thr_slot = reader.add(_scatter(rows)), reader.add(thr)
    key_slots = [None if g.keys is None else reader.add(g.keys) for g in (full, sub)]
    shapes = list(zip(rows.sizes(), rows.widths()))

    def decode() -> tuple[metrics.ConditionSums, dict[str, list]]:
        bounds = np.cumsum([0] + [g * k for g, k in shapes])
        section = [reader[buffer][bounds[i]:bounds[i + 1]].reshape(g, k) for i, (g, k) in enumerate(shapes)]
        keys = [None if s is None else reader[s] for s in key_slots]
        return (_decode_sums(section, keys, reader[thr_slot], spec, p_true is not None),
                _reliability_table(section[3]))
    return decode


def _checked_plan(reader: _HostRead, p, y, cond, p_true, num_conditions, ece: Mapping[str, Any], reliability_bins,
                  order: Tensor | None = None):
    """Validated settings and inputs, then :func:`_plan_sums`."""
    spec = _ece_spec(ece["ece_method"], ece["bins"], ece["min_count"], ece["smooth_bandwidth"],
                     ece["smooth_grid_bins"])
    if spec.method not in DEVICE_ECE_METHODS:
        raise ValueError(f"ece_method {spec.method!r} has no exact device path (use metrics.condition_sums); "
                         f"device methods: {', '.join(DEVICE_ECE_METHODS)}")
    _check_small(ece["small_prob_max"], ece["small_prob_quantile"])
    _check_inputs(p, y, cond, p_true, num_conditions)
    return _plan_sums(reader, p, y.to(torch.float64), cond, None if p_true is None else p_true.to(torch.float64),
                      num_conditions, spec, float(ece["small_prob_max"]), float(ece["small_prob_quantile"]),
                      reliability_bins, order)


def _curve_terms(p: Tensor, y: Tensor, order: Tensor) -> Tensor:
    """[4] float64: ROC-AUC, average precision, positives P and negatives N of p [N] with labels y ≥ 0.5, from p's
    stable ascending ``order`` [N]: :func:`le_ray.metrics.sorted_curve_areas` on the device, without a host read.

    Rows from the highest p down; tp_i, fp_i [N] count positives and negatives at or above row i (int64 cumsum,
    exact). A threshold is the last row of a tie group (``end``); each end's previous end comes from a running
    maximum of end positions, so the curve's steps are summed where they are, with no compaction (which
    would read the number of groups on the host). Each term is the numpy formula's; only the order of the final
    float64 sums differs. P or N = 0 gives NaN or inf here; the caller reports one class as NaN."""
    desc = order.flip(0)
    scores = p.index_select(0, desc)
    tp = torch.cumsum((y.index_select(0, desc) >= 0.5).to(torch.long), 0)
    pos = torch.arange(p.numel(), device=p.device)
    fp = pos + 1 - tp
    end = torch.ones_like(scores, dtype=torch.bool)
    end[:-1] = scores[1:] != scores[:-1]
    last_end = torch.cummax(torch.where(end, pos, torch.full_like(pos, -1)), 0).values  # last end at or before i
    prev = torch.cat([last_end.new_full((1,), -1), last_end[:-1]])  # the end before row i's group
    first = prev < 0
    tp_f, fp_f = tp.to(torch.float64), fp.to(torch.float64)
    tp_prev = torch.where(first, 0.0, tp_f.index_select(0, prev.clamp_min(0)))
    fp_prev = torch.where(first, 0.0, fp_f.index_select(0, prev.clamp_min(0)))
    positives, negatives = tp_f[-1], fp_f[-1]
    roc = torch.where(end, (fp_f - fp_prev) * (tp_f + tp_prev), 0.0).sum() / (2.0 * positives * negatives)
    ap = torch.where(end, (tp_f - tp_prev) / positives * (tp_f / (tp_f + fp_f)), 0.0).sum()
    return torch.stack([roc, ap, positives, negatives])


def _summary_plan(reader: _HostRead, p: Tensor, y: Tensor, order: Tensor, ece: Mapping[str, Any]):
    """Queue what :func:`le_ray.metrics.summary_from_sums` needs beside the per-condition sums: the pooled
    statistics (every row as one condition: the whole split's ECE bins, ece_small subset and threshold),
    Σ (p − y)² and the curve terms. Returns the decoder (pooled sums, Σ (p − y)², curve tuple)."""
    pooled = _checked_plan(reader, p, y, torch.zeros_like(order), None, 1, ece, 1, order)
    y64 = y.to(torch.float64)
    scalars = reader.add(torch.cat([(p - y64).square().sum().reshape(1), _curve_terms(p, y64, order)]))

    def decode() -> tuple[metrics.ConditionSums, float, tuple[float, float, float, float]]:
        values = reader[scalars].tolist()
        return pooled()[0], values[0], tuple(values[1:])
    return decode


def _ece_kwargs(ece_method="custom", bins=20, min_count=1, smooth_bandwidth=0.05, smooth_grid_bins=400,
                small_prob_max=0.01, small_prob_quantile=0.1) -> dict[str, Any]:
    """The metrics functions' ECE keyword arguments with their defaults, as one dict."""
    return dict(ece_method=ece_method, bins=bins, min_count=min_count, smooth_bandwidth=smooth_bandwidth,
                smooth_grid_bins=smooth_grid_bins, small_prob_max=small_prob_max,
                small_prob_quantile=small_prob_quantile)


def device_condition_sums(p: Tensor, y: Tensor, conditions: Tensor, *, num_conditions: int,
                          p_true: Tensor | None = None, **ece_kwargs) -> metrics.ConditionSums:
    """:func:`le_ray.metrics.condition_sums` of tensors on their device, copied to the host once.

    p [N] float64, y [N] labels, conditions [N] int64 ids in [0, C), p_true [N] or None; C =
    ``num_conditions`` (required: inferring it would read the device); ECE keywords as in
    ``condition_sums`` (every method of DEVICE_ECE_METHODS).  Same numbers up to float64 summation order.
    """
    reader = _HostRead(p.device)
    ece = _ece_kwargs(**ece_kwargs)
    decode = _checked_plan(reader, p, y, conditions, p_true, num_conditions, ece, ece["bins"])
    reader.read()
    return decode()[0]


def device_reliability(p: Tensor, y: Tensor, *, bins: int = 20) -> dict[str, list]:
    """``ece_table(p, y, method="adaptive", bins=bins)`` as columns of lists, computed on p's device."""
    reader = _HostRead(p.device)
    cond = torch.zeros(p.shape, dtype=torch.long, device=p.device)
    decode = _checked_plan(reader, p, y, cond, None, 1, _ece_kwargs(bins=bins), bins)
    reader.read()
    return decode()[1]


@dataclass
class Evaluation:
    """Host-side outcome: p [N] float64 (None when the device path was told not to copy it), the model summary,
    the sums record, the reliability columns, the evaluation loss per loss definition and the LE statistics
    columns (None without labels), and the host's seconds in the model summary (``model_summary`` on the numpy
    path; assembling it from the sums on the device path)."""
    p: np.ndarray | None
    summary: dict[str, float]
    condition_sums: dict[str, Any]
    reliability: dict[str, list]
    eval_compare: dict[str, float]
    le_stats: dict[str, list] | None
    summary_seconds: float = 0.0


def _host_label_metrics(p: np.ndarray, split: Split, ece: Mapping[str, Any], p_true, num_conditions: int):
    """(sums, reliability) by the numpy path (CPU, MPS, adaptive_lib)."""
    sums = metrics.condition_sums(p, split.y, split.cond, p_true=p_true, num_conditions=num_conditions, **ece)
    table = metrics.ece_table(p, split.y, method="adaptive", bins=ece["bins"])
    return sums, {c: table[c].to_list() for c in table.columns}


def _summary(p: np.ndarray, split: Split, ece: Mapping[str, Any]) -> dict[str, float]:
    summary = metrics.model_summary(p, split.y, split.cond, **ece)
    return {k: float(v) for k, v in summary.items() if np.isscalar(v)}


def evaluate_predictions(logits: Tensor, eval_t: TensorSplit, split: Split, *, labelled: bool,
                         ece: Mapping[str, Any], p_true: np.ndarray | None, compare: Mapping[str, Objective],
                         le_rates: Tensor | None, num_conditions: int, keep_p: bool = True,
                         loss_batch_size: int | None = None) -> Evaluation:
    """Everything the trial records about the evaluation split, with one device → host copy.

    logits [N] of ``eval_t`` (the split ``split`` as tensors); ``labelled``: labels usable; ``ece``: the
    metrics' ECE keywords; ``p_true`` [N] or None; ``compare``: loss name → objective without history, each
    loss's value a weighted mean over sequential batches of ``loss_batch_size`` rows (the trained loss's batch size,
    as its eval curve; None: the whole split at once).
    Reliability bins: equal-mass (adaptive) over all p — CTR probabilities crowd into the lowest
    equal-width bin, and the diagrams are drawn on log axes. Where the sums are on the device, so is the model
    summary (:func:`le_ray.metrics.summary_from_sums`), and p [N] is copied to the host only with ``keep_p``
    (``Evaluation.p`` is None otherwise).
    """
    reader = _HostRead(logits.device)
    p = torch.sigmoid(logits.detach().to(reader.device).to(torch.float64))
    on_device = labelled and p.numel() > 0 and sums_on_device(p.device, ece["ece_method"])
    p_slot = reader.add(p) if keep_p or not on_device else None
    if not labelled or p.numel() == 0:
        reader.read()
        return Evaluation(reader[p_slot], {}, {}, {}, {}, None)
    batch = eval_t.whole()
    plan = summary_plan = None
    if on_device:
        truth = None if p_true is None else _upload(p_true, p.device)
        order = stable_order(p)  # sorted once: the sums' ranks and the summary's pooled bins and curves
        plan = _checked_plan(reader, p, batch.y, batch.cond, truth, num_conditions, ece, ece["bins"], order)
        summary_plan = _summary_plan(reader, p, batch.y, order, ece)
    names = list(compare)
    losses = [compare[k](logits, batch, use_history=False) if loss_batch_size is None
              else compare[k].batched_mean(logits, batch, loss_batch_size) for k in names]
    compare_slot = reader.add(torch.stack(losses)) if losses else None
    le_slot = reader.add(le_stat_tensors(logits, batch.y, batch.cond, num_conditions=num_conditions,
                                         base_rates=le_rates, sample_weights=batch.w))
    reader.read()
    host_p = None if p_slot is None else reader[p_slot]
    sums, reliability = plan() if plan is not None else _host_label_metrics(host_p, split, ece, p_true, num_conditions)
    le = reader[le_slot].reshape(len(LE_STAT_KEYS), num_conditions)
    started = time.perf_counter()
    if summary_plan is not None:
        pooled, squared_error, curve = summary_plan()
        summary = metrics.summary_from_sums(sums, pooled, squared_error=squared_error, curve=curve,
                                            min_count=ece["min_count"], smooth_bandwidth=ece["smooth_bandwidth"])
    else:
        summary = _summary(host_p, split, ece)
    return Evaluation(host_p, summary, metrics.sums_to_record(sums), reliability,
                      {} if compare_slot is None else dict(zip(names, reader[compare_slot].tolist())),
                      {"condition": list(range(num_conditions)), **dict(zip(LE_STAT_KEYS, le.tolist()))},
                      time.perf_counter() - started)
