"""The training loop: Adam with optional condition-embedding group, per-step lr decay, curves.

Schedule (per optimiser step, epochs numbered from 1):
``lr_base ← lr_base · lr_decay`` and ``lr_cond ← lr_cond · lr_category_decay`` after every step;
from an epoch ``e > lr_zero_after_epochs`` the base group's lr is 0, so only the condition
embedding (its own group when ``lr_category`` is set) keeps learning.

Curves: training losses are weight-averaged over batches of the training batch size
(Σ_b loss_b·W_b / Σ_b W_b, W_b = Σ w in batch b): at epoch 0 over sequential batches of the
untrained model (evaluation mode), at epoch e ≥ 1 over that epoch's shuffled training batches.
Eval losses are weight-averaged the same way over sequential batches of the training batch size (the earlier
system's ``evaluate()``), computed from the whole split's logits in one call
(:meth:`le_ray.training.objectives.Objective.batched_mean`), before training and after each epoch, so a
loss's train and eval curves share one scale.
Normalised entropy (NE, He et al. 2014; dimensionless, 1 = as good as predicting the split's base rate):
``NE = Σ_i w_i·BCE_i / (W · H(p̄))`` with ``p̄ = Σ w·y / W`` and ``H(p) = −p ln p − (1−p) ln(1−p)``. It is
recorded for train and eval on the same per-row normalisation (``train_ne``, ``eval_ne``), unlike LE,
whose value depends on the batch it is normalised over.

No host synchronisation per optimiser step: the step (:func:`le_ray.training.graph_step.step_fn`) never
reads a tensor value on the host; the epoch's loss sums stay on the device and are read once per epoch,
and so are the epoch-0 sums of :func:`batched_loss`. A non-finite loss is caught on the device (the
first bad step and its loss are kept in device tensors) and raised at the end of the epoch, naming
epoch, batch and the batch's conditions (re-derived from the epoch's order).
Three ways to run the same step: eager (the default, and always on CPU), static (fixed batch buffers,
lr as device tensors: the captured path run eagerly, for tests), and captured (``cuda_graphs`` on a
CUDA device: one CUDA graph replay per full-size batch; :mod:`le_ray.training.graph_step`). The epoch-0
training-loss pass takes the same path as the steps (static buffers, and a graph replay per batch when they
are captured). The last epoch's eval logits are handed back (``TrainOutcome.final_eval_logits``): the
trial's final evaluation starts from them instead of a second forward pass.
``training.amp = "bf16"`` runs the model's forward pass under ``torch.autocast`` in bfloat16; the loss is
always computed in the model's dtype (float32) from the bf16 logits.
The loop never prints: it logs through a ``logging.Logger``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from le_ray import seeds
from le_ray.config import TrainingSettings
from le_ray.data.batches import Batch, TensorSplit
from le_ray.errors import UserError
from le_ray.training import graph_step
from le_ray.training.epoch_orders import EpochOrder, EpochOrders
from le_ray.training.grad_diagnostics import GradSqAccumulator
from le_ray.training.graph_step import (LrSchedule, NonFiniteGuard, StaticLossPass, StaticSteps, StepState,
                                       add_batch_loss, bce_sum, capture_blocked, forward)
from le_ray.training.losses import stats_dtype
from le_ray.training.objectives import Objective

__all__ = ["TrainCurves", "TrainOutcome", "NonFiniteLossError", "build_optimizer", "train_model", "forward",
           "predict_logits", "evaluate_loss", "batched_loss", "bce_sum", "base_rate_entropy", "normalised_entropy"]

log = logging.getLogger("le_ray.training.loop")


class NonFiniteLossError(FloatingPointError, UserError):
    """A training loss was NaN/inf; the message names epoch, batch and the conditions involved. A UserError too:
    a diverging run is fixed by its settings (lr) or inputs, so ``le-ray run`` says so in one line (exit 2), not
    with a traceback; a sweep records it as the trial's failure."""


