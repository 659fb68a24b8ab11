"""The training loop: Adam with optional condition-embedding group, per-step lr decay, curves.

Schedule (per optimiser step, epochs numbered from 1):
``lr_base ← lr_base · lr_decay`` and ``lr_cond ← lr_cond · lr_category_decay`` after every step;
from an epoch ``e > lr_zero_after_epochs`` the base group's lr is 0, so only the condition
embedding (its own group when ``lr_category`` is set) keeps learning.

Curves: training losses are weight-averaged over batches of the training batch size
(Σ_b loss_b·W_b / Σ_b W_b, W_b = Σ w in batch b): at epoch 0 over sequential batches of the
untrained model (evaluation mode), at epoch e ≥ 1 over that epoch's shuffled training batches.
Eval losses are computed over the whole evaluation split at once (for LE: Σ_j num_j/den_j / W
with every row of the split), before training and after each epoch.
Normalised entropy (NE, He et al. 2014; dimensionless, 1 = as good as predicting the split's base rate):
``NE = Σ_i w_i·BCE_i / (W · H(p̄))`` with ``p̄ = Σ w·y / W`` and ``H(p) = −p ln p − (1−p) ln(1−p)``. It is
recorded for train and eval on the same per-row normalisation (``train_ne``, ``eval_ne``), unlike LE,
whose value depends on the batch it is normalised over.

No host synchronisation per optimiser step: the step never reads a tensor value on the host. A
non-finite loss is caught on the device (the first bad step and its batch's conditions are kept in
device tensors) and raised at the end of the epoch, naming epoch, batch and conditions.
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
from le_ray.training.grad_diagnostics import GradSqAccumulator
from le_ray.training.objectives import Objective

__all__ = ["TrainCurves", "TrainOutcome", "NonFiniteLossError", "build_optimizer", "train_model", "forward",
           "predict_logits", "evaluate_loss", "batched_loss", "bce_sum", "base_rate_entropy", "normalised_entropy"]

log = logging.getLogger("le_ray.training.loop")


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN/inf; the message names epoch, batch and the conditions involved."""


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

    @property
    def samples_per_second(self) -> float:
        return self.samples_seen / self.train_seconds if self.train_seconds > 0 else float("nan")


def build_optimizer(model: nn.Module, settings: TrainingSettings) -> torch.optim.Adam:
    """Adam; two groups (everything else, then ``model.embedding``) when ``lr_category`` is set."""
    # fused Adam keeps its step counters on the GPU (no per-step host reads, one kernel for all params)
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    if settings.lr_category is None:
        return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, **fused)
    cond_params = list(model.embedding.parameters())
    cond_ids = {id(p) for p in cond_params}
    base_params = [p for p in model.parameters() if id(p) not in cond_ids]
    return torch.optim.Adam([{"params": base_params, "lr": settings.lr, "name": "base"},
                             {"params": cond_params, "lr": settings.lr_category, "name": "condition"}],
                            weight_decay=settings.weight_decay, **fused)


def _decay_lrs(optimizer: torch.optim.Optimizer, settings: TrainingSettings) -> None:
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] *= settings.lr_category_decay if i == 1 else settings.lr_decay


def _zero_base_lr_if_due(optimizer: torch.optim.Optimizer, settings: TrainingSettings, epoch: int) -> None:
    if settings.lr_zero_after_epochs is not None and epoch > settings.lr_zero_after_epochs:
        optimizer.param_groups[0]["lr"] = 0.0


def forward(model: nn.Module, batch: Batch, amp: str = "off") -> torch.Tensor:
    """Logits [B] in the inputs' dtype; with ``amp="bf16"`` the model runs under bfloat16 autocast."""
    if amp == "bf16":
        with torch.autocast(device_type=batch.x_num.device.type, dtype=torch.bfloat16):
            logits = model(batch.x_num, batch.x_cat, batch.cond)
        return logits.to(batch.x_num.dtype)
    return model(batch.x_num, batch.x_cat, batch.cond)


