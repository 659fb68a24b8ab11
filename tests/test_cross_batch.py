"""CrossBatchHistory against a deque model of the reference semantics; no host syncs in LE steps."""

from __future__ import annotations

import copy
import math
from collections import Counter, deque
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import nn

from le_ray.training.cross_batch import CrossBatchHistory, history_capacities
from le_ray.training.losses import localized_entropy

NAN, INF = float("nan"), float("inf")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])]


def _cap_by_hand(rate: float, a: float, max_window: int) -> int:
    if math.isfinite(rate) and 0.0 < rate < 1.0:
        return min(max(1, math.ceil(a / rate)), max_window)
    if math.isfinite(rate) and rate >= 1.0:
        return min(max(1, math.ceil(a)), max_window)
    return max_window


class _DequeHistory:
    """The reference system's CrossBatchHistory with static capacities: per condition a deque
    of (label, weight, b); a batch's samples are appended one by one in batch order, each
    append first evicting the oldest while the deque is full; running sums by label."""

    def __init__(self, caps):
        self.caps = list(caps)
        self.buf = [deque() for _ in self.caps]
        self.sums = [[0.0, 0.0, 0.0] for _ in self.caps]  # pos weight, neg weight, b
        self.pushed = [0] * len(self.caps)

    def _add(self, j, entry, sign):
        label, weight, b = entry
        self.sums[j][0 if label == 1 else 1] += sign * weight
        self.sums[j][2] += sign * b

    def update(self, c, y, b, w=None):
        for i in range(len(c)):
            j = int(c[i])
            entry = (1 if float(y[i]) >= 0.5 else 0, 1.0 if w is None else float(w[i]),
                     float(b[i]) if math.isfinite(float(b[i])) else 0.0)
            while len(self.buf[j]) >= self.caps[j]:
                self._add(j, self.buf[j].popleft(), -1.0)
            self.buf[j].append(entry)
            self._add(j, entry, 1.0)
            self.pushed[j] += 1

    def entries(self, j):
        rows = [(wt if lab == 1 else 0.0, 0.0 if lab == 1 else wt, b) for lab, wt, b in self.buf[j]]
        return np.array(rows, dtype=np.float64).reshape(-1, 3)


# rates: ordinary, >= 1, <= 0, non-finite; A = 1.5 gives caps 30, 8, 3, 2, 2, 40, 40, 40, 40, 5
RATES = [0.05, 0.2, 0.5, 1.0, 1.5, 0.0, -0.1, NAN, INF, 0.3]
A, MAX_WINDOW = 1.5, 40


def _random_batches(seed, n_batches, num_conditions):
    """Batches whose values are dyadic (exact in float32 and in any float64 summation order):
    w in {0, 1/4, ..., 2}, b = integer / 64 (some non-finite), soft labels around 0.5."""
    rng = np.random.default_rng(seed)
    out = []
    for step in range(n_batches):
        n = int(rng.integers(1, 70))
        skew = rng.dirichlet(np.full(num_conditions, 0.3))  # often > cap rows of one condition
        c = rng.choice(num_conditions, size=n, p=skew)
        c[(c == 5) & (rng.random(n) > 0.05)] = 6  # condition 5 is rare: few entries, cap 40
        y = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], size=n)
        w = rng.integers(0, 9, size=n) / 4.0
        b = rng.integers(0, 4000, size=n) / 64.0
        if step % 7 == 3:
            b[0] = NAN if step % 2 else INF  # stored as 0, as the reference does
        out.append((torch.as_tensor(c), torch.as_tensor(y), torch.as_tensor(b), torch.as_tensor(w)))
    return out


def _assert_same(hist: CrossBatchHistory, ref: _DequeHistory):
    pos, neg, bsum = hist.window_sums()
    np.testing.assert_array_equal(np.stack([pos, neg, bsum], 1), np.array(ref.sums))
    np.testing.assert_array_equal(hist.window_sizes(), [len(d) for d in ref.buf])
    np.testing.assert_array_equal(hist.pushed(), ref.pushed)
    for j in range(len(ref.buf)):
        np.testing.assert_array_equal(hist.window_entries(j), ref.entries(j))


# --------------------------------------------------------------------------- capacities