@dataclass
class TrainCurves:
    """Loss curves; ``batch_*`` are filled only when ``eval_every_n_batches > 0``."""
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    train_ne: list[float] = field(default_factory=list)
    eval_ne: list[float] = field(default_factory=list)
    batch_step: list[int] = field(default_factory=list)
    batch_train_loss: list[float] = field(default_factory=list)
    batch_eval_loss: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in self.__dict__.items()}


@dataclass
class TrainOutcome:
    """What the loop returns: curves, timing and optional gradient diagnostics (plain data)."""
    curves: TrainCurves
    steps: int
    train_seconds: float  # time in training epochs only (evaluation passes excluded)
    samples_seen: int
    final_lrs: list[float]
    grad_sq: dict[str, np.ndarray] | None = None
    cuda_graphs: bool = False  # whether full-size steps ran as captured CUDA graph replays
    # [N_eval] logits of the trained model on the (labelled) eval split, from the last epoch's evaluation; None
    # without a labelled eval split. On the trial's device: the final evaluation starts from them.
    final_eval_logits: torch.Tensor | None = field(default=None, repr=False)

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.train_seconds if self.train_seconds > 0 else float("nan")


def build_optimizer(model: nn.Module, settings: TrainingSettings, *, capturable: bool = False) -> torch.optim.Adam:
    """Adam; two groups (everything else, then ``model.embedding``) when ``lr_category`` is set.

    On CUDA, fused Adam (one kernel for all parameters, step counters on the device); ``capturable``
    for a step that a CUDA graph captures (no host-side step bookkeeping at all)."""
    cuda = next(model.parameters()).is_cuda
    fused = {"fused": True, "capturable": capturable} if cuda else {}
    if settings.lr_category is None:
        return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, **fused)
    cond_params = list(model.embedding.parameters())
    cond_ids = {id(p) for p in cond_params}
    base_params = [p for p in model.parameters() if id(p) not in cond_ids]
    return torch.optim.Adam([{"params": base_params, "lr": settings.lr, "name": "base"},
                             {"params": cond_params, "lr": settings.lr_category, "name": "condition"}],
                            weight_decay=settings.weight_decay, **fused)


def base_rate_entropy(split: TensorSplit) -> float:
    """W · H(p̄) of a labelled split in nats (the NE denominator); NaN when empty or unlabelled."""
    if len(split) == 0 or split.y is None:
        return float("nan")
    weight = float(split.w.double().sum())
    rate = float((split.w.double() * split.y.double()).sum()) / weight
    if rate <= 0.0 or rate >= 1.0:
        return 0.0
    return weight * -(rate * math.log(rate) + (1.0 - rate) * math.log1p(-rate))


def normalised_entropy(total_bce: float, denominator: float) -> float:
    """Σ w·BCE / (W·H(p̄)); NaN when the denominator is 0 or NaN (a single-class split)."""
    return total_bce / denominator if denominator > 0 else float("nan")


@torch.no_grad()
def predict_logits(model: nn.Module, split: TensorSplit, batch_size: int, amp: str = "off") -> torch.Tensor:
    """Logits [N] of the whole split in evaluation mode (dropout off), on the split's device."""
    was_training = model.training
    model.eval()
    parts = [forward(model, b, amp) for b in split.sequential(batch_size)]
    model.train(was_training)
    if not parts:
        return torch.empty(0, dtype=split.x_num.dtype, device=split.device)
    return torch.cat(parts)


@torch.no_grad()
def evaluate_loss(model: nn.Module, split: TensorSplit | None, objective: Objective, batch_size: int,
                  logits: torch.Tensor | None = None, *, loss_batch_size: int | None = None) -> float:
    """The objective's evaluation loss on the split (history off): :meth:`Objective.batched_mean` over sequential
    batches of ``loss_batch_size`` rows (the training batch size), or over the whole split at once when None.
    ``batch_size``: the forward pass's batch size when ``logits`` are not given.

    Empty or unlabelled splits give NaN instead of raising.
    """
    if split is None or len(split) == 0 or split.y is None:
        return float("nan")
    if logits is None:
        logits = predict_logits(model, split, batch_size)
    whole = split.whole()
    if loss_batch_size is None:
        return float(objective(logits, whole, use_history=False))
    return float(objective.batched_mean(logits, whole, loss_batch_size))


