"""What every stage of the GPU check shares: sizes, the benchmark shapes and losses, their configs, the
data cache, and one timed ``run_trial``."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from le_ray.config import load_config  # noqa: E402
from le_ray.data.prepare import prepare_data  # noqa: E402
from le_ray.training.trial import TrialSpec, run_trial  # noqa: E402

EPS32 = float(torch.finfo(torch.float32).eps)
STAGES = ("device", "agreement", "ceiling", "throughput", "step_ratio", "precision", "pytest_gpu", "quickstart",
          "packing", "launches")  # launches last: a diagnostic, and the profiler is the likeliest to upset CUDA
# benchmark name → (loss, LE history on/off; None where the loss has no history)
LOSSES = {"bce": ("bce", None), "le": ("localized_entropy", False), "le+history": ("localized_entropy", True),
          "focal": ("focal", None)}
# the two model shapes: default_net (256-256-128-64, embed 4, dropout 0.01), small_net (128-64, embed 8, dropout 0.2)
SHAPES = {"default_net": {"hidden": (256, 256, 128, 64), "embed": 4, "dropout": 0.01, "batch": 32768},
          "small_net": {"hidden": (128, 64), "embed": 8, "dropout": 0.2, "batch": 2048}}
SIZES = {  # smoke: the least work that still runs every line of every in-process stage
    "full": {"agree": (50, 16384, 2000), "ceiling_rows": {"default_net": 3_240_000, "small_net": 204_800},
             "ceiling_steps": {"default_net": (200, 60), "small_net": (1000, 200)}, "default_rows": 900_000,
             "default_batch": 32768, "default_epochs": 3, "small_sets": [], "modes": ("off", "auto"),
             "ratio_rows": 2_000_000, "ratio_conditions": (50, 2000), "ratio_batch": 32768, "pack_ks": (1, 2, 4, 8)},
    "smoke": {"agree": (3, 512, 50), "ceiling_rows": {"default_net": 4096, "small_net": 4096},
              "ceiling_steps": {"default_net": (3, 3), "small_net": (3, 3)}, "default_rows": 600,
              "default_batch": 128, "default_epochs": 1, "modes": ("auto",),
              "small_sets": ["synthetic.samples_per_condition=600", "training.same_settings_for_all_losses=true",
                             "training.batch_size=128", "training.epochs=1"],
              "ratio_rows": 2000, "ratio_conditions": (4,), "ratio_batch": 128, "pack_ks": (1, 2)},
}


def default_sets(size: dict, epochs: int | None = None) -> list[str]:
    """default_net @ 32,768 for every loss (lr 0.004), 4 synthetic conditions of ``default_rows`` rows."""
    return [f"synthetic.samples_per_condition={size['default_rows']}", "training.by_loss={}",
            f"training.batch_size={size['default_batch']}", "training.lr=0.004",
            f"training.epochs={epochs or size['default_epochs']}"]


def shape_config(shape: str, size: dict, history: bool | None = None, extra: tuple[str, ...] = ()):
    """A benchmark shape's config: default_net (``default_sets``) or the quickstart profile (small_net @ 2,048);
    ``history`` turns LE's cross-batch history on or off (in the quickstart its per-loss layer sets it)."""
    if shape == "default_net":
        hist = [] if history is None else [f"training.cross_batch.enabled={str(history).lower()}"]
        return load_config(sets=[*default_sets(size), *hist, *extra])
    hist = [] if history is None else [
        f"training.by_loss.localized_entropy.by_source.synthetic.cross_batch.enabled={str(history).lower()}"]
    return load_config(profile="quickstart", sets=[*size["small_sets"], *hist, *extra])


def cached_data(ctx: dict, cfg):
    """``prepare_data(cfg)``, once per data fingerprint settings in this run (several stages share data)."""
    key = json.dumps([cfg.synthetic.model_dump(mode="json"), cfg.data.model_dump(mode="json"), cfg.project.seed])
    cache = ctx.setdefault("data_cache", {})
    if key not in cache:
        cache[key] = prepare_data(cfg)
    return cache[key]


class StepClock:
    """``on_step`` hook: a CUDA event (or a host time on CPU) after every optimiser step, per epoch."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.marks = cuda, []

    def __call__(self, epoch: int, step: int) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((epoch, event))
        else:
            self.marks.append((epoch, time.perf_counter()))

    def median_step_s(self) -> float | None:
        """Median interval between consecutive steps of one epoch, epochs ≥ 2 when there are several (capture and
        warm-up live in the first); None when no step was seen."""
        epochs = {e for e, _ in self.marks}
        keep = [(e, m) for e, m in self.marks if e >= 2] if len(epochs) > 1 else self.marks
        gaps = []
        for (e0, a), (e1, b) in zip(keep[:-1], keep[1:]):
            if e0 == e1:
                gaps.append(a.elapsed_time(b) / 1000.0 if self.cuda else b - a)
        return statistics.median(gaps) if gaps else None


def trial_figures(cfg, loss: str, data, cuda: bool, seed: int | None = None) -> dict:
    """One ``run_trial``: in-trial and steady samples/s, timings, eval metrics, what the record says it used."""
    clock = StepClock(cuda)
    spec = TrialSpec.make(cfg, loss, cfg.project.seed if seed is None else seed, data.fingerprint)
    result = run_trial(data, spec, on_step=clock)
    if cuda:
        torch.cuda.synchronize()
    record, step_s = result.to_record(), clock.median_step_s()
    t = result.timings
    return {"samples_per_s": result.samples_per_second, "batch_size": spec.settings.batch_size,
            "steady_samples_per_s": spec.settings.batch_size / step_s if step_s else None, "step_s": step_s,
            "steps_timed": len(clock.marks), "train_s": t["train"], "total_s": t["total"],
            "trial_over_train": t["total"] / t["train"] if t["train"] else None,
            # where the rest of the trial went: tensors + model, epoch-0 and per-epoch evaluations, the final
            # evaluation (its host summary apart)
            "phases_s": {"setup": t["setup"], "train": t["train"], "epoch_evaluations": t["train_loop"] - t["train"],
                         "final_evaluation": t["evaluate"], "host_summary": t["host_summary"]},
            "logloss": result.metrics.get("logloss"), "ece": result.metrics.get("ece"), "device": result.device,
            "cuda_graphs": record.get("cuda_graphs"), "matmul_precision": record.get("matmul_precision"),
            "torch_matmul_precision": torch.get_float32_matmul_precision(),
            # the caching allocator's reserve after the trial: flat over a stage's trials unless memory (a dead
            # graph's pool) outlives its trial
            "reserved_mib_after": torch.cuda.memory_reserved() / 2**20 if cuda else None}

