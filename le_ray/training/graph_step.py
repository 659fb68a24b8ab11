"""One optimiser step as a pure-ish function, and its capture as a CUDA graph.

:func:`step_fn` is THE training step: forward, loss (BCE, focal, LE, LE + cross-batch history), the
non-finite guard, backward, Adam, the per-step lr decay and the epoch sums. It reads no tensor on the
host and updates its state only in place (optimiser moments and step counters, the LE history's ring
and sums, the guard, the lr tensors, the [3] epoch sums), so the same call can be

* run eagerly (the default path, and always on CPU: ``_train_epoch`` in :mod:`le_ray.training.loop`);
* run eagerly on static buffers (:class:`StaticSteps` with ``capture=False``): what CPU tests compare
  with the eager loop, step by step;
* captured once as a CUDA graph and replayed per full-size batch (:class:`StaticSteps` with
  ``capture=True``): one graph launch per optimiser step instead of several hundred kernel launches.

Static shapes and addresses: each epoch's permutation is copied into a fixed device buffer, and the
graph itself gathers batch ``cursor`` into fixed batch buffers (``index_select(out=...)``) and advances
a device cursor; a last partial batch runs eagerly through the same :func:`step_fn`. The lr of each
parameter group is a 0-d view of a device tensor multiplied in place every step (float64 master, float32
copy for fused Adam, which reads lr as float32), so ``lr_decay``, ``lr_category_decay`` and
``lr_zero_after_epochs`` (a fill between epochs) all work under replay. Adam is fused with
``capturable=True`` (step counters on the device).

Why hand capture with :class:`torch.cuda.CUDAGraph` rather than ``torch.compile(mode="reduce-overhead")``:
a trial is short (a few hundred steps) and every trial is a fresh process-level model, so compile time
(tens of seconds for forward + backward + optimiser, repeated per trial and again for every new batch
shape or dtype) would eat the gain; ``reduce-overhead`` also recompiles when a guard fails (the lr
tensors, the history's in-place state, the last partial batch), and its graph trees copy inputs that
are not static into place. Hand capture of the eager step costs one eager warm-up step and one capture
(milliseconds), uses exactly the eager kernels (so graph and eager losses agree to float rounding), and
keeps the eager function as the single definition of the step.

The epoch-0 training loss (the untrained model over sequential training batches, evaluation mode) is the
other per-batch loop of a trial: :class:`StaticLossPass` runs it through the same batch buffers, one graph
replay per full-size batch, instead of ~30 eager kernel launches per batch (~100 batches in the quickstart).

Dropout inside a graph draws from the CUDA generator's Philox offsets, which advance per replay: the
masks differ from an eager run's, so graph-vs-eager checks use dropout 0 or compare within tolerance.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn

from le_ray.config import TrainingSettings
from le_ray.data.batches import Batch, TensorSplit
from le_ray.training.losses import stats_dtype
from le_ray.training.objectives import Objective

__all__ = ["forward", "bce_sum", "add_loss_sums", "add_batch_loss", "NonFiniteGuard", "LrSchedule", "StepState",
           "step_fn", "capture", "capture_failure", "capture_blocked", "release_dead_graph_pools", "ReplayedCall", "BatchFeed",
           "StaticSteps", "StaticLossPass", "WARMUP_STEPS", "MIN_LOSS_PASS_REPLAYS"]

log = logging.getLogger("le_ray.training.graph_step")
T = TypeVar("T")

#: Eager steps (on the capture stream) before the capture. Everything a capture must not create is created on
#: first use: fused Adam's state (moments, device step counters), the capture stream's cuBLAS handle and
#: workspace, autograd's device thread, the LE history's stream; nothing in :func:`step_fn` initialises on a
#: second call. So one warm-up suffices, as in ``torch.compile``'s CUDA Graph Trees (one eager warm-up run, then
#: record). Was 3, the count of torch's whole-network capture example (DDP, which needs 11, is not used here): each
#: extra warm-up is an eager step of several hundred launches (~3.6 ms of default_net @ 32,768 on an H200, 2026-12-04).
WARMUP_STEPS = 1
#: A loss pass is captured only when at least this many full batches would replay the graph: below that the
#: capture and instantiation (a few ms) cost more than the kernel launches they save.
MIN_LOSS_PASS_REPLAYS = 8


def forward(model: nn.Module, batch: Batch, amp: str = "off") -> torch.Tensor:
    """Logits [B] in the inputs' dtype; with ``amp="bf16"`` the model runs under bfloat16 autocast.

    The autocast weight cache is off: a cached cast would be recorded into a graph and replayed
    stale; recasting gives the same values (each weight is used once per forward)."""
    if amp == "bf16":
        with torch.autocast(device_type=batch.x_num.device.type, dtype=torch.bfloat16, cache_enabled=False):
            logits = model(batch.x_num, batch.x_cat, batch.cond)
        return logits.to(batch.x_num.dtype)
    return model(batch.x_num, batch.x_cat, batch.cond)


def bce_sum(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Σ_i w_i·BCE(z_i, y_i) in nats (a 0-d tensor, detached)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.detach(), batch.y, weight=batch.w,
                                                                reduction="sum")


def add_loss_sums(sums: torch.Tensor, loss: torch.Tensor, logits: torch.Tensor, batch: Batch) -> None:
    """``sums`` [3] += (loss_b·W_b, W_b, Σ w·BCE) of one batch (W_b = Σ w of the batch; ``loss`` 0-d, in nats per
    unit weight), in ``sums``' dtype, in place and without a host read: the epoch sums of the training steps and
    of the epoch-0 loss pass alike."""
    weight = batch.w.sum().to(sums.dtype)
    sums += torch.stack([loss.to(sums.dtype) * weight, weight, bce_sum(logits, batch).to(sums.dtype)])


def add_batch_loss(model: nn.Module, batch: Batch, objective: Objective, amp: str, sums: torch.Tensor) -> None:
    """:func:`add_loss_sums` of one batch in the model's current mode, history off: the body of the epoch-0 loss
    pass, eager (:func:`le_ray.training.loop.batched_loss`) or captured (:class:`StaticLossPass`)."""
    logits = forward(model, batch, amp)
    add_loss_sums(sums, objective(logits, batch, use_history=False), logits, batch)


class NonFiniteGuard:
    """The first optimiser step whose loss was not finite, and that loss, kept on the device.

    ``record`` is two ``where`` written in place: no host read, and capturable. The batch's
    conditions are not tracked per step: the caller re-derives them from the epoch's order."""

    def __init__(self, device: torch.device) -> None:
        self.first_step = torch.full((), -1, dtype=torch.long, device=device)
        self.first_loss = torch.zeros((), dtype=stats_dtype(device), device=device)

    def record(self, loss: torch.Tensor, step: torch.Tensor) -> None:
        """Keep ``step`` (0-d int64) and ``loss`` if this is the first non-finite loss."""
        loss = loss.detach()
        new = ~torch.isfinite(loss) & (self.first_step < 0)
        self.first_step.copy_(torch.where(new, step, self.first_step))
        self.first_loss.copy_(torch.where(new, loss.to(self.first_loss.dtype), self.first_loss))

    def tripped(self) -> tuple[int, float] | None:
        """(first bad step, its loss), or None; one host read."""
        step = int(self.first_step)
        return None if step < 0 else (step, float(self.first_loss))


