"""CTR training losses: Localized Entropy (LE), BCE and focal loss.

Notation (every per-sample tensor is 1-D with N entries, C = number of conditions):

* ``z`` [N] logits (``[N, 1]`` is flattened), ``y`` [N] targets in [0, 1],
  ``c`` [N] integer condition ids (ad ids) in [0, C), ``w`` [N] sample weights
  (w_i >= 0; w_i = 1 when none are given).
* ``BCE_i = max(z_i, 0) - z_i*y_i + log1p(exp(-|z_i|))`` (stable with-logits form),
  ``b_i = w_i * BCE_i``.

Localized Entropy divides each condition's summed BCE by the cross-entropy that a
constant predictor at the condition's base rate would score on the same labels:

    num_j   = sum_{i: c_i = j} b_i
    ones_j  = sum_{i: c_i = j} w_i*y_i          zeros_j = sum_{i: c_i = j} w_i - ones_j
    p_j     = base_rates[j] if finite and in [0, 1] else ones_j / max(ones_j + zeros_j, 1)
    p_j     = clamp(p_j, eps, 1 - eps)
    den_j   = max(ones_j*(-log p_j) + zeros_j*(-log(1 - p_j)), eps) ** norm_strength
    LE      = sum_{j present in batch} cw_j * num_j / den_j / max(W, 1),   W = sum_i w_i (or N)

``cw_j`` is ``condition_weights[j]`` when finite and > 0, else 1.  With
``norm_strength = 0`` every factor is 1 and LE is the (weighted) mean BCE.

Everything is vectorised with ``index_add_`` into [C] buffers: no Python loop over
samples or conditions.  The loss performs no host synchronisation when C can be read
from ``base_rates`` / ``condition_weights`` / the history; a :class:`CrossBatchHistory`
update does sync a few scalars to size its variable-length gathers.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CrossBatchHistory",
    "bce_loss",
    "focal_loss",
    "localized_entropy",
    "per_condition_le_stats",
]

Tensor = torch.Tensor


# --------------------------------------------------------------------------- helpers


def _stats_dtype(device: torch.device) -> torch.dtype:
    """Dtype for the [C]-sized statistics: float64 (cheap at size C), except on MPS."""
    return torch.float32 if device.type == "mps" else torch.float64


def _flat_inputs(
    logits: Tensor,
    targets: Tensor,
    conditions: Optional[Tensor] = None,
    sample_weights: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
    """Flatten to z [N], y [N] (logit dtype), c [N] int64 and w [N] on the logits' device."""
    z = logits.reshape(-1) if logits.dim() == 2 and logits.shape[1] == 1 else logits
    if z.dim() != 1:
        raise ValueError(f"logits must be [N] or [N, 1], got {tuple(logits.shape)}")
    n = z.shape[0]

    def flat(t: Tensor, name: str, dtype: torch.dtype) -> Tensor:
        if t.numel() != n:
            raise ValueError(f"{name} has {t.numel()} entries, logits have {n}")
        return t.reshape(-1).to(device=z.device, dtype=dtype)

    y = flat(targets, "targets", z.dtype)
    c = None if conditions is None else flat(conditions, "conditions", torch.long)
    w = None if sample_weights is None else flat(sample_weights, "sample_weights", z.dtype)
    return z, y, c, w


def _bce_terms(z: Tensor, y: Tensor, w: Optional[Tensor]) -> Tensor:
    """b [N] = w * BCE-with-logits; torch's kernel is the stable form with exact gradients."""
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    return bce if w is None else bce * w


def _per_condition(
    values: Optional[Tensor], size: int, fill: float, device: torch.device, dtype: torch.dtype
) -> Optional[Tensor]:
    """A [C] vector padded with ``fill`` (or truncated) to ``size`` on ``device``."""
    if values is None:
        return None
    v = torch.as_tensor(values).reshape(-1).to(device=device, dtype=dtype, non_blocking=True)
    if v.numel() >= size:
        return v[:size]
    return torch.cat([v, v.new_full((size - v.numel(),), fill)])