@torch.no_grad()
def batched_loss(model: nn.Module, split: TensorSplit, objective: Objective, batch_size: int,
                 amp: str = "off", static: StaticSteps | None = None) -> tuple[float, float]:
    """Σ_b loss_b·W_b / Σ_b W_b over sequential batches of ``batch_size`` (evaluation mode, no history).

    The epoch-0 training loss uses this so it is on the same scale as the per-epoch training
    losses: LE's value depends on the batch it is normalised over (Σ_j term_j / W_b), so a
    whole-split LE and a mean of batch LEs differ by roughly N / B. Returns (that loss, Σ w·BCE in nats).
    The sums stay on the device (float64, in batch order) and are read once. ``static``: the training
    steps' static path (same split and batch size), whose batch buffers carry the full-size batches, as
    CUDA graph replays when it captures (:class:`le_ray.training.graph_step.StaticLossPass`).
    """
    if len(split) == 0 or split.y is None:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    if static is not None and (static.split is not split or static.feed.batch_size != batch_size):
        raise ValueError("batched_loss: the static path given belongs to another split or batch size")
    if static is not None:
        sums = StaticLossPass(static.feed, model, objective, amp, capture=static.capture).run()
    else:
        sums = torch.zeros(3, dtype=stats_dtype(split.device), device=split.device)  # Σ loss·W_b, Σ W_b, Σ w·BCE
        for batch in split.sequential(batch_size):
            add_batch_loss(model, batch, objective, amp, sums)
    model.train(was_training)
    total, weight, bce = sums.tolist()  # one host read
    return (total / weight if weight > 0 else float("nan")), bce


@dataclass
class _EpochContext:
    """Everything one epoch needs besides the model; bundled to keep signatures short."""
    state: StepState
    train: TensorSplit
    eval: TensorSplit | None
    objective: Objective
    settings: TrainingSettings
    orders: EpochOrders
    curves: TrainCurves
    on_batch_eval: Callable[[int, np.ndarray], None] | None
    on_step: Callable[[int, int], None] | None = None
    static: StaticSteps | None = None  # the static / captured path; None: eager batches
    held_out: Objective | None = None  # the eval split's losses (its own LE rates; train_model always sets it)
    step: int = 0
    epoch: int = 0
    epoch_first_step: int = 1
    eval_entropy: float = float("nan")  # W·H(p̄) of the eval split (the NE denominator), computed once
    eval_logits: torch.Tensor | None = None  # [N_eval] logits of the latest evaluation (the model as it is now)


def _debug_batch(batch: Batch, logits: torch.Tensor, epoch: int, index: int) -> None:
    def rng(t: torch.Tensor) -> str:
        t = t.detach().float()
        return f"[{float(t.min()):.4g}, {float(t.max()):.4g}] mean {float(t.mean()):.4g}" if t.numel() else "[]"
    log.debug("epoch %d batch %d: x_num %s | x_cat %s | cond %s | y %s | logits %s | w %s", epoch, index,
              rng(batch.x_num), rng(batch.x_cat), rng(batch.cond), rng(batch.y), rng(logits), rng(batch.w))


def _debug_gradients(model: nn.Module, epoch: int, index: int) -> None:
    norms = {n: float(p.grad.norm()) for n, p in model.named_parameters() if p.grad is not None}
    log.debug("epoch %d batch %d gradient norms: %s", epoch, index, norms)


def _diagnostic_hooks(model: nn.Module, settings: TrainingSettings, grad_sq: GradSqAccumulator | None,
                      ctx_ref: list) -> tuple[Callable | None, Callable | None]:
    """(observe, after_backward) hooks of :class:`StepState` for gradient statistics and debug logging
    (they read tensors on the host, so a step that has any is never captured)."""
    def index() -> tuple[int, int]:
        ctx = ctx_ref[0]
        return ctx.epoch, ctx.step + 2 - ctx.epoch_first_step  # the step in progress, 1-based in its epoch

    def observe(logits: torch.Tensor, batch: Batch) -> None:
        if grad_sq is not None:
            grad_sq.add(logits.detach(), batch)
        if settings.debug_le_inputs:
            _debug_batch(batch, logits, *index())

    wants_observe = grad_sq is not None or settings.debug_le_inputs
    after = (lambda: _debug_gradients(model, *index())) if settings.debug_gradients else None
    return (observe if wants_observe else None), after