class LrSchedule:
    """Per-step lr decay of the optimiser's groups: ``lr_g ← lr_g · decay_g`` after every step
    (group 0: ``lr_decay``; group 1, the condition embedding: ``lr_category_decay``).

    Host mode (``device=None``, the eager path): ``group["lr"]`` stays a Python float multiplied on
    the host. Device mode (static and captured steps): ``group["lr"]`` is a 0-d view of a device
    tensor; a float64 master [G] is multiplied in place each step and copied into the float32
    tensor fused Adam reads (2 kernels whatever G). On CPU the master itself is used, so the
    arithmetic is the host mode's, bit for bit."""

    def __init__(self, optimizer: torch.optim.Optimizer, settings: TrainingSettings,
                 device: torch.device | None = None) -> None:
        self.groups = optimizer.param_groups
        factors = [settings.lr_category_decay if i == 1 else settings.lr_decay for i in range(len(self.groups))]
        self.factors = factors
        self.master = self.mirror = self.decay = None
        if device is not None:
            self.master = torch.tensor([float(g["lr"]) for g in self.groups], dtype=torch.float64, device=device)
            self.decay = torch.tensor(factors, dtype=torch.float64, device=device)
            self.mirror = self.master.float() if device.type == "cuda" else self.master
            for i, group in enumerate(self.groups):
                group["lr"] = self.mirror[i]

    def decay_(self) -> None:
        """One step's decay, in place (capturable in device mode)."""
        if self.master is None:
            for group, factor in zip(self.groups, self.factors):
                group["lr"] *= factor
            return
        self.master.mul_(self.decay)
        if self.mirror is not self.master:
            self.mirror.copy_(self.master)

    def zero_base_if_due(self, settings: TrainingSettings, epoch: int) -> None:
        """From an epoch ``e > lr_zero_after_epochs`` the base group's lr is 0 (outside any graph)."""
        if settings.lr_zero_after_epochs is None or epoch <= settings.lr_zero_after_epochs:
            return
        if self.master is None:
            self.groups[0]["lr"] = 0.0
            return
        self.master[0] = 0.0
        if self.mirror is not self.master:
            self.mirror.copy_(self.master)

    def values(self) -> list[float]:
        """Current lr of each group (a host read in device mode)."""
        if self.master is None:
            return [float(g["lr"]) for g in self.groups]
        return self.master.tolist()