def bce_sum(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Σ_i w_i·BCE(z_i, y_i) in nats (a 0-d tensor, detached)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.detach(), batch.y, weight=batch.w,
                                                                reduction="sum")


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
                  logits: torch.Tensor | None = None) -> float:
    """The objective over the whole split at once (LE sums per condition over all rows).

    Empty or unlabelled splits give NaN instead of raising.
    """
    if split is None or len(split) == 0 or split.y is None:
        return float("nan")
    if logits is None:
        logits = predict_logits(model, split, batch_size)
    return float(objective(logits, split.whole(), use_history=False))


@torch.no_grad()
def batched_loss(model: nn.Module, split: TensorSplit, objective: Objective, batch_size: int,
                 amp: str = "off") -> tuple[float, float]:
    """Σ_b loss_b·W_b / Σ_b W_b over sequential batches of ``batch_size`` (evaluation mode, no history).

    The epoch-0 training loss uses this so it is on the same scale as the per-epoch training
    losses: LE's value depends on the batch it is normalised over (Σ_j term_j / W_b), so a
    whole-split LE and a mean of batch LEs differ by roughly N / B. Returns (that loss, Σ w·BCE in nats).
    """
    if len(split) == 0 or split.y is None:
        return float("nan"), float("nan")
    was_training = model.training
    model.eval()
    total = weight = bce = 0.0
    for batch in split.sequential(batch_size):
        w = float(batch.w.sum())
        logits = forward(model, batch, amp)
        total += float(objective(logits, batch, use_history=False)) * w
        bce += float(bce_sum(logits, batch))
        weight += w
    model.train(was_training)
    return (total / weight if weight > 0 else float("nan")), bce


class _NonFiniteGuard:
    """The first optimiser step whose loss was not finite, and its batch's conditions, kept on the device."""

    def __init__(self, num_conditions: int, device: torch.device) -> None:
        self.first_step = torch.full((), -1, dtype=torch.long, device=device)
        self.conditions = torch.zeros(num_conditions, dtype=torch.bool, device=device)
        self.first_loss = torch.zeros((), dtype=torch.float64, device=device)

    def record(self, loss: torch.Tensor, batch: Batch, step: torch.Tensor) -> None:
        """Device-only update: no host synchronisation."""
        new = ~torch.isfinite(loss.detach()) & (self.first_step < 0)
        self.first_step = torch.where(new, step, self.first_step)
        self.first_loss = torch.where(new, loss.detach().double(), self.first_loss)
        present = torch.zeros_like(self.conditions).index_fill_(0, batch.cond, True)
        self.conditions |= present & new

    def raise_if_tripped(self, objective: Objective, epoch: int, first_step_of_epoch: int) -> None:
        """One host read per epoch; raises :class:`NonFiniteLossError` naming epoch, batch and conditions."""
        step = int(self.first_step)
        if step < 0:
            return
        ids = torch.nonzero(self.conditions).flatten().tolist()
        rates = objective.base_rates
        degenerate = rates is not None and any(float(rates[j]) <= 0 or float(rates[j]) >= 1 for j in ids
                                               if j < rates.numel())
        raise NonFiniteLossError(
            f"non-finite {objective.name} training loss ({float(self.first_loss)}) at epoch {epoch}, batch "
            f"{step - first_step_of_epoch + 1}; conditions involved (ids): {ids or 'none identified'} "
            "(check training.lr and the inputs)"
            + ("; some have an LE base rate of 0 or 1, so their LE denominator is ~0: use "
               "training.le.base_rate_prior=jeffreys" if degenerate else ""))


@dataclass
class _EpochContext:
    """Everything one epoch needs besides the model; bundled to keep signatures short."""
    optimizer: torch.optim.Optimizer
    train: TensorSplit
    eval: TensorSplit | None
    objective: Objective
    settings: TrainingSettings
    generator: torch.Generator
    curves: TrainCurves
    grad_sq: GradSqAccumulator | None
    on_batch_eval: Callable[[int, np.ndarray], None] | None
    on_step: Callable[[int, int], None] | None = None
    guard: _NonFiniteGuard | None = None
    step: int = 0
    step_t: torch.Tensor | None = None  # the step counter on the device (for the guard)


