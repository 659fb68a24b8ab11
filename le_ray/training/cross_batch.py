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

from typing import Optional, Sequence, Union

import numpy as np
import torch

from le_ray.training.shapes import window_capacities

__all__ = ["CrossBatchHistory", "history_capacities"]

Tensor = torch.Tensor
ArrayLike = Union[Tensor, np.ndarray, Sequence[float]]


def history_capacities(
    base_rates: ArrayLike,
    amplification_rate: float,
    max_window: int,
    max_entries: Optional[ArrayLike] = None,
) -> Union[np.ndarray, Tensor]:
    """Window capacities int64 [C] from base rates [C]: :func:`le_ray.training.shapes.window_capacities` (the rule
    in the module docstring), as a Tensor on the rates' device when ``base_rates`` is a Tensor, else numpy.
    A Tensor's rates are read to the host once, when the history is built, never in a step."""
    if isinstance(base_rates, Tensor):
        rates = base_rates.detach().to(torch.float64).cpu().numpy()
        limit = None if max_entries is None else torch.as_tensor(max_entries).reshape(-1).cpu().numpy()
        caps = window_capacities(rates, amplification_rate, max_window, limit)
        return torch.as_tensor(caps, device=base_rates.device)
    return window_capacities(base_rates, amplification_rate, max_window, max_entries)


def _exclusive_cumsum(x: Tensor) -> Tensor:
    return torch.cumsum(x, 0) - x


