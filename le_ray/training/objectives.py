"""The loss functions of the registered losses, bound to their settings: ``(logits, batch) -> scalar``.

:data:`le_ray.registry.LOSSES` names every loss; :data:`LOSS_FUNCTIONS` gives each its implementation
(this module refuses to import if a registered loss has none, or an implementation has no
registration), so an unknown name can never reach training. Training and evaluation both go through
:func:`make_objective`, so a trial's curves, its ``eval_compare_losses`` table and the diagnostics use
one definition of each loss.
"""

from __future__ import annotations

from dataclasses import dataclass
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

    def __call__(self, logits: torch.Tensor, batch: Batch, *, use_history: bool = True) -> torch.Tensor:
        """Loss of ``logits`` [B] on ``batch``; ``use_history=False`` for evaluation passes."""
        return LOSS_FUNCTIONS[self.name](self, logits, batch, self.history if use_history else None)


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