def _batch_eval(model: nn.Module, ctx: _EpochContext, batch_loss: float) -> None:
    """Mid-epoch evaluation every ``eval_every_n_batches`` steps."""
    logits = predict_logits(model, ctx.eval, ctx.settings.eval_batch_size) if ctx.eval is not None else None
    eval_loss = evaluate_loss(model, ctx.eval, ctx.held_out, ctx.settings.eval_batch_size, logits,
                              loss_batch_size=ctx.settings.batch_size)
    ctx.curves.batch_step.append(ctx.step)
    ctx.curves.batch_train_loss.append(batch_loss)
    ctx.curves.batch_eval_loss.append(eval_loss)
    if ctx.on_batch_eval is not None and logits is not None:
        ctx.on_batch_eval(ctx.step, torch.sigmoid(logits).double().cpu().numpy())


def _epoch_steps(ctx: _EpochContext, order: torch.Tensor):
    """(loss, rows) per optimiser step of one epoch, batches taken from ``order`` (the epoch's permutation)."""
    if ctx.static is None:
        for batch in ctx.train.batches(order, ctx.settings.batch_size):
            yield graph_step.step_fn(ctx.state, batch), len(batch)
        return
    yield from ctx.static.epoch(order)


def _raise_if_tripped(ctx: _EpochContext, order: EpochOrder) -> None:
    """One host read per epoch; raises :class:`NonFiniteLossError` naming epoch, batch and conditions.

    The batch's conditions come from the epoch's permutation, drawn again from the generator state
    saved before it (the step itself keeps no per-condition record)."""
    tripped = ctx.state.guard.tripped()
    if tripped is None:
        return
    step, loss = tripped
    index = step - ctx.epoch_first_step + 1
    size = ctx.settings.batch_size
    redrawn = ctx.train.permutation(torch.Generator().set_state(order.generator_state))
    rows = redrawn[(index - 1) * size:index * size]
    ids = torch.unique(ctx.train.cond.index_select(0, rows)).tolist()
    rates = ctx.objective.base_rates
    degenerate = rates is not None and any(float(rates[j]) <= 0 or float(rates[j]) >= 1 for j in ids
                                           if j < rates.numel())
    raise NonFiniteLossError(
        f"non-finite {ctx.objective.name} training loss ({loss}) at epoch {ctx.epoch}, batch "
        f"{index}; conditions involved (ids): {ids or 'none identified'} "
        "(check training.lr and the inputs)"
        + ("; some have an LE base rate of 0 or 1, so their LE denominator is ~0: use "
           "training.le.base_rate_prior=jeffreys" if degenerate else ""))


def _train_epoch(model: nn.Module, ctx: _EpochContext, epoch: int) -> tuple[float, float, int]:
    """One pass over shuffled training batches; returns (weight-averaged loss, Σ w·BCE, samples seen)."""
    model.train()
    ctx.state.schedule.zero_base_if_due(ctx.settings, epoch)
    ctx.state.sums.zero_()  # Σ loss·W_b, Σ W_b, Σ w·BCE of this epoch, on the device
    order = ctx.orders.next()
    ctx.epoch, ctx.epoch_first_step = epoch, ctx.step + 1
    seen, every = 0, ctx.settings.eval_every_n_batches
    for loss, rows in _epoch_steps(ctx, order.rows):
        seen += rows
        ctx.step += 1
        if ctx.on_step is not None:
            ctx.on_step(epoch, ctx.step)
        if every > 0 and ctx.step % every == 0:
            _batch_eval(model, ctx, float(loss))
            model.train()
    _raise_if_tripped(ctx, order)
    loss_sum, weight_sum, bce_total = ctx.state.sums.tolist()  # one host read per epoch
    return (loss_sum / max(weight_sum, 1e-300) if seen else float("nan")), bce_total, seen


