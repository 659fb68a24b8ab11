"""One prepared GPU check (at most ~5 minutes on one GPU): device, loss agreement, throughput, fractional GPUs, tests.

    python bench/gpu_check.py [--out bench/results/gpu_check.json] [--smoke]

Stages (each timed; the JSON holds every figure):

1. the device (name, memory, CUDA / torch versions) and that ``select_device`` picks ``cuda:0``;
2. loss agreement CUDA vs CPU in float32: BCE, focal, LE and LE + history over 50 batches of 16,384 rows
   and 2,000 conditions — loss and logit gradient within rel 1e-5, history state equal;
3. training throughput on device-staged data (the staged TensorSplit path), default_net, 4,000,000
   synthetic rows, each loss at its default batch size: samples/s; the LE + history / BCE step-time ratio at
   50 and 2,000 conditions; bf16 autocast next to float32 (throughput and eval logloss / ECE);
4. fractional GPUs: local Ray with the one GPU, 4 trials at ``gpus_per_trial = 0.25`` at once vs 1 trial alone —
   aggregate samples/s; every trial reports ``cuda:0`` and its Ray GPU id;
5. ``pytest -m gpu`` (the CUDA-only tests).

Targets (H200-class GPU): BCE >= 10,000,000 samples/s at batch 32,768; LE + history <= 1.15 x a BCE step at
2,000 conditions; 4 fractional trials together >= 2.5 x one trial.

Without CUDA (or with ``--smoke``) every stage runs on the CPU at tiny sizes to prove the script works; the
JSON then says ``"cuda": false`` and its figures mean nothing. Exit status 0 unless a stage crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from le_ray.config import load_config  # noqa: E402
from le_ray.data.prepare import prepare_data  # noqa: E402
from le_ray.training.devices import select_device  # noqa: E402
from le_ray.training.losses import bce_loss, focal_loss, localized_entropy  # noqa: E402
from le_ray.training.cross_batch import CrossBatchHistory  # noqa: E402
from le_ray.training.trial import TrialSpec, run_trial  # noqa: E402

SIZES = {"full": {"agree_batches": 50, "agree_rows": 16384, "agree_conditions": 2000, "rows": 4_000_000,
                  "step_rows": 500_000, "ray_rows": 1_000_000},
         "smoke": {"agree_batches": 3, "agree_rows": 512, "agree_conditions": 50, "rows": 8_000,
                   "step_rows": 4_000, "ray_rows": 4_000}}


def stage_device(cuda: bool) -> dict:
    choice = select_device(load_config().device)
    out = {"torch": torch.__version__, "cuda_runtime": torch.version.cuda, "python": platform.python_version(),
           "chosen": choice.reason}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        out.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", picks_cuda=choice.device.type == "cuda")
    return out


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def _loss_and_grad(name, z, y, c, rates, history):
    z = z.clone().requires_grad_(True)
    if name == "bce":
        loss = bce_loss(z, y)
    elif name == "focal":
        loss = focal_loss(z, y, alpha=0.2, gamma=0.5)
    else:
        loss = localized_entropy(z, y, c, base_rates=rates, history=history, num_conditions=rates.numel())
    loss.backward()
    return loss.detach(), z.grad.detach()


def stage_agreement(dev: torch.device, size: dict) -> dict:
    """Max relative loss / gradient difference per loss over the batches; history sums equal."""
    g = torch.Generator().manual_seed(0)
    n, c = size["agree_rows"], size["agree_conditions"]
    rates = torch.exp(torch.empty(c).uniform_(-7.0, -1.0, generator=g)).clamp(max=0.5)
    histories = {d: CrossBatchHistory(64.0, rates.to(d), device=d) for d in ("cpu", dev)}
    worst: dict[str, list[float]] = {k: [0.0, 0.0] for k in ("bce", "focal", "le", "le+history")}
    for _ in range(size["agree_batches"]):
        cond = torch.randint(0, c, (n,), generator=g)
        y = (torch.rand(n, generator=g) < rates[cond]).float()
        z = torch.randn(n, generator=g) * 2 - 3
        for name in worst:
            loss_name = "le" if name.startswith("le") else name
            hist = {d: histories[d] if name == "le+history" else None for d in ("cpu", dev)}
            ref = _loss_and_grad(loss_name, z, y, cond, rates, hist["cpu"])
            out = _loss_and_grad(loss_name, z.to(dev), y.to(dev), cond.to(dev), rates.to(dev), hist[dev])
            worst[name] = [max(worst[name][0], _rel(out[0].cpu(), ref[0])),
                           max(worst[name][1], _rel(out[1].cpu(), ref[1]))]
    a, b = histories["cpu"].window_totals(), histories[dev].window_totals().cpu()
    return {"max_rel_loss": {k: v[0] for k, v in worst.items()}, "max_rel_grad": {k: v[1] for k, v in worst.items()},
            "history_equal": bool(torch.allclose(a, b, rtol=1e-9, atol=1e-9)),
            "history_sizes_equal": bool((histories["cpu"].window_sizes() == histories[dev].window_sizes()).all()),
            "within_1e-5": all(v[0] <= 1e-5 and v[1] <= 1e-5 for v in worst.values())}


def _trial(cfg, loss, data, threads=None):
    result = run_trial(data, TrialSpec.make(cfg, loss, cfg.project.seed, data.fingerprint), num_threads=threads)
    return {"samples_per_s": result.samples_per_second, "train_s": result.timings["train"],
            "steps": None, "logloss": result.metrics.get("logloss"), "ece": result.metrics.get("ece"),
            "device": result.device}


def stage_throughput(size: dict) -> dict:
    """Samples/s per loss at default batch sizes on staged data; bf16 next to float32."""
    rows = size["rows"]
    base = [f"synthetic.samples_per_condition={rows // 4}", "training.epochs=1", "device.move_dataset_to_cuda=true"]
    cfg = load_config(sets=base)
    data = prepare_data(cfg)
    out = {}
    for name, loss, extra in (("bce", "bce", []), ("le", "localized_entropy",
                                                   ["training.by_loss.localized_entropy.by_source.synthetic."
                                                    "cross_batch.enabled=false"]),
                              ("le+history", "localized_entropy", []), ("focal", "focal", [])):
        out[name] = _trial(load_config(sets=base + extra), loss, data)
    bf16 = base + ['training.amp="bf16"']
    out["bce_bf16"] = _trial(load_config(sets=bf16), "bce", data)
    out["le+history_bf16"] = _trial(load_config(sets=bf16), "localized_entropy", data)
    return out


def stage_step_ratio(size: dict) -> dict:
    """LE + history / BCE time per step at the same batch (32,768 capped by rows), 50 and 2,000 conditions."""
    out = {}
    for conditions in (50, 2000):
        rows = size["step_rows"]
        sets = [f"synthetic.num_conditions={conditions}", f"synthetic.samples_per_condition={max(rows // conditions, 2)}",
                "synthetic.condition_mode=random", "training.epochs=1", "training.by_loss={}",
                f"training.batch_size={min(32768, rows // 8)}", "training.cross_batch.enabled=true"]
        cfg = load_config(sets=sets)
        data = prepare_data(cfg)
        bce, le = (_trial(cfg, loss, data) for loss in ("bce", "localized_entropy"))
        out[str(conditions)] = {"bce_samples_per_s": bce["samples_per_s"], "le_history_samples_per_s": le["samples_per_s"],
                                "ratio": bce["samples_per_s"] / le["samples_per_s"]}
    return out


def stage_fractional(size: dict, gpus: float) -> dict:
    """4 trials at 0.25 GPU at once vs 1 alone, on local Ray with the one GPU (fake on CPU smoke runs)."""
    import ray

    from le_ray.sweep.driver import connect_ray, trial_task

    sets = [f"synthetic.samples_per_condition={size['ray_rows'] // 4}", "training.epochs=1",
            "ray.gpus_per_trial=0.25", "ray.cpus_per_trial=1", f"ray.num_gpus={gpus}", "ray.num_cpus=8"]
    cfg = load_config(sets=sets)
    data = prepare_data(cfg)
    connect_ray(cfg)
    try:
        ref = ray.put(data)
        task = ray.remote(trial_task).options(num_gpus=0.25, num_cpus=1)
        spec = lambda s: TrialSpec.make(cfg, "bce", s, data.fingerprint)  # noqa: E731
        started = time.perf_counter()
        alone = ray.get(task.remote([ref], spec(1), 1, {}))
        alone_s = time.perf_counter() - started
        started = time.perf_counter()
        four = ray.get([task.remote([ref], spec(s), 1, {}) for s in (2, 3, 4, 5)])
        four_s = time.perf_counter() - started
    finally:
        ray.shutdown()
    rows = len(data.train)
    return {"alone_samples_per_s": rows / alone_s, "four_samples_per_s": 4 * rows / four_s,
            "speedup": (4 * rows / four_s) / (rows / alone_s),
            "devices": [r["device"] for r in [alone, *four]], "gpu_ids": [r["gpu_ids"] for r in [alone, *four]],
            "in_trial_samples_per_s": [r["samples_per_second"] for r in [alone, *four]]}


def stage_pytest() -> dict:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    return {"returncode": done.returncode, "tail": done.stdout.strip().splitlines()[-1:] or done.stderr[-500:]}


def _run(name: str, fn, results: dict) -> None:
    started = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # noqa: BLE001 - one stage failing must not hide the others
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    results[name]["seconds"] = round(time.perf_counter() - started, 2)
    print(f"{name:<12} {json.dumps(results[name], default=str)[:600]}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "gpu_check.json"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, even when CUDA is there")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.smoke
    size = SIZES["full" if cuda else "smoke"]
    if not cuda:
        print("no CUDA device (or --smoke): every stage runs on the CPU at tiny sizes; the figures mean nothing")
    results: dict = {"cuda": cuda, "host": platform.node(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    dev = torch.device("cuda:0" if cuda else "cpu")
    _run("device", lambda: stage_device(cuda), results)
    _run("agreement", lambda: stage_agreement(dev, size), results)
    _run("throughput", lambda: stage_throughput(size), results)
    _run("step_ratio", lambda: stage_step_ratio(size), results)
    _run("fractional", lambda: stage_fractional(size, 1.0), results)
    if cuda:
        _run("pytest_gpu", stage_pytest, results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"written {out}")
    return 1 if any("error" in v for v in results.values() if isinstance(v, dict)) else 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    sys.exit(main())
