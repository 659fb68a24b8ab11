"""The one GPU benchmark (issue 19): about 4 minutes on one H200, one JSON, one table with targets and pass/fail.

    bash bench/gpu_run.sh                        # on the device: wheels, then this script, JSON + log into $OUT
    python bench/gpu_check.py [--out FILE] [--smoke] [--only a,b] [--skip a,b]

Stages, in order (each timed and wrapped: a crash is recorded in the JSON and the next stage runs; a CUDA error
that poisons the process's context moves the remaining stages into a fresh process; no stage starts after
``BUDGET_S``; a watchdog writes what exists and exits at ``HARD_S``):

``device``       the GPU, torch / CUDA versions, ``select_device``'s choice;
``agreement``    CUDA vs CPU in float32 through ``make_objective`` (the objectives trials use): BCE, focal, LE and
                 LE + history over 50 batches of 16,384 rows and 2,000 conditions — max relative difference of
                 the loss and of its logit gradient (target ≤ 1e-5), and of the LE history's window sums, judged
                 against float32 rounding: ≤ N·eps32 with N the number of batches accumulated;
``ceiling``      a plain-PyTorch loop of the same MLP shapes (default_net @ 32,768, small_net @ 2,048: gather,
                 forward, BCE, backward, fused Adam with ``capturable=True``, lr decay on the device), eager and
                 with the whole step captured in one ``torch.cuda.CUDAGraph``, at matmul precision highest and high;
``throughput``   in-trial samples/s per loss (BCE, LE, LE + history, focal) through ``run_trial``: default_net @
                 32,768 on 3.6M synthetic rows and the quickstart shape (small_net @ 2,048), each with
                 ``device.cuda_graphs`` off and auto; beside each, the same-run ceiling and le_ray / ceiling; the
                 steady step rate from CUDA events recorded at every ``on_step``; whole trial / training time;
``step_ratio``   LE + history, LE and focal step time / BCE step time at 50 and 2,000 conditions (batch 32,768,
                 graphs auto, median event-timed step);
``precision``    ``device.matmul_precision`` highest vs high: BCE default_net samples/s and eval logloss;
``pytest_gpu``   ``pytest -m gpu`` over every test file with a gpu mark;
``quickstart``   ``python -m le_ray.repeats --profile quickstart`` on the GPU (local Ray), results under /tmp: wall;
``packing``      1, 2, 4 and 8 BCE trials at once in separate processes on the one GPU (quickstart shape and
                 default_net, graphs auto): trials per minute and training samples per second of wall.

Targets (issue 19, one H200): BCE default_net @ 32,768 ≥ 25M samples/s and ≥ 0.85× the same-run ceiling;
small_net @ 2,048 ≥ 5M samples/s; LE + history ≤ 1.15× a BCE step, LE and focal ≤ 1.10×; whole trial ≤ 1.3×
training; the quickstart sweep ≤ 30 s wall; CUDA vs CPU as above; ``pytest -m gpu`` passes.

Without CUDA (or with ``--smoke``) every in-process stage runs on the CPU at tiny sizes to prove it works (the
JSON says ``"cuda": false`` and its figures mean nothing); ``packing`` then runs its trials in threads, and
``pytest_gpu`` / ``quickstart`` (subprocesses that need CUDA and Ray) only record their command lines.
Exit status 0 unless a stage crashed.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import faulthandler
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from le_ray.config import load_config  # noqa: E402
from le_ray.data.batches import Batch  # noqa: E402
from le_ray.data.prepare import prepare_data  # noqa: E402
from le_ray.training.devices import select_device  # noqa: E402
from le_ray.training.objectives import make_objective  # noqa: E402
from le_ray.training.trial import TrialSpec, run_trial  # noqa: E402

BUDGET_S = 330.0  # no stage starts after 5.5 minutes
HARD_S = 350.0  # the watchdog writes the JSON and the table, then exits
EPS32 = float(torch.finfo(torch.float32).eps)
STAGES = ("device", "agreement", "ceiling", "throughput", "step_ratio", "precision", "pytest_gpu", "quickstart",
          "packing")
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


# --------------------------------------------------------------------------- configs and trials

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
            "torch_matmul_precision": torch.get_float32_matmul_precision()}


# --------------------------------------------------------------------------- stage: device

def stage_device(ctx: dict) -> dict:
    choice = select_device(load_config().device)
    out = {"torch": torch.__version__, "cuda_runtime": torch.version.cuda, "python": platform.python_version(),
           "chosen": choice.reason, "cpus": os.cpu_count()}
    if ctx["cuda"]:
        props = torch.cuda.get_device_properties(0)
        out.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1), sms=props.multi_processor_count,
                   capability=f"{props.major}.{props.minor}", picks_cuda=choice.device.type == "cuda")
    return out


# --------------------------------------------------------------------------- stage: agreement

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


def stage_agreement(ctx: dict) -> dict:
    """Per loss the worst relative loss / logit-gradient difference over the batches; history window sums."""
    batches, n, c = ctx["size"]["agree"]
    g = torch.Generator().manual_seed(0)
    rates = torch.exp(torch.empty(c).uniform_(-7.0, -1.0, generator=g))
    objectives = [_objectives(d, rates) for d in (torch.device("cpu"), ctx["dev"])]  # reference first
    devices = (torch.device("cpu"), ctx["dev"])
    worst = {name: [0.0, 0.0] for name in LOSSES}
    empty = torch.zeros(n, 0)

    def batch(d, cond, y):  # only cond, y and w enter a loss
        return Batch(empty.to(d), empty.long().to(d), cond.to(d), y.to(d), torch.ones(n, device=d))
    for _ in range(batches):
        cond = torch.randint(0, c, (n,), generator=g)
        y = (torch.rand(n, generator=g) < rates[cond]).float()
        z = torch.randn(n, generator=g) * 2 - 3
        for name in LOSSES:
            pair = []
            for d, objs in zip(devices, objectives):
                zd = z.to(d).requires_grad_(True)
                loss = objs[name](zd, batch(d, cond, y))
                loss.backward()
                pair.append((loss, zd.grad))
            worst[name] = [max(worst[name][0], _rel(pair[1][0], pair[0][0])),
                           max(worst[name][1], _rel(pair[1][1], pair[0][1]))]
    out = {"max_rel_loss": {k: v[0] for k, v in worst.items()}, "max_rel_grad": {k: v[1] for k, v in worst.items()},
           "loss_grad_within_1e-5": all(v[0] <= 1e-5 and v[1] <= 1e-5 for v in worst.values())}
    sums = [objs["le+history"].history.window_totals() for objs in objectives]
    rel = _rel(sums[1], sums[0])
    out.update(history_max_rel=rel, history_bound=batches * EPS32, eps32=EPS32,
               history_within_bound=rel <= batches * EPS32)
    return out


# --------------------------------------------------------------------------- stage: ceiling

class PlainMLP(nn.Module):
    """The benchmark shapes in plain PyTorch: concat(x_num, E[c]) → (Linear, SiLU, Dropout)… → Linear → z."""

    def __init__(self, num_numeric: int, num_conditions: int, embed: int, hidden, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_conditions, embed)
        layers, width = [], num_numeric + embed
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
            width = h
        self.net = nn.Sequential(*layers, nn.Linear(width, 1))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, self.embedding(c)], dim=1)).squeeze(-1)


def _ceiling_parts(dev: torch.device, shape: dict, rows: int, graph: bool):
    """Data on the device, model, fused Adam (capturable, device lr when ``graph``), static batch index, step."""
    x, c = torch.randn(rows, 3, device=dev), torch.randint(0, 4, (rows,), device=dev)
    y = (torch.rand(rows, device=dev) < 0.02).float()
    model = PlainMLP(3, 4, shape["embed"], shape["hidden"], shape["dropout"]).to(dev)
    fused = {"fused": True} if dev.type == "cuda" else {}
    lr = torch.tensor(0.004, device=dev) if graph else 0.004
    opt = torch.optim.Adam(model.parameters(), lr=lr, capturable=graph, **fused)
    idx, total = torch.zeros(shape["batch"], dtype=torch.long, device=dev), torch.zeros((), device=dev)

    def step() -> None:  # what the graph holds: gather, forward, BCE, backward, Adam, lr decay, loss sum
        z = model(x.index_select(0, idx), c.index_select(0, idx))
        loss = F.binary_cross_entropy_with_logits(z, y.index_select(0, idx))
        loss.backward()
        opt.step()
        group = opt.param_groups[0]
        if torch.is_tensor(group["lr"]):
            group["lr"].mul_(0.999)  # on the device: the decay replays with the graph
        elif not graph:
            group["lr"] *= 0.999
        total.add_(loss.detach())

    perm = torch.randperm(rows, device=dev)

    def feed(s: int) -> None:  # the next batch's row ids into the static index buffer (outside the graph)
        start = (s * shape["batch"]) % (rows - shape["batch"] + 1)
        idx.copy_(perm[start:start + shape["batch"]])
    return opt, step, feed


def _captured(opt, step, feed):
    """Warm up on a side stream, capture one whole step, return ``run(s)`` = feed + replay."""
    feed(0)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)  # backward then allocates .grad from the graph's private pool
    with torch.cuda.graph(graph):
        step()

    def run(s: int) -> None:
        feed(s)
        graph.replay()
    return run


def ceiling_rate(dev: torch.device, shape: dict, rows: int, steps: int, graph: bool) -> float:
    """Training samples/s of the plain loop (timed over ``steps`` steps after warm-up)."""
    opt, step, feed = _ceiling_parts(dev, shape, rows, graph)

    def eager(s: int) -> None:
        feed(s)
        opt.zero_grad(set_to_none=True)
        step()
    run = _captured(opt, step, feed) if graph else eager
    for s in range(5):
        run(s)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    for s in range(steps):
        run(s)
    sync()
    return steps * shape["batch"] / (time.perf_counter() - started)


def stage_ceiling(ctx: dict) -> dict:
    """Eager and captured plain loops per shape, at matmul precision highest and high (restored afterwards)."""
    before, out, errors = torch.get_float32_matmul_precision(), {}, {}
    modes = ("eager", "graph") if ctx["cuda"] else ("eager",)
    try:
        for name, shape in SHAPES.items():
            shape = dict(shape, batch=shape["batch"] if ctx["cuda"] else 256)
            rows, (g_steps, e_steps) = ctx["size"]["ceiling_rows"][name], ctx["size"]["ceiling_steps"][name]
            for precision in ("highest", "high") if ctx["cuda"] else ("highest",):  # CPU "high" may mean bf16
                torch.set_float32_matmul_precision(precision)
                for mode in modes:
                    try:  # one failed capture must not lose the other ceilings
                        out[f"{name}/{mode}/{precision}"] = ceiling_rate(
                            ctx["dev"], shape, rows, g_steps if mode == "graph" else e_steps, mode == "graph")
                    except Exception as exc:  # noqa: BLE001
                        errors[f"{name}/{mode}/{precision}"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        torch.set_float32_matmul_precision(before)
    return {"samples_per_s": out, "errors": errors,
            "batch": {k: v["batch"] if ctx["cuda"] else 256 for k, v in SHAPES.items()}}


# --------------------------------------------------------------------------- stage: throughput

def _ceiling_for(ctx: dict, shape: str, figures: dict) -> float | None:
    """The same-run graph ceiling at the matmul precision the trial's record says it ran with (None when the
    ceiling stage did not run)."""
    ceiling = ctx["results"].get("ceiling", {}).get("samples_per_s", {})
    return ceiling.get(f"{shape}/graph/{figures['matmul_precision']}")


def stage_throughput(ctx: dict) -> dict:
    """Every loss × graphs off / auto for both shapes, beside the same-run ceiling."""
    out: dict = {}
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
    size, out = ctx["size"], {}
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


# --------------------------------------------------------------------------- subprocess stages

def _env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_DISABLE_USAGE_STATS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run_command(cmd: list[str], timeout: float) -> dict:
    """Run ``cmd`` in its own session; past ``timeout`` SIGTERM the whole group (le_ray stops cleanly and Ray's
    local daemons go with it), then SIGKILL. Returns returncode (None on timeout), stdout, stderr, wall_s."""
    import signal

    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for sig, grace in ((signal.SIGTERM, 8), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                out, err = proc.communicate(timeout=grace)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                out, err = "", ""
        return {"returncode": None, "timed_out": True, "stdout": out or "", "stderr": err or "",
                "wall_s": time.perf_counter() - started}
    return {"returncode": proc.returncode, "stdout": out, "stderr": err, "wall_s": time.perf_counter() - started}


def gpu_test_files() -> list[str]:
    """Test files that carry a gpu mark (``pytest.mark.gpu``)."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())


