"""Tensor batches: coverage of every row once per epoch, seeded order, dtype/device staging."""

import numpy as np
import torch

from le_ray.data.arrays import Split
from le_ray.data.batches import to_tensors


def _split(n=103):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    x.flags.writeable = False  # like arrays coming out of Ray's object store
    return Split(x, rng.integers(0, 3, (n, 1)).astype(np.int32), rng.integers(0, 4, n).astype(np.int32),
                 rng.integers(0, 2, n).astype(np.float32), np.ones(n, np.float32), np.arange(n))


def test_each_row_once_per_epoch_and_seeded():
    split = _split()
    t = to_tensors(split, device=torch.device("cpu"), dtype=torch.float64)
    assert t.x_num.dtype == torch.float64 and t.cond.dtype == torch.long and t.unit_weights
    batches = list(t.batches(t.permutation(torch.Generator().manual_seed(5)), 10))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    seen = torch.cat([b.x_num[:, 0] for b in batches]).numpy()
    np.testing.assert_allclose(np.sort(seen), np.sort(split.x_num[:, 0]))
    again = list(t.batches(t.permutation(torch.Generator().manual_seed(5)), 10))
    assert all(torch.equal(a.cond, b.cond) for a, b in zip(batches, again))
    other = list(t.batches(t.permutation(torch.Generator().manual_seed(6)), 10))
    assert not all(torch.equal(a.cond, b.cond) for a, b in zip(batches, other))


def test_rows_stay_aligned_and_sequential_order():
    split = _split()
    t = to_tensors(split, device=torch.device("cpu"), dtype=torch.float32)
    for b in t.batches(t.permutation(torch.Generator().manual_seed(1)), 7):
        idx = [int(np.flatnonzero(split.x_num[:, 0] == v)[0]) for v in b.x_num[:, 0].tolist()]
        np.testing.assert_array_equal(b.cond.numpy(), split.cond[idx])
        np.testing.assert_array_equal(b.y.numpy(), split.y[idx])
    seq = torch.cat([b.cond for b in t.sequential(10)]).numpy()
    np.testing.assert_array_equal(seq, split.cond)
    assert t.num_batches(10) == 11


def test_unlabelled_split():
    t = to_tensors(_split().without_labels(), device=torch.device("cpu"), dtype=torch.float32)
    assert t.y is None and next(t.sequential(5)).y is None


def test_host_staging_moves_batches_to_compute_device():
    # With a CPU "compute device" the path is exercised without CUDA: tensors stay in host memory.
    t = to_tensors(_split(), device=torch.device("cpu"), dtype=torch.float32, stage_on_device=False)
    assert t.device.type == "cpu" and t.x_num.device.type == "cpu"
    whole = t.whole()
    assert len(whole) == len(t) and torch.equal(whole.cond, t.cond)