def _debug_batch(batch: Batch, logits: torch.Tensor, epoch: int, index: int) -> None:
    def rng(t: torch.Tensor) -> str:
        t = t.detach().float()
        return f"[{float(t.min()):.4g}, {float(t.max()):.4g}] mean {float(t.mean()):.4g}" if t.numel() else "[]"
    log.debug("epoch %d batch %d: x_num %s | x_cat %s | cond %s | y %s | logits %s | w %s", epoch, index,
              rng(batch.x_num), rng(batch.x_cat), rng(batch.cond), rng(batch.y), rng(logits), rng(batch.w))


def _debug_gradients(model: nn.Module, epoch: int, index: int) -> None:
    norms = {n: float(p.grad.norm()) for n, p in model.named_parameters() if p.grad is not None}
    log.debug("epoch %d batch %d gradient norms: %s", epoch, index, norms)


def _batch_eval(model: nn.Module, ctx: _EpochContext, batch_loss: float) -> None:
    """Mid-epoch evaluation every ``eval_every_n_batches`` steps."""
    logits = predict_logits(model, ctx.eval, ctx.settings.eval_batch_size) if ctx.eval is not None else None
    eval_loss = evaluate_loss(model, ctx.eval, ctx.objective, ctx.settings.eval_batch_size, logits)
    ctx.curves.batch_step.append(ctx.step)
    ctx.curves.batch_train_loss.append(batch_loss)
    ctx.curves.batch_eval_loss.append(eval_loss)
    if ctx.on_batch_eval is not None and logits is not None:
        ctx.on_batch_eval(ctx.step, torch.sigmoid(logits).double().cpu().numpy())