def stage_pytest(ctx: dict) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *gpu_test_files()]
    if not ctx["cuda"]:
        return {"skipped": "no CUDA (smoke)", "command": cmd}
    done = run_command(cmd, ctx["timeout"](150))
    lines = done["stdout"].strip().splitlines()
    return {"returncode": done["returncode"], "summary": lines[-1:], "command": cmd, "wall_s": done["wall_s"],
            "failures": [line for line in lines if line.startswith(("FAILED", "ERROR"))][:20],
            "tail": (done["stdout"] + done["stderr"])[-3000:] if done["returncode"] != 0 else ""}


def _sweep_spans(root: Path, launched_at: float | None = None, ended_at: float | None = None) -> dict:
    """From the stored trial files: trials, devices, first start → last finish, mean in-trial samples/s, and where
    a sweep trial's time goes. ``launched_at`` / ``ended_at`` (epoch seconds around the driver process) split the
    rest of the wall: launch → first trial start (imports, data, Ray start, worker start-up and warm-up) and
    last trial finish → process exit (report, Ray shutdown)."""
    records = [json.loads(p.read_text()) for p in sorted((root / "trials").glob("*.json"))]
    if not records:
        return {"trials": 0}
    start, end = min(r["started_at"] for r in records), max(r["finished_at"] for r in records)
    phases = ("attach_data", "setup", "train", "train_loop", "evaluate", "host_summary", "total")
    out = {"trials": len(records), "devices": sorted({r["device"].split(" ")[0] for r in records}),
           "trials_span_s": end - start, "gpu_ids": sorted({",".join(r.get("gpu_ids", [])) for r in records}),
           "mean_trial_s": statistics.mean(r["timings"]["total"] for r in records),
           "mean_samples_per_s": statistics.mean(r["samples_per_second"] for r in records),
           # median seconds per phase over the sweep's trials, and the task's wall (start → finish in the worker)
           "median_phases_s": {k: statistics.median(r["timings"].get(k, float("nan")) for r in records) for k in phases},
           "median_task_s": statistics.median(r["finished_at"] - r["started_at"] for r in records),
           "workers": len({r.get("worker_pid") for r in records})}
    if launched_at is not None:
        out["launch_to_first_trial_s"] = start - launched_at
    if ended_at is not None:
        out["last_trial_to_exit_s"] = ended_at - end
    return out


