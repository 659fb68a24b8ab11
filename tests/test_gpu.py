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
    import le_ray.training.loop as train_module

    cfg, data, settings = _setup(loss, *sets)
    rates = torch.tensor(le_base_rates(data, prior="jeffreys"), device=CUDA)
    model = build_model(cfg.model, num_numeric=data.num_numeric, num_conditions=data.num_conditions,
                        cat_vocab_sizes=data.cat_vocab_sizes).to(CUDA)
    make = lambda h: make_objective(loss, settings, base_rates=rates, num_conditions=data.num_conditions,  # noqa
                                    device=CUDA, dtype=torch.float32, with_history=h,
)
    step = train_module._train_step

    def strict(*a, **k):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return step(*a, **k)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    train_module._train_step = strict
    try:
        out = train_model(model, to_tensors(data.train, device=CUDA, dtype=torch.float32),
                          to_tensors(data.eval, device=CUDA, dtype=torch.float32), make(True), make(False),
                          settings, seed=1)
    finally:
        train_module._train_step = step
    assert out.steps > 10


def test_cuda_trial_matches_cpu_closely():
    cfg, data, _ = _setup("localized_entropy", "training.cross_batch.enabled=true", "device.deterministic=true")
    spec = TrialSpec.make(cfg, "localized_entropy", 1, data.fingerprint)
    gpu = run_trial(data, spec, assigned_gpu_ids=["0"])
    cpu = run_trial(data, spec, assigned_gpu_ids=[])
    assert gpu.device.startswith("cuda:0") and cpu.device.startswith("cpu")
    assert gpu.metrics["logloss"] == pytest.approx(cpu.metrics["logloss"], rel=2e-3)
