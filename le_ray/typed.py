"""Temporary alias (removed once every import moved): ``to_plain`` lives in :mod:`le_ray.config`."""
from le_ray.config.resolve import to_plain  # noqa: F401
from le_ray.errors import ConfigError  # noqa: F401
