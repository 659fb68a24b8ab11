"""Tests for le_ray.training.evaluation: the device path of the evaluation sums, run on CPU tensors, against
the numpy path of le_ray.metrics (the reference), the LE statistics and loss comparison against the
eager functions, the one-transfer read, and the trial record (precision / CUDA-graph fields, stable ids)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from le_ray import metrics as M
from le_ray.config import load_config
from le_ray.data.batches import to_tensors
from le_ray.data.prepare import prepare_data
from le_ray.metrics import sums as S
from le_ray.training import evaluation as E
from le_ray.training.losses import per_condition_le_stats
from le_ray.training.objectives import make_objective
from le_ray.training.trial import TrialSpec, ece_settings, run_trial

GRID = {"custom": 20, "smooth": 400, "smooth_lib": 400, "adaptive": 20}  # K of each device method (defaults)


def _data(seed=0, n=3000, c=8):
    """p, y, conditions [N] and p_true with the awkward cases the sums must get right.

    Condition c−1 is empty; 0 has only negatives and 1 only positives (single class); 2 has no p ≤ 0.01
    and 3 a single row with p > 0.01 (quantile fallback, n = 1); 4 holds p exactly on the custom and
    smooth edges (np.linspace values and k/K, which can differ by one ulp), 0, 1 and 0.5, with ties.
    """
    rng = np.random.default_rng(seed)
    p = rng.beta(0.6, 15.0, n)
    y = (rng.random(n) < p).astype(np.float64)
    cond = rng.integers(0, c - 4, n) + 4 * (rng.random(n) < 0.5)
    cond = np.minimum(cond, c - 2)
    y[cond == 0], y[cond == 1] = 0.0, 1.0
    fallback = np.flatnonzero(cond == 2)
    p[fallback] = 0.02 + rng.random(fallback.size) * 0.5
    single = np.flatnonzero(cond == 3)
    cond[single[1:]] = 5
    p[single[0]] = 0.3
    edges = np.unique(np.concatenate([np.linspace(0, 1, 21), np.arange(21) / 20, np.linspace(0, 1, 401)[::7],
                                      np.arange(401)[::7] / 400, [0.0, 1.0, 0.5, 0.5, 0.01, 0.01]]))
    rows = rng.choice(np.flatnonzero(cond == 4), size=min(edges.size * 2, np.count_nonzero(cond == 4)), replace=False)
    p[rows] = np.resize(edges, rows.size)
    t = np.clip(p + rng.normal(0.0, 0.01, n), 0.0, 1.0)
    return p, y, cond, t


def _tensors(*arrays):
    return [None if a is None else torch.tensor(a) for a in arrays]


def _assert_close_sums(got: S.ConditionSums, ref: S.ConditionSums) -> None:
    """Counts, bin layout and thresholds identical; float sums equal to float64 summation order."""
    assert (got.ece_method, got.n_bins, got.num_conditions) == (ref.ece_method, ref.n_bins, ref.num_conditions)
    for f in S.COUNT_FIELDS:
        np.testing.assert_array_equal(getattr(got, f), getattr(ref, f), err_msg=f)
    for f in (*S.FLOAT_FIELDS, "sum_t"):
        a, b = getattr(got, f), getattr(ref, f)
        assert (a is None) == (b is None), f
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13, err_msg=f)
    np.testing.assert_array_equal(got.small_threshold, ref.small_threshold)  # NaN == NaN here
    for part in ("bins", "small_bins"):
        g, r = getattr(got, part), getattr(ref, part)
        for f in ("condition", "bin", "count"):
            np.testing.assert_array_equal(getattr(g, f), getattr(r, f), err_msg=f"{part}.{f}")
        for f in ("sum_p", "sum_y", "sum_t"):
            a, b = getattr(g, f), getattr(r, f)
            assert (a is None) == (b is None), f
            if a is not None:
                np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13, err_msg=f"{part}.{f}")


@pytest.mark.parametrize("method", E.DEVICE_ECE_METHODS)
@pytest.mark.parametrize("truth", [True, False])
def test_device_sums_equal_numpy_sums_for_every_device_method(method, truth):
    p, y, cond, t = _data()
    t = t if truth else None
    ref = M.condition_sums(p, y, cond, p_true=t, num_conditions=8, ece_method=method)
    got = E.device_condition_sums(*_tensors(p, y, cond), p_true=None if t is None else torch.tensor(t),
                                  num_conditions=8, ece_method=method)
    _assert_close_sums(got, ref)
    assert got.n[7] == 0 and np.isnan(got.small_threshold[7])  # the empty condition
    assert got.small_threshold[2] > 0.01 and got.small_threshold[3] == 0.3  # quantile fallbacks, n > 1 and n = 1


@pytest.mark.parametrize("quantile", [0.0, 0.1, 0.25, 0.37, 0.5, 0.55, 0.9, 1.0])
def test_fallback_threshold_is_numpys_linear_quantile_bit_for_bit(quantile):
    rng = np.random.default_rng(int(quantile * 100))
    sizes = np.arange(1, 40)
    cond = np.repeat(np.arange(sizes.size), sizes)
    p = 0.02 + rng.random(cond.size) * rng.choice([1e-3, 0.5], cond.size)  # no p ≤ 0.01: every condition falls back
    got = E.device_condition_sums(*_tensors(p, np.zeros_like(p), cond), num_conditions=sizes.size,
                                  small_prob_quantile=quantile)
    expected = [np.quantile(p[cond == j], quantile) for j in range(sizes.size)]
    assert got.small_threshold.tolist() == expected


@pytest.mark.parametrize("method", ["custom", "adaptive", "smooth"])
def test_compact_bins_and_small_chunks_give_the_dense_result(monkeypatch, method):
    """Large key spaces go through torch.unique; rows are scattered in chunks: neither changes a number."""
    p, y, cond, t = _data(seed=3, n=1000)
    args = (*_tensors(p, y, cond),)
    dense = E.device_condition_sums(*args, p_true=torch.tensor(t), num_conditions=8, ece_method=method)
    monkeypatch.setattr(E, "_DENSE_BIN_KEYS", 0)
    monkeypatch.setattr(E, "_CHUNK_ROWS", 37)
    compact = E.device_condition_sums(*args, p_true=torch.tensor(t), num_conditions=8, ece_method=method)
    _assert_close_sums(compact, dense)
    _assert_close_sums(compact, M.condition_sums(p, y, cond, p_true=t, num_conditions=8, ece_method=method))


def test_empty_input_gives_empty_sums_and_nan_thresholds():
    empty = np.zeros(0)
    got = E.device_condition_sums(*_tensors(empty, empty, empty.astype(np.int64)), num_conditions=3)
    _assert_close_sums(got, M.condition_sums(empty, empty, empty.astype(np.int64), num_conditions=3))
    assert got.bins.count.size == 0 and np.isnan(got.small_threshold).all()


@pytest.mark.parametrize("n,bins", [(1000, 20), (7, 20), (1, 3)])
def test_reliability_equals_the_adaptive_ece_table(n, bins):
    rng = np.random.default_rng(n)
    p = np.round(rng.random(n), 1)  # many ties: equal-mass bins split them by row order
    y = (rng.random(n) < p).astype(np.float64)
    got = E.device_reliability(*_tensors(p, y), bins=bins)
    table = M.ece_table(p, y, method="adaptive", bins=bins)
    assert got["bin"] == table["bin"].to_list() and got["count"] == table["count"].to_list()
    for col in ("avg_pred", "avg_label", "abs_gap"):
        np.testing.assert_allclose(got[col], table[col].to_numpy(), rtol=1e-13, atol=1e-15, err_msg=col)


def test_bad_inputs_name_what_was_expected():
    p, y, cond, _ = _data(n=50)
    pt, yt, ct = _tensors(p, y, cond)
    with pytest.raises(ValueError, match="adaptive_lib"):
        E.device_condition_sums(pt, yt, ct, num_conditions=8, ece_method="adaptive_lib")
    with pytest.raises(ValueError, match="float64"):
        E.device_condition_sums(pt.float(), yt, ct, num_conditions=8)
    with pytest.raises(ValueError, match="num_conditions"):
        E.device_condition_sums(pt, yt, ct, num_conditions=None)
    with pytest.raises(ValueError, match="shape mismatch: y"):
        E.device_condition_sums(pt, yt[:-1], ct, num_conditions=8)
    with pytest.raises(ValueError, match="quantile"):
        E.device_condition_sums(pt, yt, ct, num_conditions=8, small_prob_quantile=2.0)


def test_device_path_only_where_exact():
    assert E.sums_on_device(torch.device("cuda:0"), "custom")
    assert not E.sums_on_device(torch.device("cuda:0"), "adaptive_lib")
    assert not E.sums_on_device(torch.device("cpu"), "custom")
    assert not E.sums_on_device(torch.device("mps"), "smooth")


def test_le_stat_tensors_equal_per_condition_le_stats():
    rng = np.random.default_rng(5)
    z = torch.tensor(rng.normal(-3, 2, 400), dtype=torch.float32)
    y = torch.tensor((rng.random(400) < 0.1), dtype=torch.float32)
    c = torch.tensor(rng.integers(0, 5, 400))
    w = torch.tensor(rng.random(400) + 0.5, dtype=torch.float32)
    rates = torch.tensor([0.1, float("nan"), 0.02], dtype=torch.float32)  # condition 5 absent, 3-4 empirical
    ref = per_condition_le_stats(z, y, c, base_rates=rates, sample_weights=w, num_conditions=6)
    got = E.le_stat_tensors(z, y, c, base_rates=rates, sample_weights=w, num_conditions=6).numpy()
    for i, key in enumerate(E.LE_STAT_KEYS):
        np.testing.assert_array_equal(got[i], ref[key], err_msg=key)
    assert np.isnan(got[6, 5]) and got[0, 5] == 0


def test_host_read_is_one_copy_of_every_queued_tensor():
    reader = E._HostRead(torch.device("cpu"))
    parts = (torch.arange(3), torch.ones(2, 2, dtype=torch.float32), torch.tensor(7.5))
    slots = [reader.add(t) for t in parts]
    reader.read()
    assert [reader[s].tolist() for s in slots] == [[0.0, 1.0, 2.0], [1.0] * 4, [7.5]]


# --------------------------------------------------------------------------- the trial


TINY = ["synthetic.samples_per_condition=600", "synthetic.num_conditions=4", "training.epochs=1",
        "training.by_loss={}", "training.batch_size=256", "training.eval_compare_losses=true"]


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config(sets=TINY)
    return cfg, prepare_data(cfg)


def test_evaluation_matches_the_eager_functions(tiny, monkeypatch):
    """p, eval_compare, LE stats and the numpy-path sums on CPU equal the eager calls; the device path
    forced on CPU gives the same record up to summation order."""
    cfg, data = tiny
    split, settings, C = data.eval, cfg.training_for("bce"), data.num_conditions
    eval_t = to_tensors(split, device=torch.device("cpu"), dtype=torch.float32)
    logits = torch.tensor(np.random.default_rng(2).normal(-2, 1, len(split)), dtype=torch.float32)
    rates = torch.tensor([0.05] * C, dtype=torch.float32)
    objectives = {n: make_objective(n, settings, base_rates=rates, num_conditions=C, device=torch.device("cpu"),
                                    dtype=torch.float32, with_history=False) for n in ("bce", "localized_entropy")}
    kw = dict(labelled=True, ece=ece_settings(cfg), p_true=split.p_true, compare=objectives, le_rates=rates,
              num_conditions=C)
    ev = E.evaluate_predictions(logits, eval_t, split, **kw)
    p = torch.sigmoid(logits.double()).numpy()
    assert np.array_equal(ev.p, p)
    assert ev.eval_compare == {n: float(o(logits, eval_t.whole(), use_history=False)) for n, o in objectives.items()}
    le = per_condition_le_stats(logits, eval_t.y, eval_t.cond, base_rates=rates, sample_weights=eval_t.w,
                                num_conditions=C)
    assert all(np.array_equal(ev.le_stats[k], le[k].tolist(), equal_nan=True) for k in E.LE_STAT_KEYS)
    ref = M.condition_sums(p, split.y, split.cond, p_true=split.p_true, num_conditions=C, **ece_settings(cfg))
    assert json.dumps(ev.condition_sums) == json.dumps(M.sums_to_record(ref))  # CPU: the numpy path itself
    assert ev.summary["logloss"] == M.logloss(p, split.y)
    monkeypatch.setattr(E, "sums_on_device", lambda device, method: True)
    forced = E.evaluate_predictions(logits, eval_t, split, **kw)
    _assert_close_sums(M.sums_from_record(forced.condition_sums), ref)
    assert forced.reliability["count"] == ev.reliability["count"]
    np.testing.assert_allclose(forced.reliability["avg_pred"], ev.reliability["avg_pred"], rtol=1e-13)
    # the summary from the device's statistics: model_summary's numbers up to float64 summation order
    assert set(forced.summary) == set(ev.summary)
    for key, value in ev.summary.items():
        assert forced.summary[key] == pytest.approx(value, rel=1e-12, abs=1e-15, nan_ok=True), key


@pytest.mark.parametrize("method", E.DEVICE_ECE_METHODS)
def test_device_summary_equals_model_summary_and_keeps_p_only_when_asked(monkeypatch, tiny, method):
    """The device path (forced on CPU tensors) assembles the summary from its own statistics, ties and
    ece_small fallback included, without handing p to model_summary; p reaches the host only with keep_p."""
    cfg, data = tiny
    split, C = data.eval, data.num_conditions
    eval_t = to_tensors(split, device=torch.device("cpu"), dtype=torch.float32)
    logits = torch.tensor(np.round(np.random.default_rng(4).normal(-3, 1.5, len(split)), 1), dtype=torch.float32)
    ece = {**ece_settings(cfg), "ece_method": method, "small_prob_max": 0.005, "small_prob_quantile": 0.3}
    p = torch.sigmoid(logits.double()).numpy()
    want = M.model_summary(p, split.y, split.cond, **ece)
    monkeypatch.setattr(E, "sums_on_device", lambda device, method: True)
    monkeypatch.setattr(M, "model_summary", lambda *a, **k: pytest.fail("the device path called model_summary"))
    kw = dict(labelled=True, ece=ece, p_true=None, compare={}, le_rates=None, num_conditions=C)
    kept = E.evaluate_predictions(logits, eval_t, split, **kw)
    dropped = E.evaluate_predictions(logits, eval_t, split, keep_p=False, **kw)
    assert np.array_equal(kept.p, p) and dropped.p is None
    for key, value in want.items():
        assert kept.summary[key] == pytest.approx(value, rel=1e-12, abs=1e-15, nan_ok=True), key
    assert dropped.summary == kept.summary and dropped.condition_sums == kept.condition_sums


def test_device_curve_terms_equal_the_sorted_curve_areas():
    """ROC-AUC and AP from running sums over tie groups on the device vs the numpy scan and scikit-learn."""
    from sklearn.metrics import average_precision_score, roc_auc_score
    rng = np.random.default_rng(8)
    for n, levels in ((1, 5), (2, 1), (500, 7), (3000, 1000), (3000, 10**9)):
        p = np.round(rng.random(n) * levels) / levels
        y = (rng.random(n) < 0.3).astype(float)
        y[0], y[-1] = 1.0, 0.0 if n > 1 else y[0]
        terms = E._curve_terms(torch.tensor(p), torch.tensor(y), E.stable_order(torch.tensor(p))).tolist()
        assert terms[2:] == [float((y >= 0.5).sum()), float((y < 0.5).sum())]
        if n > 1:
            order = np.argsort(p, kind="stable")
            want = M.sorted_curve_areas(p[order], (y[order] >= 0.5).astype(np.int8))
            assert terms[:2] == pytest.approx(want, rel=1e-12)
            assert terms[:2] == pytest.approx([roc_auc_score(y, p), average_precision_score(y, p)], rel=1e-12)


def test_unlabelled_split_gives_predictions_only(tiny):
    cfg, data = tiny
    split = data.eval.without_labels()
    eval_t = to_tensors(split, device=torch.device("cpu"), dtype=torch.float32)
    ev = E.evaluate_predictions(torch.zeros(len(split)), eval_t, split, labelled=False, ece=ece_settings(cfg),
                                p_true=None, compare={}, le_rates=None, num_conditions=data.num_conditions)
    assert np.all(ev.p == 0.5) and ev.condition_sums == {} and ev.le_stats is None and ev.eval_compare == {}


def test_trial_record_has_precision_and_graph_fields_and_stable_ids(tiny):
    cfg, data = tiny
    result = run_trial(data, TrialSpec.make(cfg, "bce", 1, data.fingerprint), assigned_gpu_ids=[])
    record = json.loads(json.dumps(result.to_record()))
    assert record["matmul_precision"] == "highest" and record["cuda_graphs"] is False  # CPU: IEEE FP32, eager
    assert record["torch_threads"] == torch.get_num_threads()  # the count in effect: it orders the float sums
    before = torch.get_num_threads()
    try:
        assert run_trial(data, TrialSpec.make(cfg, "bce", 1, data.fingerprint), assigned_gpu_ids=[],
                         num_threads=1).to_record()["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)
    timings = record["timings"]
    assert set(timings) == {"setup", "train", "train_loop", "evaluate", "host_summary", "total"}
    assert 0 < timings["host_summary"] < timings["evaluate"] and timings["train"] <= timings["train_loop"]
    assert set(record["eval_compare"]) == {"bce", "localized_entropy", "focal"} and record["condition_sums"]
    small = load_config(sets=TINY + ["training.batch_size=64"])
    le = run_trial(data, TrialSpec.make(small, "localized_entropy", 1, data.fingerprint), assigned_gpu_ids=[])
    assert len(data.eval) > 3 * 64  # several batches: the eval curve and eval_compare both average over them
    assert le.eval_compare["localized_entropy"] == pytest.approx(le.curves["eval_loss"][-1], rel=1e-6)
    ids = set()
    for sets in ([], ["device.cuda_graphs=off"], ["device.matmul_precision=high"], ["device.matmul_precision=highest"],
                 ["device.num_threads=1"]):  # settings recorded per trial, not part of its identity
        variant = load_config(sets=TINY + sets)
        ids.add(TrialSpec.make(variant, "bce", 1, data.fingerprint).trial_id)
    assert ids == {result.trial_id}
    other = load_config(sets=TINY + ["device.dtype=float64"])  # a key that does change the numbers
    assert TrialSpec.make(other, "bce", 1, data.fingerprint).trial_id != result.trial_id


# --------------------------------------------------------------------------- CUDA (pytest -m gpu)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("method", E.DEVICE_ECE_METHODS)
def test_cuda_sums_equal_numpy_sums_and_plan_never_synchronises(method):
    p, y, cond, t = _data(n=20000)
    cuda = [x.cuda() for x in _tensors(p, y, cond, t)]
    reader = E._HostRead(cuda[0].device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # the dense plan queues work only: no host read before the one copy
    try:
        decode = E._checked_plan(reader, *cuda[:3], cuda[3], 8, E._ece_kwargs(ece_method=method), 20)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    reader.read()
    sums, reliability = decode()
    _assert_close_sums(sums, M.condition_sums(p, y, cond, p_true=t, num_conditions=8, ece_method=method))
    assert reliability["count"] == M.ece_table(p, y, method="adaptive", bins=20)["count"].to_list()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_evaluation_reads_the_device_once(tiny, monkeypatch):
    """Between the logits and the host metrics, the one synchronising call is the buffer's copy."""
    cfg, data = tiny
    cuda = torch.device("cuda:0")
    split, C = data.eval, data.num_conditions
    eval_t = to_tensors(split, device=cuda, dtype=torch.float32)
    logits = torch.randn(len(split), device=cuda) - 2
    rates = torch.full((C,), 0.05, device=cuda)
    objectives = {n: make_objective(n, cfg.training_for("bce"), base_rates=rates, num_conditions=C, device=cuda,
                                    dtype=torch.float32, with_history=False)
                  for n in ("bce", "localized_entropy", "focal")}
    read, copies = E._HostRead.read, []

    def one_read(self):
        torch.cuda.set_sync_debug_mode("default")
        copies.append(1)
        read(self)
        torch.cuda.set_sync_debug_mode("error")
    monkeypatch.setattr(E._HostRead, "read", one_read)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ev = E.evaluate_predictions(logits, eval_t, split, labelled=True, ece=ece_settings(cfg), p_true=split.p_true,
                                    compare=objectives, le_rates=rates, num_conditions=C)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert copies == [1] and set(ev.eval_compare) == set(objectives)
    ref = M.condition_sums(ev.p, split.y, split.cond, p_true=split.p_true, num_conditions=C, **ece_settings(cfg))
    _assert_close_sums(M.sums_from_record(ev.condition_sums), ref)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_trial_records_graphs_precision_and_exact_sums(tiny):
    cfg, data = tiny
    auto = run_trial(data, TrialSpec.make(cfg, "bce", 1, data.fingerprint), assigned_gpu_ids=["0"],
                     keep_predictions=True)
    assert auto.cuda_graphs is True and auto.matmul_precision == "high"
    ref = M.condition_sums(auto.eval_predictions, data.eval.y, data.eval.cond, p_true=data.eval.p_true,
                           num_conditions=data.num_conditions, **ece_settings(cfg))
    _assert_close_sums(auto.sums(), ref)
    off = load_config(sets=TINY + ["device.cuda_graphs=off", "device.matmul_precision=highest"])
    eager = run_trial(data, TrialSpec.make(off, "bce", 1, data.fingerprint), assigned_gpu_ids=["0"])
    assert eager.cuda_graphs is False and eager.matmul_precision == "highest"
    assert eager.trial_id == auto.trial_id