@dataclass
class StepState:
    """Everything one optimiser step reads and writes besides the batch; tensors change in place.

    ``sums`` [3]: Σ loss_b·W_b, Σ W_b, Σ w·BCE over the epoch's steps (W_b = Σ w of batch b);
    ``step``: 0-d int64, optimiser steps taken (the guard's clock). ``observe(logits, batch)`` after
    the forward and ``after_backward()`` after the backward are diagnostics hooks of the eager path
    (gradient statistics, debug logging); a captured step has none."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    objective: Objective
    schedule: LrSchedule
    guard: NonFiniteGuard
    sums: torch.Tensor
    step: torch.Tensor
    amp: str = "off"
    observe: Callable[[torch.Tensor, Batch], None] | None = None
    after_backward: Callable[[], None] | None = None


def step_fn(state: StepState, batch: Batch) -> torch.Tensor:
    """One optimiser step on ``batch``; returns the loss (0-d, detached, on the device).

    forward → loss (the objective updates its history) → guard → backward → Adam → lr decay → epoch
    sums → join the history's stream. Nothing is read on the host and state only changes in place:
    this is the function the CUDA graph captures, and the one the eager path runs."""
    logits = forward(state.model, batch, state.amp)
    if state.observe is not None:
        state.observe(logits, batch)
    loss = state.objective(logits, batch)
    state.step += 1
    state.guard.record(loss, state.step)
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if state.after_backward is not None:
        state.after_backward()
    state.optimizer.step()
    state.schedule.decay_()
    loss = loss.detach()
    add_loss_sums(state.sums, loss, logits, batch)
    if state.objective.history is not None:
        state.objective.history.join()  # an update on its own stream (captured steps) rejoins within the step
    return loss


#: Why this process may capture no more CUDA graphs (``""``: it may): the error of a capture that failed. Process
#: state, deliberately: it mirrors torch's caching allocator, which is per process, and in torch 2.11 a failed
#: capture leaves it registered as capturing (``capture_end`` raises before deregistering; fixed in 2.12), so the
#: next ``empty_cache`` or capture in the process fails too. Later trials in the process then run eagerly.
_capture_failure: list[str] = []


def capture_failure() -> str:
    """The error of a failed capture in this process (later trials must not capture), or ``""``."""
    return _capture_failure[0] if _capture_failure else ""


@contextlib.contextmanager
def _failure_kept() -> Iterator[None]:
    """Keep the first error raised inside (:func:`capture_failure`) and re-raise it."""
    try:
        yield
    except BaseException as exc:
        _capture_failure.append(f"{type(exc).__name__}: {exc}")
        raise


def capture_blocked() -> str:
    """Before a trial's first capture: ``""`` when this process may capture, its dead graph pools released first
    (:func:`release_dead_graph_pools`); else why not (:func:`capture_failure`, which a failing release sets too)."""
    if not _capture_failure:
        try:
            with _failure_kept():
                release_dead_graph_pools()
        except Exception:  # kept: the reason is returned, and the trial trains eagerly
            log.debug("releasing dead graph pools failed", exc_info=True)
    return capture_failure()


def capture(graph: torch.cuda.CUDAGraph, stream: torch.cuda.Stream, body: Callable[[], T]) -> T:
    """Record ``body()`` into ``graph`` on ``stream`` (nothing runs) and return its static output.

    What ``torch.cuda.graph`` does, less two of its preamble's steps: it also empties the caching allocator
    and the pinned host cache before every capture, to leave the graph room. The pinned flush would send the
    next epoch's pinned order buffer back to cudaHostAlloc; the device flush is done once per trial instead,
    before its first capture (:func:`capture_blocked`). Each capture has a pool of its own: a pool handle shared
    with a graph already destroyed fails the next capture (torch's allocator asserts that the pool is still in
    use). The device synchronisation stays: every stream (the LE history's included) is idle when the capture
    begins, as under ``torch.cuda.graph``. ``thread_local``: only this thread's calls are bound by the capture's
    rules, not other threads' (the epoch-order draw runs beside it).

    An error inside ``body()`` (an operation a capture forbids) is raised as itself: the ``capture_end`` after
    it fails too ("operation failed due to a previous error during capture"), and that second error, which
    names nothing, is dropped. Any failure, in ``capture_begin``, the body or ``capture_end`` (a side stream not
    joined shows only there), is kept (:func:`capture_failure`): no later trial in this process captures."""
    torch.cuda.synchronize(stream.device if stream is not None else None)
    with torch.cuda.stream(stream), _failure_kept():
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            output = body()
        except BaseException:
            try:
                graph.capture_end()
            except Exception:  # the capture is already invalid; the body's error is the one that says why
                log.debug("capture_end after a failed capture body", exc_info=True)
            raise
        graph.capture_end()
    return output


def release_dead_graph_pools() -> None:
    """Return to the device the private memory pools of CUDA graphs already destroyed (earlier trials' in this
    process: their loss pass and training step). A destroyed graph's pool is only marked freeable; the caching
    allocator frees it in ``empty_cache`` or when an ordinary allocation runs out of memory, but never for an
    allocation made during a capture, which would fail with the dead pools still reserved. ``torch.cuda.graph``
    empties the cache before every capture; a trial does it once, before its first capture."""
    torch.cuda.empty_cache()


class ReplayedCall:
    """``body()`` (static inputs and outputs, no host read) on a CUDA side stream, as a graph once it can be:
    the first :data:`WARMUP_STEPS` calls run it eagerly there, the next captures it (:func:`capture`), and that
    call and every later one is one ``replay()``. Each call returns the body's output; from the capture on, the
    graph's static output, overwritten by every replay. ``what`` names the body in the debug log.

    The one warm-up / capture / replay mechanism of the training step (:class:`StaticSteps`) and the epoch-0
    loss pass (:class:`StaticLossPass`)."""

    def __init__(self, body: Callable[[], T], device: torch.device, what: str) -> None:
        self.body, self.what = body, what
        self.stream = torch.cuda.Stream(device=device)
        self.warm = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output = None

    def __call__(self) -> T:
        if self.graph is None and self.warm < WARMUP_STEPS:
            self.warm += 1
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                output = self.body()
            torch.cuda.current_stream().wait_stream(self.stream)
            return output
        if self.graph is None:
            graph = torch.cuda.CUDAGraph()
            self.stream.wait_stream(torch.cuda.current_stream())
            self.output = capture(graph, self.stream, self.body)
            self.graph = graph  # only a capture that succeeded is replayed
            log.debug("captured %s as a CUDA graph", self.what)
        self.graph.replay()  # the capture recorded the body without running it
        return self.output


class BatchFeed:
    """Fixed buffers of one full-size batch on the compute device, filled from the epoch's order.

    ``order`` [n_full·B] int64 (this epoch's permutation, full batches only) and ``cursor`` ([1] int64,
    the next batch) live on the device when the split does: :meth:`gather` copies the rows
    ``order[cursor·B : (cursor+1)·B]`` into the buffers with ``index_select(out=...)`` and advances the
    cursor, device work only, so it is captured with the step. A split kept in host memory
    (``device.move_dataset_to_cuda=false``) is gathered on the host and copied in by :meth:`fill`
    before each step instead (``gather`` is then a no-op inside the graph)."""

    def __init__(self, split: TensorSplit, batch_size: int) -> None:
        if split.y is None:
            raise ValueError("static training steps need a labelled training split (its y is None)")
        self.split, self.batch_size = split, batch_size
        self.full_batches = len(split) // batch_size
        self.on_device = split.cond.device == split.compute_device
        home, dev = split.cond.device, split.compute_device
        self.order = torch.zeros(self.full_batches * batch_size, dtype=torch.long, device=home)
        self.cursor = torch.zeros(1, dtype=torch.long, device=home)
        self.sources = [split.x_num, split.x_cat, split.cond, split.y, split.w]
        # a split smaller than one batch never fills them (every step is the eager partial batch): no rows
        rows = batch_size if self.full_batches else 0
        self.buffers = [torch.empty((rows, *t.shape[1:]), dtype=t.dtype, device=dev) for t in self.sources]
        self.batch = Batch(*self.buffers)

    def start_epoch(self, order: torch.Tensor) -> None:
        """Load this epoch's permutation (its full batches) and rewind the cursor."""
        self.order.copy_(order[: self.order.numel()])
        self.cursor.zero_()

    def gather(self) -> None:
        """Device-side gather of batch ``cursor`` into the buffers; advances the cursor (capturable)."""
        if not self.on_device:
            return
        rows = self.order.view(self.full_batches, self.batch_size).index_select(0, self.cursor).view(-1)
        for src, dst in zip(self.sources, self.buffers):
            torch.index_select(src, 0, rows, out=dst)
        self.cursor += 1

    def fill(self, index: int) -> None:
        """Host-side gather of full batch ``index`` into the buffers (split kept in host memory)."""
        if self.on_device:
            return
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        for src, dst in zip(self.sources, self.buffers):
            dst.copy_(src.index_select(0, rows), non_blocking=True)


def _gather_and_step(feed: BatchFeed, state: StepState) -> torch.Tensor:
    """The captured training step: gather the next full-size batch into ``feed``'s buffers, then :func:`step_fn`."""
    feed.gather()
    return step_fn(state, feed.batch)


class StaticSteps:
    """The epoch's full-size batches through static buffers, as graph replays when ``capture``.

    With ``capture`` (CUDA only): the first :data:`WARMUP_STEPS` steps run eagerly on a side stream,
    the next is captured on that stream and every full-size step from then on (this epoch and the
    following ones) is one ``replay()``. A last partial batch runs :func:`step_fn` eagerly."""

    def __init__(self, state: StepState, split: TensorSplit, batch_size: int, *, capture: bool) -> None:
        if capture and split.compute_device.type != "cuda":
            raise ValueError(f"CUDA graph capture needs a CUDA device, got {split.compute_device}")
        self.state, self.split, self.capture = state, split, capture
        self.feed = BatchFeed(split, batch_size)
        # a closure over the feed and state, not a bound method: the ReplayedCall (graph, memory pool) held here
        # must not hold this object back, or the pair is a cycle that outlives the trial until a gc pass
        self._body = functools.partial(_gather_and_step, self.feed, state)
        self.replayed = ReplayedCall(self._body, split.compute_device, "the training step") if capture else None
        if capture and state.objective.history is not None:
            # the history update feeds only the next step: a parallel branch of the graph, beside backward and Adam
            state.objective.history.use_stream(torch.cuda.Stream(device=split.compute_device))

    def _captured_step(self) -> torch.Tensor:
        return self.replayed()

    def epoch(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, int]]:
        """Run one epoch in ``order`` (the permutation of the split's rows, on its storage device);
        yields (loss, rows) per optimiser step."""
        feed = self.feed
        feed.start_epoch(order)
        for index in range(feed.full_batches):
            feed.fill(index)
            yield (self._captured_step() if self.capture else self._body()), feed.batch_size
        rest = order[feed.full_batches * feed.batch_size:]
        if rest.numel():
            yield step_fn(self.state, self.split.take(rest)), int(rest.numel())


