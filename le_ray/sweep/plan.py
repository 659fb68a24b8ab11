"""The plan of a sweep: every (seed × loss) trial spec and the prepared data each one uses.

Seeds are ``project.seed + seed_stride · k`` for k < ``repeats.num_runs``. Every loss sees the same
seeds and, per seed, the same data (the comparison is paired). The data are prepared once, or once
per seed with ``repeats.resample_data`` (then seeds also vary the split and, for synthetic data, the
generated rows). Per-loss settings are resolved once for the whole plan and carried by the specs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from le_ray.config import Config
from le_ray.data.arrays import PreparedData
from le_ray.data.prepare import prepare_data
from le_ray.training.spec import TrialSpec

__all__ = ["SHARED", "sweep_seeds", "SweepPlan", "plan_trials", "for_seed"]

#: Key of the shared data when the data are not resampled per seed.
SHARED = -1


def sweep_seeds(cfg: Config) -> list[int]:
    """``project.seed + seed_stride · k`` for k < ``repeats.num_runs``."""
    return [cfg.project.seed + cfg.repeats.seed_stride * k for k in range(cfg.repeats.num_runs)]


def for_seed(by_seed: dict[int, Any], seed: int) -> Any:
    """The entry of ``seed`` when data are resampled per seed, else the shared one."""
    return by_seed[seed] if seed in by_seed else by_seed[SHARED]


def _expected_cost(spec: TrialSpec) -> float:
    """Relative cost of a trial: epochs × (1 + per-step overhead), LE history a little dearer.

    Only the order matters (longest-processing-time-first scheduling); rows are the same for
    every trial of a sweep, smaller batches mean more optimiser steps.
    """
    settings = spec.settings
    steps_weight = 1.0 + 2048.0 / settings.batch_size
    history = 1.1 if spec.loss == "localized_entropy" and settings.cross_batch.enabled else 1.0
    return settings.epochs * steps_weight * history


@dataclass
class SweepPlan:
    """Every trial of the sweep, the data each one uses, and what is already stored."""
    specs: list[TrialSpec]
    data_by_seed: dict[int, PreparedData]
    done: set[str] = field(default_factory=set)

    @property
    def pending(self) -> list[TrialSpec]:
        """Trials still to run, longest expected first (fewer idle slots at the end of a sweep)."""
        todo = [s for s in self.specs if s.trial_id not in self.done]
        return sorted(todo, key=_expected_cost, reverse=True)  # stable: seed order within equal cost

    @property
    def stored_by_loss(self) -> dict[str, int]:
        """loss → its planned trials already stored (in ``done``, by exact trial id): a resume does not train them."""
        return dict(Counter(s.loss for s in self.specs if s.trial_id in self.done))

    @property
    def datasets(self) -> list[PreparedData]:
        return list(self.data_by_seed.values())

    @property
    def train_rows(self) -> int | None:
        """The most training rows any trial trains on (what sizes a trial's GPU share); None without data."""
        return max((len(d.train) for d in self.data_by_seed.values()), default=None)


def plan_trials(cfg: Config, *, data: PreparedData | None = None) -> SweepPlan:
    """Prepare the data (once, or once per seed) and list the trial specs, paired across losses."""
    seeds = sweep_seeds(cfg)
    if cfg.repeats.resample_data:
        data_by_seed = {s: prepare_data(cfg, seed=s) for s in seeds}
    else:
        data_by_seed = {SHARED: data if data is not None else prepare_data(cfg)}
    settings = cfg.training_by_loss  # resolved once for the whole sweep
    specs = [TrialSpec.make(cfg, loss, seed, for_seed(data_by_seed, seed).fingerprint, settings[loss])
             for seed in seeds for loss in cfg.losses]
    return SweepPlan(specs, data_by_seed)