def _infer_num_conditions(c: Tensor, *sizes: Optional[int]) -> int:
    """C from the sized per-condition inputs; else max(c) + 1 (the only host sync)."""
    known = [s for s in sizes if s is not None]
    if known:
        return max(known)
    return int(c.max()) + 1 if c.numel() else 0


def _condition_stats(y: Tensor, c: Tensor, w: Optional[Tensor], size: int, dtype) -> Tensor:
    """[C, 3] columns (count, weight = sum w, ones = sum w*y), detached, in ``dtype``.

    Accumulated in the inputs' dtype with 1-D index_add (several times faster on CPU than
    a 2-D scatter), then cast: float32 counts are exact below 2**24 samples per batch.
    """
    y = y.detach()
    count = y.new_zeros(size).index_add_(0, c, torch.ones_like(y))
    if w is None:
        weight, ones = count, y.new_zeros(size).index_add_(0, c, y)
    else:
        w = w.detach()
        weight = y.new_zeros(size).index_add_(0, c, w)
        ones = y.new_zeros(size).index_add_(0, c, w * y)
    return torch.stack([count, weight, ones], dim=1).to(dtype)


def _condition_rate(
    ones: Tensor, zeros: Tensor, base_rates: Optional[Tensor], eps: float
) -> tuple[Tensor, Tensor]:
    """p [C] clamped to [eps, 1-eps], and the mask of conditions whose rate was supplied.

    p_j = base_rates[j] when finite and in [0, 1], else ones_j / max(ones_j + zeros_j, 1).
    """
    rate = ones / (ones + zeros).clamp_min(1.0)
    supplied = torch.zeros_like(rate, dtype=torch.bool)
    if base_rates is not None:
        br = _per_condition(base_rates, rate.numel(), math.nan, rate.device, rate.dtype)
        supplied = torch.isfinite(br) & (br >= 0) & (br <= 1)
        rate = torch.where(supplied, br, rate)
    return rate.clamp(eps, 1.0 - eps), supplied


def _entropy_den(ones: Tensor, zeros: Tensor, p: Tensor) -> Tensor:
    """den_j [C] = ones_j*(-log p_j) + zeros_j*(-log(1-p_j)); p is clamped, so finite."""
    return ones * -torch.log(p) + zeros * -torch.log1p(-p)


def _condition_weight_factor(weights: Optional[Tensor], size: int, like: Tensor) -> Tensor:
    """cw_j [C]: condition_weights[j] when finite and > 0, else 1."""
    if weights is None:
        return torch.ones_like(like)
    cw = _per_condition(weights, size, 1.0, like.device, like.dtype)
    return torch.where(torch.isfinite(cw) & (cw > 0), cw, torch.ones_like(cw))


def _reduce(loss: Tensor, w: Optional[Tensor], reduction: str) -> Tensor:
    """'none' -> w*loss [N]; 'sum' -> sum w*loss; 'mean' -> sum w*loss / max(sum w, 1),
    or the plain mean without weights."""
    if reduction == "none":
        return loss if w is None else loss * w
    if reduction == "sum":
        return loss.sum() if w is None else (loss * w).sum()
    if reduction == "mean":
        return loss.mean() if w is None else (loss * w).sum() / w.sum().clamp_min(1.0)
    raise ValueError(f"unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'")


# --------------------------------------------------------------------------- BCE / focal


def bce_loss(logits: Tensor, targets: Tensor, *, sample_weights: Optional[Tensor] = None) -> Tensor:
    """Mean BCE-with-logits: sum_i w_i*BCE_i / max(sum_i w_i, 1) with weights, mean_i BCE_i without.

    logits [N] or [N, 1], targets [N], sample_weights [N] -> scalar.
    """
    z, y, _, w = _flat_inputs(logits, targets, sample_weights=sample_weights)
    return _reduce(F.binary_cross_entropy_with_logits(z, y, reduction="none"), w, "mean")


