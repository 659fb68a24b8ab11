"""Configuration: JSON layers (defaults, file, profile, overrides, ``--set``) → one validated, frozen :class:`Config`.

``load.py`` merges the layers as plain data, ``schema.py`` is the typed shape (pydantic), ``messages.py``
turns validation errors into one line per dotted key, ``resolve.py`` validates and resolves the per-loss /
per-source training settings. Import everything from here.
"""

from le_ray.config.load import (
    CONFIG_DIR, DEFAULT_CONFIG_PATH, PROFILES_DIR, Profile, deep_merge, merge_layers, parse_set, profile_names,
    profiles, read_json,
)
from le_ray.config.resolve import (
    ConfigShadowWarning, Shadow, config_fingerprint, load_config, resolve_config, resolve_training, shadowed_sets,
    source_key_candidates, to_dict, to_plain,
)
from le_ray.config.schema import Config, FrozenDict, TrainingSettings
from le_ray.errors import ConfigError
from le_ray.registry import canonical_loss, losses_of

__all__ = [
    "CONFIG_DIR", "DEFAULT_CONFIG_PATH", "PROFILES_DIR", "Config", "ConfigError", "ConfigShadowWarning", "FrozenDict",
    "Profile", "Shadow", "TrainingSettings", "canonical_loss", "config_fingerprint", "deep_merge", "load_config",
    "losses_of", "merge_layers", "parse_set", "profile_names", "profiles", "read_json", "resolve_config",
    "resolve_training", "shadowed_sets", "source_key_candidates", "to_dict", "to_plain", "training_for",
]


def training_for(cfg: Config, loss: str) -> TrainingSettings:
    """Training settings of ``loss`` on the active source (resolved once per config object)."""
    return cfg.training_for(loss)
