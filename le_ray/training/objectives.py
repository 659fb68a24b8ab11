"""The loss functions of the registered losses, bound to their settings: ``(logits, batch) -> scalar``.

:data:`le_ray.registry.LOSSES` names every loss; :data:`LOSS_FUNCTIONS` gives each its implementation
(this module refuses to import if a registered loss has none, or an implementation has no
registration), so an unknown name can never reach training. Training and evaluation both go through
:func:`make_objective`, so a trial's curves, its ``eval_compare_losses`` table and the diagnostics use
one definition of each loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from le_ray.config import TrainingSettings
from le_ray.training.cross_batch import CrossBatchHistory
from le_ray.data.batches import Batch
from le_ray.training.losses import LEConstants, bce_loss, focal_loss, le_constants, localized_entropy
from le_ray.registry import LOSSES, canonical_loss

__all__ = ["Objective", "make_objective", "LOSS_FUNCTIONS"]


def _bce(objective: "Objective", logits: torch.Tensor, batch: Batch, history) -> torch.Tensor:
    return bce_loss(logits, batch.y, sample_weights=batch.w)


def _focal(objective: "Objective", logits: torch.Tensor, batch: Batch, history) -> torch.Tensor:
    focal = objective.settings.focal
    return focal_loss(logits, batch.y, alpha=focal.alpha, gamma=focal.gamma, sample_weights=batch.w)


def _le(objective: "Objective", logits: torch.Tensor, batch: Batch, history) -> torch.Tensor:
    return localized_entropy(logits, batch.y, batch.cond, base_rates=objective.base_rates, sample_weights=batch.w,
                             norm_strength=objective.settings.le.norm_strength, history=history,
                             num_conditions=objective.num_conditions, constants=objective.le_constants)


#: Implementation of each registered loss: ``fn(objective, logits, batch, history) -> scalar``.
LOSS_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {"bce": _bce, "localized_entropy": _le, "focal": _focal}
if set(LOSS_FUNCTIONS) != set(LOSSES):  # the registry and the implementations must name the same losses
    raise ImportError(f"loss registry {sorted(LOSSES)} and implementations {sorted(LOSS_FUNCTIONS)} differ")


@dataclass
class Objective:
    """A configured loss. ``history`` (LE with cross_batch on) persists across batches and epochs;
    ``le_constants`` (LE) holds the per-condition terms that do not change between batches."""

    name: str
    settings: TrainingSettings
    base_rates: torch.Tensor | None
    history: CrossBatchHistory | None = None
    num_conditions: int | None = None
    le_constants: LEConstants | None = None

    #: (rows, batch size, device) → (condition-id offsets [N], LE constants of the segments): built once per split
    _segments: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __call__(self, logits: torch.Tensor, batch: Batch, *, use_history: bool = True) -> torch.Tensor:
        """Loss of ``logits`` [B] on ``batch``; ``use_history=False`` for evaluation passes."""
        return LOSS_FUNCTIONS[self.name](self, logits, batch, self.history if use_history else None)

    def batched_mean(self, logits: torch.Tensor, batch: Batch, batch_size: int) -> torch.Tensor:
        """The evaluation loss of ``logits`` [N] on ``batch`` (history off) as the earlier system reports it: the
        weighted mean of the losses of its sequential batches of ``batch_size`` rows,
        Σ_b loss_b·W_b / max(Σ_b W_b, 1), without a host read.

        BCE and focal: equal to the whole batch's weighted mean whenever every batch weighs ≥ 1 (always with
        unit weights), so that is what is computed. LE: row i of batch b = ⌊i / batch_size⌋ takes condition
        id c_i + b·C, so one scatter gives every (batch, condition) pair its ones, zeros and numerator, and
        Σ_{b,j} cw_j·num_bj / den_bj^s / max(ΣW, 1) = Σ_b LE_b·W_b / max(ΣW, 1) when every W_b ≥ 1. (A whole split
        normalised at once differs from that by a factor of about N / batch_size.) Batches are taken
        :data:`MAX_SEGMENT_SLOTS` // C at a time, so the per-(batch, condition) tensors stay bounded; the cached
        offsets and constants (8 bytes a row, ~40 a pair) live as long as the objective, one trial."""
        n = logits.numel()
        if self.name != "localized_entropy" or n <= batch_size:
            return self(logits, batch, use_history=False)
        rows = max(MAX_SEGMENT_SLOTS // max(self.num_conditions, 1), 1) * batch_size  # rows per call
        if rows >= n:
            return self._segmented(logits, batch, slice(None), batch_size)
        totals = []
        for i in range(0, n, rows):  # LE divides Σ terms by max(W, 1): each part's Σ terms = its mean · W_part
            part = slice(i, i + rows)
            totals.append(self._segmented(logits[part], batch, part, batch_size) * batch.w[part].sum().clamp_min(1.0))
        total = torch.stack(totals).sum()
        return total / batch.w.sum().clamp_min(1.0).to(total.dtype)

    def _segmented(self, logits: torch.Tensor, batch: Batch, rows: slice, batch_size: int) -> torch.Tensor:
        """LE of ``batch``'s ``rows`` (whole batches of ``batch_size``, the last one may be short) with each batch's
        conditions apart: Σ_{b,j} cw_j·num_bj / den_bj^s / max(W, 1), in one call."""
        offsets, constants = self._segment_constants(logits.numel(), batch_size, batch.cond.device)
        return localized_entropy(logits, batch.y[rows], batch.cond[rows] + offsets, sample_weights=batch.w[rows],
                                 norm_strength=self.settings.le.norm_strength, constants=constants)

    def _segment_constants(self, n: int, batch_size: int, device: torch.device) -> tuple[torch.Tensor, LEConstants]:
        """(b·C for each of n rows, :func:`le_constants` of the B·C segment conditions: the objective's C rates and
        condition weights (its own constants: NaN where a rate is unusable) repeated B times), cached per row count;
        built without a host read, so no call synchronises."""
        key = (n, batch_size, str(device))
        if key not in self._segments:
            size, segments = self.num_conditions, -(-n // batch_size)
            offsets = torch.arange(n, device=device).div_(batch_size, rounding_mode="floor").mul_(size)
            own = self.le_constants or le_constants(self.base_rates, None, size, device=device, precompute_logs=False)
            # precompute_logs off: building them reads nothing on the host (den_j then takes a few more kernels)
            self._segments[key] = offsets, le_constants(own.rate.to(device).repeat(segments),
                                                        own.weights.to(device).repeat(segments), segments * size,
                                                        device=device, precompute_logs=False)
        return self._segments[key]


#: The most (batch, condition) pairs one :meth:`Objective.batched_mean` LE call sums at once (its per-pair tensors
#: are ~50 bytes a pair: a 2,000-condition split of 8M rows at batch 1,024 would otherwise need ~800 MB).
MAX_SEGMENT_SLOTS = 1 << 22


def make_objective(name: str, settings: TrainingSettings, *, base_rates: torch.Tensor | None,
                   num_conditions: int, device: torch.device, dtype: torch.dtype, with_history: bool = True,
                   max_entries: np.ndarray | None = None) -> Objective:
    """The objective of loss ``name`` (any alias); a loss with history support gets its
    :class:`CrossBatchHistory` when ``cross_batch.enabled``, its windows full at the base rates when
    ``cross_batch.warm_start`` (:meth:`CrossBatchHistory.warm_start`). ``max_entries`` [C]: the most entries condition j
    will ever push (training: epochs × its train rows), which bounds the history's memory."""
    name = canonical_loss(name)
    history = None
    if LOSSES[name].supports_history and settings.cross_batch.enabled and with_history:
        rates = base_rates if base_rates is not None else torch.full((num_conditions,), float("nan"))
        history = CrossBatchHistory(settings.cross_batch.amplification_rate, rates,
                                    max_window=settings.cross_batch.max_window, max_entries=max_entries,
                                    device=device, dtype=dtype)
        if settings.cross_batch.warm_start:
            history.warm_start(rates)
    constants = None
    if name == "localized_entropy":
        constants = le_constants(base_rates, None, num_conditions, device=device)
    return Objective(name, settings, base_rates, history, num_conditions, constants)