def stage_quickstart(ctx: dict) -> dict:
    results = Path(tempfile.mkdtemp(prefix="le_ray_gpu_check_"))
    cmd = [sys.executable, "-m", "le_ray.repeats", "--profile", "quickstart", "--results-dir", str(results),
           "--name", "quickstart"]
    if not ctx["cuda"]:
        return {"skipped": "no CUDA (smoke): starts Ray", "command": cmd}
    launched_at = time.time()
    done = run_command(cmd, ctx["timeout"](180))
    lines = done["stdout"].splitlines()
    return {"returncode": done["returncode"], "wall_s": done["wall_s"],
            "data_line": [line for line in lines if line.startswith("data prepared")][:1],
            "wall_line": [line for line in lines if line.startswith("wall ")][:1],  # the driver's own phase split
            **_sweep_spans(results / "quickstart", launched_at, launched_at + done["wall_s"]),
            "tail": (done["stdout"] + done["stderr"])[-2500:] if done["returncode"] != 0 else ""}


# --------------------------------------------------------------------------- stage: packing

_WORKER: dict = {}


def packing_configs(size: dict) -> dict:
    """The two packed shapes: the quickstart profile and default_net (1 epoch), graphs auto."""
    quick = load_config(profile="quickstart", sets=[*size["small_sets"], "device.cuda_graphs=auto"])
    return {"quickstart": quick, "default_net": load_config(sets=[*default_sets(size, 1), "device.cuda_graphs=auto"])}


