"""CUDA-only checks (``pytest -m gpu``; bench/gpu_check.py runs them on a lent GPU). Skipped without CUDA."""

import pytest
import torch

from le_ray.config import load_config
from le_ray.data.batches import to_tensors
from le_ray.data.prepare import le_base_rates, prepare_data
from le_ray.training.devices import select_device
from le_ray.training.model import build_model
from le_ray.training.objectives import make_objective
from le_ray.training.loop import train_model
from le_ray.training.trial import TrialSpec, run_trial

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]
CUDA = torch.device("cuda:0")


def _setup(loss, *sets):
    cfg = load_config(sets=["synthetic.samples_per_condition=20000", "training.epochs=1", "training.by_loss={}",
                            "training.batch_size=4096", *sets])
    data = prepare_data(cfg)
    return cfg, data, cfg.training_for(loss)


def test_select_device_picks_the_gpu_ray_assigned():
    choice = select_device(load_config().device, assigned_gpu_ids=["0"])
    assert choice.device == CUDA and "Ray GPU ids" in choice.reason


@pytest.mark.parametrize("loss,sets", [("bce", ()), ("focal", ()),
                                       ("localized_entropy", ("training.cross_batch.enabled=true",))])
def test_training_steps_never_synchronise_with_the_host(loss, sets):
    """torch raises on any synchronising CUDA call inside the optimiser steps."""
    import le_ray.training.graph_step as train_module

    cfg, data, settings = _setup(loss, *sets)
    rates = torch.tensor(le_base_rates(data, prior="jeffreys"), device=CUDA)
    model = build_model(cfg.model, num_numeric=data.num_numeric, num_conditions=data.num_conditions,
                        cat_vocab_sizes=data.cat_vocab_sizes).to(CUDA)
    make = lambda h: make_objective(loss, settings, base_rates=rates, num_conditions=data.num_conditions,  # noqa
                                    device=CUDA, dtype=torch.float32, with_history=h,
)
    step = train_module.step_fn

    def strict(*a, **k):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return step(*a, **k)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    train_module.step_fn = strict
    try:
        out = train_model(model, to_tensors(data.train, device=CUDA, dtype=torch.float32),
                          to_tensors(data.eval, device=CUDA, dtype=torch.float32), make(True), make(False),
                          settings, seed=1)
    finally:
        train_module.step_fn = step
    assert out.steps > 10


def test_cuda_trial_matches_cpu_closely():
    cfg, data, _ = _setup("localized_entropy", "training.cross_batch.enabled=true", "device.deterministic=true")
    spec = TrialSpec.make(cfg, "localized_entropy", 1, data.fingerprint)
    was = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        gpu = run_trial(data, spec, assigned_gpu_ids=["0"])
        cpu = run_trial(data, spec, assigned_gpu_ids=[])
    finally:  # the trials switch deterministic algorithms on for the process; the graph tests below run as trials do
        torch.use_deterministic_algorithms(was[0], warn_only=was[1])
    assert gpu.device.startswith("cuda:0") and cpu.device.startswith("cpu")
    assert gpu.metrics["logloss"] == pytest.approx(cpu.metrics["logloss"], rel=2e-3)
    assert gpu.curves["eval_loss"] == pytest.approx(cpu.curves["eval_loss"], rel=2e-3)  # per-batch eval LE


def test_the_batched_evaluation_le_reads_nothing_on_the_host_once_built():
    """:meth:`Objective.batched_mean` builds its segment constants once (one host read); every later call, as at
    each epoch's evaluation, must not synchronise, and must give the CPU's value."""
    cfg, data, settings = _setup("localized_entropy")
    values = {}
    for device in (torch.device("cpu"), CUDA):
        rates = torch.tensor(le_base_rates(data, prior="jeffreys"), device=device)
        objective = make_objective("localized_entropy", settings, base_rates=rates, num_conditions=data.num_conditions,
                                   device=device, dtype=torch.float32, with_history=False)
        split = to_tensors(data.eval, device=device, dtype=torch.float32)
        logits = torch.linspace(-6.0, 1.0, len(split), device=device)
        objective.batched_mean(logits, split.whole(), 1000)
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        try:
            loss = objective.batched_mean(logits, split.whole(), 1000)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        values[device.type] = float(loss)
    assert len(data.eval) > 3 * 1000 and values["cuda"] == pytest.approx(values["cpu"], rel=1e-5)


