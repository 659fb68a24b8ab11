"""Device selection (Ray GPU ids first), dtype policy, seeding."""

import numpy as np
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
