"""The configured losses (le_ray.training.objectives): the evaluation loss as a weighted mean over sequential
batches, checked against an explicit loop of the earlier system's ``evaluate()`` over the per-batch LE of
``tests.test_losses._reference_le``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import le_ray.training.objectives as objectives
from le_ray.config import load_config
from le_ray.data.batches import Batch
from le_ray.training.objectives import make_objective
from tests.test_losses import _reference_le


def _batch(n, c, seed=0, weights=None):
    g = np.random.default_rng(seed)
    cond = g.integers(0, c, n)
    cond[: n // 3] = 0  # the first batches lack some conditions
    y = (g.random(n) < 0.05 + 0.1 * cond / c).astype(float)
    z = g.normal(-2.0, 1.0, n)
    w = np.ones(n) if weights is None else weights
    t = lambda a, dt=torch.float64: torch.tensor(a, dtype=dt)  # noqa: E731
    return Batch(t(np.zeros((n, 1))), torch.zeros((n, 0), dtype=torch.long), t(cond, torch.long), t(y), t(w)), z


def _evaluate_like_the_earlier_system(z, batch, size, **le):
    """Σ_b LE_b·W_b / max(Σ W_b, 1) over sequential batches, each LE_b from the explicit loop."""
    y, c, w = batch.y.numpy(), batch.cond.numpy(), batch.w.numpy()
    total = sum(_reference_le(z[i:i + size], y[i:i + size], c[i:i + size], w[i:i + size], **le) * w[i:i + size].sum()
                for i in range(0, len(z), size))
    return total / max(w.sum(), 1.0)


def _le(rates, c, norm_strength=1.0):
    settings = load_config().training_for("localized_entropy")
    settings = settings.model_copy(update={"le": settings.le.model_copy(update={"norm_strength": norm_strength})})
    return make_objective("le", settings, base_rates=None if rates is None else torch.tensor(rates, dtype=torch.float64),
                          num_conditions=c, device=torch.device("cpu"), dtype=torch.float64, with_history=False)


@pytest.mark.parametrize("rates,s", [([0.02, 0.05, 0.1, 0.2, 0.3], 1.0), ([0.02, float("nan"), 0.1], 0.5), (None, 1.0)])
def test_the_evaluation_le_is_the_weighted_mean_of_the_batches_les(rates, s):
    batch, z = _batch(1003, 5, weights=np.linspace(1.0, 2.0, 1003))
    objective = _le(rates, 5, s)
    got = float(objective.batched_mean(torch.tensor(z), batch, 128))
    want = _evaluate_like_the_earlier_system(z, batch, 128, base_rates=rates, s=s)
    assert got == pytest.approx(want, rel=1e-12)
    whole = float(objective(torch.tensor(z), batch, use_history=False))
    assert whole < want / 3  # the whole split normalised at once: roughly N / batch_size smaller
    assert float(objective.batched_mean(torch.tensor(z), batch, 128)) == got  # cached segments: the same value


def test_a_split_no_larger_than_a_batch_is_one_batch():
    batch, z = _batch(100, 3)
    objective = _le([0.1, 0.2, 0.3], 3)
    assert float(objective.batched_mean(torch.tensor(z), batch, 100)) == float(objective(torch.tensor(z), batch))


def test_many_batches_and_conditions_are_summed_a_bounded_number_of_pairs_at_a_time(monkeypatch):
    batch, z = _batch(2050, 4, seed=3)
    objective = _le([0.05, 0.1, 0.15, 0.2], 4)
    one_call = float(objective.batched_mean(torch.tensor(z), batch, 100))
    monkeypatch.setattr(objectives, "MAX_SEGMENT_SLOTS", 12)  # 3 batches per call: 7 calls
    chunked = float(_le([0.05, 0.1, 0.15, 0.2], 4).batched_mean(torch.tensor(z), batch, 100))
    want = _evaluate_like_the_earlier_system(z, batch, 100, base_rates=[0.05, 0.1, 0.15, 0.2])
    assert one_call == pytest.approx(want, rel=1e-12) and chunked == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("name", ["bce", "focal"])
def test_bce_and_focal_batch_means_are_the_whole_mean(name):
    batch, z = _batch(1003, 5)
    objective = make_objective(name, load_config().training_for(name), base_rates=None, num_conditions=5,
                               device=torch.device("cpu"), dtype=torch.float64, with_history=False)
    per_batch = [float(objective(torch.tensor(z[i:i + 128]), Batch(*(t[i:i + 128] for t in (
        batch.x_num, batch.x_cat, batch.cond, batch.y, batch.w))))) * min(128, 1003 - i) for i in range(0, 1003, 128)]
    assert float(objective.batched_mean(torch.tensor(z), batch, 128)) == pytest.approx(sum(per_batch) / 1003, rel=1e-12)
    assert math.isfinite(sum(per_batch))
