"""ConditionedLogitMLP: widths, per-layer settings, embeddings, gradient flow."""

import pytest
import torch
from torch import nn

from le_ray.config import load_config
from le_ray.training.model import ConditionedLogitMLP, SparseDropout, bernoulli_positions, build_model, count_parameters


def _model(**kw):
    args = dict(num_numeric=3, num_conditions=5, cat_vocab_sizes=(7, 4), hidden_sizes=(16, 8), embed_dim=4,
                cat_embed_dim=2, activation="relu", norm="none", dropout=0.0)
    args.update(kw)
    return ConditionedLogitMLP(**args)


def test_first_layer_width_and_output_shape():
    m = _model()
    assert m.input_width == 3 + 4 + 2 * 2
    assert m.net[0].in_features == 11
    out = m(torch.randn(6, 3), torch.randint(0, 4, (6, 2)), torch.randint(0, 5, (6,)))
    assert out.shape == (6,)


def test_per_layer_lists_and_norms():
    m = _model(activation=["gelu", "tanh"], norm=["batch", "layer"], dropout=[0.1, 0.0])
    kinds = [type(layer) for layer in m.net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.GELU, SparseDropout, nn.Linear, nn.LayerNorm, nn.Tanh, nn.Linear]
    with pytest.raises(ValueError, match="model.activation"):
        _model(activation=["relu"])
    with pytest.raises(ValueError, match="model.activation"):
        _model(activation="bogus")


def test_only_present_condition_rows_get_gradient():
    m = _model()
    cond = torch.tensor([1, 3, 3])
    m(torch.randn(3, 3), torch.zeros(3, 2, dtype=torch.long), cond).sum().backward()
    row_has_grad = m.embedding.weight.grad.abs().sum(1) > 0
    assert row_has_grad.tolist() == [False, True, False, True, False]


def test_build_from_config_default_net():
    cfg = load_config()
    m = build_model(cfg.model, num_numeric=2, num_conditions=4, cat_vocab_sizes=())
    linears = [layer for layer in m.net if isinstance(layer, nn.Linear)]
    assert [layer.out_features for layer in linears] == [256, 256, 128, 64, 1]
    assert linears[0].in_features == 2 + 4
    # by hand: (in·out + out) per layer, 6 → 256 → 256 → 128 → 64 → 1, and the 4 × 4 condition embedding
    by_hand = 6 * 256 + 256 + 256 * 256 + 256 + 256 * 128 + 128 + 128 * 64 + 64 + 64 + 1 + 4 * 4
    assert count_parameters(m) == by_hand == 108_817
    m.embedding.weight.requires_grad_(False)  # only trainable parameters count
    assert count_parameters(m) == by_hand - 16


def test_bernoulli_positions_distribution():
    gen = torch.Generator().manual_seed(0)
    n, p = 200_000, 0.01
    counts = torch.stack([torch.bincount(bernoulli_positions(n, p, torch.device("cpu"), gen), minlength=n)
                          for _ in range(20)]).sum(0)
    assert counts.max() <= 20
    total = counts.sum().item()
    # mean number of ones n·p per draw; binomial sd sqrt(20·n·p·(1-p)) ≈ 199
    assert abs(total - 20 * n * p) < 5 * (20 * n * p * (1 - p)) ** 0.5
    # positions uniform: each decile of the sequence holds ~10%
    pos = torch.nonzero(counts).squeeze(1).float()
    deciles = torch.histc(pos, bins=10, min=0, max=n)
    assert (deciles / deciles.sum() - 0.1).abs().max() < 0.01
    # gaps are geometric: P(gap = 1) = p
    single = bernoulli_positions(n, 0.3, torch.device("cpu"), gen)
    gaps = torch.diff(single)
    assert abs((gaps == 1).float().mean().item() - 0.3) < 0.01
    assert bernoulli_positions(10, 0.5, torch.device("cpu"), gen).max() < 10


def test_sparse_dropout_matches_dropout_statistics_and_gradient():
    torch.manual_seed(1)
    drop = SparseDropout(0.05)
    x = torch.ones(400, 500, requires_grad=True)
    out = drop(x)
    zero = out == 0
    assert abs(zero.float().mean().item() - 0.05) < 0.005
    assert torch.allclose(out[~zero], torch.full_like(out[~zero], 1 / 0.95))
    out.sum().backward()
    assert torch.equal(x.grad == 0, zero)  # dropped positions get no gradient
    assert torch.allclose(x.grad[~zero], torch.full_like(x.grad[~zero], 1 / 0.95))
    drop.eval()
    assert torch.equal(drop(x), x)
    big = SparseDropout(0.5)  # above the sparse threshold: torch's dropout
    assert abs((big(torch.ones(1000, 100)) == 0).float().mean().item() - 0.5) < 0.02
    with pytest.raises(ValueError):
        SparseDropout(1.0)
