"""In-process stages that measure le_ray itself: ``device``, ``agreement`` (CUDA vs CPU through the trials'
objectives), ``throughput`` (every loss through ``run_trial``, beside the same-run ceiling), ``step_ratio`` and
``precision``."""

from __future__ import annotations

import os
import platform

import torch

from gpu_bench.common import (EPS32, LOSSES, SHAPES, cached_data, load_config, prepare_data, shape_config,
                              trial_figures)
from le_ray.data.batches import Batch
from le_ray.training.devices import select_device
from le_ray.training.objectives import make_objective


def stage_device(ctx: dict) -> dict:
    choice = select_device(load_config().device)
    out = {"torch": torch.__version__, "cuda_runtime": torch.version.cuda, "python": platform.python_version(),
           "chosen": choice.reason, "cpus": os.cpu_count()}
    if ctx["cuda"]:
        props = torch.cuda.get_device_properties(0)
        out.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1), sms=props.multi_processor_count,
                   capability=f"{props.major}.{props.minor}", picks_cuda=choice.device.type == "cuda")
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b| in float64 (0 when both are zero)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def _objectives(dev: torch.device, rates: torch.Tensor) -> dict:
    cfg = load_config(sets=["training.by_loss={}", "training.cross_batch.enabled=true"])
    out = {}
    for name, (loss, _history) in LOSSES.items():
        out[name] = make_objective(loss, cfg.training_for(loss), base_rates=rates.to(dev),
                                   num_conditions=rates.numel(), device=dev, dtype=torch.float32,
                                   with_history=name == "le+history")
    return out


def loss_and_logit_grad(objective, z: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, d loss / d z [N]) of ``objective`` at logits ``z`` on ``batch``'s device. ``z`` is copied into a fresh
    leaf there, so neither ``z`` nor another device's call is touched (``z.to("cpu")`` would return ``z`` itself:
    marking that as requiring grad made the CUDA copy a non-leaf without ``.grad``, and piled gradients up in ``z``)."""
    leaf = z.detach().to(batch.cond.device, copy=True).requires_grad_(True)
    loss = objective(leaf, batch)
    loss.backward()
    return loss.detach(), leaf.grad


def stage_agreement(ctx: dict) -> dict:
    """Per loss the worst relative loss / logit-gradient difference over the batches; history window sums."""
    batches, n, c = ctx["size"]["agree"]
    g = torch.Generator().manual_seed(0)
    rates = torch.exp(torch.empty(c).uniform_(-7.0, -1.0, generator=g))
    devices = (torch.device("cpu"), ctx["dev"])  # reference first
    objectives = [_objectives(d, rates) for d in devices]
    worst = {name: [0.0, 0.0] for name in LOSSES}
    empty = torch.zeros(n, 0)

    def batch(d, cond, y):  # only cond, y and w enter a loss
        return Batch(empty.to(d), empty.long().to(d), cond.to(d), y.to(d), torch.ones(n, device=d))
    for _ in range(batches):
        cond = torch.randint(0, c, (n,), generator=g)
        y = (torch.rand(n, generator=g) < rates[cond]).float()
        z = torch.randn(n, generator=g) * 2 - 3
        for name in LOSSES:
            pair = [loss_and_logit_grad(objs[name], z, batch(d, cond, y)) for d, objs in zip(devices, objectives)]
            worst[name] = [max(worst[name][0], _rel(pair[1][0], pair[0][0])),
                           max(worst[name][1], _rel(pair[1][1], pair[0][1]))]
    out = {"max_rel_loss": {k: v[0] for k, v in worst.items()}, "max_rel_grad": {k: v[1] for k, v in worst.items()},
           "loss_grad_within_1e-5": all(v[0] <= 1e-5 and v[1] <= 1e-5 for v in worst.values())}
    sums = [objs["le+history"].history.window_totals() for objs in objectives]
    rel = _rel(sums[1], sums[0])
    out.update(history_max_rel=rel, history_bound=batches * EPS32, eps32=EPS32,
               history_within_bound=rel <= batches * EPS32)
    return out


def _ceiling_for(ctx: dict, shape: str, figures: dict) -> float | None:
    """The same-run graph ceiling at the matmul precision the trial's record says it ran with (None when the
    ceiling stage did not run)."""
    ceiling = ctx["results"].get("ceiling", {}).get("samples_per_s", {})
    return ceiling.get(f"{shape}/graph/{figures['matmul_precision']}")


def stage_throughput(ctx: dict) -> dict:
    """Every loss × graphs off / auto for both shapes, beside the same-run ceiling (each trial's figures stored
    as they come, in ``ctx["stage_out"]``)."""
    out: dict = ctx["stage_out"]
    for shape in SHAPES:
        data = cached_data(ctx, shape_config(shape, ctx["size"]))
        for mode in ctx["size"]["modes"]:
            for name, (loss, history) in LOSSES.items():
                if ctx["late"]():
                    out["partial"] = "time budget reached"
                    return out
                cfg = shape_config(shape, ctx["size"], history, (f"device.cuda_graphs={mode}",))
                figures = trial_figures(cfg, loss, data, ctx["cuda"])
                ceiling = _ceiling_for(ctx, shape, figures)
                if ceiling:
                    figures.update(ceiling_samples_per_s=ceiling, vs_ceiling=figures["samples_per_s"] / ceiling)
                out[f"{shape}/{name}/{mode}"] = figures
    return out


# --------------------------------------------------------------------------- stage: step ratio

def stage_step_ratio(ctx: dict) -> dict:
    """Median step time of each loss / BCE's at the same batch, 50 and 2,000 conditions (graphs auto)."""
    size, out = ctx["size"], ctx["stage_out"]  # each condition count's ratios stored as they come
    for conditions in size["ratio_conditions"]:
        sets = [f"synthetic.num_conditions={conditions}", "synthetic.condition_mode=random",
                f"synthetic.samples_per_condition={max(size['ratio_rows'] // conditions, 4)}", "training.by_loss={}",
                f"training.batch_size={size['ratio_batch']}", "training.epochs=2", "data.use_test_set=false"]
        data = prepare_data(load_config(sets=sets))
        step = {}
        for name, (loss, history) in LOSSES.items():
            if ctx["late"]():
                out["partial"] = "time budget reached"
                return out
            hist = [] if history is None else [f"training.cross_batch.enabled={str(history).lower()}"]
            figures = trial_figures(load_config(sets=[*sets, *hist]), loss, data, ctx["cuda"])
            step[name] = figures["step_s"] or figures["batch_size"] / figures["samples_per_s"]
        out[str(conditions)] = {"step_ms": {k: v * 1000 for k, v in step.items()},
                                "vs_bce": {k: v / step["bce"] for k, v in step.items() if k != "bce"}}
    return out


# --------------------------------------------------------------------------- stage: precision

def stage_precision(ctx: dict) -> dict:
    """BCE default_net with ``device.matmul_precision`` highest and high: samples/s and eval logloss."""
    data = cached_data(ctx, shape_config("default_net", ctx["size"]))
    runs = {p: trial_figures(shape_config("default_net", ctx["size"], extra=(f"device.matmul_precision={p}",)), "bce",
                             data, ctx["cuda"]) for p in ("highest", "high")}
    hi, lo = runs["highest"], runs["high"]
    delta = None if hi["logloss"] is None or lo["logloss"] is None else lo["logloss"] - hi["logloss"]
    return {"runs": runs, "high_over_highest_samples_per_s": lo["samples_per_s"] / hi["samples_per_s"],
            "logloss_high_minus_highest": delta}

