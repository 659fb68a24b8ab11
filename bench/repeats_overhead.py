"""Ray overhead of a sweep: 12 short trials on local Ray vs the same trials sequentially in-process.

    python bench/repeats_overhead.py [--slots 2] [--rows-per-condition 100000] [--epochs 8]

Both runs use the same specs (quickstart model, 6 seeds × BCE/LE), same machine, same process.
The Ray side runs as ``python -m le_ray.repeats`` does: ``ray.init``, worker warm-up submitted,
data prepared meanwhile, then the timed sweep. Reported:

* T_seq: sum of the in-process trial times (1 torch thread each, like a 1-CPU Ray trial);
* ideal parallel time T_seq / slots and the Ray sweep's wall time after ``ray.init`` (put,
  submit, ``ray.wait`` streaming, result writes) → overhead = wall / ideal − 1 (target <= 10%);
* the same ratio against the trial times measured inside the Ray workers (which also pay for
  two trials sharing the memory bus), separating Ray's own cost from the machine's;
* how often the prepared data went into the object store (target: once per sweep) and its size.
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import ray
import torch

from le_ray.config import load_config
from le_ray.sweep.driver import run_sweep, warm_up_workers
from le_ray.sweep.plan import for_seed, plan_trials
from le_ray.sweep.store import SweepStore
from le_ray.training.trial import run_trial


def _config(args):
    return load_config(profile="quickstart", sets=[
        f"synthetic.samples_per_condition={args.rows_per_condition}", f"training.epochs={args.epochs}",
        "training.loss_mode=both", "repeats.num_runs=6", "repeats.resample_data=false", "ray.cpus_per_trial=1"])


def sequential(cfg, plan) -> float:
    threads = torch.get_num_threads()
    total = 0.0
    for spec in plan.specs:
        started = time.perf_counter()
        run_trial(for_seed(plan.data_by_seed, spec.seed), spec, num_threads=1)
        total += time.perf_counter() - started
    torch.set_num_threads(threads)
    return total


def on_ray(cfg, slots: int) -> tuple[float, float, float, float, int, object]:
    """As ``python -m le_ray.repeats`` does it: init, warm-up, prepare data, then the timed sweep."""
    started = time.perf_counter()
    ray.init(address="local", num_cpus=slots, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - started
    warm_up_workers(cfg, 12)
    started = time.perf_counter()
    plan = plan_trials(cfg)
    prepare_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        store = SweepStore.open(Path(tmp), "bench")
        t0 = time.perf_counter()
        progress = run_sweep(cfg, store, plan, echo=lambda *a, **k: None)
        wall = time.perf_counter() - t0
        records = store.load_trials()
        inside = sum(r["finished_at"] - r["started_at"] for r in records)
        first = min(r["started_at"] for r in records)
        for r in sorted(records, key=lambda r: r["started_at"]):
            print(f"  worker {r['worker_pid']}: {r['loss']:18s} seed {r['seed']} "
                  f"{r['started_at'] - first:6.2f} → {r['finished_at'] - first:6.2f} s")
    ray.shutdown()
    return init_s, prepare_s, wall, inside, len(progress.data_refs), plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=2, help="Ray CPUs = trials in parallel")
    parser.add_argument("--rows-per-condition", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    cfg = _config(args)
    init_s, prepare_s, wall, inside, puts, plan = on_ray(cfg, args.slots)
    size_mb = len(pickle.dumps(plan.data_by_seed[-1], protocol=5)) / 1e6
    t_seq = sequential(cfg, plan)
    ideal = t_seq / args.slots
    ideal_inside = inside / args.slots
    print(f"trials: {len(plan.specs)}; slots: {args.slots}; data {size_mb:.1f} MB, put into the object store "
          f"{puts} time(s) for the sweep")
    print(f"sequential in-process: {t_seq:.1f} s (mean {t_seq / len(plan.specs):.2f} s per trial)")
    print(f"ray.init: {init_s:.1f} s; data preparation {prepare_s:.1f} s while the workers start (not counted below)")
    print(f"Ray sweep wall time: {wall:.1f} s; ideal {ideal:.1f} s -> overhead {100 * (wall / ideal - 1):+.1f}%")
    print(f"against trial time measured inside workers ({inside:.1f} s total, ideal {ideal_inside:.1f} s): "
          f"overhead {100 * (wall / ideal_inside - 1):+.1f}%")


if __name__ == "__main__":
    main()