def _flat(t: Tensor) -> Tensor:
    """``t`` detached and 1-D, without dispatching a view or detach op when it already is."""
    t = t.detach() if t.requires_grad else t
    return t if t.dim() == 1 else t.reshape(-1)


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
    with the entries written and overwritten, so reading a window sum costs nothing.  Slots
    never written and the trash column hold zeros (a batch entry that is not kept is zeroed
    before it is written to trash), so an overwritten slot's old value can always be
    subtracted: it is 0 where the slot held no entry of the window.
    """

    _TENSORS = ("_cap", "_ring", "_offset", "_pushed", "_acc", "_pool", "_virtual")

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
        # CUDA radix sorts take one pass per 8 key bits: sort ids as the narrowest integer that holds them
        self._sort_dtype = torch.int16 if cap.numel() <= 2**15 else torch.int32
        self._stream: Optional[torch.cuda.Stream] = None
        self._in_flight: tuple = ()
        self.reset()

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Forget every window (keeps capacities and layout)."""
        self.join()
        size = self._cap.numel()
        self._pushed = torch.zeros(size, dtype=torch.long, device=self._device)
        # rows: window sums (pos weight, neg weight, b), counts of non-zero pos / neg weights
        self._acc = torch.zeros(5, size, dtype=torch.float64, device=self._device)
        self._pool = torch.zeros(3, self._slots, dtype=self.dtype, device=self._device)
        self._virtual = torch.zeros(3, size, dtype=torch.float64, device=self._device)  # none: cold windows
        self._warm = False
        self._bind_views()

    def warm_start(self, base_rates: ArrayLike) -> None:
        """Start every window full: cap_j virtual entries (p_j, 1 - p_j, H_j) at condition j's base rate r_j,
        p_j = clamp(r_j, eps, 1 - eps), H_j = -p_j ln p_j - (1 - p_j) ln(1 - p_j), older than any real entry.

        Real entries evict them first in, first out: after pushed_j real entries the window of j holds
        v_j = max(cap_j - pushed_j, 0) of them besides its real entries, so its sums gain v_j · (p_j, 1 - p_j, H_j),
        about A clicks' worth of positive weight at the start (cap_j ≈ A / r_j), as if the past had held rows at the
        base rate; after cap_j real entries the window is the cold one. They are counted, not stored: no memory, and
        a ring bounded by ``max_entries`` (which never evicts a real entry) still starts with cap_j of them. LE's
        denominator of j is then about cap_j · H_j from the first step instead of a batch's fraction of a click
        (rows × -ln(1 - p_j) in a batch without its click), which weighs the condition's rows by up to
        1 / (expected clicks per batch) until real clicks fill the window. Their b (v_j · H_j) is a constant: it
        shifts the loss value, not its gradient. A condition whose rate is not finite or outside [0, 1] starts
        empty. base_rates [C]. Not the reference's rule, whose windows start empty: ``training.cross_batch.warm_start``.
        Reading a warm window costs a few [C] ops more per step; :meth:`reset` forgets the virtual entries too."""
        self.join()
        rates = base_rates if isinstance(base_rates, Tensor) else np.asarray(base_rates, dtype=np.float64)
        rates = torch.as_tensor(rates).detach().to(self._device, torch.float64).reshape(-1)
        if rates.numel() != self.num_conditions:
            raise ValueError(f"warm_start: {rates.numel()} base rates for {self.num_conditions} conditions")
        usable = torch.isfinite(rates) & (rates >= 0) & (rates <= 1)
        p = torch.where(usable, rates, 0.5).clamp(self.eps, 1 - self.eps)
        entropy = -(p * p.log() + (1 - p) * (-p).log1p())
        self._virtual.copy_(torch.stack([p, 1 - p, entropy]) * usable)  # in place: a captured step reads it
        self._warm = True

    def _bind_views(self) -> None:
        """Views of the running sums and a 0-d zero, made once per allocation (each view or
        Python-scalar operand is a dispatched op per update)."""
        self._acc_weights, self._acc_b, self._acc_nonzero = self._acc[:2], self._acc[2], self._acc[3:]
        self._zero = self._pool.new_zeros(())
        self._positions = torch.arange(0, device=self._device)  # 0, 1, ...: grown on demand, sliced per batch
        self._cap_f = self._cap.to(torch.float64)  # cap_j, for the virtual entries left in a warm window

    def use_stream(self, stream: Optional["torch.cuda.Stream"]) -> None:
        """Run CUDA updates on ``stream`` (None: the caller's stream).

        The update only feeds the NEXT batch's windows, so on its own stream it overlaps the
        backward pass and the optimiser step (a captured training step becomes a graph with a
        parallel branch). The caller's stream waits for it at :meth:`join`, which every read of
        the state and every next update call first; a training step joins at its end."""
        self.join()
        self._stream = stream

    def join(self) -> None:
        """Make the caller's stream wait for an update running on :meth:`use_stream`'s stream, and
        release the inputs it was reading (kept alive until then)."""
        if self._in_flight:
            torch.cuda.current_stream(self._device).wait_stream(self._stream)
            self._in_flight = ()

    @property
    def num_conditions(self) -> int:
        return self._cap.numel()

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: Union[torch.device, str]) -> "CrossBatchHistory":
        """Move all state to ``device``; :meth:`update` also follows its inputs' device."""
        self.join()
        self._device = torch.device(device)
        for name in self._TENSORS:
            setattr(self, name, getattr(self, name).to(self._device))
        self._bind_views()
        return self

    def state_dict(self) -> dict:
        """Configuration and cloned state tensors (checkpoints, inspection)."""
        self.join()
        state = {name.lstrip("_"): getattr(self, name).clone() for name in self._TENSORS}
        state.update(amplification_rate=self.amplification_rate, max_window=self.max_window,
                     eps=self.eps, warm=self._warm)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Replace configuration, layout and windows by ``state`` (kept on this device)."""
        self.join()
        for name in self._TENSORS:
            if name == "_virtual" and "virtual" not in state:  # a state saved before warm starts existed: cold
                self._virtual = torch.zeros(3, state["cap"].numel(), dtype=torch.float64, device=self._device)
                continue
            setattr(self, name, state[name.lstrip("_")].clone().to(self._device))
        self._warm = bool(state.get("warm", False))
        self.amplification_rate = float(state["amplification_rate"])
        self.max_window, self.eps = int(state["max_window"]), float(state["eps"])
        self.dtype, self._slots = self._pool.dtype, self._pool.shape[1]
        self._pool[:, 0] = 0.0  # the trash column holds zeros (states saved before that rule held a dropped entry)
        self._bind_views()

    # ----------------------------------------------------------------- inspection (may sync)
    def window_totals(self, num_conditions: Optional[int] = None) -> Tensor:
        """[C, 3] float64 window sums (pos weight, neg weight, b); with ``num_conditions``
        exactly that many rows (zero-padded or truncated).  No host synchronisation."""
        self.join()
        sums = self._acc[:3].clamp_min(0.0)  # float64 rounding may leave -1e-17 residues
        sums = (sums + self._virtual * self._virtual_left() if self._warm else sums).t()
        if num_conditions is None or num_conditions == sums.shape[0]:
            return sums
        if num_conditions < sums.shape[0]:
            return sums[:num_conditions]
        return torch.cat([sums, sums.new_zeros(num_conditions - sums.shape[0], 3)])

    def window_rows(self, num_conditions: Optional[int] = None) -> tuple[Tensor, Tensor]:
        """Window sums as ([2, C] positive / negative weight, [C] b), float64, two kernels and no
        host synchronisation; with ``num_conditions`` exactly that many conditions."""
        self.join()
        if num_conditions is not None and num_conditions != self.num_conditions:
            sums = self.window_totals(num_conditions).t()
            return sums[:2], sums[2]
        # float64 rounding may leave -1e-17 residues
        weights, b = self._acc_weights.clamp_min(0.0), self._acc_b.clamp_min(0.0)
        if not self._warm:
            return weights, b
        left = self._virtual_left()
        return torch.addcmul(weights, self._virtual[:2], left), torch.addcmul(b, self._virtual[2], left)

    def _virtual_left(self) -> Tensor:
        """v_j [C] float64: the virtual entries still in window j (:meth:`warm_start`), max(cap_j - pushed_j, 0);
        multiplied by the entry, 0 where none was set."""
        return (self._cap_f - self._pushed).clamp_min(0.0)

    def window_sizes(self) -> np.ndarray:
        """Entries per condition (virtual ones of a warm start included), int64 [C]."""
        self.join()
        real = torch.minimum(self._pushed, self._ring)
        if self._warm:
            real = real + (self._virtual_left() * (self._virtual[0] + self._virtual[1] > 0)).long()
        return real.cpu().numpy()

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
        self.join()
        return self._pushed.cpu().numpy()

    def window_entries(self, condition: int) -> np.ndarray:
        """[n, 3] float64 (pos weight, neg weight, b) of one window, oldest first (a warm start's virtual
        entries first)."""
        self.join()
        j = int(condition)
        pushed, ring = int(self._pushed[j]), int(self._ring[j])
        seq = torch.arange(max(0, pushed - ring), pushed, device=self._device)
        cols = self._offset[j] + seq % ring
        real = self._pool.index_select(1, cols).t().double().cpu().numpy().reshape(-1, 3)
        entry = self._virtual[:, j].cpu().numpy()
        if not self._warm or not entry[:2].any():
            return real
        return np.concatenate([np.tile(entry, (int(self._virtual_left()[j]), 1)), real])

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
        counts: Optional[Tensor] = None,
    ) -> None:
        """Append a batch: conditions [N] ids in [0, C), targets [N] (binarised at 0.5),
        b [N] = w*BCE (detached; non-finite stored as 0, as the reference does),
        sample_weights [N] (1 when None), counts [C] (the batch's rows per condition, any
        dtype holding integers; counted here when None).

        Batch order is entry order within a condition; only the last ring_j entries of j in
        this batch are written (the earlier ones would be evicted by the later ones anyway).
        Cost: a stable device sort of the batch by condition (the rank of an entry within its
        condition in batch order is what decides whether it is kept and where it goes; a
        scatter cannot rank equal keys, and a one-hot cumulative count is O(N*C)) plus a fixed
        number of O(N + C) gathers and scatters, independent of C; no host synchronisation and
        no data-dependent shapes.
        """
        self.join()
        c = conditions if conditions.dim() == 1 else conditions.reshape(-1)
        if c.device != self._device:
            self.to(c.device)
        if self._stream is None or not c.is_cuda:
            self._update(c, targets, b, sample_weights, counts)
            return
        self._stream.wait_stream(torch.cuda.current_stream(c.device))
        with torch.cuda.stream(self._stream):
            self._update(c, targets, b, sample_weights, counts)
        self._in_flight = (c, targets, b, sample_weights, counts)  # alive until the caller's stream joins (c: read there)

    def _update(self, c: Tensor, targets: Tensor, b: Tensor, sample_weights: Optional[Tensor],
                counts: Optional[Tensor]) -> None:
        """:meth:`update` on the current stream."""
        c = c if c.dtype == torch.long else c.long()
        try:
            k = self._batch_counts(c) if counts is None else counts.to(torch.long)
            cs, order = self._sorted(c)
            cols, keep = self._slots_of(cs, k)
        except (IndexError, RuntimeError) as err:
            if not isinstance(err, IndexError) and "out of" not in str(err):
                raise
            raise IndexError(f"CrossBatchHistory.update: condition ids must lie in "
                             f"[0, {self.num_conditions})") from err
        # entries not kept are zeroed, so the trash column keeps holding zeros
        e = torch.where(keep, self._entries(targets, b, sample_weights).index_select(1, order), self._zero)
        old = self._pool.index_select(1, cols)
        self._pool.index_copy_(1, cols, e)
        self._accumulate(cs, e, old)
        self._pushed += k

    def _sorted(self, c: Tensor) -> tuple[Tensor, Tensor]:
        """(sorted ids int64, order): a stable sort, so batch order is kept within a condition.
        On CUDA the keys are int16 / int32 (2 or 4 radix passes instead of 8); the order is the same."""
        if not c.is_cuda:
            return torch.sort(c, stable=True)
        keys, order = torch.sort(c.to(self._sort_dtype), stable=True)
        return keys.long(), order

    def _batch_counts(self, c: Tensor) -> Tensor:
        """k [C] int64: entries of each condition in the batch."""
        return torch.zeros_like(self._pushed).index_add_(0, c, torch.ones_like(c))

    def _entries(self, targets: Tensor, b: Tensor, sample_weights: Optional[Tensor]) -> Tensor:
        """[3, N] (w*[y >= 0.5], w*[y < 0.5], b) in the storage dtype."""
        b = torch.nan_to_num(_flat(b).to(self._device, self.dtype), nan=0.0, posinf=0.0, neginf=0.0)
        w = torch.ones_like(b) if sample_weights is None else _flat(sample_weights).to(self._device, self.dtype)
        pos = _flat(targets).to(self._device) >= 0.5
        return torch.stack([torch.where(pos, w, self._zero), torch.where(pos, self._zero, w), b])

    def _slots_of(self, cs: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """For the sorted ids cs [N] and batch counts k [C]: pool columns [N] (0 = trash) and
        keep [N] (among the last ring_j entries of j in the batch).

        With start_j / end_j = the exclusive / inclusive cumulative count (condition j occupies
        sorted positions [start_j, end_j)), entry t of the sorted batch (condition j, rank
        t - start_j) gets number s_t = pushed_j + t - start_j; it is kept iff
        s_t >= pushed_j + k_j - ring_j, i.e. t >= end_j - ring_j, and lives in column
        offset_j + s_t mod ring_j.  One gather of a [C, 4] table serves all four per-entry values.
        """
        end = torch.cumsum(k, 0)
        start = end - k
        table = torch.stack([self._pushed - start, end - self._ring, self._ring, self._offset], dim=1)
        shift, threshold, ring, offset = table.index_select(0, cs).unbind(1)
        if self._positions.numel() < cs.numel():  # a host-side size check: no sync
            self._positions = torch.arange(cs.numel(), device=cs.device)
        t = self._positions[:cs.numel()]
        keep = t >= threshold
        cols = (offset + torch.remainder(shift + t, ring)) * keep  # dropped entries go to trash column 0
        return cols, keep

    def _accumulate(self, cs: Tensor, new: Tensor, old: Tensor) -> None:
        """acc [5, C] += per-condition sums of (new - old) entries, values and non-zero
        indicators of pos / neg weight, in float64, in one scatter (each condition's entries in
        batch order).  ``new`` is 0 for entries not kept and ``old`` is 0 for slots that held no
        window entry, so no masks are needed."""
        both = torch.stack([new, old])  # [2, 3, N]
        full = torch.cat([both, both[:, :2] != 0], dim=1).to(torch.float64)  # [2, 5, N]
        self._acc.scatter_add_(1, cs.expand(5, -1), full[0] - full[1])
        # a weight sum with no non-zero entry behind it is exactly 0 (kills rounding residues,
        # which matter when p_j sits at the eps clamp)
        self._acc_weights.masked_fill_(self._acc_nonzero == 0, 0.0)