# --------------------------------------------------------------------------- captured training steps

GRAPH_CASES = [("bce", ()), ("focal", ()), ("localized_entropy", ("training.cross_batch.enabled=false",)),
               ("localized_entropy", ("training.cross_batch.enabled=true",)),
               ("localized_entropy", ("training.cross_batch.enabled=true", "training.lr_category=0.01",
                                      "training.lr_category_decay=0.99", "training.lr_zero_after_epochs=1"))]


def _graph_run(loss, sets, *, cuda_graphs, stage=True, strict_replays=False, device=CUDA):
    """Train 2 epochs with dropout 0 (identical maths in and out of a graph); return
    (per-step losses [steps] float64, outcome, optimiser). ``device`` CPU (with ``cuda_graphs=False``: the
    static path, eagerly) is how a CPU test keeps this helper's seams in step with the loop's."""
    import le_ray.training.graph_step as gs
    import le_ray.training.loop as loop

    cfg, data, settings = _setup(loss, "training.epochs=2", "model.dropout=0", *sets)
    rates = torch.tensor(le_base_rates(data, prior="jeffreys"), device=device)
    torch.manual_seed(0)
    model = build_model(cfg.model, num_numeric=data.num_numeric, num_conditions=data.num_conditions,
                        cat_vocab_sizes=data.cat_vocab_sizes).to(device)
    make = lambda h: make_objective(loss, settings, base_rates=rates, num_conditions=data.num_conditions,  # noqa
                                    device=device, dtype=torch.float32, with_history=h,
                                    max_entries=data.train_condition_counts * settings.epochs)
    losses, seen = [], {}
    steps_of, captured = loop._epoch_steps, gs.StaticSteps._captured_step

    def recording(ctx, order):
        seen["optimizer"] = ctx.state.optimizer
        for loss_t, rows in steps_of(ctx, order):
            losses.append(loss_t.double().clone())  # the replay overwrites its static output
            yield loss_t, rows

    def strict(self):  # warm-up steps and replays (not the capture itself) must not synchronise
        if not strict_replays or (self.replayed.graph is None and self.replayed.warm >= gs.WARMUP_STEPS):
            return captured(self)
        torch.cuda.set_sync_debug_mode("error")
        try:
            return captured(self)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    loop._epoch_steps, gs.StaticSteps._captured_step = recording, strict
    try:
        out = train_model(model, to_tensors(data.train, device=device, dtype=torch.float32, stage_on_device=stage),
                          to_tensors(data.eval, device=device, dtype=torch.float32), make(True), make(False),
                          settings, seed=1, cuda_graphs=cuda_graphs, static_steps=not cuda_graphs)
    finally:
        loop._epoch_steps, gs.StaticSteps._captured_step = steps_of, captured
    return torch.stack(losses).cpu(), out, seen["optimizer"]


@pytest.mark.parametrize("loss,sets", GRAPH_CASES)
def test_graph_steps_match_eager_steps(loss, sets):
    """The captured step replayed vs the same step function run eagerly: every step's loss agrees to
    float32 rounding (CUDA scatter-adds use atomics, so the last bits vary even eager vs eager)."""
    graph, out_g, optimizer = _graph_run(loss, sets, cuda_graphs=True, strict_replays=True)
    eager, out_e, _ = _graph_run(loss, sets, cuda_graphs=False)
    assert out_g.cuda_graphs and not out_e.cuda_graphs and len(graph) == len(eager) == out_g.steps > 10
    rel = ((graph - eager).abs() / eager.abs()).max().item()
    print(f"{loss} {sets}: max relative step-loss difference graph vs eager {rel:.2e} over {len(graph)} steps")
    assert rel < 1e-5
    assert out_g.final_lrs == pytest.approx(out_e.final_lrs, rel=1e-12)
    group = optimizer.param_groups[0]
    assert group["fused"] and group["capturable"] and isinstance(group["lr"], torch.Tensor) and group["lr"].is_cuda
    state = optimizer.state[group["params"][0]]
    assert state["step"].is_cuda and int(state["step"]) == out_g.steps


