"""The training step function the CUDA graph captures, run eagerly on CPU; and its launch-count proxy."""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import le_ray.training.graph_step as graph_step
from le_ray import seeds
from le_ray.config import load_config
from le_ray.data.batches import to_tensors
from le_ray.data.prepare import le_base_rates, prepare_data
from le_ray.training.devices import apply_matmul_precision
from le_ray.training.graph_step import BatchFeed, LrSchedule, NonFiniteGuard
from le_ray.training.loop import NonFiniteLossError, batched_loss, build_optimizer, train_model
from le_ray.training.model import build_model
from le_ray.training.objectives import make_objective

CPU = torch.device("cpu")


def _setup(loss, *sets, profile="small_net"):
    cfg = load_config(profile=profile, sets=["synthetic.samples_per_condition=700", "synthetic.num_conditions=12",
                                             "synthetic.condition_mode=random", "training.epochs=2",
                                             "training.batch_size=500", "training.by_loss={}", *sets])
    data = prepare_data(cfg)
    settings = cfg.training_for(loss)
    rates = torch.tensor(le_base_rates(data, prior="jeffreys"), dtype=torch.float32)

    def make(history):
        return make_objective(loss, settings, base_rates=rates, num_conditions=data.num_conditions, device=CPU,
                              dtype=torch.float32, with_history=history,
                              max_entries=data.train_condition_counts * settings.epochs)

    tr = to_tensors(data.train, device=CPU, dtype=torch.float32)
    ev = to_tensors(data.eval, device=CPU, dtype=torch.float32)
    return cfg, data, settings, make, tr, ev


def _model(cfg, data):
    torch.manual_seed(0)
    return build_model(cfg.model, num_numeric=data.num_numeric, num_conditions=data.num_conditions,
                       cat_vocab_sizes=data.cat_vocab_sizes)


def _run(monkeypatch, loss, sets, static_steps):
    """Train; return (per-step losses, outcome, final parameters)."""
    cfg, data, settings, make, tr, ev = _setup(loss, *sets)
    model = _model(cfg, data)
    losses = []
    step = graph_step.step_fn
    monkeypatch.setattr(graph_step, "step_fn", lambda state, batch: losses.append(step(state, batch)) or losses[-1])
    torch.manual_seed(7)  # dropout draws
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=3, static_steps=static_steps)
    assert len(tr) % settings.batch_size != 0  # every epoch ends with a partial batch (run eagerly)
    assert out.steps == len(losses) == settings.epochs * tr.num_batches(settings.batch_size)
    return torch.stack(losses), out, [p.detach().clone() for p in model.parameters()]


CASES = [("bce", ()), ("focal", ("model.dropout=0.2",)),
         ("localized_entropy", ("training.cross_batch.enabled=false",)),
         ("localized_entropy", ("training.cross_batch.enabled=true", "training.cross_batch.amplification_rate=4")),
         ("localized_entropy", ("training.cross_batch.enabled=true", "training.cross_batch.warm_start=true")),
         ("localized_entropy", ("training.cross_batch.enabled=true", "training.lr_category=0.01",
                                "training.lr_category_decay=0.99", "training.lr_zero_after_epochs=1"))]


@pytest.mark.parametrize("loss,sets", CASES)
def test_static_steps_give_the_eager_loop_numbers(monkeypatch, loss, sets):
    """The captured path's function, buffers and device lr, run eagerly: the same losses per step,
    curves, parameters and lrs as the eager loop, bit for bit on CPU (same batch order and dropout draws)."""
    eager, out_e, params_e = _run(monkeypatch, loss, sets, static_steps=False)
    static, out_s, params_s = _run(monkeypatch, loss, sets, static_steps=True)
    assert len(eager) > 10 and torch.isfinite(eager).all()
    assert torch.equal(eager, static)
    assert out_e.curves.as_dict() == out_s.curves.as_dict()
    assert out_e.final_lrs == out_s.final_lrs
    assert all(torch.equal(a, b) for a, b in zip(params_e, params_s))
    assert not out_s.cuda_graphs  # never captured on CPU


def test_cuda_graphs_flag_is_ignored_on_cpu(monkeypatch):
    eager, out_e, _ = _run(monkeypatch, "bce", (), static_steps=False)
    cfg, data, settings, make, tr, ev = _setup("bce")
    model = _model(cfg, data)
    torch.manual_seed(7)
    out = train_model(model, tr, ev, make(True), make(False), settings, seed=3, cuda_graphs=True)
    assert not out.cuda_graphs and out.curves.as_dict() == out_e.curves.as_dict()


