"""Shuffled mini-batches by indexing pre-stacked tensors (no per-sample Dataset / collate).

A split is converted to tensors once per trial (numpy arrays from Ray's object store are
read-only, so this is the one copy) and staged on the trial's device. Each epoch draws one
``torch.randperm`` from a generator seeded with the trial seed, and every batch is a gather of
contiguous chunks of that permutation: O(batch) work, no Python per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from le_ray.data.arrays import Split

__all__ = ["Batch", "TensorSplit", "to_tensors"]


@dataclass(frozen=True)
class Batch:
    """One mini-batch: x_num [B, F], x_cat [B, K] long, cond [B] long, y [B] (or None), w [B]."""
    x_num: torch.Tensor
    x_cat: torch.Tensor
    cond: torch.Tensor
    y: torch.Tensor | None
    w: torch.Tensor

    def __len__(self) -> int:
        return int(self.cond.shape[0])


def _tensor(arr: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # torch.tensor copies, which also detaches us from read-only object-store memory.
    return torch.tensor(np.ascontiguousarray(arr), dtype=dtype, device=device)


class TensorSplit:
    """A split's arrays as tensors on one device, with batch iterators (an epoch's order, or row order)."""

    def __init__(self, x_num: torch.Tensor, x_cat: torch.Tensor, cond: torch.Tensor, y: torch.Tensor | None,
                 w: torch.Tensor, *, unit_weights: bool, compute_device: torch.device | None = None):
        self.x_num, self.x_cat, self.cond, self.y, self.w = x_num, x_cat, cond, y, w
        self.unit_weights = unit_weights
        # Batches move to compute_device when the split is staged elsewhere (device.move_dataset_to_cuda=false).
        self.compute_device = compute_device if compute_device is not None else cond.device

    def __len__(self) -> int:
        return int(self.cond.shape[0])

    @property
    def device(self) -> torch.device:
        """Where batches (and so the model's inputs) live."""
        return self.compute_device

    def take(self, idx: torch.Tensor | slice) -> Batch:
        """The rows ``idx`` (int64 indices on the storage device, or a slice) as a batch on the compute device."""
        move = (lambda t: t) if self.compute_device == self.cond.device else (  # noqa: E731
            lambda t: t.to(self.compute_device, non_blocking=True))
        return Batch(move(self.x_num[idx]), move(self.x_cat[idx]), move(self.cond[idx]),
                     None if self.y is None else move(self.y[idx]), move(self.w[idx]))

    def permutation(self, generator: torch.Generator) -> torch.Tensor:
        """A fresh permutation of the rows [N] int64 from ``generator``, on the storage device: the epoch order
        every training path (eager batches, captured steps, the non-finite report) draws the same way."""
        return torch.randperm(len(self), generator=generator).to(self.cond.device)

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[Batch]:
        """Batches of the rows ``order[k·B : (k+1)·B]`` in turn (``order`` [N] int64 on the storage device;
        the last batch may be smaller)."""
        for start in range(0, order.numel(), batch_size):
            yield self.take(order[start:start + batch_size])

    def sequential(self, batch_size: int) -> Iterator[Batch]:
        """Batches in row order (views, no copy) for evaluation and prediction."""
        for start in range(0, len(self), batch_size):
            yield self.take(slice(start, start + batch_size))

    def whole(self) -> Batch:
        """The whole split as one batch on the compute device (views when already there)."""
        return self.take(slice(None))

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)


def to_tensors(split: Split, *, device: torch.device, dtype: torch.dtype, stage_on_device: bool = True) -> TensorSplit:
    """Convert a split's arrays once (floats in ``dtype``, ids as int64).

    ``stage_on_device`` (``device.move_dataset_to_cuda``): keep the whole split on ``device``;
    otherwise it stays in host memory and each batch is copied to ``device`` when drawn.
    """
    home = device if stage_on_device else torch.device("cpu")
    y = None if split.y is None else _tensor(split.y, dtype, home)
    unit = bool(np.all(split.w == 1.0))
    return TensorSplit(_tensor(split.x_num, dtype, home), _tensor(split.x_cat, torch.long, home),
                       _tensor(split.cond, torch.long, home), y, _tensor(split.w, dtype, home), unit_weights=unit,
                       compute_device=device)
