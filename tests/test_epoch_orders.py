"""Epoch orders drawn ahead: the same permutations, in the same sequence, as drawing each when it is due."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from le_ray.data.arrays import Split
from le_ray.data.batches import to_tensors
from le_ray.training.epoch_orders import EpochOrders


def _split(n: int = 1_003) -> Split:
    rng = np.random.default_rng(0)
    return Split(x_num=rng.normal(size=(n, 3)).astype(np.float32), x_cat=np.zeros((n, 0), dtype=np.int64),
                 cond=rng.integers(0, 4, n), y=rng.integers(0, 2, n).astype(np.float32), w=np.ones(n, np.float32),
                 row_id=np.arange(n))


def _sequential(tr, seed: int, epochs: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [tr.permutation(gen) for _ in range(epochs)]


@pytest.mark.parametrize("ahead", [False, True])
def test_orders_are_the_permutations_drawn_in_sequence(ahead):
    tr = to_tensors(_split(), device=torch.device("cpu"), dtype=torch.float32)
    want = _sequential(tr, 5, 4)
    with EpochOrders(tr, torch.Generator().manual_seed(5), 4, ahead=ahead) as orders:
        got = [orders.next() for _ in range(4)]
        with pytest.raises(RuntimeError, match="already taken"):
            orders.next()
    for w, g in zip(want, got):
        assert torch.equal(w, g.rows)
        # the saved state draws the same order again (the non-finite report relies on it)
        assert torch.equal(tr.permutation(torch.Generator().set_state(g.generator_state)), g.rows)
    assert len({tuple(g.rows[:20].tolist()) for g in got}) == 4  # a fresh order every epoch


@pytest.mark.parametrize("epochs, draws", [(3, 2), (1, 1)])
def test_ahead_draws_the_next_order_before_it_is_asked_for_and_none_past_the_last(epochs, draws):
    """After the first order is taken, the generator has drawn the second too (in the background), unless the
    first was the last epoch's."""
    tr = to_tensors(_split(), device=torch.device("cpu"), dtype=torch.float32)
    gen, reference = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    with EpochOrders(tr, gen, epochs, ahead=True) as orders:
        orders.next()
        deadline = time.monotonic() + 30
        while orders._pending is not None and not orders._pending.done():
            assert time.monotonic() < deadline, "the next order was not drawn within 30 s"
            time.sleep(0.01)
        for _ in range(draws):
            tr.permutation(reference)
        assert torch.equal(gen.get_state(), reference.get_state())
    with EpochOrders(tr, torch.Generator().manual_seed(9), 3, ahead=False) as lazy:
        assert lazy._pending is None  # without ahead nothing is drawn before it is asked for


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_orders_on_cuda_match_the_cpu_draws():
    cuda = torch.device("cuda:0")
    tr = to_tensors(_split(50_000), device=cuda, dtype=torch.float32)
    want = _sequential(to_tensors(_split(50_000), device=torch.device("cpu"), dtype=torch.float32), 4, 3)
    with EpochOrders(tr, torch.Generator().manual_seed(4), 3, ahead=True) as orders:
        got = [orders.next() for _ in range(3)]
    torch.cuda.synchronize()
    for w, g in zip(want, got):
        assert g.rows.device.type == "cuda" and torch.equal(w, g.rows.cpu())