@pytest.mark.parametrize("loss,sets", [("bce", ()), ("localized_entropy", ("training.cross_batch.enabled=true",))])
def test_the_gpu_tests_graph_helper_runs_on_cpu(loss, sets):
    """tests/test_gpu.py's ``_graph_run`` wraps the loop's seams (``_epoch_steps``, ``_captured_step``); run here on
    the static path, it breaks on CPU when a seam's signature changes, not first on the next lent GPU."""
    from tests.test_gpu import _graph_run

    losses, out, optimizer = _graph_run(loss, sets, cuda_graphs=False, device=CPU)
    assert len(losses) == out.steps > 10 and torch.isfinite(losses).all()
    assert optimizer.param_groups[0]["params"] and not out.cuda_graphs


def test_static_steps_are_freed_without_the_cycle_collector():
    """The captured body must not hold its StaticSteps: a bound method would close a reference cycle
    (StaticSteps → ReplayedCall → body → StaticSteps) that keeps the graph, its memory pool, the model and
    the optimiser's state alive after the trial until Python's cycle collector happens to run."""
    import gc
    import weakref

    cfg, data, settings, make, tr, _ = _setup("localized_entropy", "training.cross_batch.enabled=true")
    model = _model(cfg, data)
    state = graph_step.StepState(model, build_optimizer(model, settings), make(True), None, None, None, None)
    static = graph_step.StaticSteps(state, tr, settings.batch_size, capture=False)
    static.replayed = SimpleNamespace(body=static._body)  # what capture=True holds (a ReplayedCall of the body)
    alive = weakref.ref(static)
    gc.disable()
    try:
        del static
        assert alive() is None
    finally:
        gc.enable()


