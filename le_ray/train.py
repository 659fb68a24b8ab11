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
The loop never prints: it logs through a ``logging.Logger``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from le_ray.config_schema import TrainingSettings
from le_ray.data.batches import Batch, TensorSplit
from le_ray.grad_diagnostics import GradSqAccumulator
from le_ray.losses import per_condition_le_stats
from le_ray.objectives import Objective

__all__ = ["TrainCurves", "TrainOutcome", "NonFiniteLossError", "build_optimizer", "train_model",
           "predict_logits", "evaluate_loss", "batched_loss"]

log = logging.getLogger("le_ray.train")


class NonFiniteLossError(FloatingPointError):
    """A training loss was NaN/inf; the message names epoch, batch and the conditions involved."""


@dataclass
class TrainCurves:
    """Loss curves; ``batch_*`` are filled only when ``eval_every_n_batches > 0``."""
    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
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
    if settings.lr_category is None:
        return torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    cond_params = list(model.embedding.parameters())
    cond_ids = {id(p) for p in cond_params}
    base_params = [p for p in model.parameters() if id(p) not in cond_ids]
    return torch.optim.Adam([{"params": base_params, "lr": settings.lr, "name": "base"},
                             {"params": cond_params, "lr": settings.lr_category, "name": "condition"}],
                            weight_decay=settings.weight_decay)


def _decay_lrs(optimizer: torch.optim.Optimizer, settings: TrainingSettings) -> None:
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] *= settings.lr_category_decay if i == 1 else settings.lr_decay


def _zero_base_lr_if_due(optimizer: torch.optim.Optimizer, settings: TrainingSettings, epoch: int) -> None:
    if settings.lr_zero_after_epochs is not None and epoch > settings.lr_zero_after_epochs:
        optimizer.param_groups[0]["lr"] = 0.0


@torch.no_grad()
def predict_logits(model: nn.Module, split: TensorSplit, batch_size: int) -> torch.Tensor:
    """Logits [N] of the whole split in evaluation mode (dropout off), on the split's device."""
    was_training = model.training
    model.eval()
    parts = [model(b.x_num, b.x_cat, b.cond) for b in split.sequential(batch_size)]
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
def batched_loss(model: nn.Module, split: TensorSplit, objective: Objective, batch_size: int) -> float:
    """Σ_b loss_b·W_b / Σ_b W_b over sequential batches of ``batch_size`` (evaluation mode, no history).

    The epoch-0 training loss uses this so it is on the same scale as the per-epoch training
    losses: LE's value depends on the batch it is normalised over (Σ_j term_j / W_b), so a
    whole-split LE and a mean of batch LEs differ by roughly N / B.
    """
    if len(split) == 0 or split.y is None:
        return float("nan")
    was_training = model.training
    model.eval()
    total = weight = 0.0
    for batch in split.sequential(batch_size):
        w = float(batch.w.sum())
        total += float(objective(model(batch.x_num, batch.x_cat, batch.cond), batch, use_history=False)) * w
        weight += w
    model.train(was_training)
    return total / weight if weight > 0 else float("nan")


def _nonfinite_error(loss: torch.Tensor, logits: torch.Tensor, batch: Batch, objective: Objective,
                     epoch: int, index: int) -> NonFiniteLossError:
    """Name the epoch, batch and conditions whose LE statistics or logits are not finite."""
    stats = per_condition_le_stats(logits.detach(), batch.y, batch.cond, base_rates=objective.base_rates,
                                   sample_weights=batch.w)
    present = stats["count"] > 0
    bad_logit = np.zeros_like(present)
    bad_rows = ~torch.isfinite(logits.detach())
    if bool(bad_rows.any()):
        bad_logit[np.unique(batch.cond[bad_rows].cpu().numpy())] = True
    tiny_den = stats["denominator"] <= 1e-9
    bad = np.flatnonzero(present & (bad_logit | tiny_den | ~np.isfinite(stats["numerator"])))
    return NonFiniteLossError(
        f"non-finite {objective.name} training loss ({float(loss.detach())}) at epoch {epoch}, batch {index}; "
        f"conditions involved (ids): {bad.tolist() or 'none identified (check lr / inputs)'}"
        + ("; their LE denominators are ~0 (all-negative or all-positive with a 0/1 base rate: use "
           "training.le.base_rate_prior=jeffreys)" if tiny_den[bad].any() else ""))


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
    step: int = 0


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