def pack_worker_init(size_name: str) -> None:
    """Per worker process: both datasets once, then one short trial (CUDA context, cuBLAS, first capture)."""
    size = SIZES[size_name]
    for name, cfg in packing_configs(size).items():
        _WORKER[name] = (cfg, prepare_data(cfg))
    cfg, data = _WORKER["quickstart"]
    run_trial(data, TrialSpec.make(cfg, "bce", 0, data.fingerprint), num_threads=1)


def pack_worker_ready(hold_s: float) -> int:
    """Holds its worker for ``hold_s`` so that every worker of the pool starts (and initialises) at once."""
    time.sleep(hold_s)
    return os.getpid()


def packed_trial(name: str, seed: int, start_at: float) -> dict:
    """One BCE trial of shape ``name`` starting at ``start_at`` (epoch seconds), with 1 CPU thread."""
    cfg, data = _WORKER[name]
    time.sleep(max(0.0, start_at - time.time()))
    started = time.time()
    result = run_trial(data, TrialSpec.make(cfg, "bce", seed, data.fingerprint), num_threads=1)
    return {"start": started, "end": time.time(), "samples_per_s": result.samples_per_second,
            "train_samples": result.samples_per_second * result.timings["train"], "device": result.device,
            "pid": os.getpid()}


def _group(pool, name: str, k: int) -> dict:
    start_at = time.time() + 0.5
    runs = [f.result() for f in [pool.submit(packed_trial, name, 100 + i, start_at) for i in range(k)]]
    wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return {"wall_s": wall, "trials_per_min": 60.0 * k / wall, "train_samples_per_s_of_wall":
            sum(r["train_samples"] for r in runs) / wall, "mean_in_trial_samples_per_s":
            statistics.mean(r["samples_per_s"] for r in runs), "processes": len({r["pid"] for r in runs}),
            "devices": sorted({r["device"].split(" ")[0] for r in runs})}


