"""The ``ceiling`` stage: a plain-PyTorch training loop of the benchmark shapes, eager and as one captured CUDA
graph, the bar le_ray's in-trial rates are read against (same run, same GPU)."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.nn import functional as F

from gpu_bench.common import SHAPES


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
        if torch.is_tensor(group["lr"]):  # graph: lr is a device tensor, and the decay replays with the graph
            group["lr"].mul_(0.999)
        else:
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