def focal_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    alpha: Optional[float] = 0.25,
    gamma: float = 2.0,
    sample_weights: Optional[Tensor] = None,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss (Lin et al.) on logits.

    p = sigmoid(z), p_t = clamp(p*y + (1-p)*(1-y), e, 1-e), e = max(1e-12, finfo(dtype).eps),
    loss_i = max(1 - p_t, e)**gamma * BCE_i * (alpha*y + (1-alpha)*(1-y) if alpha is not None).
    The clamps keep loss and gradient finite at saturated logits even for gamma < 1.
    Reductions: 'mean' (weighted: / max(sum w, 1)), 'sum', 'none' ([N], times w).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"unknown reduction {reduction!r}; expected 'mean', 'sum' or 'none'")
    z, y, _, w = _flat_inputs(logits, targets, sample_weights=sample_weights)
    e = max(1e-12, torch.finfo(z.dtype).eps)
    p = torch.sigmoid(z)
    p_t = (p * y + (1 - p) * (1 - y)).clamp(e, 1 - e)
    loss = (1 - p_t).clamp_min(e).pow(gamma) * F.binary_cross_entropy_with_logits(
        z, y, reduction="none"
    )
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return _reduce(loss, w, reduction)


# --------------------------------------------------------------------------- Localized Entropy


def _le_factor(
    stats: Tensor,
    window: Optional[Tensor],
    base_rates: Optional[Tensor],
    condition_weights: Optional[Tensor],
    eps: float,
    norm_strength: float,
) -> Tensor:
    """factor_j [C] = cw_j / max(den_j, eps)**norm_strength.

    stats [C, 3] (count, weight, ones) of the batch; window [C, 3] (pos weight, neg weight,
    b sum) of the history, added to ones/zeros before the rate and denominator.
    """
    ones = stats[:, 2]
    zeros = (stats[:, 1] - ones).clamp_min(0.0)  # soft labels can round slightly below 0
    if window is not None:
        ones, zeros = ones + window[:, 0], zeros + window[:, 1]
    p, _ = _condition_rate(ones, zeros, base_rates, eps)
    den = _entropy_den(ones, zeros, p).clamp_min(eps).pow(norm_strength)
    cw = _condition_weight_factor(condition_weights, ones.numel(), ones)
    return cw / den