def _record(ctx: _EpochContext, model: nn.Module, objective: Objective, epoch: int, train_loss: float,
            train_ne: float) -> None:
    """Append epoch ``epoch``'s train values and the eval split's loss (:meth:`Objective.batched_mean` over batches of
    the training batch size, history off) and NE.

    The eval logits are kept in ``ctx.eval_logits``: after the last epoch they are the trained model's, which the
    trial's final evaluation reuses instead of a second pass. One host read for the loss and Σ w·BCE together."""
    eval_loss = eval_ne = float("nan")
    split = ctx.eval
    if split is not None and len(split) and split.y is not None:
        logits = predict_logits(model, split, ctx.settings.eval_batch_size, ctx.settings.amp)
        whole = split.whole()
        with torch.no_grad():
            loss, bce = objective.batched_mean(logits, whole, ctx.settings.batch_size), bce_sum(logits, whole)
            dtype = torch.promote_types(loss.dtype, bce.dtype)  # both exact in it: the floats read are theirs
            eval_loss, eval_bce = torch.stack([loss.to(dtype), bce.to(dtype)]).tolist()
        eval_ne = normalised_entropy(eval_bce, ctx.eval_entropy)
        ctx.eval_logits = logits
    curves = ctx.curves
    curves.epoch.append(epoch)
    curves.train_loss.append(train_loss)
    curves.eval_loss.append(eval_loss)
    curves.train_ne.append(train_ne)
    curves.eval_ne.append(eval_ne)
    if epoch == 0:
        log.info("%s epoch 0: train %.6f eval %.6f", objective.name, train_loss, eval_loss)


def _step_state(model: nn.Module, train: TensorSplit, objective: Objective, settings: TrainingSettings,
                grad_sq: GradSqAccumulator | None, ctx_ref: list, *, device_lr: bool, capture: bool) -> StepState:
    """The optimiser, lr schedule, guard, sums and step counter of one training run."""
    dev = train.device
    optimizer = build_optimizer(model, settings, capturable=capture)
    observe, after_backward = _diagnostic_hooks(model, settings, grad_sq, ctx_ref)
    return StepState(model, optimizer, objective, LrSchedule(optimizer, settings, dev if device_lr else None),
                     NonFiniteGuard(dev), torch.zeros(3, dtype=stats_dtype(dev), device=dev),
                     torch.zeros((), dtype=torch.long, device=dev), settings.amp, observe, after_backward)


def _use_capture(cuda_graphs: bool, on_cuda: bool, settings: TrainingSettings, track_grad_sq: bool) -> bool:
    """Capture when asked, on CUDA, and when no diagnostic reads tensors inside the step."""
    if not cuda_graphs or not on_cuda:
        return False
    blockers = [name for name, on in (("plots.grad_sq_by_condition", track_grad_sq),
                                      ("training.debug_le_inputs", settings.debug_le_inputs),
                                      ("training.debug_gradients", settings.debug_gradients)) if on]
    if blockers:
        log.info("CUDA graphs off for this trial: %s read tensors inside the step", ", ".join(blockers))
        return False
    failed = capture_blocked()  # releases the dead graph pools of earlier trials first
    if failed:
        log.warning("CUDA graphs off for this trial: a capture failed earlier in this process (%s), which leaves "
                    "torch's caching allocator unable to capture again; the trial runs eagerly", failed)
    return not failed