def _train_step(model: nn.Module, ctx: _EpochContext, batch: Batch, epoch: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(batch.x_num, batch.x_cat, batch.cond)
    if ctx.grad_sq is not None:
        ctx.grad_sq.add(logits.detach(), batch)
    loss = ctx.objective(logits, batch)
    if not bool(torch.isfinite(loss)):
        raise _nonfinite_error(loss, logits, batch, ctx.objective, epoch, index)
    if ctx.settings.debug_le_inputs:
        _debug_batch(batch, logits, epoch, index)
    ctx.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if ctx.settings.debug_gradients:
        _debug_gradients(model, epoch, index)
    ctx.optimizer.step()
    _decay_lrs(ctx.optimizer, ctx.settings)
    return loss.detach(), batch.w.sum()


def _train_epoch(model: nn.Module, ctx: _EpochContext, epoch: int) -> tuple[float, int]:
    """One pass over shuffled training batches; returns (weight-averaged loss, samples seen)."""
    model.train()
    _zero_base_lr_if_due(ctx.optimizer, ctx.settings, epoch)
    loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.train.device)
    weight_sum = torch.zeros((), dtype=torch.float64, device=ctx.train.device)
    seen = 0
    every = ctx.settings.eval_every_n_batches
    for index, batch in enumerate(ctx.train.shuffled(ctx.settings.batch_size, ctx.generator), start=1):
        loss, weight = _train_step(model, ctx, batch, epoch, index)
        loss_sum += loss.double() * weight.double()
        weight_sum += weight.double()
        seen += len(batch)
        ctx.step += 1
        if ctx.on_step is not None:
            ctx.on_step(epoch, ctx.step)
        if every > 0 and ctx.step % every == 0:
            _batch_eval(model, ctx, float(loss))
            model.train()
    return float(loss_sum / weight_sum.clamp_min(1e-300)) if seen else float("nan"), seen


def train_model(model: nn.Module, train: TensorSplit, eval_split: TensorSplit | None, objective: Objective,
                eval_objective: Objective, settings: TrainingSettings, *, seed: int, track_grad_sq: bool = False,
                on_batch_eval: Callable[[int, np.ndarray], None] | None = None,
                on_step: Callable[[int, int], None] | None = None) -> TrainOutcome:
    """Train ``model`` in place for ``settings.epochs`` epochs; return curves and timings.

    ``objective`` is the training loss (LE may carry a cross-batch history); ``eval_objective``
    the same loss without history, used for epoch-0 and per-epoch losses. Batches are shuffled
    by a ``torch.Generator`` seeded with ``seed``. ``on_batch_eval(step, eval_probabilities)`` runs
    at each mid-epoch evaluation; ``on_step(epoch, step)`` after every optimiser step.
    """
    generator = torch.Generator().manual_seed(seed)
    grad_sq = GradSqAccumulator(train.device, objective) if track_grad_sq else None
    ctx = _EpochContext(build_optimizer(model, settings), train, eval_split, objective, settings, generator,
                        TrainCurves(), grad_sq, on_batch_eval, on_step)
    bs = settings.eval_batch_size
    ctx.curves.epoch.append(0)
    ctx.curves.train_loss.append(batched_loss(model, train, eval_objective, settings.batch_size))
    ctx.curves.eval_loss.append(evaluate_loss(model, eval_split, eval_objective, bs))
    log.info("%s epoch 0: train %.6f eval %.6f", objective.name, ctx.curves.train_loss[0], ctx.curves.eval_loss[0])
    train_seconds, seen = 0.0, 0
    for epoch in range(1, settings.epochs + 1):
        epoch_start = time.perf_counter()
        train_loss, n = _train_epoch(model, ctx, epoch)
        train_seconds += time.perf_counter() - epoch_start
        seen += n
        eval_loss = evaluate_loss(model, eval_split, eval_objective, bs)
        ctx.curves.epoch.append(epoch)
        ctx.curves.train_loss.append(train_loss)
        ctx.curves.eval_loss.append(eval_loss)
        log.info("%s epoch %d/%d: train %.6f eval %.6f (%.1f s, lr %.3g)", objective.name, epoch, settings.epochs,
                 train_loss, eval_loss, time.perf_counter() - epoch_start, ctx.optimizer.param_groups[0]["lr"])
        if settings.print_embedding_table:
            log.info("condition embedding after epoch %d:\n%s", epoch, model.embedding.weight.detach().cpu().numpy())
    return TrainOutcome(ctx.curves, ctx.step, train_seconds, seen, [g["lr"] for g in ctx.optimizer.param_groups],
                        grad_sq.result() if grad_sq is not None else None)