def test_graph_lr_decay_tensors_follow_the_schedule():
    _, out, optimizer = _graph_run("bce", ("training.lr_category=0.02", "training.lr_decay=0.99",
                                           "training.lr_category_decay=0.98", "training.lr_zero_after_epochs=1"),
                                   cuda_graphs=True)
    assert out.final_lrs[0] == 0.0
    assert out.final_lrs[1] == pytest.approx(0.02 * 0.98 ** out.steps, rel=1e-12)
    assert float(optimizer.param_groups[1]["lr"]) == pytest.approx(out.final_lrs[1], rel=1e-6)  # float32 copy


def test_graph_steps_with_the_split_in_host_memory():
    graph, out, _ = _graph_run("localized_entropy", ("training.cross_batch.enabled=true",), cuda_graphs=True,
                               stage=False)
    eager, _, _ = _graph_run("localized_entropy", ("training.cross_batch.enabled=true",), cuda_graphs=False)
    assert out.cuda_graphs and ((graph - eager).abs() / eager.abs()).max().item() < 1e-5


def test_matmul_precision_on_cuda():
    from le_ray.training.devices import apply_matmul_precision
    before = torch.get_float32_matmul_precision()
    try:
        assert apply_matmul_precision("auto", CUDA) == "high" == torch.get_float32_matmul_precision()
        assert apply_matmul_precision("highest", CUDA) == "highest" == torch.get_float32_matmul_precision()
    finally:
        torch.set_float32_matmul_precision(before)


def test_worker_warm_up_initialises_cuda():
    """A GPU worker's warm-up creates the CUDA context (and runs fused Adam) before its first trial."""
    import subprocess
    import sys

    code = ("import torch; from le_ray.sweep.driver import _import_trial_modules as warm; "
            "before = torch.cuda.is_initialized(); warm(); print(before, torch.cuda.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True"]  # a fresh process: the warm-up made the context


@pytest.mark.parametrize("loss,stage", [("bce", True), ("localized_entropy", True), ("localized_entropy", False)])
def test_captured_epoch_zero_loss_pass_matches_the_eager_pass(loss, stage):
    """The epoch-0 loss pass as graph replays (split on the GPU, or in host memory and copied in per batch)
    gives the eager pass's loss and Σ w·BCE to float rounding, without a host read during the replays."""
    import le_ray.training.graph_step as gs
    from le_ray.training.loop import batched_loss

    cfg, data, settings = _setup(loss, "model.dropout=0.2")
    rates = torch.tensor(le_base_rates(data, prior="jeffreys"), device=CUDA)
    model = build_model(cfg.model, num_numeric=data.num_numeric, num_conditions=data.num_conditions,
                        cat_vocab_sizes=data.cat_vocab_sizes).to(CUDA)
    objective = make_objective(loss, settings, base_rates=rates, num_conditions=data.num_conditions, device=CUDA,
                               dtype=torch.float32, with_history=False)
    train = to_tensors(data.train, device=CUDA, dtype=torch.float32, stage_on_device=stage)
    size = settings.batch_size
    static = gs.StaticSteps(gs.StepState(model, None, objective, None, None, None, None), train, size, capture=True)
    replays, replay = [], torch.cuda.CUDAGraph.replay

    def counted(graph):
        replays.append(1)
        torch.cuda.set_sync_debug_mode("error")
        try:
            return replay(graph)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    eager = batched_loss(model, train, objective, size)
    torch.cuda.CUDAGraph.replay = counted
    try:
        captured = batched_loss(model, train, objective, size, static=static)
    finally:
        torch.cuda.CUDAGraph.replay = replay
    assert len(replays) == static.feed.full_batches - gs.WARMUP_STEPS >= gs.MIN_LOSS_PASS_REPLAYS
    assert captured == pytest.approx(eager, rel=1e-6)


def test_a_finished_trials_graph_memory_is_reused_by_the_next():
    """A destroyed graph's private pool is only freed by ``empty_cache``; each captured trial releases the dead
    pools of earlier trials before its first capture, so the allocator's reserve stays flat over trials
    instead of growing by each trial's graph memory (LE + history: two graphs, the loss pass and the step)."""
    reserved = []
    for _ in range(4):
        _, out, _ = _graph_run("localized_entropy", (), cuda_graphs=True)
        assert out.cuda_graphs
        torch.cuda.synchronize()
        reserved.append(torch.cuda.memory_reserved())
    print("reserved after each trial (MiB):", [round(r / 2**20, 1) for r in reserved])
    assert max(reserved[1:]) <= reserved[0] * 1.05 + 8 * 2**20
