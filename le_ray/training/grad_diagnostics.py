"""Per-condition squared logit-gradient diagnostics: how LE reshapes BCE's gradient per ad.

For every training batch, with z the (detached) logits, g^BCE_i = ∂L_BCE/∂z_i and
g^LE_i = ∂L_LE/∂z_i (LE with the trial's base rates, no cross-batch history) are accumulated as
Σ g² per condition and per condition × label class. From the sums:

* ``bce_mse_j``, ``le_mse_j``: mean squared gradient of condition j's rows;
* ``ratio_raw_j = le_mse_j / bce_mse_j``;
* ``ratio_normalised_j = (le_mse_j / le_mse_global) / (bce_mse_j / bce_mse_global)``, which
  compares the shape across conditions independently of each loss's overall scale;
* ``class_ratio_<loss>_j = mse(y = 1) / mse(y = 0)`` within condition j.
"""

from __future__ import annotations

import numpy as np
import torch

from le_ray.data.batches import Batch
from le_ray.training.losses import bce_loss, localized_entropy, stats_dtype
from le_ray.metrics.validation import _ratio as _safe_div  # num / den, NaN where den <= 0

__all__ = ["GradSqAccumulator", "grad_sq_table"]


class GradSqAccumulator:
    """Accumulates Σg² per (loss, condition, class) on the training device (float64, or float32 on MPS)."""

    def __init__(self, device: torch.device, objective) -> None:
        self.device = device
        self.base_rates = objective.base_rates
        self.dtype = stats_dtype(device)
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: torch.Tensor | None = None

    def _grad(self, logits: torch.Tensor, batch: Batch, which: str) -> torch.Tensor:
        z = logits.detach().requires_grad_(True)
        with torch.enable_grad():
            if which == "bce":
                loss = bce_loss(z, batch.y, sample_weights=batch.w)
            else:
                loss = localized_entropy(z, batch.y, batch.cond, base_rates=self.base_rates, sample_weights=batch.w)
            (grad,) = torch.autograd.grad(loss, z)
        return grad.to(self.dtype)

    def add(self, logits: torch.Tensor, batch: Batch) -> None:
        """Add one batch (logits [B], batch with y and cond)."""
        size = int(self.base_rates.numel()) if self.base_rates is not None else int(batch.cond.max()) + 1
        cls = (batch.y >= 0.5).long()
        slot = batch.cond * 2 + cls  # condition-major, class-minor
        if self.counts is None:
            self.counts = torch.zeros(size * 2, dtype=self.dtype, device=self.device)
        self.counts.index_add_(0, slot, torch.ones_like(slot, dtype=self.dtype))
        for which in ("bce", "le"):
            g = self._grad(logits, batch, which)
            acc = self.sums.setdefault(which, torch.zeros(size * 2, dtype=self.dtype, device=self.device))
            acc.index_add_(0, slot, g * g)

    def result(self) -> dict[str, np.ndarray] | None:
        """Arrays per condition (see module docstring); None when no batch was added."""
        if self.counts is None:
            return None
        counts = self.counts.cpu().double().numpy().reshape(-1, 2)
        sums = {k: v.cpu().double().numpy().reshape(-1, 2) for k, v in self.sums.items()}
        return grad_sq_table(counts, sums["bce"], sums["le"])


def grad_sq_table(counts: np.ndarray, bce_sq: np.ndarray, le_sq: np.ndarray) -> dict[str, np.ndarray]:
    """Diagnostics from Σg² sums; inputs are [C, 2] (class 0, class 1) arrays."""
    n = counts.sum(1)
    bce_mse, le_mse = _safe_div(bce_sq.sum(1), n), _safe_div(le_sq.sum(1), n)
    bce_global = bce_sq.sum() / max(counts.sum(), 1.0)
    le_global = le_sq.sum() / max(counts.sum(), 1.0)
    return {
        "condition": np.arange(len(n)), "count": n,
        "bce_mse": bce_mse, "le_mse": le_mse, "ratio_raw": _safe_div(le_mse, bce_mse),
        "ratio_normalised": _safe_div(le_mse / le_global if le_global > 0 else le_mse * np.nan,
                                      bce_mse / bce_global if bce_global > 0 else bce_mse * np.nan),
        "class_ratio_bce": _safe_div(_safe_div(bce_sq[:, 1], counts[:, 1]), _safe_div(bce_sq[:, 0], counts[:, 0])),
        "class_ratio_le": _safe_div(_safe_div(le_sq[:, 1], counts[:, 1]), _safe_div(le_sq[:, 0], counts[:, 0])),
    }
