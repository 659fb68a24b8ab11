"""``ConditionedLogitMLP``: condition embedding + categorical embeddings + numeric features → one logit.

For a row (x_num [F], x_cat [K], c):
``h0 = concat(x_num, E_cond[c], E_1[x_cat_1], …, E_K[x_cat_K])`` of width
``F + embed_dim + K · cat_embed_dim``; each hidden layer is Linear → optional batch/layer norm →
activation → dropout (:class:`SparseDropout`, distributed exactly like ``nn.Dropout``); a final
Linear gives the logit z (p = sigmoid(z)). Only the condition rows present in a batch receive
gradient through ``embedding``; everything else is shared.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from le_ray.config.schema import ModelConfig
from le_ray.training.shapes import input_width

__all__ = ["ConditionedLogitMLP", "input_width", "build_model", "count_parameters", "ACTIVATION_LAYERS", "SparseDropout",
           "bernoulli_positions"]

ACTIVATION_LAYERS = {
    "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU, "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU, "elu": nn.ELU, "selu": nn.SELU, "sigmoid": nn.Sigmoid, "identity": nn.Identity,
}


def bernoulli_positions(n: int, p: float, device: torch.device, generator: torch.Generator | None = None
                        ) -> torch.Tensor:
    """Indices (int64, sorted) of the ones in an iid Bernoulli(p) sequence of length n, in O(n·p).

    The gaps between successive ones are Geometric(p) on {1, 2, ...}: ``gap = floor(ln U / ln(1 − p)) + 1``
    with U ~ Uniform(0, 1] (float64), so drawing ~n·p gaps and a cumulative sum gives exactly
    the same distribution as one uniform draw per element, at a fraction of the random numbers.
    """
    mean = n * p
    chunk = int(mean + 8.0 * math.sqrt(mean + 1.0) + 16)
    log_q = math.log1p(-p)
    parts, last = [], torch.tensor(-1, dtype=torch.int64, device=device)
    while True:
        u = torch.rand(chunk, dtype=torch.float64, device=device, generator=generator)
        gaps = torch.floor(torch.log1p(-u) / log_q).to(torch.int64) + 1
        pos = last + torch.cumsum(gaps, 0)
        parts.append(pos)
        last = pos[-1]
        if int(last) >= n - 1:  # one host sync per chunk; almost always a single chunk
            break
    pos = torch.cat(parts) if len(parts) > 1 else parts[0]
    return pos[pos < n]


class _SparseDropoutFn(torch.autograd.Function):
    """Inverted dropout whose mask is a list of dropped positions (forward and backward one pass each)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        dropped = bernoulli_positions(x.numel(), p, x.device)
        scale = 1.0 / (1.0 - p)
        out = x * scale
        out.view(-1).index_fill_(0, dropped, 0.0)
        ctx.save_for_backward(dropped)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (dropped,) = ctx.saved_tensors
        grad_in = grad * ctx.scale
        grad_in.view(-1).index_fill_(0, dropped, 0.0)
        return grad_in, None


class SparseDropout(nn.Module):
    """Dropout(p) with the same distribution as ``nn.Dropout``, faster on CPU for small p.

    Each element is zeroed independently with probability p and survivors are scaled by
    1/(1 − p). On CPU with p ≤ ``sparse_below`` the zeroed positions are drawn directly
    (:func:`bernoulli_positions`, ~n·p random numbers instead of n): the default net's
    dropout 0.01 otherwise spends about a third of a CPU training step generating masks.
    Elsewhere (CUDA, MPS, larger p) it is ``torch.nn.functional.dropout``.
    """

    def __init__(self, p: float, sparse_below: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.sparse_below = float(p), float(sparse_below)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if x.device.type == "cpu" and self.p <= self.sparse_below:
            return _SparseDropoutFn.apply(x, self.p)
        return F.dropout(x, self.p, training=True)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _per_layer(value, n: int, name: str) -> list:
    """A scalar setting repeated n times, or a per-layer list checked for length n."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"model.{name}: got {len(value)} values for {n} hidden layers")
        return list(value)
    return [value] * n


def _norm_layer(kind: str, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"model.norm: got {kind!r}; expected none, batch or layer")


class ConditionedLogitMLP(nn.Module):
    """MLP over numeric features and embeddings of the condition and categorical columns."""

    def __init__(self, *, num_numeric: int, num_conditions: int, cat_vocab_sizes: Sequence[int] = (),
                 hidden_sizes: Sequence[int] = (256, 256, 128, 64), embed_dim: int = 4, cat_embed_dim: int = 8,
                 activation="silu", norm="none", dropout=0.0):
        super().__init__()
        n = len(hidden_sizes)
        acts, norms, drops = (_per_layer(activation, n, "activation"), _per_layer(norm, n, "norm"),
                              _per_layer(dropout, n, "dropout"))
        unknown = [a for a in acts if a not in ACTIVATION_LAYERS]
        if unknown:
            raise ValueError(f"model.activation: got {unknown}; expected one of {', '.join(ACTIVATION_LAYERS)}")
        self.num_numeric = num_numeric
        self.embedding = nn.Embedding(num_conditions, embed_dim)
        self.cat_embeddings = nn.ModuleList(nn.Embedding(size, cat_embed_dim) for size in cat_vocab_sizes)
        layers: list[nn.Module] = []
        width = input_width(num_numeric, len(cat_vocab_sizes), embed_dim, cat_embed_dim)
        self.input_width = width
        for size, act, kind, p in zip(hidden_sizes, acts, norms, drops):
            layers += [nn.Linear(width, size), _norm_layer(kind, size), ACTIVATION_LAYERS[act]()]
            if p > 0:
                layers.append(SparseDropout(p))
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Logits [N] from x_num [N, F] float, x_cat [N, K] long, cond [N] long."""
        parts = [x_num, self.embedding(cond)]
        parts += [table(x_cat[:, k]) for k, table in enumerate(self.cat_embeddings)]
        return self.net(torch.cat(parts, dim=1)).squeeze(-1)


def build_model(cfg: ModelConfig, *, num_numeric: int, num_conditions: int,
                cat_vocab_sizes: Sequence[int]) -> ConditionedLogitMLP:
    """The configured model for data with the given feature counts."""
    return ConditionedLogitMLP(num_numeric=num_numeric, num_conditions=num_conditions,
                               cat_vocab_sizes=tuple(cat_vocab_sizes), hidden_sizes=tuple(cfg.hidden_sizes),
                               embed_dim=cfg.embed_dim, cat_embed_dim=cfg.cat_embed_dim,
                               activation=cfg.activation, norm=cfg.norm, dropout=cfg.dropout)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