def stage_packing(ctx: dict) -> dict:
    """k = 1, 2, 4, 8 trials at once per shape (processes on CUDA, threads in the smoke run); speed-up vs k = 1."""
    ks = ctx["size"]["pack_ks"]
    processes = ctx.get("pack_processes", ctx["cuda"])
    if processes:
        pool = cf.ProcessPoolExecutor(max(ks), mp_context=multiprocessing.get_context("spawn"),
                                      initializer=pack_worker_init, initargs=(ctx["size_name"],))
    else:
        pack_worker_init(ctx["size_name"])
        pool = cf.ThreadPoolExecutor(max(ks))
    out: dict = {"mode": "processes" if processes else "threads (smoke)"}
    with pool:
        started = time.perf_counter()
        hold, pids = (1.0 if processes else 0.0), set()
        while len(pids) < max(ks) and time.perf_counter() - started < 120:  # until every worker has initialised
            pids = {f.result() for f in [pool.submit(pack_worker_ready, hold) for _ in range(max(ks))]}
            if not processes:
                break
        out.update(workers=len(pids), workers_ready_s=time.perf_counter() - started)
        for name in ("quickstart", "default_net"):
            groups = {}
            for k in ks:
                if ctx["late"]():
                    out["partial"] = "time budget reached"
                    break
                groups[str(k)] = _group(pool, name, k)
            for g in groups.values():
                g["speedup_vs_1"] = g["trials_per_min"] / groups["1"]["trials_per_min"] if "1" in groups else None
            out[name] = groups
            if groups:  # the packing to choose: the fewest trials per GPU within 5% of the best throughput
                best = max(g["trials_per_min"] for g in groups.values())
                out[f"{name}_choose_k"] = min(int(k) for k, g in groups.items() if g["trials_per_min"] >= 0.95 * best)
    return out