def _train_step(model: nn.Module, ctx: _EpochContext, batch: Batch, epoch: int, index: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimiser step; returns (loss, Σw, Σ w·BCE) as device tensors (nothing read on the host)."""
    logits = forward(model, batch, ctx.settings.amp)
    if ctx.grad_sq is not None:
        ctx.grad_sq.add(logits.detach(), batch)
    loss = ctx.objective(logits, batch)
    ctx.step_t += 1
    ctx.guard.record(loss, batch, ctx.step_t)
    if ctx.settings.debug_le_inputs:
        _debug_batch(batch, logits, epoch, index)
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if ctx.settings.debug_gradients:
        _debug_gradients(model, epoch, index)
    ctx.optimizer.step()
    _decay_lrs(ctx.optimizer, ctx.settings)
    return loss.detach(), batch.w.sum(), bce_sum(logits, batch)


def _train_epoch(model: nn.Module, ctx: _EpochContext, epoch: int) -> tuple[float, float, int]:
    """One pass over shuffled training batches; returns (weight-averaged loss, Σ w·BCE, samples seen)."""
    model.train()
    _zero_base_lr_if_due(ctx.optimizer, ctx.settings, epoch)
    sums = torch.zeros(3, dtype=torch.float64, device=ctx.train.device)  # Σ loss·W_b, Σ W_b, Σ w·BCE
    seen, first_step = 0, ctx.step + 1
    every = ctx.settings.eval_every_n_batches
    for index, batch in enumerate(ctx.train.shuffled(ctx.settings.batch_size, ctx.generator), start=1):
        loss, weight, bce = _train_step(model, ctx, batch, epoch, index)
        sums += torch.stack([loss.double() * weight.double(), weight.double(), bce.double()])
        seen += len(batch)
        ctx.step += 1
        if ctx.on_step is not None:
            ctx.on_step(epoch, ctx.step)
        if every > 0 and ctx.step % every == 0:
            _batch_eval(model, ctx, float(loss))
            model.train()
    ctx.guard.raise_if_tripped(ctx.objective, epoch, first_step)
    loss_sum, weight_sum, bce_total = sums.tolist()  # one host read per epoch
    return (loss_sum / max(weight_sum, 1e-300) if seen else float("nan")), bce_total, seen


def _record(curves: TrainCurves, model: nn.Module, eval_split: TensorSplit | None, objective: Objective,
            settings: TrainingSettings, epoch: int, train_loss: float, train_ne: float) -> None:
    """Append epoch ``epoch``'s train values and the eval split's loss and NE (whole split, history off)."""
    eval_loss = eval_ne = float("nan")
    if eval_split is not None and len(eval_split) and eval_split.y is not None:
        logits = predict_logits(model, eval_split, settings.eval_batch_size, settings.amp)
        eval_loss = evaluate_loss(model, eval_split, objective, settings.eval_batch_size, logits)
        eval_ne = normalised_entropy(float(bce_sum(logits, eval_split.whole())), base_rate_entropy(eval_split))
    curves.epoch.append(epoch)
    curves.train_loss.append(train_loss)
    curves.eval_loss.append(eval_loss)
    curves.train_ne.append(train_ne)
    curves.eval_ne.append(eval_ne)
    if epoch == 0:
        log.info("%s epoch 0: train %.6f eval %.6f", objective.name, train_loss, eval_loss)


def train_model(model: nn.Module, train: TensorSplit, eval_split: TensorSplit | None, objective: Objective,
                eval_objective: Objective, settings: TrainingSettings, *, seed: int, track_grad_sq: bool = False,
                on_batch_eval: Callable[[int, np.ndarray], None] | None = None,
                on_step: Callable[[int, int], None] | None = None,
                on_epoch: Callable[[int, nn.Module], None] | None = None) -> TrainOutcome:
    """Train ``model`` in place for ``settings.epochs`` epochs; return curves and timings.

    ``objective`` is the training loss (LE may carry a cross-batch history); ``eval_objective``
    the same loss without history, used for epoch-0 and per-epoch losses. Batches are shuffled
    by a ``torch.Generator`` on ``seed``'s ``batch_order`` stream (:mod:`le_ray.seeds`). ``on_batch_eval(step, eval_probabilities)`` runs
    at each mid-epoch evaluation; ``on_step(epoch, step)`` after every optimiser step; ``on_epoch(epoch, model)``
    after each epoch's curves are recorded (``le-ray tune`` reports its metric there).
    """
    generator = torch.Generator().manual_seed(seeds.torch_seed(seed, "batch_order"))
    grad_sq = GradSqAccumulator(train.device, objective) if track_grad_sq else None
    ctx = _EpochContext(build_optimizer(model, settings), train, eval_split, objective, settings, generator,
                        TrainCurves(), grad_sq, on_batch_eval, on_step,
                        guard=_NonFiniteGuard(model.embedding.num_embeddings, train.device),
                        step_t=torch.zeros((), dtype=torch.long, device=train.device))
    train_h = base_rate_entropy(train)
    train_loss, train_bce = batched_loss(model, train, eval_objective, settings.batch_size, settings.amp)
    _record(ctx.curves, model, eval_split, eval_objective, settings, 0, train_loss, normalised_entropy(train_bce, train_h))
    train_seconds, seen = 0.0, 0
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        train_loss, train_bce, n = _train_epoch(model, ctx, epoch)
        train_seconds += time.perf_counter() - epoch_start
        seen += n
        _record(ctx.curves, model, eval_split, eval_objective, settings, epoch, train_loss,
                normalised_entropy(train_bce, train_h))
        eval_loss = ctx.curves.eval_loss[-1]
        log.info("%s epoch %d/%d: train %.6f eval %.6f (%.1f s, lr %.3g)", objective.name, epoch, settings.epochs,
                 train_loss, eval_loss, time.perf_counter() - epoch_start, ctx.optimizer.param_groups[0]["lr"])
        if settings.print_embedding_table:
            log.info("condition embedding after epoch %d:\n%s", epoch, model.embedding.weight.detach().cpu().numpy())
        if on_epoch is not None:
            on_epoch(epoch, model)
    return TrainOutcome(ctx.curves, ctx.step, train_seconds, seen, [g["lr"] for g in ctx.optimizer.param_groups],
                        grad_sq.result() if grad_sq is not None else None)
