"""Hand-computed and reference-implementation checks for le_ray.training.losses."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from le_ray.training.cross_batch import CrossBatchHistory, history_capacities
from le_ray.training.losses import (
    bce_loss,
    focal_loss,
    localized_entropy,
    per_condition_le_stats,
)

LN2 = math.log(2.0)


def _toy(dtype=torch.float64):
    """Two conditions, each with one positive and one negative, logits 0."""
    z = torch.zeros(4, dtype=dtype)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=dtype)
    c = torch.tensor([0, 0, 1, 1])
    return z, y, c


def _bce_np(z, y):
    z, y = float(z), float(y)
    return max(z, 0.0) - z * y + math.log1p(math.exp(-abs(z)))


def _reference_le(z, y, c, w=None, base_rates=None, cond_w=None, eps=1e-12, s=1.0, window=None):
    """Explicit-loop LE; window maps condition -> list of (pos_w, neg_w, b)."""
    z, y, c = np.asarray(z, float), np.asarray(y, float), np.asarray(c)
    w = np.ones_like(z) if w is None else np.asarray(w, float)
    total = 0.0
    for j in sorted(set(c.tolist())):
        num = ones = weight = 0.0
        for i in range(len(z)):
            if c[i] == j:
                num += w[i] * _bce_np(z[i], y[i])
                ones += w[i] * y[i]
                weight += w[i]
        zeros = weight - ones
        for pw, nw, b in (window or {}).get(j, []):
            ones, zeros, num = ones + pw, zeros + nw, num + b
        p = None
        if base_rates is not None and j < len(base_rates):
            q = float(base_rates[j])
            p = q if math.isfinite(q) and 0.0 <= q <= 1.0 else None
        if p is None:
            p = ones / max(ones + zeros, 1.0)
        p = min(max(p, eps), 1.0 - eps)
        den = max(ones * -math.log(p) + zeros * -math.log1p(-p), eps) ** s
        cw = 1.0
        if cond_w is not None and j < len(cond_w) and math.isfinite(cond_w[j]) and cond_w[j] > 0:
            cw = float(cond_w[j])
        total += cw * num / den
    return total / max(w.sum(), 1.0)


class _ReferenceHistory:
    """Lists of (pos_w, neg_w, b) per condition with static capacities caps[j]."""

    def __init__(self, caps):
        self.caps, self.win = list(caps), {}

    def update(self, z, y, c, w=None):
        w = np.ones(len(z)) if w is None else np.asarray(w, float)
        for j in sorted(set(c.tolist())):
            new = [
                (w[i] * (y[i] >= 0.5), w[i] * (y[i] < 0.5), w[i] * _bce_np(z[i], y[i]))
                for i in range(len(z)) if c[i] == j
            ]
            self.win[j] = (self.win.get(j, []) + new)[-self.caps[j]:]


# --------------------------------------------------------------------------- LE closed forms


def test_balanced_toy_is_half():
    z, y, c = _toy()
    # b_i = ln 2, den_j = 2 ln 2, term_j = 1, loss = 2 / 4
    assert localized_entropy(z, y, c).item() == pytest.approx(0.5, abs=1e-12)


def test_supplied_base_rates_closed_form():
    z, y, c = _toy()
    loss = localized_entropy(z, y, c, base_rates=torch.tensor([0.25, 0.75]))
    # den_j = ln 4 + ln(4/3) for both conditions (one positive, one negative)
    den = math.log(4.0) + math.log(4.0 / 3.0)
    assert loss.item() == pytest.approx(2 * (2 * LN2 / den) / 4, rel=1e-12)


def test_out_of_range_base_rate_falls_back_to_batch_rate():
    z, y, c = _toy()
    loss = localized_entropy(z, y, c, base_rates=torch.tensor([float("nan"), 1.5]))
    assert loss.item() == pytest.approx(0.5, abs=1e-12)


def test_ids_beyond_base_rates_fall_back_to_empirical_rate():
    # condition 0 has a supplied rate; 1 and 2 lie beyond len(base_rates) = 1
    z = torch.zeros(9, dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    c = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2, 2])
    br = torch.tensor([0.25], dtype=torch.float64)
    den0 = math.log(4.0) + math.log(4.0 / 3.0)  # p = 0.25 on one positive, one negative
    den1 = 2 * math.log(1.5) + math.log(3.0)  # empirical 2/3 on 2 positives, 1 negative
    den2 = math.log(4.0) + 3 * math.log(4.0 / 3.0)  # empirical 1/4 on 1 positive, 3 negatives
    want = (2 * LN2 / den0 + 3 * LN2 / den1 + 4 * LN2 / den2) / 9
    assert localized_entropy(z, y, c, base_rates=br).item() == pytest.approx(want, rel=1e-12)
    got = localized_entropy(z, y, c, base_rates=br, num_conditions=3)  # the no-sync path
    assert got.item() == pytest.approx(want, rel=1e-12)
    # the empirical rate uses batch + window counts: a window of condition 2 holding two
    # positives (b = 0) makes its rate 3/6 and its ones/zeros 3/3
    hist = CrossBatchHistory(1000.0, torch.full((3,), 0.5, dtype=torch.float64), dtype=torch.float64)
    hist.update(torch.tensor([2, 2]), torch.ones(2), torch.zeros(2, dtype=torch.float64))
    with_window = localized_entropy(z, y, c, base_rates=br, history=hist, num_conditions=3)
    want = (2 * LN2 / den0 + 3 * LN2 / den1 + 4 * LN2 / (6 * LN2)) / 9
    assert with_window.item() == pytest.approx(want, rel=1e-12)
    # ids >= an explicit C are an error that names the range
    with pytest.raises(IndexError, match=r"\[0, 2\)"):
        localized_entropy(z, y, c, base_rates=br, num_conditions=2)


def test_condition_and_sample_weights_match_loop_reference():
    g = torch.Generator().manual_seed(0)
    n = 40
    z = torch.randn(n, generator=g, dtype=torch.float64) * 2
    y = (torch.rand(n, generator=g) < 0.3).double()
    c = torch.randint(0, 5, (n,), generator=g)
    w = torch.rand(n, generator=g, dtype=torch.float64) * 2
    cw = torch.tensor([2.0, float("nan"), -1.0, 0.5, 3.0], dtype=torch.float64)
    br = torch.tensor([0.1, 0.3, float("inf"), 0.05, 2.0], dtype=torch.float64)
    got = localized_entropy(z, y, c, sample_weights=w, condition_weights=cw, base_rates=br)
    want = _reference_le(z, y, c, w=w, base_rates=br, cond_w=cw.tolist())
    assert got.item() == pytest.approx(want, rel=1e-10)
    # condition weights alone scale each term: weight 2 on condition 0 of the toy gives 3/4
    zt, yt, ct = _toy()
    got = localized_entropy(zt, yt, ct, condition_weights=torch.tensor([2.0, 1.0]))
    assert got.item() == pytest.approx(0.75, abs=1e-12)


def test_norm_strength_zero_is_mean_bce():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(64, generator=g)
    y = (torch.rand(64, generator=g) < 0.4).float()
    c = torch.randint(0, 7, (64,), generator=g)
    le = localized_entropy(z, y, c, norm_strength=0.0)
    assert torch.equal(le, bce_loss(z, y))
    assert torch.allclose(le, F.binary_cross_entropy_with_logits(z, y), rtol=1e-6, atol=0)
    w = torch.rand(64, generator=g) * 3
    le_w = localized_entropy(z, y, c, norm_strength=0.0, sample_weights=w)
    assert torch.allclose(le_w, bce_loss(z, y, sample_weights=w), rtol=1e-6, atol=0)


def test_norm_strength_scales_the_denominator_power():
    z, y, c = _toy()
    # den_j = 2 ln 2, term_j = 2 ln 2 / (2 ln 2)^0.5
    got = localized_entropy(z, y, c, norm_strength=0.5)
    assert got.item() == pytest.approx(2 * math.sqrt(2 * LN2) / 4, rel=1e-12)


def test_sum_reduction_is_mean_times_weight():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(30, generator=g, dtype=torch.float64)
    y = (torch.rand(30, generator=g) < 0.5).double()
    c = torch.randint(0, 3, (30,), generator=g)
    w = torch.rand(30, generator=g, dtype=torch.float64) + 0.5
    mean = localized_entropy(z, y, c, sample_weights=w)
    total = localized_entropy(z, y, c, sample_weights=w, reduction="sum")
    assert total.item() == pytest.approx(mean.item() * w.sum().item(), rel=1e-12)
    assert localized_entropy(z, y, c, reduction="sum").item() == pytest.approx(
        30 * localized_entropy(z, y, c).item(), rel=1e-12
    )
    with pytest.raises(ValueError):
        localized_entropy(z, y, c, reduction="none")


def test_extreme_logits_stay_finite():
    z = torch.tensor([1000.0, -1000.0, 1000.0, -1000.0, 0.0, 3.0], requires_grad=True)
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 1.0])  # two confidently wrong, two right
    c = torch.tensor([0, 0, 1, 1, 2, 2])  # condition 2 has no negatives: p clamps to 1-eps
    for kwargs in ({}, {"base_rates": torch.tensor([0.0, 1.0, 0.5])}):
        loss = localized_entropy(z, y, c, **kwargs)
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(12, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1], dtype=torch.float64)
    c = torch.arange(12) % 3  # every condition has both labels: moderate denominators
    w = torch.rand(12, generator=g, dtype=torch.float64) + 0.1
    kw = dict(sample_weights=w, base_rates=torch.tensor([0.2, 0.6, float("nan")]),
              condition_weights=torch.tensor([1.5, 1.0, 0.7]), norm_strength=0.8)
    assert torch.autograd.gradcheck(lambda t: localized_entropy(t, y, c, **kw), (z,))
    hist = CrossBatchHistory(4.0, torch.tensor([0.5, 0.5, 0.5]), dtype=torch.float64)
    localized_entropy(z.detach() + 0.5, y, c, history=hist)
    # each evaluation mutates the history, so evaluate against copies of one state
    assert torch.autograd.gradcheck(
        lambda t: localized_entropy(t, y, c, history=copy.deepcopy(hist)), (z,)
    )


def test_logits_of_shape_n_by_1_and_int32_conditions():
    z, y, c = _toy()
    assert localized_entropy(z[:, None], y, c.int()).item() == pytest.approx(0.5, abs=1e-12)


def test_zero_positive_condition_raw_rate_explodes_jeffreys_is_moderate():
    z = torch.full((8,), -3.0, dtype=torch.float64)
    y = torch.zeros(8, dtype=torch.float64)
    c = torch.zeros(8, dtype=torch.long)
    # raw rate 0 clamps to eps=1e-12: den = 8 * -log(1 - 1e-12) ~ 8e-12, so the term is ~1e10
    raw = localized_entropy(z, y, c, base_rates=torch.tensor([0.0], dtype=torch.float64))
    assert torch.isfinite(raw) and raw.item() > 1e9
    jeffreys = (0 + 0.5) / (8 + 1)
    moderate = localized_entropy(z, y, c, base_rates=torch.tensor([jeffreys], dtype=torch.float64))
    want = _bce_np(-3.0, 0.0) / -math.log1p(-jeffreys) / 8  # num / den / W
    assert moderate.item() == pytest.approx(want, rel=1e-12) and moderate.item() < 1.0


def test_per_condition_stats():
    z = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    c = torch.tensor([0, 0, 2, 2])
    w = torch.tensor([1.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    s = per_condition_le_stats(z, y, c, sample_weights=w, num_conditions=4)
    np.testing.assert_allclose(s["count"], [2, 0, 2, 0])
    np.testing.assert_allclose(s["weight"], [3, 0, 2, 0])
    np.testing.assert_allclose(s["ones"], [1, 0, 2, 0])
    np.testing.assert_allclose(s["zeros"], [2, 0, 0, 0])
    np.testing.assert_allclose(s["numerator"][0], 3 * LN2)
    np.testing.assert_allclose(s["base_rate"][0], 1 / 3)
    assert np.isnan(s["base_rate"][1])
    np.testing.assert_allclose(s["denominator"][0], math.log(3) + 2 * math.log(1.5))
    total = (s["numerator"] / np.maximum(s["denominator"], 1e-12))[s["count"] > 0].sum() / 5
    assert total == pytest.approx(localized_entropy(z, y, c, sample_weights=w).item(), rel=1e-12)


def test_stats_and_loss_share_the_base_rate_fallback():
    # supplied rates: usable (0.2), NaN, out of range, exact 0 and 1; condition 5 lies beyond
    # len(base_rates) and condition 6 is absent from the batch
    eps = 1e-3
    z = torch.tensor([0.5, -1.0, 0.0, 2.0, -0.5, 1.0, 0.0, 0.3, -2.0, 0.7], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    c = torch.tensor([0, 0, 1, 1, 1, 2, 2, 3, 4, 5])
    w = torch.tensor([1.0, 2.0, 0.5, 1.0, 1.0, 3.0, 1.0, 1.0, 2.0, 1.0], dtype=torch.float64)
    br = torch.tensor([0.2, float("nan"), -0.5, 0.0, 1.0], dtype=torch.float64)
    s = per_condition_le_stats(z, y, c, base_rates=br, sample_weights=w, eps=eps, num_conditions=7)
    empirical = [None, 1.5 / 2.5, 3.0 / 4.0, None, None, 0.0, None]
    want = [0.2, empirical[1], empirical[2], eps, 1.0 - eps, eps, math.nan]
    np.testing.assert_array_equal(s["base_rate"], want)
    total = (s["numerator"] / np.maximum(s["denominator"], eps))[s["count"] > 0].sum() / w.sum().item()
    for k in ({}, {"num_conditions": 7}):
        loss = localized_entropy(z, y, c, base_rates=br, sample_weights=w, eps=eps, **k)
        assert loss.item() == pytest.approx(total, rel=1e-12)
        assert loss.item() == pytest.approx(_reference_le(z, y, c, w, br.tolist(), eps=eps), rel=1e-12)


# --------------------------------------------------------------------------- cross-batch history


def test_history_two_batches_balanced_toy():
    z1, y, c = _toy()
    z2 = torch.tensor([0.3, -0.2, 1.0, 2.0], dtype=torch.float64)
    hist = CrossBatchHistory(1000.0, torch.tensor([0.5, 0.5]), dtype=torch.float64)
    first = localized_entropy(z1, y, c, history=hist)
    assert first.item() == pytest.approx(0.5, abs=1e-12)  # empty windows: plain LE
    second = localized_entropy(z2, y, c, history=hist)
    b1 = F.binary_cross_entropy_with_logits(z1, y, reduction="none")
    b2 = F.binary_cross_entropy_with_logits(z2, y, reduction="none")
    # per condition: num = Σb1 + Σb2, den = 2 ln 2 + 2 ln 2, batch W = 4
    want = sum((b1[2 * j:2 * j + 2].sum() + b2[2 * j:2 * j + 2].sum()) / (4 * LN2) for j in (0, 1)) / 4
    assert second.item() == pytest.approx(want.item(), rel=1e-12)
    # single-condition form of the spec: ((Σb1 + Σb2) / (4 ln 2)) / 2
    h1 = CrossBatchHistory(1000.0, torch.tensor([0.5]), dtype=torch.float64)
    localized_entropy(z1[:2], y[:2], c[:2], history=h1)
    got = localized_entropy(z2[:2], y[:2], c[:2], history=h1)
    assert got.item() == pytest.approx(((b1[:2].sum() + b2[:2].sum()) / (4 * LN2) / 2).item(), rel=1e-12)
    assert h1.window_sizes().tolist() == [4]


def test_history_capacity_and_fifo_eviction():
    hist = CrossBatchHistory(2.0, torch.tensor([0.5]), dtype=torch.float64)
    c = torch.zeros(6, dtype=torch.long)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    b = torch.arange(1.0, 7.0, dtype=torch.float64)  # oldest = 1
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    hist.update(c, y, b, sample_weights=w)
    assert hist.capacities().tolist() == [4]  # ceil(2 / 0.5)
    assert hist.window_sizes().tolist() == [4]
    pos, neg, bsum = hist.window_sums()
    assert (pos[0], neg[0], bsum[0]) == (3.0 + 5.0, 4.0 + 6.0, 3.0 + 4.0 + 5.0 + 6.0)
    np.testing.assert_allclose(hist.window_entries(0)[:, 2], [3, 4, 5, 6])
    # two more: the two oldest (3, 4) leave
    hist.update(c[:2], y[:2], torch.tensor([7.0, 8.0], dtype=torch.float64))
    np.testing.assert_allclose(hist.window_entries(0)[:, 2], [5, 6, 7, 8])
    assert hist.window_sums()[2][0] == 26.0


def test_history_unseen_conditions_and_changing_batches_match_reference():
    g = torch.Generator().manual_seed(4)
    base = torch.tensor([0.3, float("nan"), 0.0, 0.05, 0.6, float("nan"), 0.02, 0.5], dtype=torch.float64)
    hist = CrossBatchHistory(1.5, base, max_window=40, dtype=torch.float64)
    ref = _ReferenceHistory([5, 40, 40, 30, 3, 40, 40, 3])  # clamp(ceil(1.5 / r), 1, 40)
    assert hist.capacities().tolist() == ref.caps
    for step in range(25):
        n = int(torch.randint(1, 30, (1,), generator=g))
        hi = 3 if step < 5 else 8  # new conditions appear mid-way
        c = torch.randint(0, hi, (n,), generator=g)
        y = (torch.rand(n, generator=g) < 0.25).double()
        z = torch.randn(n, generator=g, dtype=torch.float64)
        w = torch.rand(n, generator=g, dtype=torch.float64) + 0.2
        rates = base if step % 3 else None
        want = _reference_le(z, y, c, w=w, base_rates=rates, window=ref.win)
        size = 8 if step % 2 else None  # explicit C, or inferred from the history's size
        got = localized_entropy(z, y, c, sample_weights=w, base_rates=rates, history=hist, num_conditions=size)
        ref.update(z.numpy(), y.numpy(), c.numpy(), w.numpy())
        assert got.item() == pytest.approx(want, rel=1e-9)
        for j, entries in ref.win.items():
            np.testing.assert_allclose(hist.window_entries(j), np.array(entries, dtype=float), rtol=1e-12)
        sizes = hist.window_sizes()
        assert [sizes[j] for j in sorted(ref.win)] == [len(ref.win[j]) for j in sorted(ref.win)]
    pos, neg, bsum = hist.window_sums()
    for j, entries in ref.win.items():
        np.testing.assert_allclose([pos[j], neg[j], bsum[j]], np.sum(entries, axis=0), rtol=1e-9)
    hist.reset()
    assert hist.window_sizes().sum() == 0


def test_history_storage_bounded_by_max_entries_not_max_window():
    rates = torch.zeros(2_000)  # rate 0 -> capacity 10^6 each
    hist = CrossBatchHistory(64.0, rates, max_window=1_000_000, max_entries=torch.full((2_000,), 4))
    c = torch.arange(2_000).repeat(4)
    hist.update(c, torch.zeros(8_000), torch.ones(8_000))
    assert (hist.capacities() == 1_000_000).all() and (hist.window_sizes() == 4).all()
    assert hist.storage_rows() == 1 + 8_000
    np.testing.assert_array_equal(history_capacities(rates, 64.0, 1_000_000, [4] * 2_000), hist.ring_sizes())


# --------------------------------------------------------------------------- BCE / focal


def test_bce_weighted_mean():
    z = torch.tensor([0.5, -1.0, 2.0])
    y = torch.tensor([1.0, 0.0, 0.0])
    w = torch.tensor([0.1, 0.2, 0.3])
    per = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    assert bce_loss(z, y).item() == pytest.approx(per.mean().item())
    # Σw = 0.6 < 1, so the divisor is 1
    assert bce_loss(z, y, sample_weights=w).item() == pytest.approx((per * w).sum().item())
    assert bce_loss(z, y, sample_weights=w * 10).item() == pytest.approx(((per * w).sum() / 0.6).item())


def test_focal_gamma_zero_is_bce():
    g = torch.Generator().manual_seed(5)
    z = torch.randn(50, generator=g, dtype=torch.float64)
    y = (torch.rand(50, generator=g) < 0.3).double()
    assert torch.allclose(focal_loss(z, y, alpha=None, gamma=0.0), bce_loss(z, y), rtol=1e-12)


def test_focal_alpha_and_gamma_closed_form():
    z = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64)  # p = 0.5, 0.75
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    per = focal_loss(z, y, alpha=0.25, gamma=2.0, reduction="none")
    want0 = 0.25 * 0.5 ** 2 * LN2
    want1 = 0.75 * 0.75 ** 2 * -math.log(0.25)
    np.testing.assert_allclose(per.numpy(), [want0, want1], rtol=1e-12)
    assert focal_loss(z, y).item() == pytest.approx((want0 + want1) / 2, rel=1e-12)
    w = torch.tensor([2.0, 3.0], dtype=torch.float64)
    assert focal_loss(z, y, sample_weights=w).item() == pytest.approx((2 * want0 + 3 * want1) / 5, rel=1e-12)
    assert focal_loss(z, y, reduction="sum").item() == pytest.approx(want0 + want1, rel=1e-12)
    with pytest.raises(ValueError):
        focal_loss(z, y, reduction="avg")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_finite_at_extreme_logits_small_gamma(dtype):
    z = torch.tensor([1000.0, -1000.0, 1000.0, -1000.0], dtype=dtype, requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    loss = focal_loss(z, y, gamma=0.5)
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_history_binarises_soft_labels_at_half():
    hist = CrossBatchHistory(100.0, torch.tensor([0.5]), dtype=torch.float64)
    y = torch.tensor([0.7, 0.3, 0.5], dtype=torch.float64)
    w = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    hist.update(torch.zeros(3, dtype=torch.long), y, torch.ones(3, dtype=torch.float64), sample_weights=w)
    pos, neg, _ = hist.window_sums()
    assert (pos[0], neg[0]) == (5.0, 2.0)


def test_condition_counts_stay_exact_past_float32s_24_bit_significand():
    """A whole evaluation split can put over 2**24 rows in one condition: float32 sums of ones stop at
    16,777,216 there, so such an input's counts are accumulated in float64 (exact integers)."""
    from le_ray.training.losses import le_stat_tensors

    n = 2**24 + 3
    y = torch.zeros(n)
    y[:5] = 1.0
    stats = le_stat_tensors(torch.zeros(n), y, torch.zeros(n, dtype=torch.long), num_conditions=2)
    assert stats[0, 0].item() == n and stats[1, 0].item() == n and stats[2, 0].item() == 5  # count, weight, ones
    assert stats[3, 0].item() == n - 5 and stats[0, 1].item() == 0