def test_capacity_rule_by_hand():
    caps = history_capacities(np.array(RATES), A, MAX_WINDOW)
    assert caps.dtype == np.int64
    assert caps.tolist() == [30, 8, 3, 2, 2, 40, 40, 40, 40, 5]
    assert caps.tolist() == [_cap_by_hand(r, A, MAX_WINDOW) for r in RATES]
    # plain numbers are float64, as the reference's Python floats: 64 / 0.005 = 12800.0 exactly
    assert history_capacities([0.005, 0.1, 1e-300], 64.0, 10**6).tolist() == [12800, 640, 10**6]
    # a float32 tensor's rates are taken as they are: 0.005 in float32 is 0.00499999988824, so 12801
    assert history_capacities(torch.tensor([0.005]), 64.0, 10**6).tolist() == [12801]
    # a Tensor in gives a Tensor out; max_entries bounds the ring (at least one slot)
    got = history_capacities(torch.tensor(RATES[:4]), A, MAX_WINDOW, max_entries=[5, 100, 0, 1])
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
    assert got.tolist() == [5, 8, 1, 1]
    with pytest.raises(ValueError):
        history_capacities(RATES, 0.0, MAX_WINDOW)
    with pytest.raises(ValueError):
        history_capacities(RATES, A, MAX_WINDOW, max_entries=[1, 2])


def test_history_reports_rule_capacities_and_ring_sizes():
    hist = CrossBatchHistory(A, torch.tensor(RATES), max_window=MAX_WINDOW,
                             max_entries=[10] * len(RATES))
    assert hist.num_conditions == len(RATES)
    assert hist.capacities().tolist() == [30, 8, 3, 2, 2, 40, 40, 40, 40, 5]
    assert hist.ring_sizes().tolist() == [10, 8, 3, 2, 2, 10, 10, 10, 10, 5]
    assert hist.storage_rows() == 1 + 70


# --------------------------------------------------------------------------- deque reference


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bounded", [False, True])
def test_matches_deque_reference_over_epochs(dtype, bounded):
    batches = _random_batches(seed=7, n_batches=40, num_conditions=len(RATES))
    epochs = 3
    per_epoch = np.bincount(np.concatenate([c.numpy() for c, *_ in batches]), minlength=len(RATES))
    # max_entries = what each condition will receive over all epochs (often below its cap)
    max_entries = epochs * per_epoch if bounded else None
    hist = CrossBatchHistory(A, torch.tensor(RATES), max_window=MAX_WINDOW, max_entries=max_entries,
                             dtype=dtype)
    caps = [_cap_by_hand(r, A, MAX_WINDOW) for r in RATES]
    ref = _DequeHistory(caps)
    assert hist.capacities().tolist() == caps
    if bounded:
        ring = np.maximum(np.minimum(caps, max_entries), 1)
        assert (ring < caps).any() and hist.storage_rows() == 1 + ring.sum()
    oversized = 0
    for _ in range(epochs):
        for c, y, b, w in batches:
            oversized += int((np.bincount(c.numpy(), minlength=len(RATES)) > caps).any())
            hist.update(c, y, b.to(dtype), sample_weights=w.to(dtype))
            ref.update(c.numpy(), y.numpy(), b.numpy(), w.numpy())
            _assert_same(hist, ref)
    assert oversized > 10  # the batches did exercise in-batch eviction


def test_unweighted_updates_and_binarised_soft_labels():
    hist = CrossBatchHistory(100.0, torch.tensor([0.5, 0.5]), dtype=torch.float64)
    y = torch.tensor([0.7, 0.3, 0.5, 0.49], dtype=torch.float64)
    hist.update(torch.tensor([0, 0, 0, 1]), y, torch.ones(4, dtype=torch.float64),
                sample_weights=torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64))
    pos, neg, _ = hist.window_sums()
    assert (pos.tolist(), neg.tolist()) == ([5.0, 0.0], [2.0, 8.0])
    hist.update(torch.tensor([1, 1]), torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.25]))
    np.testing.assert_array_equal(hist.window_entries(1), [[0, 8, 1], [1, 0, 0.5], [0, 1, 0.25]])


def test_emptied_weight_sum_is_exactly_zero():
    # cap = ceil(1.5 / 0.75) = 2; 0.1 + 0.2 - 0.1 - 0.2 leaves ~5.6e-17 in float64
    hist = CrossBatchHistory(1.5, torch.tensor([0.75]), dtype=torch.float64)
    c, one = torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.float64)
    hist.update(c, one, one, sample_weights=torch.tensor([0.1, 0.2], dtype=torch.float64))
    hist.update(c, 0 * one, one, sample_weights=torch.tensor([0.3, 0.6], dtype=torch.float64))
    pos, neg, _ = hist.window_sums()
    assert pos[0] == 0.0 and neg[0] == pytest.approx(0.9, abs=1e-15)