# --------------------------------------------------------------------------- the table

def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if abs(v) >= 1e5:
            return f"{v / 1e6:.2f}M"
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 100 else f"{v:.3f}"
    return str(v)


def _row(rows: list, what: str, value, target: str = "", ok: bool | None = None) -> None:
    rows.append({"what": what, "value": value, "target": target,
                 "pass": None if ok is None or value is None else bool(ok)})


def _speed_row(r: dict, rows: list, what: str, value, target: str = "", ok: bool | None = None) -> None:
    """A speed figure: judged against its target only when it was measured on CUDA."""
    _row(rows, what, value, target if r.get("cuda") else "", ok if r.get("cuda") else None)


def _throughput_rows(r: dict, rows: list) -> None:
    tp = r.get("throughput", {})
    for key, f in tp.items():
        if not isinstance(f, dict):
            continue
        shape, loss, mode = key.split("/")
        label = f"{shape} {loss} graphs={mode}: samples/s (steady {_fmt(f.get('steady_samples_per_s'))})"
        target, ok = "", None
        if mode == "auto" and loss == "bce":
            need = 25e6 if shape == "default_net" else 5e6
            target, ok = f">= {need / 1e6:g}M", f["samples_per_s"] >= need
        _speed_row(r, rows, label, f["samples_per_s"], target, ok)
        headline = (shape, loss, mode) == ("default_net", "bce", "auto")
        if f.get("vs_ceiling") is not None:
            _speed_row(r, rows, f"  {shape} {loss} graphs={mode} / same-run graph ceiling", f["vs_ceiling"],
                       ">= 0.85" if headline else "", f["vs_ceiling"] >= 0.85 if headline else None)
        if mode == "auto":
            _speed_row(r, rows, f"  {shape} {loss} whole trial / training", f["trial_over_train"], "<= 1.3",
                       f["trial_over_train"] is not None and f["trial_over_train"] <= 1.3)


