"""Time ``model_summary`` and ``per_condition_metrics`` on synthetic CTR predictions.

Data: N predictions p ~ Uniform(0, 1), labels y ~ Bernoulli(p), condition ids uniform on
0..C-1 (defaults N = 10,000,000, C = 2,000).  For each of the five ECE backends the
script times ``model_summary(p, y, conditions, ece_method=...)``, the same with ``order=`` (p's stable
order given, as a CUDA trial's evaluation hands it over from the GPU's sort; the order is computed outside
the timing), ``summary_from_sums`` (what is left on the host when a CUDA trial computes the summary's statistics
on the device: the per-condition and pooled sums, Σ (p − y)² and the curve terms are computed outside the
timing) and ``per_condition_metrics(p, y, conditions, ece_method=...)`` (best of ``--repeats`` runs,
wall-clock seconds) and prints a fixed-width table.

As in a trial process, glibc's allocator is tuned first (``le_ray.training.devices.tune_host_allocator``:
large temporaries reuse heap memory instead of fresh page-faulted mappings; ``--no-mallopt``
turns it off) and one small warm-up call loads scikit-learn before timing.

Usage::

    python bench/metrics_summary.py [--n 10000000] [--conditions 2000] [--repeats 1] [--no-mallopt]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import polars as pl

from le_ray.metrics.compare import format_table
from le_ray.training.devices import tune_host_allocator
from le_ray.metrics import (ECE_METHODS, condition_sums, model_summary, per_condition_metrics, sorted_curve_areas,
                            summary_from_sums)


def make_data(n: int, n_conditions: int, seed: int):
    """Synthetic (p [n], y [n], conditions [n]) with y ~ Bernoulli(p)."""
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    y = (rng.random(n) < p).astype(np.float64)
    conditions = rng.integers(0, n_conditions, size=n)
    return p, y, conditions


def best_time(fn, repeats: int) -> float:
    """Best wall-clock time of ``fn()`` over ``repeats`` runs, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def from_sums(p, y, conditions, order, ece_method: str):
    """A timed callable: ``summary_from_sums`` on statistics computed here, before the timing (as a GPU computes
    them in a CUDA trial)."""
    labels = (y[order] >= 0.5).astype(np.int8)
    curve = (*sorted_curve_areas(p[order], labels), float(labels.sum()), float(labels.size - labels.sum()))
    squared_error = float(np.sum((p - y) ** 2))
    sums = condition_sums(p, y, conditions, ece_method=ece_method)
    pooled = condition_sums(p, y, np.zeros_like(conditions), num_conditions=1, ece_method=ece_method)
    return lambda *args, **kw: summary_from_sums(sums, pooled, squared_error=squared_error, curve=curve)


def run(n: int, n_conditions: int, repeats: int, seed: int) -> pl.DataFrame:
    """Benchmark table: call, ece_method, seconds, throughput (M rows/s)."""
    p, y, conditions = make_data(n, n_conditions, seed)
    model_summary(p[:1000], y[:1000], conditions[:1000])  # warm-up: imports, first-call costs
    order = np.argsort(p, kind="stable")

    def given_order(*args, **kw):
        return model_summary(*args, order=order, **kw)
    calls = (("model_summary", model_summary), ("model_summary(order=)", given_order), ("summary_from_sums", None),
             ("per_condition_metrics", per_condition_metrics))
    rows = []
    for method in ECE_METHODS:
        for name, fn in calls:
            fn = fn or from_sums(p, y, conditions, order, method)
            seconds = best_time(lambda: fn(p, y, conditions, ece_method=method), repeats)
            rows.append({"call": name, "ece_method": method, "seconds": seconds,
                         "mrows_per_s": n / seconds / 1e6})
            print(f"  {name:<22} {method:<12} {seconds:8.3f} s", flush=True)
    return pl.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--conditions", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-mallopt", action="store_true", help="keep glibc's default allocator settings")
    args = parser.parse_args()
    tuned = False if args.no_mallopt else tune_host_allocator()
    print(f"N = {args.n:,} predictions, C = {args.conditions:,} conditions, best of {args.repeats}, "
          f"allocator tuned: {tuned}")
    table = run(args.n, args.conditions, args.repeats, args.seed)
    print(format_table(table, float_fmt=".3f"))


if __name__ == "__main__":
    main()