def test_rejects_ids_outside_its_conditions():
    hist = CrossBatchHistory(2.0, torch.tensor([0.5, 0.5]))
    with pytest.raises(IndexError, match=r"\[0, 2\)"):
        hist.update(torch.tensor([0, 2]), torch.ones(2), torch.ones(2))


def test_reset_keeps_layout():
    hist = CrossBatchHistory(2.0, torch.tensor([0.5, 0.25]))
    hist.update(torch.tensor([0, 1, 1]), torch.ones(3), torch.ones(3))
    rows = hist.storage_rows()
    hist.reset()
    assert hist.window_sizes().tolist() == [0, 0] and hist.window_sums()[2].tolist() == [0, 0]
    assert hist.storage_rows() == rows and hist.capacities().tolist() == [4, 8]


# --------------------------------------------------------------------------- state and devices


def _fill(hist, ref, batches):
    for c, y, b, w in batches:
        hist.update(c, y, b, sample_weights=w)
        ref.update(c.numpy(), y.numpy(), b.numpy(), w.numpy())


def test_state_dict_round_trip_then_both_continue_alike():
    batches = _random_batches(seed=3, n_batches=20, num_conditions=len(RATES))
    hist = CrossBatchHistory(A, torch.tensor(RATES), max_window=MAX_WINDOW, dtype=torch.float64)
    ref = _DequeHistory([_cap_by_hand(r, A, MAX_WINDOW) for r in RATES])
    _fill(hist, ref, batches[:10])
    clone = CrossBatchHistory(9.0, torch.tensor([0.5, 0.5]), dtype=torch.float64)
    clone.load_state_dict(hist.state_dict())
    assert clone.amplification_rate == A and clone.max_window == MAX_WINDOW
    _assert_same(clone, ref)
    ref_copy = copy.deepcopy(ref)
    _fill(hist, ref, batches[10:])
    _fill(clone, ref_copy, batches[10:])
    _assert_same(hist, ref)
    _assert_same(clone, ref)


@pytest.mark.parametrize("device", DEVICES)
def test_to_device_keeps_windows_and_update_follows_inputs(device):
    batches = _random_batches(seed=5, n_batches=12, num_conditions=len(RATES))
    hist = CrossBatchHistory(A, torch.tensor(RATES), max_window=MAX_WINDOW, dtype=torch.float64)
    ref = _DequeHistory([_cap_by_hand(r, A, MAX_WINDOW) for r in RATES])
    _fill(hist, ref, batches[:6])
    assert hist.to(device) is hist and hist.device == torch.device(device)
    assert hist.window_totals().device.type == torch.device(device).type
    _assert_same(hist, ref)
    moved = [(c.to(device), y.to(device), b.to(device), w.to(device)) for c, y, b, w in batches[6:]]
    for (c, y, b, w), (c0, y0, b0, w0) in zip(moved, batches[6:]):
        hist.update(c, y, b, sample_weights=w)
        ref.update(c0.numpy(), y0.numpy(), b0.numpy(), w0.numpy())
    hist.to("cpu")
    _assert_same(hist, ref)


# --------------------------------------------------------------------------- host synchronisation

_SYNC_METHODS = ("item", "cpu", "tolist", "numpy", "__bool__", "__int__", "__float__", "__index__")


@contextmanager
def _count_host_reads(monkeypatch):
    """Counts calls of the Tensor methods that read device values on the host."""
    calls: Counter = Counter()
    with monkeypatch.context() as m:
        for name in _SYNC_METHODS:
            original = getattr(torch.Tensor, name)

            def counting(self, *args, _original=original, _name=name, **kwargs):
                calls[_name] += 1
                return _original(self, *args, **kwargs)

            m.setattr(torch.Tensor, name, counting)
        yield calls


def _le_steps(num_conditions, steps=10, seed=0):
    """A history and a closure running ``steps`` LE forward + backward passes through it."""
    g = torch.Generator().manual_seed(seed)
    rates = torch.rand(num_conditions, generator=g) * 0.3 + 0.01
    history = CrossBatchHistory(8.0, rates, max_entries=torch.full((num_conditions,), 10_000))
    model = nn.Sequential(nn.Linear(6, 16), nn.SiLU(), nn.Linear(16, 1))
    data = []
    for _ in range(steps):
        c = torch.randint(0, num_conditions, (257,), generator=g)
        data.append((torch.randn(257, 6, generator=g), (torch.rand(257, generator=g) < rates[c]).float(),
                     c, torch.rand(257, generator=g) + 0.5))

    def run(num_conditions_arg):
        for x, y, c, w in data:
            loss = localized_entropy(model(x), y, c, base_rates=rates, sample_weights=w,
                                     history=history, num_conditions=num_conditions_arg)
            loss.backward()
    return history, run


