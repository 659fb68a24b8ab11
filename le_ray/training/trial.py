"""One trial = one (seed, loss) training run on prepared data → a small, serialisable result.

``run_trial(data, spec)`` is the single function behind every runner: a Ray task in
``le_ray.runners.repeats``, an in-process call in tests and benchmarks, and each loss of
``le_ray.runners.run``. A spec carries everything the trial needs (resolved config, loss, seed), so the
same spec on the same data gives the same numbers on CPU in any runner.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import polars as pl
import torch

from le_ray import metrics
from le_ray import seeds
from le_ray.config import Config, TrainingSettings
from le_ray.registry import LOSS_NAMES
from le_ray.data.arrays import PreparedData
from le_ray.data.batches import to_tensors
from le_ray.data.prepare import le_base_rates, le_evaluation_rates
from le_ray.training.devices import (
    DeviceChoice, apply_matmul_precision, configure_threads, flush_denormals, seed_all, select_device,
    set_determinism, tune_host_allocator,
)
from le_ray.training.evaluation import evaluate_predictions
from le_ray.training.model import build_model, count_parameters
from le_ray.training.objectives import Objective, make_objective
from le_ray.training.loop import TrainOutcome, predict_logits, train_model
from le_ray.training.spec import TrialSpec, ece_settings, evaluation_split, trial_id

__all__ = ["TrialSpec", "TrialResult", "run_trial", "trial_id", "evaluation_split", "ece_settings"]

log = logging.getLogger("le_ray.training.trial")


@dataclass
class TrialResult:
    """Plain-data outcome of a trial (JSON-serialisable except the optional ``model`` / arrays)."""
    trial_id: str
    loss: str
    seed: int
    metrics: dict[str, float]
    condition_sums: dict[str, Any]
    reliability: dict[str, list]
    curves: dict[str, list]
    eval_compare: dict[str, float]
    timings: dict[str, float]
    device: str
    node: str
    samples_per_second: float
    num_parameters: int
    evaluation_split: str
    has_labels: bool
    matmul_precision: str  # float32 matmul precision in effect while training: "highest" (IEEE FP32) or "high" (TF32)
    cuda_graphs: bool  # whether full-size training steps ran as captured CUDA graphs
    # torch's intra-op threads while training: on a CPU the count changes the order of float sums, so the same trial
    # at 1 and 2 threads differs by rounding (~1e-9 in logloss after 5 epochs here); None in records written before
    torch_threads: int | None = None
    grad_sq: dict[str, list] | None = None
    le_stats: dict[str, list] | None = None
    eval_predictions: np.ndarray | None = field(default=None, repr=False)
    test_predictions: np.ndarray | None = field(default=None, repr=False)
    model: torch.nn.Module | None = field(default=None, repr=False)

    def sums(self) -> metrics.ConditionSums | None:
        """The additive per-condition statistics of the evaluation (None without labels)."""
        return metrics.sums_from_record(self.condition_sums) if self.condition_sums else None

    def per_condition(self) -> pl.DataFrame:
        """The per-condition metrics table, computed from :meth:`sums` (empty without labels)."""
        sums = self.sums()
        return metrics.per_condition_table(sums) if sums is not None else pl.DataFrame()

    def to_record(self) -> dict[str, Any]:
        """The JSON record stored per trial (no arrays, no model)."""
        skip = {"eval_predictions", "test_predictions", "model"}
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def _compare_objectives(cfg: Config, settings: TrainingSettings, held_out: Objective, num_conditions: int,
                        device: torch.device, dtype: torch.dtype) -> dict[str, Objective]:
    """Every loss definition without history, for the trained model's evaluation loss under each
    (``training.eval_compare_losses``; empty when off): the trained loss's own ``held_out`` objective (whose eval
    curve the last value continues, its evaluation constants already built), the others with its base rates."""
    if not cfg.training.eval_compare_losses:
        return {}
    return {name: held_out if name == held_out.name else
            make_objective(name, settings, base_rates=held_out.base_rates, num_conditions=num_conditions,
                           device=device, dtype=dtype, with_history=False) for name in LOSS_NAMES}


def _setup(spec: TrialSpec, assigned_gpu_ids, num_threads) -> tuple[DeviceChoice, str, int]:
    """The trial's device, threads, seeds and determinism; returns (device choice, matmul precision in effect,
    torch's intra-op threads in effect)."""
    cfg = spec.config
    flush_denormals()  # before this process's first parallel op, whose threads inherit the mode
    choice = select_device(cfg.device, assigned_gpu_ids=assigned_gpu_ids)
    if choice.device.type == "cpu":
        tune_host_allocator()
    threads = configure_threads(num_threads or cfg.device.num_threads)
    seed_all(seeds.torch_seed(spec.seed, "model"))
    set_determinism(cfg.device.deterministic)
    return choice, apply_matmul_precision(cfg.device.matmul_precision, choice.device), threads


def _node_name() -> str:
    return os.environ.get("LE_RAY_NODE_NAME") or socket.gethostname() or platform.node()


@dataclass(frozen=True)
class _TrialLosses:
    """A trial's objectives: ``training`` (LE: its cross-batch history), ``epoch_zero`` (the same without history:
    the untrained model's training loss), ``held_out`` (the eval split's losses, LE normalised by the eval split's
    rates, its ``base_rates``), and the LE base rates [C] of training (``rates``)."""
    training: Objective
    epoch_zero: Objective
    held_out: Objective
    rates: torch.Tensor