def _other_rows(r: dict, rows: list) -> None:
    for c, v in r.get("step_ratio", {}).items():
        for loss, ratio in (v.get("vs_bce", {}) if isinstance(v, dict) else {}).items():
            need = 1.15 if loss == "le+history" else 1.10
            _speed_row(r, rows, f"step time {loss} / BCE, {c} conditions", ratio, f"<= {need}", ratio <= need)
    ag = r.get("agreement", {})
    for kind in ("loss", "grad"):
        for loss, v in ag.get(f"max_rel_{kind}", {}).items():
            _row(rows, f"CUDA vs CPU {loss} {kind}: max rel diff", v, "<= 1e-5", v <= 1e-5)
    if isinstance(ag.get("history_max_rel"), float):
        _row(rows, "CUDA vs CPU LE history window sums: max rel diff", ag["history_max_rel"],
             f"<= {ag['history_bound']:.2g} (N*eps32)", ag["history_within_bound"])
    pr = r.get("precision", {})
    if "high_over_highest_samples_per_s" in pr:
        _row(rows, "matmul high / highest: BCE default_net samples/s", pr["high_over_highest_samples_per_s"])
        _row(rows, "matmul high - highest: eval logloss", pr["logloss_high_minus_highest"])
    q = r.get("quickstart", {})
    if "wall_s" in q:
        _speed_row(r, rows, f"quickstart sweep wall s ({q.get('trials')} trials, rc {q.get('returncode')})",
                   q["wall_s"], "<= 30", q["wall_s"] <= 30 and q.get("returncode") == 0)
        for key, what in (("launch_to_first_trial_s", "launch -> first trial start"),
                          ("trials_span_s", "first trial start -> last trial end"),
                          ("last_trial_to_exit_s", "last trial end -> exit (report, Ray shutdown)"),
                          ("median_task_s", "median trial task, in the worker")):
            if key in q:
                _row(rows, f"  quickstart: {what}, s", q[key])
    for shape in ("quickstart", "default_net"):
        for k, g in r.get("packing", {}).get(shape, {}).items():
            _row(rows, f"{k} {shape} trials at once: trials/min (x{_fmt(g.get('speedup_vs_1'))} of one)",
                 g["trials_per_min"])
        if f"{shape}_choose_k" in r.get("packing", {}):
            _row(rows, f"  {shape}: fewest trials per GPU within 5% of the best", r["packing"][f"{shape}_choose_k"])
    pt = r.get("pytest_gpu", {})
    if "returncode" in pt:
        code = "timeout" if pt["returncode"] is None else pt["returncode"]
        _row(rows, f"pytest -m gpu: {' '.join(pt.get('summary', []))}", code, "exit 0", code == 0)


def table_rows(r: dict) -> list[dict]:
    rows: list = []
    for key, v in r.get("ceiling", {}).get("samples_per_s", {}).items():
        _row(rows, f"ceiling (plain PyTorch) {key.replace('/', ' ')}: samples/s", v)
    _throughput_rows(r, rows)
    _other_rows(r, rows)
    for name in STAGES:
        v = r.get(name)
        if isinstance(v, dict) and "error" in v:
            _row(rows, f"stage {name} crashed", v["error"], "runs", False)
        elif isinstance(v, dict) and "skipped" in v:
            _row(rows, f"stage {name} skipped", v["skipped"])
    return rows


def print_table(r: dict) -> None:
    device = r.get("device", {}).get("name", "CPU (figures mean nothing)")
    print(f"\nGPU check on {device}, torch {torch.__version__}, {r['time']}")
    print(f"{'what':<78} {'value':>12}  {'target':<22} pass")
    for row in r["table"]:
        verdict = "" if row["pass"] is None else ("PASS" if row["pass"] else "FAIL")
        print(f"{row['what'][:78]:<78} {_fmt(row['value'])[:12]:>12}  {row['target']:<22} {verdict}", flush=True)


# --------------------------------------------------------------------------- driver

FUNCS = {"device": stage_device, "agreement": stage_agreement, "ceiling": stage_ceiling,
         "throughput": stage_throughput, "step_ratio": stage_step_ratio, "precision": stage_precision,
         "pytest_gpu": stage_pytest, "quickstart": stage_quickstart, "packing": stage_packing}


def _cuda_healthy() -> bool:
    try:
        torch.ones(1, device="cuda").add_(1).item()
        torch.cuda.synchronize()
        return True
    except Exception:  # noqa: BLE001 - a sticky CUDA error poisons every later call in this process
        return False