@pytest.mark.parametrize("num_conditions", [4, 300])
def test_le_steps_with_history_never_read_the_device(monkeypatch, num_conditions):
    history, run = _le_steps(num_conditions)
    with _count_host_reads(monkeypatch) as calls:
        run(num_conditions)
    assert dict(calls) == {}
    assert history.pushed().sum() == 10 * 257  # the steps did go through the history


def test_host_read_counter_catches_reads(monkeypatch):
    """The counter above can fail: a deliberate read, and C inferred from the ids, are seen."""
    t = torch.tensor([1.0, 2.0])
    with _count_host_reads(monkeypatch) as calls:
        t.sum().item(), bool(t[0] > 0), int(t[1]), float(t[0]), t.tolist()
    assert calls == Counter(item=1, __bool__=1, __int__=1, __float__=1, tolist=1)
    _, run = _le_steps(4, steps=2)
    with _count_host_reads(monkeypatch) as calls:
        run(None)  # C = max(..., max(conditions) + 1) reads the ids
    assert sum(calls.values()) >= 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_le_steps_with_history_do_not_synchronise_cuda():
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(2)
    num_conditions, n = 2_000, 16_384
    rates = torch.rand(num_conditions, generator=g, device=dev) * 0.1 + 0.005
    history = CrossBatchHistory(64.0, rates, device=dev)
    z = torch.randn(n, device=dev, requires_grad=True)
    batches = [(torch.randint(0, num_conditions, (n,), generator=g, device=dev),
                torch.rand(n, generator=g, device=dev)) for _ in range(10)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for c, u in batches:
            y = (u < rates[c]).float()
            localized_entropy(z, y, c, base_rates=rates, history=history,
                              num_conditions=num_conditions).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert history.pushed().sum() == 10 * n


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_updates_on_a_side_stream_give_the_same_windows():
    """use_stream: the update runs beside the caller's work and is joined before any read."""
    dev = torch.device("cuda")
    batches = _random_batches(seed=9, n_batches=30, num_conditions=len(RATES))
    plain = CrossBatchHistory(A, torch.tensor(RATES), max_window=MAX_WINDOW, dtype=torch.float64, device=dev)
    side = CrossBatchHistory(A, torch.tensor(RATES), max_window=MAX_WINDOW, dtype=torch.float64, device=dev)
    side.use_stream(torch.cuda.Stream(dev))
    ref = _DequeHistory([_cap_by_hand(r, A, MAX_WINDOW) for r in RATES])
    for c, y, b, w in batches:
        moved = [t.to(dev) for t in (c, y, b, w)]
        plain.update(*moved[:3], sample_weights=moved[3])
        side.update(*moved[:3], sample_weights=moved[3])
        ref.update(c.numpy(), y.numpy(), b.numpy(), w.numpy())
        del moved  # the history keeps its inputs alive until the join
    _assert_same(side.to("cpu"), ref)
    _assert_same(plain.to("cpu"), ref)


# --------------------------------------------------------------------------- warm start


def _virtual_entries(rates, eps=1e-12):
    """(p, 1 - p, H(p)) per condition by hand, None where the rate is not usable (the window starts empty)."""
    out = []
    for r in rates:
        if not (math.isfinite(r) and 0.0 <= r <= 1.0):
            out.append(None)
            continue
        p = min(max(r, eps), 1 - eps)
        out.append((p, 1 - p, -(p * math.log(p) + (1 - p) * math.log1p(-p))))
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_warm_start_fills_every_usable_window_with_base_rate_entries(device):
    """cap_j virtual entries (the rule's capacity, also where max_entries bounds the ring), none stored."""
    hist = CrossBatchHistory(A, torch.tensor(RATES), max_window=MAX_WINDOW, dtype=torch.float64, device=device,
                             max_entries=[10] * len(RATES))
    rows = hist.storage_rows()
    hist.warm_start(RATES)
    cap = hist.capacities()
    assert hist.storage_rows() == rows and (hist.ring_sizes() < cap).any()
    for j, virtual in enumerate(_virtual_entries(RATES)):
        want = np.zeros((0, 3)) if virtual is None else np.tile(virtual, (cap[j], 1))
        np.testing.assert_allclose(hist.window_entries(j), want, rtol=1e-15)
        np.testing.assert_allclose(hist.window_totals()[j].cpu().numpy(), want.sum(0), rtol=1e-12)
    assert hist.window_sizes().tolist() == [0 if v is None else cap[j] for j, v in enumerate(_virtual_entries(RATES))]
    with pytest.raises(ValueError, match="3 base rates for 10 conditions"):
        hist.warm_start(RATES[:3])
    hist.reset()  # forgets the virtual entries too
    assert hist.window_sizes().tolist() == [0] * len(RATES)


@pytest.mark.parametrize("bounded", [False, True])
def test_a_warm_window_is_the_cold_one_plus_the_virtual_entries_not_yet_evicted(bounded):
    """Real entries evict the virtual ones first in, first out: at every step the warm window of j is the cold
    window plus max(cap_j - real entries of j, 0) virtual entries, and once j has received cap_j real entries the
    two are the same window (a ring bounded by max_entries evicts no real entry, and keeps its virtual ones)."""
    batches = _random_batches(seed=3, n_batches=40, num_conditions=len(RATES))
    per_epoch = np.bincount(np.concatenate([c.numpy() for c, *_ in batches]), minlength=len(RATES))
    kwargs = dict(max_window=MAX_WINDOW, max_entries=2 * per_epoch if bounded else None, dtype=torch.float64)
    cold, warm = (CrossBatchHistory(A, torch.tensor(RATES), **kwargs) for _ in range(2))
    warm.warm_start(RATES)
    cap, virtual = warm.capacities(), _virtual_entries(RATES)
    real = np.zeros(len(RATES), dtype=np.int64)
    for _ in range(2):
        for c, y, b, w in batches:
            for h in (cold, warm):
                h.update(c, y, b, sample_weights=w)
            real += np.bincount(c.numpy(), minlength=len(RATES))
            for j, v in enumerate(virtual):
                left = 0 if v is None else max(cap[j] - real[j], 0)
                want = cold.window_totals()[j].numpy() + left * np.asarray(v if v is not None else (0, 0, 0))
                np.testing.assert_allclose(warm.window_totals()[j].numpy(), want, rtol=1e-12, atol=1e-12)
                assert warm.window_sizes()[j] == cold.window_sizes()[j] + left
    assert (real >= cap).sum() >= 5  # most windows were wholly replaced by real entries


def test_le_objective_with_warm_start_normalises_a_clickless_batch_by_the_full_window():
    """The first batch, without a click of condition 0 (rate 0.01): a cold start normalises it by the batch's
    rows × −ln(1 − p); a warm one by cap × H(p) plus the batch's share, the reference's steady state."""
    from le_ray.config import load_config
    from le_ray.training.objectives import make_objective
    from le_ray.data.batches import Batch

    rates = torch.tensor([0.01, 0.3], dtype=torch.float64)
    z = torch.zeros(8, dtype=torch.float32, requires_grad=True)
    batch = Batch(x_num=torch.zeros(8, 0), x_cat=None, cond=torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
                  y=torch.tensor([0.0, 0, 0, 0, 1, 0, 1, 0]), w=torch.ones(8))
    grads = {}
    for warm in (False, True):
        cfg = load_config(sets=["training.cross_batch.enabled=true", "training.by_loss={}",
                                f"training.cross_batch.warm_start={str(warm).lower()}"])
        objective = make_objective("le", cfg.training_for("le"), base_rates=rates, num_conditions=2,
                                   device=torch.device("cpu"), dtype=torch.float32)
        cap = objective.history.capacities()
        assert objective.history.window_sizes().tolist() == (cap.tolist() if warm else [0, 0])
        z.grad = None
        objective(z, batch).backward()
        grads[warm] = z.grad[0].item()
    p, h = 0.01, -(0.01 * math.log(0.01) + 0.99 * math.log(0.99))
    bce_grad = 0.5 / 8  # d BCE / dz at z = 0, y = 0, over W = 8 rows
    assert grads[False] == pytest.approx(bce_grad / (4 * -math.log1p(-p)), rel=1e-5)
    assert grads[True] == pytest.approx(bce_grad / (cap[0] * h + 4 * -math.log1p(-p)), rel=1e-5)
