"""Training throughput of one trial: samples/s per loss, whole-trial time, LE + history overhead.

    python bench/train_throughput.py [--rows-per-condition 250000] [--epochs 1] [--threads 2]

Setup (issue "Foundation", benchmark): 1,000,000 synthetic rows (4 conditions × 250,000, default
settings), default_net, float32, 2 torch threads, each loss at its default batch size, through the
same ``run_trial`` every runner uses. Reports

* training samples/s over one epoch for BCE, LE (no history), LE + history (the synthetic
  default) and focal — target >= 90,000 for every loss;
* the whole single-trial time: data generation, epoch-0 evaluation, one epoch, final evaluation;
* ms per optimiser step of BCE vs LE + history at the same batch size with 2,000 conditions
  (500 rows each, ``condition_mode=random``) — target: LE + history within 10% of BCE.
"""

from __future__ import annotations

import argparse
import time

import torch

from le_ray.config import load_config
from le_ray.data.prepare import prepare_data
from le_ray.training.trial import TrialSpec, run_trial


def _trial(cfg, loss: str, data=None) -> dict:
    started = time.perf_counter()
    data = data if data is not None else prepare_data(cfg)
    prepared = time.perf_counter()
    result = run_trial(data, TrialSpec.make(cfg, loss, cfg.project.seed, data.fingerprint), num_threads=cfg.device.num_threads)
    return {"samples_per_s": result.samples_per_second, "train_s": result.timings["train"],
            "trial_s": result.timings["total"], "data_s": prepared - started,
            "total_s": time.perf_counter() - started, "logloss": result.metrics.get("logloss")}


def throughput_rows(args) -> list[tuple[str, dict]]:
    # focal's synthetic epochs are set per loss (reference default 5): the epoch count goes there too
    base = [f"synthetic.samples_per_condition={args.rows_per_condition}", f"training.epochs={args.epochs}",
            f"training.by_loss.focal.by_source.synthetic.epochs={args.epochs}", f"device.num_threads={args.threads}"]
    rows = []
    cfg = load_config(sets=base)
    data = prepare_data(cfg)
    for label, loss, extra in (("bce", "bce", []), ("le", "localized_entropy",
                                                     ["training.by_loss.localized_entropy.by_source.synthetic."
                                                      "cross_batch.enabled=false"]),
                               ("le+history", "localized_entropy", []), ("focal", "focal", [])):
        rows.append((label, _trial(load_config(sets=base + extra), loss, data)))
    rows.append(("whole trial (bce, incl. data)", _trial(cfg, "bce")))
    return rows


def many_conditions(args) -> dict[str, float]:
    """ms per step at batch 16,384 with 2,000 conditions: BCE vs LE + history."""
    sets = ["synthetic.num_conditions=2000", "synthetic.samples_per_condition=500", "synthetic.condition_mode=random",
            "training.epochs=1", f"device.num_threads={args.threads}", "training.batch_size=16384",
            "training.by_loss.bce.by_source={}", "training.by_loss.localized_entropy.by_source={}",
            "training.cross_batch.enabled=true"]
    cfg = load_config(sets=sets)
    data = prepare_data(cfg)
    out = {}
    for _ in range(args.repeats):  # interleave to share machine noise
        for loss in ("bce", "localized_entropy"):
            r = run_trial(data, TrialSpec.make(cfg, loss, cfg.project.seed, data.fingerprint), num_threads=args.threads)
            steps = -(-len(data.train) // 16384)
            out.setdefault(loss, []).append(r.timings["train"] / steps * 1000)
    return {loss: min(v) for loss, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-per-condition", type=int, default=250_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the 2,000-condition comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {4 * args.rows_per_condition:,} rows")
    print(f"{'run':34s} {'samples/s':>10s} {'train s':>8s} {'trial s':>8s} {'data s':>7s} {'total s':>8s}")
    for label, r in throughput_rows(args):
        print(f"{label:34s} {r['samples_per_s']:10,.0f} {r['train_s']:8.2f} {r['trial_s']:8.2f} {r['data_s']:7.2f} "
              f"{r['total_s']:8.2f}")
    ms = many_conditions(args)
    ratio = ms["localized_entropy"] / ms["bce"]
    print(f"2,000 conditions, batch 16,384: BCE {ms['bce']:.1f} ms/step, LE + history "
          f"{ms['localized_entropy']:.1f} ms/step, ratio {ratio:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