def localized_entropy(
    logits: Tensor,
    targets: Tensor,
    conditions: Tensor,
    *,
    base_rates: Optional[Tensor] = None,
    condition_weights: Optional[Tensor] = None,
    sample_weights: Optional[Tensor] = None,
    reduction: str = "mean",
    eps: float = 1e-12,
    norm_strength: float = 1.0,
    history: Optional["CrossBatchHistory"] = None,
) -> Tensor:
    """Localized Entropy loss (module docstring has the maths).

    logits [N] or [N, 1], targets [N], conditions [N] int ids in [0, C), sample_weights [N];
    base_rates / condition_weights [C] indexed by condition id (shorter vectors are padded:
    missing rates fall back to the batch rate, missing weights are 1).  C is the largest of
    len(base_rates), len(condition_weights) and the history's size, else max(conditions)+1
    (one host sync); ids outside [0, C) are an error.  The sum over conditions is computed
    as sum_i b_i * factor[c_i], which is identical to sum_j num_j * factor_j.

    history: a :class:`CrossBatchHistory`; its windows' positive/negative weight and b sum
    join ones_j, zeros_j and num_j of every condition in the batch (W stays the batch's),
    then this batch is appended to it (the call mutates ``history``).

    reduction: 'mean' -> the scalar above; 'sum' -> that times W.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"unknown reduction {reduction!r}; expected 'mean' or 'sum'")
    z, y, c, w = _flat_inputs(logits, targets, conditions, sample_weights)
    if history is not None:
        history.ensure_conditions(c)
    size = _infer_num_conditions(
        c,
        None if base_rates is None else torch.as_tensor(base_rates).numel(),
        None if condition_weights is None else torch.as_tensor(condition_weights).numel(),
        None if history is None else history.num_conditions,
    )
    stats = _condition_stats(y, c, w, size, _stats_dtype(z.device))
    window = None if history is None else history.window_totals(size).to(stats.dtype)
    factor = _le_factor(stats, window, base_rates, condition_weights, eps, norm_strength)
    b = _bce_terms(z, y, w)
    total = (b * factor.to(z.dtype).index_select(0, c)).sum()
    if window is not None:  # the windows' stored b join num_j as constants
        present = stats[:, 0] > 0
        total = total + (window[:, 2] * factor * present).sum().to(z.dtype)
    big_w = w.sum() if w is not None else float(z.numel())
    loss = total / (big_w.clamp_min(1.0) if w is not None else max(big_w, 1.0))
    if history is not None:
        history.update(c, y, b.detach(), sample_weights=w, base_rates=base_rates)
    return loss * big_w if reduction == "sum" else loss


@torch.no_grad()
def per_condition_le_stats(
    logits: Tensor,
    targets: Tensor,
    conditions: Tensor,
    *,
    base_rates: Optional[Tensor] = None,
    sample_weights: Optional[Tensor] = None,
    eps: float = 1e-12,
    num_conditions: Optional[int] = None,
) -> dict[str, np.ndarray]:
    """Per-condition LE diagnostics, each a float64 numpy array of length C.

    count (samples), weight (sum w), ones (sum w*y), zeros (weight - ones),
    numerator (num_j = sum b_i), denominator (den_j before the eps clamp and the power),
    base_rate (p_j used, clamped; NaN for conditions absent from the batch whose rate was
    not supplied).  C = num_conditions, else inferred as in :func:`localized_entropy`.
    """
    z, y, c, w = _flat_inputs(logits, targets, conditions, sample_weights)
    size = num_conditions if num_conditions is not None else _infer_num_conditions(
        c, None if base_rates is None else torch.as_tensor(base_rates).numel()
    )
    dtype = _stats_dtype(z.device)
    stats = _condition_stats(y, c, w, size, dtype)
    num = stats.new_zeros(size).index_add_(0, c, _bce_terms(z, y, w).to(dtype))
    ones = stats[:, 2]
    zeros = (stats[:, 1] - ones).clamp_min(0.0)
    p, supplied = _condition_rate(ones, zeros, base_rates, eps)
    den = _entropy_den(ones, zeros, p)
    p = torch.where(supplied | (stats[:, 0] > 0), p, torch.full_like(p, math.nan))
    out = {
        "count": stats[:, 0], "weight": stats[:, 1], "ones": ones, "zeros": zeros,
        "numerator": num, "denominator": den, "base_rate": p,
    }
    return {k: v.double().cpu().numpy() for k, v in out.items()}


# --------------------------------------------------------------------------- cross-batch history


def _exclusive_cumsum(x: Tensor) -> Tensor:
    return torch.cumsum(x, 0) - x


def _stable_order(c: Tensor, num_conditions: int) -> Tensor:
    """Permutation sorting c [N] by id, stable (batch order kept within an id).

    On CPU with ids < 2**16 numpy's stable argsort of uint16 is a radix sort, about 5x
    faster than torch.sort at N = 16k; elsewhere (CUDA) torch.sort is already fast.
    """
    if c.device.type == "cpu" and num_conditions <= 1 << 16:
        return torch.from_numpy(np.argsort(c.numpy().astype(np.uint16), kind="stable"))
    return torch.sort(c, stable=True).indices


def _expand_ranges(counts: Tensor, total: int) -> tuple[Tensor, Tensor]:
    """Flatten ranges [0, counts_k) -> (owner k [total], position within the range [total])."""
    owner = torch.repeat_interleave(
        torch.arange(counts.numel(), device=counts.device), counts, output_size=total
    )
    starts = _exclusive_cumsum(counts).index_select(0, owner)
    return owner, torch.arange(total, device=counts.device) - starts


def _ring_slots(
    offset: Tensor, alloc: Tensor, first: Tensor, owner: Tensor, delta: Tensor
) -> Tensor:
    """Pool columns of entries number first_k + delta (0 <= delta < alloc_k), k = owner [n].

    (first % alloc) is taken per segment ([C] divisions); per entry one conditional
    subtraction replaces an int64 division, which is the slow part of ``%`` on CPU.
    """
    slot = (first % alloc.clamp_min(1)).index_select(0, owner) + delta
    a = alloc.index_select(0, owner)
    return offset.index_select(0, owner) + slot - a * (slot >= a)


def _accumulate(acc: Tensor, index: Tensor, entries: Tensor, alpha: float = 1.0) -> None:
    """acc [5, C] += per-condition sums of entries [3, n] (pos w, neg w, b) and of their
    non-zero indicators for pos w and neg w.  Row by row: 1-D index_add is several times
    faster on CPU than the 2-D (scatter) kernel."""
    e = entries.double()
    rows = (e[0], e[1], e[2], (e[0] != 0).double(), (e[1] != 0).double())
    for j, row in enumerate(rows):
        acc[j].index_add_(0, index, row, alpha=alpha)


class CrossBatchHistory:
    """Per-condition FIFO windows of past samples that persist across batches and epochs.

    Each stored entry is (positive weight, negative weight, b) = (w*[y >= 0.5], w*[y < 0.5],
    detached w*BCE).  :func:`localized_entropy` adds each condition's window sums to its
    ones_j, zeros_j and num_j, then calls :meth:`update` to append the batch.

    Capacity of window j, recomputed at every update of the conditions in the batch:
    ``cap_j = clamp(ceil(A / r_j), 1, max_window)``, A = ``amplification_rate``, where r_j is
    base_rates[j] when finite and inside (0, 1), else the window's stored positive fraction
    (by weight, before appending), else the batch's positive fraction, else 0.5.  A rate of 0
    would mean an unbounded window, hence the ``max_window`` cap (default 10^6 per condition).
    Oldest entries are evicted first.

    Storage: one flat ``[3, P]`` tensor of ``dtype`` (12 bytes per entry in float32; use
    float64 to keep float64 b exactly) holding a ring buffer per condition at
    (offset_j, alloc_j): entry number s of condition j lives in column offset_j + s % alloc_j,
    and the window is s in [start_j, pushed_j).  A segment grows x2 (never beyond cap_j) by
    moving to the end of the pool; a full pool is compacted (with 50% room to grow), so
    memory follows the entries actually stored rather than C * max_window.  Running
    float64 window sums are updated with appended and evicted entries, so the loss never
    re-reduces the windows.  An update costs a stable sort of the batch by condition plus
    O(N + entries evicted or moved); it syncs with the host to size those variable-length
    gathers (and, when ``num_conditions`` is None, to grow C to max(id) + 1).
    """

    def __init__(
        self,
        amplification_rate: float,
        eps: float = 1e-12,
        max_window: int = 1_000_000,
        num_conditions: Optional[int] = None,
        *,
        device: Optional[torch.device | str] = None,
        dtype: torch.dtype = torch.float32,
        min_alloc: int = 16,
    ) -> None:
        if not (math.isfinite(amplification_rate) and amplification_rate > 0):
            raise ValueError(f"amplification_rate must be finite and > 0, got {amplification_rate}")
        if int(max_window) < 1:
            raise ValueError(f"max_window must be >= 1, got {max_window}")
        self.amplification_rate = float(amplification_rate)
        self.eps = float(eps)
        self.max_window = int(max_window)
        self.min_alloc = max(1, int(min_alloc))
        self.dtype = dtype
        self.fixed_size = num_conditions is not None
        self._initial_size = int(num_conditions or 0)
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self.reset()

    # ----------------------------------------------------------------- state
    _PER_CONDITION = ("_offset", "_alloc", "_pushed", "_start", "_cap")
    _TENSORS = _PER_CONDITION + ("_acc", "_pool")

    def reset(self) -> None:
        """Forget every window (keeps the configuration)."""
        size, dev = self._initial_size, self._device
        i64 = dict(dtype=torch.long, device=dev)
        self._offset = torch.zeros(size, **i64)  # first pool column of the segment
        self._alloc = torch.zeros(size, **i64)  # segment length (ring modulus)
        self._pushed = torch.zeros(size, **i64)  # entries ever appended
        self._start = torch.zeros(size, **i64)  # number of the oldest kept entry
        self._cap = torch.zeros(size, **i64)  # capacity at the last update
        # window sums (pos weight, neg weight, b) and counts of non-zero pos / neg weights
        self._acc = torch.zeros(5, size, dtype=torch.float64, device=dev)
        self._pool = torch.zeros(3, 1 + self.min_alloc, dtype=self.dtype, device=dev)
        self._used = 1  # column 0 is a trash slot for entries that are not kept

    @property
    def num_conditions(self) -> int:
        return self._offset.numel()

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: torch.device | str) -> "CrossBatchHistory":
        """Move all state to ``device`` (the history follows the data automatically)."""
        self._device = torch.device(device)
        for name in self._TENSORS:
            setattr(self, name, getattr(self, name).to(self._device))
        return self

    def ensure_conditions(self, conditions: Tensor) -> None:
        """Follow the data's device and, when num_conditions is None, grow to max(id) + 1."""
        if conditions.device != self._device:
            self.to(conditions.device)
        if self.fixed_size or conditions.numel() == 0:
            return
        extra = int(conditions.max()) + 1 - self.num_conditions  # host sync: sizes the buffers
        if extra <= 0:
            return
        for name in self._PER_CONDITION:
            t = getattr(self, name)
            setattr(self, name, torch.cat([t, t.new_zeros(extra)]))
        self._acc = torch.cat([self._acc, self._acc.new_zeros(5, extra)], dim=1)

    def state_dict(self) -> dict:
        """Configuration and cloned state tensors (for checkpoints and inspection)."""
        state = {name.lstrip("_"): getattr(self, name).clone() for name in self._TENSORS}
        state.update(
            amplification_rate=self.amplification_rate, eps=self.eps,
            max_window=self.max_window, min_alloc=self.min_alloc, used=self._used,
            fixed_size=self.fixed_size,
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in self._TENSORS:
            setattr(self, name, state[name.lstrip("_")].clone().to(self._device))
        self.amplification_rate = float(state["amplification_rate"])
        self.eps, self.max_window = float(state["eps"]), int(state["max_window"])
        self.min_alloc, self._used = int(state["min_alloc"]), int(state["used"])
        self.fixed_size = bool(state["fixed_size"])
        self.dtype = self._pool.dtype

    # ----------------------------------------------------------------- inspection
    def window_totals(self, num_conditions: Optional[int] = None) -> Tensor:
        """[C, 3] float64 window sums (positive weight, negative weight, b), zero-padded to C."""
        sums = self._acc[:3].t().clamp_min(0.0)  # float64 rounding may leave -1e-17 residues
        extra = (num_conditions or 0) - sums.shape[0]
        return torch.cat([sums, sums.new_zeros(extra, 3)]) if extra > 0 else sums

    def window_sizes(self) -> np.ndarray:
        """Stored entries per condition, int64 [C]."""
        return (self._pushed - self._start).cpu().numpy()

    def window_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positive weight, negative weight, b sum), each float64 [C]."""
        s = self.window_totals().cpu().numpy()
        return s[:, 0], s[:, 1], s[:, 2]

    def capacities(self) -> np.ndarray:
        """Capacity of each window at its last update (0 = never updated), int64 [C]."""
        return self._cap.cpu().numpy()

    def window_entries(self, condition: int) -> np.ndarray:
        """[n, 3] (positive weight, negative weight, b) of one window, oldest first."""
        j = int(condition)
        if j >= self.num_conditions or int(self._pushed[j]) == int(self._start[j]):
            return np.zeros((0, 3))
        seq = torch.arange(int(self._start[j]), int(self._pushed[j]), device=self._device)
        cols = self._offset[j] + seq % self._alloc[j]
        return self._pool.index_select(1, cols).t().double().cpu().numpy()

    def storage_rows(self) -> int:
        """Entries the flat pool can currently hold (memory = that * 3 * itemsize)."""
        return self._pool.shape[1]

    # ----------------------------------------------------------------- update
    def update(
        self,
        conditions: Tensor,
        targets: Tensor,
        b: Tensor,
        sample_weights: Optional[Tensor] = None,
        base_rates: Optional[Tensor] = None,
    ) -> None:
        """Append a batch: conditions [N], targets [N] (binarised at y >= 0.5), b [N]
        (already weighted, detached), sample_weights [N]; base_rates [C] feed the capacity."""
        c = conditions.reshape(-1).long()
        self.ensure_conditions(c)
        c = c.to(self._device)
        entries = self._entries(targets, b, sample_weights)
        k = torch.zeros_like(self._pushed).index_add_(0, c, torch.ones_like(c))
        batch_pos = self._acc.new_zeros(k.numel()).index_add_(0, c, entries[0].double())
        batch_neg = self._acc.new_zeros(k.numel()).index_add_(0, c, entries[1].double())
        present = k > 0
        cap = self._capacity(batch_pos, batch_neg, base_rates)
        self._cap = torch.where(present, cap, self._cap)
        new_pushed = self._pushed + k
        new_start = torch.where(present, torch.maximum(self._start, new_pushed - cap), self._start)
        self._evict(new_start)
        self._make_room(new_pushed - new_start, new_start)
        self._write(c, entries, k, new_start)
        self._pushed, self._start = new_pushed, new_start
        # adding and evicting leaves rounding residues (~1e-17); a weight sum with no
        # non-zero entry behind it is exactly 0, which matters when p_j sits at the eps clamp
        self._acc[:2].masked_fill_(self._acc[3:] == 0, 0.0)

    def _entries(self, targets: Tensor, b: Tensor, sample_weights: Optional[Tensor]) -> Tensor:
        """[3, N] (w*[y >= 0.5], w*[y < 0.5], b) in the storage dtype."""
        b = b.detach().reshape(-1).to(self._device, self.dtype)
        w = torch.ones_like(b) if sample_weights is None else sample_weights.detach().reshape(-1)
        w = w.to(self._device, self.dtype)
        pos = targets.detach().reshape(-1).to(self._device) >= 0.5
        return torch.stack([w * pos, w * ~pos, b])

    def _capacity(self, batch_pos: Tensor, batch_neg: Tensor, base_rates: Optional[Tensor]
                  ) -> Tensor:
        """cap_j [C] int64 = clamp(ceil(A / r_j), 1, max_window) with the rate fallback chain."""
        size = self.num_conditions
        r = torch.full((size,), math.nan, dtype=torch.float64, device=self._device)
        if base_rates is not None:
            br = _per_condition(base_rates, size, math.nan, self._device, torch.float64)
            r = torch.where(torch.isfinite(br) & (br > 0) & (br < 1), br, r)
        for pos, neg in ((self._acc[0], self._acc[1]), (batch_pos, batch_neg)):
            tot = pos + neg
            fill = torch.isnan(r) & (tot > 0)
            r = torch.where(fill, pos.clamp_min(0.0) / tot.clamp_min(self.eps), r)
        r = torch.where(torch.isnan(r), torch.full_like(r, 0.5), r)
        cap = torch.ceil(self.amplification_rate / r)  # r = 0 -> inf -> max_window
        return cap.clamp(1, self.max_window).long()

    def _evict(self, new_start: Tensor) -> None:
        """Subtract stored entries numbered [start_j, min(new_start_j, pushed_j)) from the sums."""
        n_out = (torch.minimum(new_start, self._pushed) - self._start).clamp_min(0)
        total = int(n_out.sum())  # host sync: sizes the gather
        if total == 0:
            return
        owner, delta = _expand_ranges(n_out, total)
        cols = _ring_slots(self._offset, self._alloc, self._start, owner, delta)
        _accumulate(self._acc, owner, self._pool.index_select(1, cols), alpha=-1.0)

    def _make_room(self, need: Tensor, new_start: Tensor) -> None:
        """Give every segment with need_j > alloc_j a larger one (x2, at most cap_j)."""
        grow = need > self._alloc
        if not bool(grow.any()):  # host sync
            return
        idx = grow.nonzero().squeeze(1)
        doubled = (2 * self._alloc[idx]).clamp_min(self.min_alloc)
        new_alloc = torch.maximum(need[idx], torch.minimum(doubled, self._cap[idx]))
        keep_from = torch.maximum(self._start, new_start)
        extra = int(new_alloc.sum())
        if self._used + extra > self._pool.shape[1]:
            alloc = self._alloc.clone()
            alloc[idx] = new_alloc
            # compaction also returns the memory of windows whose capacity shrank
            alloc = torch.maximum(need, torch.minimum(alloc, self._cap.clamp_min(self.min_alloc)))
            self._rebuild(alloc, keep_from)
            return
        offset = self._used + _exclusive_cumsum(new_alloc)
        self._move(idx, offset, new_alloc, keep_from, self._pool)
        self._offset[idx], self._alloc[idx] = offset, new_alloc
        self._used += extra

    def _rebuild(self, alloc: Tensor, keep_from: Tensor) -> None:
        """Lay every segment out contiguously in a fresh pool with 50% room to grow."""
        live = int(alloc.sum())
        size = 1 + live + max(live // 2, self.min_alloc)
        pool = torch.zeros(3, size, dtype=self.dtype, device=self._device)
        offset = 1 + _exclusive_cumsum(alloc)
        idx = (self._alloc > 0).nonzero().squeeze(1)
        self._move(idx, offset[idx], alloc[idx], keep_from, pool)
        self._pool, self._offset, self._alloc, self._used = pool, offset, alloc, 1 + live

    def _move(self, idx: Tensor, offset: Tensor, alloc: Tensor, keep_from: Tensor,
              dst: Tensor) -> None:
        """Copy entries [keep_from_j, pushed_j) of conditions idx to segments (offset, alloc)."""
        n = (self._pushed[idx] - keep_from[idx]).clamp_min(0)
        total = int(n.sum())  # host sync: sizes the copy
        if total == 0:
            return
        owner, delta = _expand_ranges(n, total)
        first = keep_from[idx]
        src = _ring_slots(self._offset[idx], self._alloc[idx], first, owner, delta)
        dst_cols = _ring_slots(offset, alloc, first, owner, delta)
        dst.index_copy_(1, dst_cols, self._pool.index_select(1, src))

    def _write(self, c: Tensor, entries: Tensor, k: Tensor, new_start: Tensor) -> None:
        """Store the batch's kept entries (numbers >= new_start) in batch order; add to the sums."""
        order = _stable_order(c, self.num_conditions)  # keeps batch order within a condition
        cs, e = c.index_select(0, order), entries.index_select(1, order)
        # entry number pushed_j + rank_i, relative to the first kept number new_start_j
        shift = self._pushed - new_start - _exclusive_cumsum(k)
        delta = shift.index_select(0, cs) + torch.arange(cs.numel(), device=cs.device)
        keep = delta >= 0
        cols = _ring_slots(self._offset, self._alloc, new_start, cs, delta.clamp_min(0))
        # dropped entries all go to the trash column 0 (duplicate writes there are harmless)
        self._pool.index_copy_(1, torch.where(keep, cols, torch.zeros_like(cols)), e)
        _accumulate(self._acc, cs, e * keep)
