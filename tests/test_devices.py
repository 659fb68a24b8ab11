"""Device selection (Ray GPU ids first), dtype policy, seeding."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from le_ray.config import load_config
from le_ray.training.devices import select_device, seed_all, torch_dtype


def _dev(**sets):
    return load_config(sets=[f"device.{k}={v}" for k, v in sets.items()]).device


def test_cpu_without_accelerators():
    choice = select_device(_dev(), cuda_available=False, mps_available=False)
    assert choice.device.type == "cpu" and choice.dtype == torch.float32


def test_cuda_preferred_when_visible():
    choice = select_device(_dev(), cuda_available=True, mps_available=True)
    assert str(choice.device) == "cuda:0"


def test_ray_task_without_gpu_stays_on_cpu_even_if_cuda_visible():
    choice = select_device(_dev(), assigned_gpu_ids=[], cuda_available=True)
    assert choice.device.type == "cpu" and "holds no GPU" in choice.reason


def test_ray_assigned_gpu_but_no_cuda_falls_back_to_cpu():
    choice = select_device(_dev(), assigned_gpu_ids=[1], cuda_available=False)
    assert choice.device.type == "cpu" and "[1]" in choice.reason


def test_mps_only_when_enabled():
    assert select_device(_dev(use_mps="false"), cuda_available=False, mps_available=True).device.type == "cpu"
    assert select_device(_dev(use_mps="true"), cuda_available=False, mps_available=True).device.type == "mps"


def test_float64_and_mps_fallback():
    assert select_device(_dev(dtype="float64"), cuda_available=False, mps_available=False).dtype == torch.float64
    assert torch_dtype("float64", "mps") == torch.float32


def test_seed_all_repeats_streams():
    seed_all(11)
    a = (np.random.rand(), torch.rand(1).item())
    seed_all(11)
    assert (np.random.rand(), torch.rand(1).item()) == a


FLUSH_CHECK = """
import sys, torch
{setup}
torch.set_num_threads(2)
x = torch.full((1 << 20,), 1e-39)  # subnormal in float32; large enough for torch's intra-op threads
print(int((x * 1.0 == 0).all()), int((torch.full((8,), 1e-39) * 1.0 == 0).all()))
"""


@pytest.mark.parametrize("setup", [
    "from le_ray.training.devices import flush_denormals; flush_denormals()",
    "from le_ray.sweep.driver import _import_trial_modules; _import_trial_modules()",  # a Ray worker's warm-up
    "from le_ray.config import load_config; from le_ray.training.trial import TrialSpec, _setup; "
    "_setup(TrialSpec.make(load_config(), 'bce', 0, 'fp'), None, None)",  # a trial's set-up
])
def test_subnormals_are_flushed_in_every_thread_after_a_trials_set_up(setup):
    """Subnormal float32 operands (~1e-40: the gradients and Adam moments of a model driven to predict ~0) cost
    x86 cores microcode assists, which made a cold-start LE trial's epoch 5x slower on CPU: flushed to 0, also in
    torch's intra-op threads, which inherit the mode only from a thread that set it before they started."""
    can = subprocess.run([sys.executable, "-c", "import torch; print(torch.set_flush_denormal(True))"],
                         capture_output=True, text=True)
    if can.stdout.strip() != "True":
        pytest.skip("the CPU has no flush-to-zero mode")
    before = subprocess.run([sys.executable, "-c", FLUSH_CHECK.format(setup="")], capture_output=True, text=True)
    after = subprocess.run([sys.executable, "-c", FLUSH_CHECK.format(setup=setup)], capture_output=True, text=True)
    assert before.stdout.split() == ["0", "0"], before.stderr  # subnormals are kept by default
    assert after.stdout.split() == ["1", "1"], after.stderr
