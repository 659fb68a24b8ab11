"""Temporary alias of :mod:`le_ray.config.schema` (removed once every import moved)."""
from le_ray.config.schema import *  # noqa: F401,F403
from le_ray.config.schema import Config, CtrDatasetConfig, DeviceConfig, FilterConfig, ModelConfig, SyntheticConfig, TrainingSettings  # noqa: F401
from le_ray.registry import LOSS_NAMES  # noqa: F401
