"""Bind a loss name and its resolved settings to a callable ``(logits, batch) -> scalar``.

Training and evaluation both go through :func:`make_objective`, so a trial's curves, its
``eval_compare_losses`` table and the diagnostics all use one definition of each loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from le_ray.config_schema import TrainingSettings
from le_ray.data.batches import Batch
from le_ray.losses import CrossBatchHistory, bce_loss, focal_loss, localized_entropy

__all__ = ["Objective", "make_objective", "LOSS_LABELS"]

#: Short labels used in folders, tables and plots.
LOSS_LABELS = {"bce": "bce", "localized_entropy": "le", "focal": "focal"}


@dataclass
class Objective:
    """A configured loss. ``history`` (LE with cross_batch on) persists across batches and epochs."""

    name: str
    settings: TrainingSettings
    base_rates: torch.Tensor | None
    history: CrossBatchHistory | None = None

    def __call__(self, logits: torch.Tensor, batch: Batch, *, use_history: bool = True) -> torch.Tensor:
        """Loss of ``logits`` [B] on ``batch``; ``use_history=False`` for evaluation passes."""
        weights = batch.w
        if self.name == "bce":
            return bce_loss(logits, batch.y, sample_weights=weights)
        if self.name == "focal":
            return focal_loss(logits, batch.y, alpha=self.settings.focal.alpha, gamma=self.settings.focal.gamma,
                              sample_weights=weights)
        return localized_entropy(logits, batch.y, batch.cond, base_rates=self.base_rates, sample_weights=weights,
                                 norm_strength=self.settings.le.norm_strength,
                                 history=self.history if use_history else None)


def make_objective(name: str, settings: TrainingSettings, *, base_rates: torch.Tensor | None,
                   num_conditions: int, device: torch.device, dtype: torch.dtype,
                   with_history: bool = True) -> Objective:
    """The objective of loss ``name``; LE gets a :class:`CrossBatchHistory` when configured."""
    history = None
    if name == "localized_entropy" and settings.cross_batch.enabled and with_history:
        history = CrossBatchHistory(settings.cross_batch.amplification_rate,
                                    max_window=settings.cross_batch.max_window, num_conditions=num_conditions,
                                    device=device, dtype=dtype)
    return Objective(name, settings, base_rates, history)
