"""Each training epoch's row order, drawn one epoch ahead so that the host never holds up the device.

The order of epoch e is ``torch.randperm(N, generator=g)`` [N] int64 on the host, with ``g`` the trial's
``batch_order`` generator (:mod:`le_ray.seeds`): the same permutation on every device, so a CUDA trial
trains on the batches a CPU trial trains on, and the non-finite report can draw an epoch's order again
from the generator state saved before it.

Why ahead: drawing the order is serial host work of ~20 ns per row (58 ms for 2.9M rows on the 2-core
development VM). On a GPU an epoch of captured steps over those rows takes ~85 ms (one H200), so a draw
made when the epoch starts left the device idle for a third of the epoch. With ``ahead`` (the trial's
compute device is CUDA) the next epoch's order is drawn in a background thread while the device runs
this epoch and the evaluation between epochs (``randperm`` releases the GIL), into pinned host memory when
the split lives on the GPU, and is uploaded with a non-blocking copy on the current stream. Without
``ahead`` (CPU: the cores are busy training) each order is drawn when it is asked for, exactly as before.
The sequence of draws from ``g``, and so every order, is the same either way.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from le_ray.data.batches import TensorSplit

__all__ = ["EpochOrder", "EpochOrders"]


@dataclass(frozen=True)
class EpochOrder:
    """One epoch's order: ``rows`` [N] int64 on the split's storage device, and ``generator_state``, the
    batch-order generator's state just before it was drawn (drawing from it again gives ``rows``)."""
    rows: torch.Tensor
    generator_state: torch.Tensor


class EpochOrders:
    """The orders of epochs 1..``epochs`` of ``split``, in sequence, from ``generator``.

    ``next()`` returns the next epoch's order; with ``ahead`` the following one is already being drawn
    in a background thread. ``close()`` (or the context manager) waits for a draw in flight and stops the
    thread; an unused draw is dropped."""

    def __init__(self, split: TensorSplit, generator: torch.Generator, epochs: int, *, ahead: bool) -> None:
        self.split, self.generator, self.remaining = split, generator, int(epochs)
        self.pinned = split.cond.device.type == "cuda"  # upload from page-locked memory without blocking
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="le_ray-epoch-order") if ahead else None
        self._pending: Future | None = None
        self._submit()

    def _buffer(self) -> torch.Tensor:
        """A host buffer [N] int64 for one order, page-locked when the split is on the GPU. Allocated in the
        caller's thread (the CUDA context of the trial's device); the caching host allocator hands a block
        back only after the copies recorded on it have finished."""
        return torch.empty(len(self.split), dtype=torch.long, pin_memory=self.pinned)

    def _draw(self, host: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(``host`` filled with the next permutation, the generator's state before it): the draw of
        ``TensorSplit.permutation`` (``torch.randperm`` with ``out=`` draws the same numbers)."""
        state = self.generator.get_state()
        return torch.randperm(host.numel(), generator=self.generator, out=host), state

    def _submit(self) -> None:
        if self._pool is not None and self.remaining > 0:
            self._pending = self._pool.submit(self._draw, self._buffer())

    def next(self) -> EpochOrder:
        """The next epoch's order on the split's storage device; starts drawing the one after (``ahead``)."""
        if self.remaining <= 0:
            raise RuntimeError("EpochOrders: every epoch's order was already taken")
        host, state = self._pending.result() if self._pending is not None else self._draw(self._buffer())
        self._pending = None
        self.remaining -= 1
        self._submit()
        rows = host.to(self.split.cond.device, non_blocking=self.pinned)
        return EpochOrder(rows, state)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool, self._pending = None, None

    def __enter__(self) -> "EpochOrders":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