def write(results: dict, out: Path) -> None:
    results["table"] = table_rows(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")


def _in_fresh_process(rest: list[str], args, results: dict) -> None:
    """Run the remaining stages in a new process (this one's CUDA context is broken) and merge its results."""
    child = Path(args.out).with_suffix(".rest.json")
    cmd = [sys.executable, __file__, "--out", str(child), "--only", ",".join(rest), "--deadline", str(args.deadline)]
    try:
        subprocess.run(cmd, cwd=REPO, env=_env(), timeout=max(10.0, args.deadline + HARD_S - BUDGET_S - time.time()))
        merged = json.loads(child.read_text())
    except Exception as exc:  # noqa: BLE001 - the child died or overran: say so, keep what this process has
        merged = {name: {"error": f"fresh process: {type(exc).__name__}: {str(exc)[:300]}"} for name in rest}
    for name in rest:
        results[name] = dict(merged.get(name, {"error": "fresh process wrote no result"}), fresh_process=True)


def run_stages(names: list[str], ctx: dict, args, out: Path) -> None:
    results = ctx["results"]
    for i, name in enumerate(names):
        if ctx["late"]():
            results[name] = {"skipped": f"time budget ({args.budget:.0f} s) reached"}
            continue
        started = time.perf_counter()
        try:
            results[name] = FUNCS[name](ctx)
        except Exception as exc:  # noqa: BLE001 - one stage failing must not hide the others
            results[name] = {"error": f"{type(exc).__name__}: {str(exc)[:800]}"}
        results[name]["seconds"] = round(time.perf_counter() - started, 2)
        print(f"{name:<11} {json.dumps(results[name], default=str)[:700]}", flush=True)
        write(results, out)
        if ctx["cuda"] and i + 1 < len(names) and not _cuda_healthy():
            print("CUDA context broken: the remaining stages run in a fresh process", flush=True)
            _in_fresh_process(names[i + 1:], args, results)
            return


def _watchdog(results: dict, out: Path, deadline: float) -> None:
    def fire() -> None:
        results["watchdog"] = f"stopped at {HARD_S:.0f} s: a stage overran"
        write(results, out)
        print_table(results)
        os._exit(3)
    timer = threading.Timer(max(1.0, deadline + HARD_S - BUDGET_S - time.time()), fire)
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(max(1.0, deadline + HARD_S - BUDGET_S - time.time() - 2), exit=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="the JSON to write (default: bench/results/gpu_check.json on "
                        "CUDA, the committed record; bench/results/gpu_check.smoke.json, git-ignored, otherwise)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, even when CUDA is there")
    parser.add_argument("--only", default="", help="comma-separated stages to run (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated stages to leave out")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds after which no stage starts "
                        f"(default {BUDGET_S:.0f}; the watchdog stops the script {HARD_S - BUDGET_S:.0f} s later)")
    parser.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)  # epoch s of the budget
    parser.add_argument("--pack-processes", action="store_true", help=argparse.SUPPRESS)  # smoke-test the pool
    args = parser.parse_args(argv)
    args.deadline = args.deadline or time.time() + args.budget
    cuda = torch.cuda.is_available() and not args.smoke
    names = [s for s in (args.only.split(",") if args.only else STAGES) if s and s not in args.skip.split(",")]
    unknown = [s for s in names if s not in FUNCS]
    if unknown:
        parser.error(f"unknown stage(s) {unknown}; expected some of {', '.join(STAGES)}")
    if not cuda:
        print("no CUDA device (or --smoke): every stage runs on the CPU at tiny sizes; the figures mean nothing")
    results: dict = {"cuda": cuda, "host": platform.node(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    ctx = {"cuda": cuda, "dev": torch.device("cuda:0" if cuda else "cpu"), "size": SIZES["full" if cuda else "smoke"],
           "size_name": "full" if cuda else "smoke", "pack_processes": cuda or args.pack_processes,
           "results": results, "late": lambda: time.time() > args.deadline,
           "timeout": lambda own: max(5.0, min(own, args.deadline + 10 - time.time()))}
    # a CPU or --smoke run never overwrites the committed GPU record
    out = Path(args.out or REPO / "bench" / "results" / ("gpu_check.json" if cuda else "gpu_check.smoke.json"))
    _watchdog(results, out, args.deadline)
    run_stages(names, ctx, args, out)
    write(results, out)
    print_table(results)
    print(f"written {out}")
    return 1 if any("error" in v for v in results.values() if isinstance(v, dict)) else 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    sys.exit(main())
