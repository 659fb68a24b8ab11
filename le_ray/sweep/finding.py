"""One finding of the experiment audit, and the config key that sets a loss's training setting (what a finding
names for the user to change). Kept apart from :mod:`le_ray.sweep.audit` so that the audit's groups of rules can
live in modules of their own (:mod:`le_ray.sweep.audit_settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from le_ray.config import Config, to_plain
from le_ray.config.load import training_layers
from le_ray.config.schema import OPTIMISER_SETTING_KEYS

__all__ = ["ERROR", "WARNING", "Finding", "setting_key"]

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Finding:
    """One problem of the experiment: ``severity`` error (refuse to start) or warning, a stable ``code``,
    a sentence, the config ``keys`` that change it, and the condition ids it concerns (if any)."""
    severity: str
    code: str
    message: str
    keys: tuple[str, ...]
    conditions: tuple[int, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "message": self.message, "keys": list(self.keys),
                "conditions": list(self.conditions)}


def setting_key(cfg: Config, loss: str, dotted: str) -> str:
    """The most specific config key that sets training setting ``dotted`` (e.g. ``batch_size``) for ``loss``
    (``training.<key>`` for an optimiser key under ``training.same_settings_for_all_losses``)."""
    parts = dotted.split(".")
    if cfg.training.same_settings_for_all_losses and parts[0] in OPTIMISER_SETTING_KEYS:
        return f"training.{dotted}"
    for prefix, layer in reversed(training_layers(to_plain(cfg.training.by_loss), loss, cfg.source_keys)):
        node: Any = layer
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return f"{prefix}.{dotted}"
    return f"training.{dotted}"