class StaticLossPass:
    """:func:`le_ray.training.loop.batched_loss`'s sums over the split's sequential batches, its full-size
    batches gathered through a :class:`BatchFeed` (the training steps' own, so no second set of buffers) and,
    with ``capture``, replayed as one CUDA graph per batch instead of ~30 kernel launches each.

    Evaluation mode and no gradients (the caller sets both). With ``capture`` the first
    :data:`WARMUP_STEPS` batches run eagerly on a side stream and the next is captured, when at least
    :data:`MIN_LOSS_PASS_REPLAYS` replays would follow; the graph is dropped (its memory freed) at the end.
    The last partial batch runs eagerly. Without capture this is the same arithmetic as the eager pass on
    the same rows in the same order: CPU tests compare the two bit for bit."""

    def __init__(self, feed: BatchFeed, model: nn.Module, objective: Objective, amp: str, *, capture: bool) -> None:
        dev = feed.split.compute_device
        if capture and dev.type != "cuda":
            raise ValueError(f"CUDA graph capture needs a CUDA device, got {dev}")
        self.feed, self.model, self.objective, self.amp = feed, model, objective, amp
        self.capture = capture and feed.full_batches >= WARMUP_STEPS + MIN_LOSS_PASS_REPLAYS
        self.sums = torch.zeros(3, dtype=stats_dtype(dev), device=dev)

    def _body(self) -> None:
        self.feed.gather()
        add_batch_loss(self.model, self.feed.batch, self.objective, self.amp, self.sums)

    def run(self) -> torch.Tensor:
        """The [3] sums (Σ loss_b·W_b, Σ W_b, Σ w·BCE) on the device, batches in row order."""
        feed = self.feed
        split = feed.split
        one_batch = (ReplayedCall(self._body, split.compute_device, "the epoch-0 loss pass") if self.capture
                     else self._body)
        feed.start_epoch(torch.arange(len(split), device=split.cond.device))
        for index in range(feed.full_batches):
            feed.fill(index)
            one_batch()
        start = feed.full_batches * feed.batch_size
        if start < len(split):
            add_batch_loss(self.model, split.take(slice(start, None)), self.objective, self.amp, self.sums)
        return self.sums