def train_model(model: nn.Module, train: TensorSplit, eval_split: TensorSplit | None, objective: Objective,
                eval_objective: Objective, settings: TrainingSettings, *, seed: int, track_grad_sq: bool = False,
                on_batch_eval: Callable[[int, np.ndarray], None] | None = None,
                on_step: Callable[[int, int], None] | None = None,
                on_epoch: Callable[[int, nn.Module], None] | None = None,
                cuda_graphs: bool = False, static_steps: bool = False,
                held_out_objective: Objective | None = None) -> TrainOutcome:
    """Train ``model`` in place for ``settings.epochs`` epochs; return curves and timings.

    ``objective`` is the training loss (LE may carry a cross-batch history); ``eval_objective``
    the same loss without history, used for the epoch-0 training loss, and for the eval split's losses unless
    ``held_out_objective`` is given (LE normalised by the eval split's own rates: the trial's rule). Batches are shuffled
    by a ``torch.Generator`` on ``seed``'s ``batch_order`` stream (:mod:`le_ray.seeds`). ``on_batch_eval(step, eval_probabilities)`` runs
    at each mid-epoch evaluation; ``on_step(epoch, step)`` after every optimiser step; ``on_epoch(epoch, model)``
    after each epoch's curves are recorded (``le-ray tune`` reports its metric there).
    ``cuda_graphs``: on a CUDA device, run full-size steps as replays of one captured CUDA graph (ignored
    elsewhere, and when gradient diagnostics or debug logging read tensors inside the step).
    ``static_steps``: the captured path's buffers and device lr without capture (tests, debugging).
    """
    on_cuda = train.device.type == "cuda"  # graphs, and epoch orders drawn ahead, only there
    grad_sq = GradSqAccumulator(train.device, objective) if track_grad_sq else None
    capture = _use_capture(cuda_graphs, on_cuda, settings, track_grad_sq)
    ctx_ref: list = []
    state = _step_state(model, train, objective, settings, grad_sq, ctx_ref, device_lr=capture or static_steps,
                        capture=capture)
    static = StaticSteps(state, train, settings.batch_size, capture=capture) if capture or static_steps else None
    generator = torch.Generator().manual_seed(seeds.torch_seed(seed, "batch_order"))
    # on CUDA epoch 1's order is drawn while the epoch-0 evaluation runs, each later one during the epoch before
    with EpochOrders(train, generator, settings.epochs, ahead=on_cuda) as orders:
        ctx = _EpochContext(state, train, eval_split, objective, settings, orders, TrainCurves(), on_batch_eval,
                            on_step, static, held_out_objective or eval_objective)
        ctx_ref.append(ctx)
        train_seconds, seen = _run_epochs(model, ctx, eval_objective, on_epoch)
    return TrainOutcome(ctx.curves, ctx.step, train_seconds, seen, state.schedule.values(),
                        grad_sq.result() if grad_sq is not None else None, cuda_graphs=capture,
                        final_eval_logits=ctx.eval_logits)


def _run_epochs(model: nn.Module, ctx: _EpochContext, eval_objective: Objective,
                on_epoch: Callable[[int, nn.Module], None] | None) -> tuple[float, int]:
    """The epoch-0 evaluation, then every epoch and its evaluation; returns (seconds in epochs, samples seen)."""
    train, eval_split, settings, state, objective = ctx.train, ctx.eval, ctx.settings, ctx.state, ctx.objective
    train_h = base_rate_entropy(train)
    ctx.eval_entropy = base_rate_entropy(eval_split) if eval_split is not None else float("nan")
    train_loss, train_bce = batched_loss(model, train, eval_objective, settings.batch_size, settings.amp, ctx.static)
    _record(ctx, model, ctx.held_out, 0, train_loss, normalised_entropy(train_bce, train_h))
    train_seconds, seen = 0.0, 0
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        train_loss, train_bce, n = _train_epoch(model, ctx, epoch)
        train_seconds += time.perf_counter() - epoch_start
        seen += n
        _record(ctx, model, ctx.held_out, epoch, train_loss, normalised_entropy(train_bce, train_h))
        log.info("%s epoch %d/%d: train %.6f eval %.6f (%.1f s, lr %.3g)", objective.name, epoch, settings.epochs,
                 train_loss, ctx.curves.eval_loss[-1], time.perf_counter() - epoch_start, state.schedule.values()[0])
        if settings.print_embedding_table:
            log.info("condition embedding after epoch %d:\n%s", epoch, model.embedding.weight.detach().cpu().numpy())
        if on_epoch is not None:
            on_epoch(epoch, model)
    return train_seconds, seen
