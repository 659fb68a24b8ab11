"""Per-condition squared logit-gradient diagnostics (le_ray.training.grad_diagnostics) against a hand case: every
logit at ln(1/3) (p = 1/4), so a row's BCE gradient is (1/4 − y) / N and its LE gradient (1/4 − y) / (N·den_j)."""

import math

import numpy as np
import pytest
import torch

from le_ray.data.batches import Batch
from le_ray.training.grad_diagnostics import GradSqAccumulator


def _hand_case():
    cond = torch.tensor([0, 0, 1, 1, 1, 1])
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    n = 6
    batch = Batch(torch.zeros((n, 1), dtype=torch.float64), torch.zeros((n, 0), dtype=torch.long), cond, y,
                  torch.ones(n, dtype=torch.float64))
    logits = torch.full((n,), -math.log(3.0), dtype=torch.float64)
    # den_j = ones_j·(−ln p_j) + zeros_j·(−ln(1 − p_j)) with the supplied rates p = (0.1, 0.5), not the batch's own
    # click rates (1/2, 1/4): a diagnostic that ignored the trial's rates would get other denominators
    den = np.array([-math.log(0.1) - math.log(0.9), -math.log(0.5) - 3 * math.log(0.5)])
    return batch, logits, den, n


def test_each_column_is_the_hand_computed_value():
    batch, logits, den, n = _hand_case()
    objective = type("O", (), {"base_rates": torch.tensor([0.1, 0.5], dtype=torch.float64)})()
    acc = GradSqAccumulator(torch.device("cpu"), objective)
    acc.add(logits, batch)
    acc.add(logits, batch)  # two identical batches: means unchanged, counts doubled
    g = acc.result()
    counts = np.array([[1, 1], [3, 1]]) * 2  # [condition, class 0 / class 1]
    bce_sq = counts * np.array([(0.25 / n) ** 2, (0.75 / n) ** 2])  # Σ g² per class
    le_sq = bce_sq / den[:, None] ** 2
    np.testing.assert_array_equal(g["count"], counts.sum(1))
    bce_mse, le_mse = bce_sq.sum(1) / counts.sum(1), le_sq.sum(1) / counts.sum(1)
    np.testing.assert_allclose(g["bce_mse"], bce_mse, rtol=1e-12)
    np.testing.assert_allclose(g["le_mse"], le_mse, rtol=1e-12)
    np.testing.assert_allclose(g["ratio_raw"], 1 / den ** 2, rtol=1e-12)  # LE's gradient is BCE's over den_j
    bce_global, le_global = bce_sq.sum() / counts.sum(), le_sq.sum() / counts.sum()
    np.testing.assert_allclose(g["ratio_normalised"], (le_mse / le_global) / (bce_mse / bce_global), rtol=1e-12)
    np.testing.assert_allclose(g["class_ratio_bce"], [9.0, 9.0], rtol=1e-12)  # (3/4)² / (1/4)², class 1 over 0
    np.testing.assert_allclose(g["class_ratio_le"], [9.0, 9.0], rtol=1e-12)


def test_no_batch_gives_none():
    objective = type("O", (), {"base_rates": torch.tensor([0.5], dtype=torch.float64)})()
    assert GradSqAccumulator(torch.device("cpu"), objective).result() is None


def test_a_condition_without_rows_has_nan_means_not_zero():
    batch, logits, _, _ = _hand_case()
    objective = type("O", (), {"base_rates": torch.tensor([0.5, 0.25, 0.1], dtype=torch.float64)})()
    acc = GradSqAccumulator(torch.device("cpu"), objective)
    acc.add(logits, batch)
    g = acc.result()
    assert g["count"][2] == 0 and np.isnan(g["bce_mse"][2]) and np.isnan(g["ratio_raw"][2])
    assert g["bce_mse"][0] == pytest.approx(((0.25 / 6) ** 2 + (0.75 / 6) ** 2) / 2)