def test_batch_feed_gathers_the_shuffled_batches():
    _, _, _, _, tr, _ = _setup("bce")
    size = 500
    gen = torch.Generator().manual_seed(11)
    expected = list(tr.batches(tr.permutation(gen), size))
    order = torch.randperm(len(tr), generator=torch.Generator().manual_seed(11))
    feed = BatchFeed(tr, size)
    feed.start_epoch(order)
    assert feed.full_batches == len(tr) // size and len(expected) == feed.full_batches + 1
    pointers = [b.data_ptr() for b in feed.buffers]
    for want in expected[:-1]:
        feed.gather()
        got = feed.batch
        for name in ("x_num", "x_cat", "cond", "y", "w"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert [b.data_ptr() for b in feed.buffers] == pointers  # static addresses
    rest = tr.take(order[feed.full_batches * size:])
    assert torch.equal(rest.cond, expected[-1].cond) and torch.equal(rest.x_num, expected[-1].x_num)


def test_a_batch_larger_than_the_split_holds_no_buffer_rows(monkeypatch):
    """batch_size above the split's rows: no full batch, so the static buffers take no memory, and every epoch
    is one eager partial batch with the eager loop's numbers."""
    cfg, data, settings, make, tr, ev = _setup("bce")
    feed = BatchFeed(tr, len(tr) + 1)
    assert feed.full_batches == 0 and all(b.shape[0] == 0 for b in feed.buffers)
    assert BatchFeed(tr, len(tr)).buffers[0].shape[0] == len(tr)
    big = settings.model_copy(update={"batch_size": len(tr) * 4, "epochs": 2})
    runs = []
    for static in (False, True):
        model = _model(cfg, data)
        torch.manual_seed(7)
        runs.append(train_model(model, tr, ev, make(True), make(False), big, seed=3, static_steps=static))
    assert runs[0].steps == runs[1].steps == 2
    assert runs[0].curves.as_dict() == runs[1].curves.as_dict()


@pytest.mark.parametrize("loss,sets", [("bce", ()), ("localized_entropy", ("training.cross_batch.enabled=true",))])
def test_static_loss_pass_gives_the_eager_epoch_zero_sums(loss, sets):
    """The epoch-0 loss pass through the training steps' batch buffers (what a graph replays) gives the eager
    pass's loss and Σ w·BCE bit for bit, the partial last batch included; a foreign split is refused."""
    cfg, data, settings, make, tr, ev = _setup(loss, "model.dropout=0.3", *sets)
    model = _model(cfg, data)
    size = settings.batch_size
    assert len(tr) % size and len(tr) // size >= 3
    state = SimpleNamespace(objective=make(False))
    static = graph_step.StaticSteps(state, tr, size, capture=False)
    eager = batched_loss(model, tr, make(False), size)
    through = batched_loss(model, tr, make(False), size, static=static)
    assert model.training  # the mode is restored
    assert through == eager and all(map(math.isfinite, eager))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        graph_step.StaticLossPass(static.feed, model, make(False), "off", capture=True)
    with pytest.raises(ValueError, match="another split or batch size"):
        batched_loss(model, ev, make(False), size, static=static)


def test_capture_records_the_body_between_begin_and_end_and_returns_its_output(monkeypatch):
    """The capture protocol without a GPU (a recording stand-in for the graph and the device sync; stream None
    is the current one): sync, begin in thread-local mode, the body, end, the end also when the body fails."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("sync", {})))

    class Graph:
        def capture_begin(self, **kwargs):
            calls.append(("begin", kwargs))

        def capture_end(self):
            calls.append(("end", {}))
    monkeypatch.setattr(graph_step, "_capture_failure", [])
    assert graph_step.capture(Graph(), None, lambda: calls.append(("body", {})) or "static out") == "static out"
    assert calls == [("sync", {}), ("begin", {"capture_error_mode": "thread_local"}), ("body", {}), ("end", {})]
    assert graph_step.capture_failure() == ""
    calls.clear()
    with pytest.raises(ZeroDivisionError):
        graph_step.capture(Graph(), None, lambda: 1 / 0)
    assert [c for c, _ in calls] == ["sync", "begin", "end"]
    assert graph_step.capture_failure() == "ZeroDivisionError: division by zero"


def _graph_whose_capture_end_fails(monkeypatch, message: str):
    """A stand-in graph whose ``capture_end`` raises ``message``, with no device sync and no failure kept yet."""
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(graph_step, "_capture_failure", [])

    class Graph:
        def capture_begin(self, **kwargs):
            pass

        def capture_end(self):
            raise RuntimeError(message)
    return Graph()


def test_a_failed_capture_raises_the_bodys_error_not_capture_ends(monkeypatch):
    """CUDA fails ``capture_end`` after any failed operation inside a capture ("operation failed due to a
    previous error during capture"); that error names nothing, so the body's own error is the one raised."""
    graph = _graph_whose_capture_end_fails(monkeypatch, "operation failed due to a previous error during capture")

    def body():
        raise RuntimeError("operation not permitted when stream is capturing (the .item() in the step)")
    with pytest.raises(RuntimeError, match=r"\.item\(\) in the step") as failed:
        graph_step.capture(graph, None, body)
    assert "previous error" not in str(failed.value)


def test_replayed_call_warms_up_then_captures_once_then_replays(monkeypatch):
    """Without a GPU (recording stand-ins for the stream, the graph and the device sync): WARMUP_STEPS eager
    calls of the body on the side stream, one capture (the body recorded, not run), then a replay per call,
    each returning the capture's static output."""
    events = []

    class Stream:
        def __init__(self, device=None):
            self.device = device

        def wait_stream(self, other):
            events.append("wait")

    class Graph:
        def capture_begin(self, **kwargs):
            events.append("begin")

        def capture_end(self):
            events.append("end")

        def replay(self):
            events.append("replay")
    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: Stream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    calls = iter(range(100))
    call = graph_step.ReplayedCall(lambda: events.append("body") or next(calls), CPU, "a test body")
    outputs = [call() for _ in range(graph_step.WARMUP_STEPS + 3)]
    warm = ["wait", "body", "wait"] * graph_step.WARMUP_STEPS
    assert events == [*warm, "wait", "sync", "begin", "body", "end", "replay", "replay", "replay"]
    static = graph_step.WARMUP_STEPS  # the body's output while it was being recorded
    assert outputs == [*range(graph_step.WARMUP_STEPS), static, static, static]

    events.clear()  # a capture whose body fails leaves no graph to replay: the next call captures again
    monkeypatch.setattr(graph_step, "_capture_failure", [])
    failing = graph_step.ReplayedCall(lambda: 1 / 0 if "begin" in events else None, CPU, "a failing body")
    failing.warm = graph_step.WARMUP_STEPS
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            failing()
        assert failing.graph is None
    assert events.count("begin") == 2 and "replay" not in events


def test_device_lr_schedule_matches_host_floats():
    cfg, data, settings, *_ = _setup("bce", "training.lr_category=0.05", "training.lr_decay=0.9",
                                     "training.lr_category_decay=0.8", "training.lr_zero_after_epochs=1")
    host = LrSchedule(build_optimizer(_model(cfg, data), settings), settings)
    dev = LrSchedule(build_optimizer(_model(cfg, data), settings), settings, CPU)
    assert isinstance(dev.groups[0]["lr"], torch.Tensor) and dev.groups[1]["lr"].dim() == 0
    for epoch in (1, 2):
        for s in (host, dev):
            s.zero_base_if_due(settings, epoch)
            for _ in range(7):
                s.decay_()
    assert dev.values() == host.values() == [0.0, 0.05 * 0.8 ** 14]
    assert float(dev.groups[1]["lr"]) == host.groups[1]["lr"]  # the optimiser reads the decayed tensor


def test_guard_keeps_the_first_non_finite_step():
    guard = NonFiniteGuard(CPU)
    step = torch.zeros((), dtype=torch.long)
    for value in (1.0, 2.0, float("inf"), float("nan"), 3.0):
        step += 1
        guard.record(torch.tensor(value), step)
    assert guard.tripped() == (3, float("inf"))
    assert NonFiniteGuard(CPU).tripped() is None


@pytest.mark.parametrize("static_steps", [False, True])
def test_non_finite_loss_names_epoch_batch_and_its_conditions(static_steps):
    cfg, data, settings, make, tr, ev = _setup("localized_entropy", "training.lr=1e30", "training.epochs=1")
    model = _model(cfg, data)
    with torch.no_grad():
        model.net[-1].weight.fill_(float("nan"))
    # the first batch's conditions, from the loop's batch-order stream
    order = torch.randperm(len(tr), generator=torch.Generator().manual_seed(seeds.torch_seed(1, "batch_order")))
    ids = torch.unique(tr.cond[order[:settings.batch_size]]).tolist()
    assert 1 < len(ids) <= data.num_conditions
    with pytest.raises(NonFiniteLossError, match=re.escape(f"epoch 1, batch 1; conditions involved (ids): {ids}")):
        train_model(model, tr, ev, make(True), make(False), settings, seed=1, static_steps=static_steps)


def test_batched_loss_sums_on_the_device_like_host_floats():
    cfg, data, settings, make, tr, _ = _setup("localized_entropy")
    model = _model(cfg, data).eval()
    objective = make(False)
    total = weight = bce = 0.0
    with torch.no_grad():
        for batch in tr.sequential(333):
            w = float(batch.w.sum())
            logits = model(batch.x_num, batch.x_cat, batch.cond)
            total += float(objective(logits, batch, use_history=False)) * w
            bce += float(torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.y, weight=batch.w,
                                                                              reduction="sum"))
            weight += w
    assert batched_loss(model, tr, objective, 333) == (total / weight, bce)


def test_matmul_precision_only_changes_cuda():
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # as an earlier CUDA trial in this process might leave it
        assert apply_matmul_precision("high", CPU) == "highest"
        assert torch.get_float32_matmul_precision() == "highest"
        assert apply_matmul_precision("auto", "cpu") == "highest"
        with pytest.raises(ValueError, match="device.matmul_precision"):
            apply_matmul_precision("medium", CPU)
    finally:
        torch.set_float32_matmul_precision(before)


# --------------------------------------------------------------------------- launch-count proxy


class _OpCounter(TorchDispatchMode):
    """Counts aten ops (each a kernel launch on a GPU, views and metadata ops included)."""

    def __init__(self) -> None:
        super().__init__()
        self.count, self.on = 0, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += self.on
        return func(*args, **(kwargs or {}))


def _ops_per_step(loss, *sets):
    """aten ops dispatched between consecutive ``on_step`` calls (one optimiser step, batch loading and
    epoch sums included) for the full-size batches of one epoch: 2,000 conditions, batch 1,024, default_net."""
    cfg = load_config(sets=["synthetic.num_conditions=2000", "synthetic.samples_per_condition=3",
                            "synthetic.condition_mode=random", "training.epochs=1", "training.by_loss={}",
                            "training.batch_size=1024", *sets])
    data = prepare_data(cfg)
    settings = cfg.training_for(loss)
    rates = torch.tensor(le_base_rates(data, prior="jeffreys"), dtype=torch.float32)
    make = lambda h: make_objective(loss, settings, base_rates=rates, num_conditions=2000, device=CPU,  # noqa: E731
                                    dtype=torch.float32, with_history=h, max_entries=data.train_condition_counts)
    tr = to_tensors(data.train, device=CPU, dtype=torch.float32)
    counter, per_step = _OpCounter(), []

    def on_step(epoch, step):
        if counter.on:
            per_step.append(counter.count)
        counter.count, counter.on = 0, True
    with counter:
        train_model(_model(cfg, data), tr, None, make(True), make(False), settings, seed=1, on_step=on_step)
    full = len(tr) // 1024
    assert full >= 3
    return per_step[:full - 1]  # steps 2..full: full-size batches only


def test_le_with_history_dispatches_at_most_75_ops_more_than_bce():
    bce = _ops_per_step("bce")
    le = _ops_per_step("localized_entropy", "training.cross_batch.enabled=false")
    le_history = _ops_per_step("localized_entropy", "training.cross_batch.enabled=true")
    warm = _ops_per_step("localized_entropy", "training.cross_batch.enabled=true", "training.cross_batch.warm_start=true")
    print(f"aten ops per optimiser step: BCE {bce[0]}, LE {le[0]}, LE + history {le_history[0]} (warm {warm[0]})")
    assert le_history[0] < warm[0] <= bce[0] + 75  # a warm window's virtual entries: a few [C] ops more
    for counts in (bce, le, le_history):
        assert len(set(counts)) == 1  # the same ops every full-size step: static work
    assert bce[0] < le[0] < le_history[0]  # the counter sees LE's per-condition work and the history's
    assert le_history[0] <= bce[0] + 75


def test_a_capture_end_failure_and_a_failed_release_are_kept_too(monkeypatch):
    """Some capture errors show only at ``capture_end`` (a side stream never joined), and after a failed capture
    torch 2.11's ``empty_cache`` asserts: either is kept, so later trials in the process do not capture."""
    graph = _graph_whose_capture_end_fails(
        monkeypatch, "operation would make the legacy stream depend on a capturing blocking stream")
    with pytest.raises(RuntimeError, match="legacy stream"):
        graph_step.capture(graph, None, lambda: "static out")
    assert graph_step.capture_failure().startswith("RuntimeError: operation would make the legacy stream")

    monkeypatch.setattr(graph_step, "_capture_failure", [])
    released = []
    monkeypatch.setattr(graph_step, "release_dead_graph_pools", lambda: released.append(1))
    assert graph_step.capture_blocked() == "" and released == [1]

    def broken():
        raise RuntimeError("captures_underway.empty() INTERNAL ASSERT FAILED")
    monkeypatch.setattr(graph_step, "release_dead_graph_pools", broken)
    assert graph_step.capture_blocked() == "RuntimeError: captures_underway.empty() INTERNAL ASSERT FAILED"
    monkeypatch.setattr(graph_step, "release_dead_graph_pools", lambda: released.append(2))
    assert graph_step.capture_blocked().startswith("RuntimeError: captures_underway") and released == [1]


def test_after_a_failed_capture_later_trials_in_the_process_train_eagerly(monkeypatch, caplog):
    """torch 2.11 leaves its caching allocator registered as capturing after a failed capture, so the next
    capture or ``empty_cache`` in the process fails too: a trial asked for graphs then runs eagerly, and says why."""
    from le_ray.training import loop

    cfg, data, settings, *_ = _setup("bce")
    monkeypatch.setattr(graph_step, "_capture_failure", [])
    monkeypatch.setattr(graph_step, "release_dead_graph_pools", lambda: None)
    assert loop._use_capture(True, True, settings, False)
    monkeypatch.setattr(graph_step, "_capture_failure",
                        ["RuntimeError: operation not permitted when stream is capturing"])
    with caplog.at_level("WARNING", logger="le_ray.training.loop"):
        assert not loop._use_capture(True, True, settings, False)
    assert "a capture failed earlier in this process (RuntimeError: operation not permitted" in caplog.text


# --------------------------------------------------------------------------- host reads in the hot loop

# aten ops that hand a tensor's value to the host: float(t), int(t), t.item() (_local_scalar_dense),
# bool(t) / `if t:` (is_nonzero), torch.equal; and ops whose output size depends on the values (nonzero, masking,
# unique); on CUDA each one waits for the GPU to drain its queue. Also: a boolean-mask index, and repeat_interleave
# without output_size (see _host_read); t.tolist() / t.numpy() / t.cpu() dispatch nothing on a CPU tensor and are
# counted by wrapping them (_count_python_reads).
HOST_READS = {"_local_scalar_dense", "is_nonzero", "equal", "nonzero", "masked_select", "_unique2", "unique_dim",
              "unique_consecutive"}


def _host_read(func, args, kwargs) -> bool:
    name = func.__name__.split(".")[0]
    if name == "index" and len(args) > 1:  # t[mask]: the result's size is the mask's count
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])
    if name == "repeat_interleave":  # with tensor repeats, the output size is their sum unless given
        return func._overloadname in ("Tensor", "self_Tensor") and (kwargs or {}).get("output_size") is None
    return name in HOST_READS


