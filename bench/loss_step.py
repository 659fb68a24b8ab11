"""Time one MLP training step (forward + backward + Adam) with BCE, LE and LE + history.

    python bench/loss_step.py [--batch 16384] [--conditions 4 2000] [--threads 2]

Model: Linear stack 16 -> 256 -> 256 -> 128 -> 64 -> 1 with SiLU.  Conditions are
uniform ids with per-condition click rates log-uniform in [0.005, 0.1], which are also
passed as ``base_rates`` (to the loss and to the history, which sizes its windows from
them) with the per-condition constants prepared once (``le_constants``), as an objective
does in training.  The history is pre-filled with ``--prefill`` update-only
batches so that windows are full and every timed step pays for eviction.  Variants are
interleaved round by round so that drift on a busy machine hits them alike; the table
reports the median and the minimum ms per step (the minimum is the robust figure on a
shared machine), the median of the loss alone (forward + backward on fixed logits), and
the ratios to the BCE step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from le_ray.training.cross_batch import CrossBatchHistory
from le_ray.training.losses import bce_loss, le_constants, localized_entropy

HIDDEN = (256, 256, 128, 64)
VARIANTS = ("bce", "le", "le+history")


def make_mlp(d_in: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers, d = [], d_in
    for h in HIDDEN:
        layers += [nn.Linear(d, h), nn.SiLU()]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, 1))


def make_batches(n_batches: int, batch: int, n_cond: int, d_in: int, seed: int):
    """Returns (batches [(x, y, c)], base_rates [C])."""
    g = torch.Generator().manual_seed(seed)
    rates = torch.exp(torch.empty(n_cond).uniform_(float(torch.log(torch.tensor(0.005))),
                                                   float(torch.log(torch.tensor(0.1))), generator=g))
    out = []
    for _ in range(n_batches):
        c = torch.randint(0, n_cond, (batch,), generator=g)
        y = (torch.rand(batch, generator=g) < rates[c]).float()
        out.append((torch.randn(batch, d_in, generator=g), y, c))
    return out, rates


def loss_fn(variant: str, rates: torch.Tensor, history):
    if variant == "bce":
        return lambda z, y, c: bce_loss(z, y)
    hist = history if variant == "le+history" else None
    constants = le_constants(rates, None, rates.numel(), device=rates.device)
    return lambda z, y, c: localized_entropy(z, y, c, history=hist, constants=constants)


def prefill(history: CrossBatchHistory, batches, steps: int) -> None:
    for i in range(steps):
        _, y, c = batches[i % len(batches)]
        history.update(c, y, torch.rand(y.shape[0]))


def bench_config(args, n_cond: int) -> dict:
    batches, rates = make_batches(4, args.batch, n_cond, args.d_in, seed=n_cond)
    history = CrossBatchHistory(args.amplification, rates)
    prefill(history, batches, args.prefill)
    models = {v: make_mlp(args.d_in, 0) for v in VARIANTS}
    opts = {v: torch.optim.Adam(m.parameters(), lr=1e-3) for v, m in models.items()}
    fns = {v: loss_fn(v, rates, history) for v in VARIANTS}
    step_ms = {v: [] for v in VARIANTS}
    loss_ms = {v: [] for v in VARIANTS}
    z0 = torch.randn(args.batch)
    for rnd in range(args.warmup + args.rounds):
        for v in VARIANTS:
            x, y, c = batches[rnd % len(batches)]
            t0 = time.perf_counter()
            opts[v].zero_grad(set_to_none=True)
            fns[v](models[v](x).squeeze(1), y, c).backward()
            opts[v].step()
            t1 = time.perf_counter()
            z = z0.clone().requires_grad_(True)
            fns[v](z, y, c).backward()
            t2 = time.perf_counter()
            if rnd >= args.warmup:
                step_ms[v].append(1e3 * (t1 - t0))
                loss_ms[v].append(1e3 * (t2 - t1))
    return {v: (statistics.median(step_ms[v]), min(step_ms[v]), statistics.median(loss_ms[v]))
            for v in VARIANTS} | {
        "_stored": int(history.window_sizes().sum()), "_rows": history.storage_rows()
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16_384)
    p.add_argument("--conditions", type=int, nargs="+", default=[4, 2000])
    p.add_argument("--d-in", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--amplification", type=float, default=64.0)
    p.add_argument("--prefill", type=int, default=1600,
                   help="update-only batches before timing (1600 fills every window at 2000 conditions)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"A {args.amplification}, rounds {args.rounds}")
    print(f"{'conditions':>10} {'loss':>11} {'step ms':>9} {'min ms':>8} {'loss-only ms':>13} "
          f"{'vs BCE':>7} {'vs BCE (min)':>13}")
    for n_cond in args.conditions:
        res = bench_config(args, n_cond)
        base, base_min = res["bce"][:2]
        for v in VARIANTS:
            step, best, loss = res[v]
            print(f"{n_cond:>10} {v:>11} {step:>9.2f} {best:>8.2f} {loss:>13.2f} "
                  f"{step / base:>7.3f} {best / base_min:>13.3f}")
        print(f"{'':>10} history: {res['_stored']} entries stored, {res['_rows']} pool rows")


if __name__ == "__main__":
    main()
