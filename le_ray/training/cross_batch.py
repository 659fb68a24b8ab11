"""Cross-batch history for Localized Entropy: per-condition FIFO windows with static capacities.

Each stored entry of condition j is (positive weight, negative weight, b) =
(w_i*[y_i >= 0.5], w_i*[y_i < 0.5], w_i*BCE_i detached), soft labels binarised at 0.5.
:func:`le_ray.training.losses.localized_entropy` adds the window sums of every condition present in a
batch to that condition's ones_j, zeros_j and num_j, then appends the batch with
:meth:`CrossBatchHistory.update`.

Capacity of window j (entries, A = amplification rate, r_j = supplied base rate)::

    cap_j = clamp(ceil(A / r_j), 1, max_window)   for 0 < r_j < 1
    cap_j = clamp(ceil(A), 1, max_window)          for finite r_j >= 1
    cap_j = max_window                             for r_j <= 0 or non-finite

so a window holds about A positives.  The rates are fixed when the history is built, hence so
are the capacities, the ring layout and the memory: an update needs no host synchronisation.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np
import torch

__all__ = ["CrossBatchHistory", "history_capacities"]

Tensor = torch.Tensor
ArrayLike = Union[Tensor, np.ndarray, Sequence[float]]


def history_capacities(
    base_rates: ArrayLike,
    amplification_rate: float,
    max_window: int,
    max_entries: Optional[ArrayLike] = None,
) -> Union[np.ndarray, Tensor]:
    """Window capacities int64 [C] from base rates [C] (rule in the module docstring).

    With ``max_entries`` [C] (an upper bound on the entries condition j will ever receive)
    the result is the ring size max(1, min(cap_j, max_entries_j)): a window never holds more
    than was pushed, so the window is unchanged while memory stays <= sum_j max_entries_j.
    Returns a Tensor on the rates' device when ``base_rates`` is a Tensor, else numpy.
    """
    if not (math.isfinite(amplification_rate) and amplification_rate > 0):
        raise ValueError(f"amplification_rate must be finite and > 0, got {amplification_rate}")
    if int(max_window) < 1:
        raise ValueError(f"max_window must be >= 1, got {max_window}")
    as_tensor = isinstance(base_rates, Tensor)
    r = torch.as_tensor(base_rates).detach().to(torch.float64).reshape(-1)
    a, top = float(amplification_rate), float(int(max_window))
    inside = (r > 0) & (r < 1)  # False for NaN
    ratio = torch.ceil(a / torch.where(inside, r, torch.ones_like(r)))
    # rate >= 1: the reference falls back to the window's rate, 1 when every label is positive
    edge = torch.where(torch.isfinite(r) & (r >= 1), torch.full_like(r, math.ceil(a)),
                       torch.full_like(r, top))
    cap = torch.where(inside, ratio, edge).clamp(1.0, top).long()
    if max_entries is not None:
        limit = torch.as_tensor(max_entries).reshape(-1).to(device=cap.device, dtype=torch.long)
        if limit.numel() != cap.numel():
            raise ValueError(f"max_entries has {limit.numel()} entries, base_rates {cap.numel()}")
        cap = torch.minimum(cap, limit).clamp_min(1)
    return cap if as_tensor else cap.cpu().numpy()


def _exclusive_cumsum(x: Tensor) -> Tensor:
    return torch.cumsum(x, 0) - x


class CrossBatchHistory:
    """Per-condition FIFO windows of past entries, persisting across batches and epochs.

    amplification_rate A > 0; base_rates [C] fix C and the capacities cap_j (see
    :func:`history_capacities`); max_window caps every window (the reference rule is
    unbounded for a rate of 0); max_entries [C] optionally bounds the ring of j to what j
    will ever receive (epochs x train rows of j) without changing any window.

    Storage: one flat pool ``[3, 1 + sum_j ring_j]`` of ``dtype`` (12 bytes per slot in
    float32).  Column 0 is a trash slot for batch entries that are not kept; ring j occupies
    columns [offset_j, offset_j + ring_j) and entry number s (0, 1, ... in push order) of
    condition j lives in column offset_j + s % ring_j.  The window of j is the entries
    numbered [max(0, pushed_j - ring_j), pushed_j), oldest first, exactly the deque of the
    reference after pushed_j appends.  Running float64 sums (pos weight, neg weight, b) of
    the stored (dtype-rounded) values plus counts of non-zero pos / neg weights are updated
    with the entries written and overwritten, so reading a window sum costs nothing.
    """

    _TENSORS = ("_cap", "_ring", "_offset", "_pushed", "_acc", "_pool")

    def __init__(
        self,
        amplification_rate: float,
        base_rates: ArrayLike,
        *,
        max_window: int = 1_000_000,
        max_entries: Optional[ArrayLike] = None,
        device: Optional[Union[torch.device, str]] = None,
        dtype: torch.dtype = torch.float32,
        eps: float = 1e-12,
    ) -> None:
        rates = torch.as_tensor(base_rates).detach().cpu()
        if rates.dim() != 1:
            raise ValueError(f"base_rates must be 1-D [C], got shape {tuple(rates.shape)}")
        self.amplification_rate = float(amplification_rate)
        self.max_window = int(max_window)
        self.eps = float(eps)
        self.dtype = dtype
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        cap = history_capacities(rates, self.amplification_rate, self.max_window)
        ring = cap if max_entries is None else history_capacities(
            rates, self.amplification_rate, self.max_window, torch.as_tensor(max_entries).cpu())
        self._cap = cap.to(self._device)
        self._ring = ring.to(self._device)
        self._offset = (1 + _exclusive_cumsum(ring)).to(self._device)
        self._slots = 1 + int(ring.sum())  # host int at construction only
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every window (keeps capacities and layout)."""
        size = self._cap.numel()
        self._pushed = torch.zeros(size, dtype=torch.long, device=self._device)
        # rows: window sums (pos weight, neg weight, b), counts of non-zero pos / neg weights
        self._acc = torch.zeros(5, size, dtype=torch.float64, device=self._device)
        self._pool = torch.zeros(3, self._slots, dtype=self.dtype, device=self._device)

    @property
    def num_conditions(self) -> int:
        return self._cap.numel()

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: Union[torch.device, str]) -> "CrossBatchHistory":
        """Move all state to ``device``; :meth:`update` also follows its inputs' device."""
        self._device = torch.device(device)
        for name in self._TENSORS:
            setattr(self, name, getattr(self, name).to(self._device))
        return self

    def state_dict(self) -> dict:
        """Configuration and cloned state tensors (checkpoints, inspection)."""
        state = {name.lstrip("_"): getattr(self, name).clone() for name in self._TENSORS}
        state.update(amplification_rate=self.amplification_rate, max_window=self.max_window,
                     eps=self.eps)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Replace configuration, layout and windows by ``state`` (kept on this device)."""
        for name in self._TENSORS:
            setattr(self, name, state[name.lstrip("_")].clone().to(self._device))
        self.amplification_rate = float(state["amplification_rate"])
        self.max_window, self.eps = int(state["max_window"]), float(state["eps"])
        self.dtype, self._slots = self._pool.dtype, self._pool.shape[1]

    # ----------------------------------------------------------------- inspection (may sync)
    def window_totals(self, num_conditions: Optional[int] = None) -> Tensor:
        """[C, 3] float64 window sums (pos weight, neg weight, b); with ``num_conditions``
        exactly that many rows (zero-padded or truncated).  No host synchronisation."""
        sums = self._acc[:3].t().clamp_min(0.0)  # float64 rounding may leave -1e-17 residues
        if num_conditions is None or num_conditions == sums.shape[0]:
            return sums
        if num_conditions < sums.shape[0]:
            return sums[:num_conditions]
        return torch.cat([sums, sums.new_zeros(num_conditions - sums.shape[0], 3)])

    def window_sizes(self) -> np.ndarray:
        """Stored entries per condition, int64 [C]."""
        return torch.minimum(self._pushed, self._ring).cpu().numpy()

    def window_sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positive weight, negative weight, b sum), each float64 [C]."""
        s = self.window_totals().cpu().numpy()
        return s[:, 0], s[:, 1], s[:, 2]

    def capacities(self) -> np.ndarray:
        """cap_j of the rule (before max_entries), int64 [C]."""
        return self._cap.cpu().numpy()

    def ring_sizes(self) -> np.ndarray:
        """Slots of each ring, min(cap_j, max_entries_j) >= 1, int64 [C]."""
        return self._ring.cpu().numpy()

    def pushed(self) -> np.ndarray:
        """Entries ever appended per condition (kept or not), int64 [C]."""
        return self._pushed.cpu().numpy()

    def window_entries(self, condition: int) -> np.ndarray:
        """[n, 3] float64 (pos weight, neg weight, b) of one window, oldest first."""
        j = int(condition)
        pushed, ring = int(self._pushed[j]), int(self._ring[j])
        seq = torch.arange(max(0, pushed - ring), pushed, device=self._device)
        cols = self._offset[j] + seq % ring
        return self._pool.index_select(1, cols).t().double().cpu().numpy().reshape(-1, 3)

    def storage_rows(self) -> int:
        """Pool columns (memory = that * 3 * itemsize), trash slot included."""
        return self._pool.shape[1]

    # ----------------------------------------------------------------- update (no host sync)
    @torch.no_grad()
    def update(
        self,
        conditions: Tensor,
        targets: Tensor,
        b: Tensor,
        sample_weights: Optional[Tensor] = None,
    ) -> None:
        """Append a batch: conditions [N] ids in [0, C), targets [N] (binarised at 0.5),
        b [N] = w*BCE (detached; non-finite stored as 0, as the reference does),
        sample_weights [N] (1 when None).

        Batch order is entry order within a condition; only the last ring_j entries of j in
        this batch are written (the earlier ones would be evicted by the later ones anyway).
        Cost: a stable device sort of the batch by condition plus O(N + C) gathers/scatters;
        no host synchronisation and no data-dependent shapes.
        """
        c = conditions.reshape(-1)
        if c.device != self._device:
            self.to(c.device)
        c = c.long()
        e = self._entries(targets, b, sample_weights)
        try:
            k = torch.zeros_like(self._pushed).index_add_(0, c, torch.ones_like(c))
        except IndexError as err:
            raise IndexError(f"CrossBatchHistory.update: condition ids must lie in "
                             f"[0, {self.num_conditions})") from err
        cs, order = torch.sort(c, stable=True)  # batch order kept within a condition
        e = e.index_select(1, order)
        cols, keep, valid = self._slots_of(cs, k)
        old = self._pool.index_select(1, cols)
        self._pool.index_copy_(1, cols, e)  # dropped entries all land in trash column 0
        self._accumulate(cs, e, keep, old, valid)
        self._pushed += k

    def _entries(self, targets: Tensor, b: Tensor, sample_weights: Optional[Tensor]) -> Tensor:
        """[3, N] (w*[y >= 0.5], w*[y < 0.5], b) in the storage dtype."""
        b = b.detach().reshape(-1).to(self._device, self.dtype)
        b = torch.where(torch.isfinite(b), b, torch.zeros_like(b))
        w = torch.ones_like(b) if sample_weights is None else sample_weights.detach().reshape(-1)
        w = w.to(self._device, self.dtype)
        pos = targets.detach().reshape(-1).to(self._device) >= 0.5
        zero = torch.zeros_like(w)
        return torch.stack([torch.where(pos, w, zero), torch.where(pos, zero, w), b])

    def _slots_of(self, cs: Tensor, k: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """For the sorted ids cs [N] and batch counts k [C]: pool columns [N] (0 = trash),
        keep [N] (among the last ring_j of j) and valid [N] (the overwritten slot held an
        entry of the window).

        Entry i (rank q_i within its condition j) gets number s_i = pushed_j + q_i; it is kept
        iff s_i >= first_j = pushed_j + max(k_j - ring_j, 0).  For kept entries
        delta_i = s_i - first_j lies in [0, ring_j), so s_i % ring_j is one conditional
        subtraction from first_j % ring_j + delta_i (no per-entry int64 division).
        """
        pushed, ring = self._pushed, self._ring
        first = pushed + (k - ring).clamp_min(0)
        shift = pushed - first - _exclusive_cumsum(k)  # delta_i = shift_j + position in sorted batch
        # one gather of a [C, 5] table instead of five [C] gathers
        table = torch.stack([shift, ring, first % ring, self._offset, pushed], dim=1)
        shift_i, ring_i, base_i, offset_i, pushed_i = table.index_select(0, cs).unbind(1)
        delta = shift_i + torch.arange(cs.numel(), device=cs.device)
        keep = delta >= 0
        rel = base_i + delta.clamp_min(0)
        rel = rel - ring_i * (rel >= ring_i)
        cols = torch.where(keep, offset_i + rel, torch.zeros_like(rel))
        # before the ring first fills, slots [pushed_j, ring_j) are still empty
        valid = keep & (rel < pushed_i)
        return cols, keep, valid

    def _accumulate(self, cs: Tensor, new: Tensor, keep: Tensor, old: Tensor, valid: Tensor
                    ) -> None:
        """acc [5, C] += per-condition sums of kept new entries minus overwritten old ones
        (values and non-zero indicators of pos / neg weight), in float64, one 1-D index_add."""
        new, old = new.double(), old.double()
        kf, vf = keep.double(), valid.double()
        rows = torch.cat([new * kf - old * vf,
                          (new[:2] != 0) * kf - (old[:2] != 0) * vf])  # [5, N]
        size = self.num_conditions
        index = cs + size * torch.arange(5, device=cs.device)[:, None]
        self._acc.view(-1).index_add_(0, index.reshape(-1), rows.reshape(-1))
        # a weight sum with no non-zero entry behind it is exactly 0 (kills rounding residues,
        # which matter when p_j sits at the eps clamp)
        self._acc[:2].masked_fill_(self._acc[3:] == 0, 0.0)