def _inside_torch_optim() -> bool:
    """True inside a ``torch.optim`` call: CPU's single-tensor Adam reads its step count and lr on the host; on
    CUDA the loop builds fused Adam with ``capturable=True``, which keeps both on the device and reads nothing."""
    frame = sys._getframe(2)
    while frame is not None:
        if f"torch{os.sep}optim{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


class _HostReadCounter(TorchDispatchMode):
    """Counts host reads per optimiser step (``per_step``) and in the rest of the trial (``outside``)."""

    def __init__(self) -> None:
        super().__init__()
        self.per_step, self.outside, self.current, self.in_step = [], 0, 0, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if _host_read(func, args, kwargs) and not _inside_torch_optim():
            self.current += 1
        return func(*args, **(kwargs or {}))

    def on_step(self, epoch, step):
        (self.per_step.append if self.in_step else lambda n: setattr(self, "outside", self.outside + n))(self.current)
        self.current, self.in_step = 0, True

    def on_epoch(self, epoch, model):
        self.outside += self.current  # the epoch's end and its evaluation
        self.current, self.in_step = 0, False


@contextlib.contextmanager
def _count_python_reads(monkeypatch, counter: _HostReadCounter):
    """Count t.tolist(), t.numpy() and t.cpu() as host reads of ``counter`` while the block runs."""
    for name in ("tolist", "numpy", "cpu"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            counter.current += not _inside_torch_optim()
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    yield
    monkeypatch.undo()


@pytest.mark.parametrize("loss,sets", CASES)
@pytest.mark.parametrize("static_steps", [False, True])
def test_no_host_read_inside_an_epoch_and_a_fixed_number_per_epoch(monkeypatch, loss, sets, static_steps):
    """The step a CUDA graph replays (and the eager step) never reads a device value on the host, so the GPU never
    waits for Python; the reads of a trial (epoch sums, evaluations) do not grow with its number of steps."""
    outside = []
    for batch_size in (500, 250):  # twice the steps, same epochs
        cfg, data, settings, make, tr, ev = _setup(loss, *sets, f"training.batch_size={batch_size}")
        counter = _HostReadCounter()
        with counter, _count_python_reads(monkeypatch, counter):
            out = train_model(_model(cfg, data), tr, ev, make(True), make(False), settings, seed=3,
                              static_steps=static_steps, on_step=counter.on_step, on_epoch=counter.on_epoch)
        assert out.steps == settings.epochs * tr.num_batches(batch_size) > 2 * settings.epochs
        assert len(counter.per_step) == out.steps - settings.epochs  # each epoch's steps after its first
        assert counter.per_step == [0] * len(counter.per_step)
        outside.append(counter.outside + counter.current)
    assert outside[0] == outside[1]


@pytest.mark.parametrize("read", ["item", "mask", "tolist"])
def test_the_host_read_counter_sees_each_kind_of_read(monkeypatch, read):
    """The counter above, with one read put into every step (after the lr decay): one per step."""
    decay = LrSchedule.decay_
    take = {"item": lambda t: t.sum().item(), "mask": lambda t: t[t > 0], "tolist": lambda t: t.tolist()}[read]
    monkeypatch.setattr(LrSchedule, "decay_", lambda self: (decay(self), take(self.groups[0]["params"][0])))
    cfg, data, settings, make, tr, ev = _setup("bce")
    counter = _HostReadCounter()
    with counter, _count_python_reads(monkeypatch, counter):
        out = train_model(_model(cfg, data), tr, ev, make(True), make(False), settings, seed=3, static_steps=True,
                          on_step=counter.on_step, on_epoch=counter.on_epoch)
    assert counter.per_step == [1] * (out.steps - settings.epochs)