def _trial_losses(spec: TrialSpec, data: PreparedData, split_name: str, dev: torch.device,
                  dtype: torch.dtype) -> _TrialLosses:
    """:class:`_TrialLosses` of ``spec`` (rates: :func:`le_base_rates`, :func:`le_evaluation_rates`)."""
    settings, use_true = spec.settings, spec.config.synthetic.use_true_base_rates_for_le
    prior = settings.le.base_rate_prior
    rates = torch.tensor(le_base_rates(data, prior=prior, use_true_rates=use_true), dtype=dtype, device=dev)
    eval_rates = torch.tensor(le_evaluation_rates(data, split_name, prior=prior, use_true_rates=use_true),
                              dtype=dtype, device=dev)
    pushes = data.train_condition_counts * settings.epochs  # what each LE window can ever receive
    make = lambda base, history: make_objective(spec.loss, settings, base_rates=base,  # noqa: E731
                                                num_conditions=data.num_conditions, device=dev, dtype=dtype,
                                                with_history=history, max_entries=pushes)
    return _TrialLosses(make(rates, True), make(rates, False), make(eval_rates, False), rates)


def run_trial(data: PreparedData, spec: TrialSpec, *, assigned_gpu_ids: Sequence[int | str] | None = None,
              num_threads: int | None = None, keep_predictions: bool = False, keep_model: bool = False,
              track_grad_sq: bool | None = None, on_batch_eval=None, on_step=None, on_epoch=None) -> TrialResult:
    """Train ``spec.loss`` with ``spec.seed`` on ``data`` and evaluate on ``evaluation.split``.

    ``assigned_gpu_ids``: the GPU ids Ray gave the task (None outside Ray; empty → CPU).
    ``num_threads``: torch intra-op threads (Ray runner: ``cpus_per_trial``).
    """
    t0 = time.perf_counter()
    cfg = spec.config
    choice, precision, threads = _setup(spec, assigned_gpu_ids, num_threads)
    settings = spec.settings
    dev, dtype = choice.device, choice.dtype
    split_name, split, labelled = evaluation_split(data, cfg)
    losses = _trial_losses(spec, data, split_name, dev, dtype)
    stage = cfg.device.move_dataset_to_cuda
    train_t = to_tensors(data.train, device=dev, dtype=dtype, stage_on_device=stage)
    eval_t = to_tensors(split if labelled else split.without_labels(), device=dev, dtype=dtype, stage_on_device=stage)
    model = build_model(cfg.model, num_numeric=data.num_numeric, num_conditions=data.num_conditions,
                        cat_vocab_sizes=data.cat_vocab_sizes).to(device=dev, dtype=dtype)
    grad = cfg.plots.grad_sq_by_condition if track_grad_sq is None else track_grad_sq
    t1 = time.perf_counter()
    outcome: TrainOutcome = train_model(model, train_t, eval_t, losses.training, losses.epoch_zero, settings,
                                        seed=spec.seed, track_grad_sq=grad, on_batch_eval=on_batch_eval,
                                        on_step=on_step, on_epoch=on_epoch, held_out_objective=losses.held_out,
                                        cuda_graphs=cfg.device.cuda_graphs == "auto")  # used on CUDA only
    t2 = time.perf_counter()
    logits = outcome.final_eval_logits  # the last epoch's evaluation already ran the trained model on eval_t
    if logits is None:
        logits = predict_logits(model, eval_t, settings.eval_batch_size, settings.amp)
    ev = evaluate_predictions(logits, eval_t, split, labelled=labelled, ece=ece_settings(cfg),
                              p_true=split.p_true if cfg.evaluation.synthetic_truth else None,
                              compare=_compare_objectives(cfg, settings, losses.held_out, data.num_conditions,
                                                          dev, dtype),
                              le_rates=losses.rates, num_conditions=data.num_conditions, keep_p=keep_predictions,
                              loss_batch_size=settings.batch_size)
    test_p = None
    if keep_predictions and data.test is not None and split_name != "test":
        test_t = to_tensors(data.test.without_labels(), device=dev, dtype=dtype)
        test_p = torch.sigmoid(predict_logits(model, test_t, settings.eval_batch_size, settings.amp).double()).cpu().numpy()
    t3 = time.perf_counter()
    return TrialResult(
        trial_id=spec.trial_id, loss=spec.loss, seed=spec.seed, metrics=ev.summary,
        condition_sums=ev.condition_sums, reliability=ev.reliability, curves=outcome.curves.as_dict(),
        eval_compare=ev.eval_compare,
        timings={"setup": t1 - t0, "train": outcome.train_seconds, "train_loop": t2 - t1, "evaluate": t3 - t2,
                 "host_summary": ev.summary_seconds, "total": t3 - t0},
        device=choice.reason, node=_node_name(), samples_per_second=outcome.samples_per_second,
        num_parameters=count_parameters(model), evaluation_split=split_name, has_labels=labelled,
        matmul_precision=precision, cuda_graphs=outcome.cuda_graphs, torch_threads=threads,
        grad_sq=None if outcome.grad_sq is None else {k: np.asarray(v).tolist() for k, v in outcome.grad_sq.items()},
        le_stats=ev.le_stats, eval_predictions=ev.p if keep_predictions else None, test_predictions=test_p,
        model=model if keep_model else None)
