"""What defines a trial, without torch: :class:`TrialSpec`, its id, and the evaluation settings it implies.

The sweep driver plans, stores and resumes trials by their specs and ids; it runs no trial itself, so it
imports this module and never :mod:`le_ray.training.trial` (which imports torch: seconds of a driver's
start-up before Ray even starts, more with a CUDA build). :mod:`le_ray.training.trial` re-exports all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from le_ray.config import Config, TrainingSettings, config_fingerprint, to_plain
from le_ray.config.resolve import without_added_defaults
from le_ray.data.arrays import PreparedData, Split
from le_ray.registry import canonical_loss

__all__ = ["TrialSpec", "trial_id", "evaluation_split", "ece_settings", "DISPLAY_ONLY_EVALUATION"]

#: ``evaluation.*`` keys that only change what is printed, never a trial's numbers, with the value :func:`trial_id`
#: hashes them at whatever they are set to: configs/default.json's (no profile changes them), so the ids of sweeps
#: stored before these keys were left out of the hash stay the same. A resume may change them
#: (le_ray/sweep/store.py).
DISPLAY_ONLY_EVALUATION: dict[str, Any] = {"print_per_condition_top_k": 50}


@dataclass(frozen=True)
class TrialSpec:
    """What defines a trial: config, canonical loss, seed, the prepared data's fingerprint, and the loss's
    resolved ``settings`` and ``trial_id``, both computed once when the spec is made (:meth:`make`)."""
    config: Config
    loss: str
    seed: int
    data_fingerprint: str
    settings: TrainingSettings
    trial_id: str

    @classmethod
    def make(cls, cfg: Config, loss: str, seed: int, data_fingerprint: str,
             settings: TrainingSettings | None = None) -> "TrialSpec":
        """The spec of ``loss`` with ``seed`` on data ``data_fingerprint`` (``settings``: the config's by default)."""
        loss = canonical_loss(loss)
        settings = cfg.training_for(loss) if settings is None else settings
        return cls(cfg, loss, seed, data_fingerprint, settings,
                   trial_id(cfg, loss, seed, data_fingerprint, settings))


def trial_id(cfg: Config, loss: str, seed: int, data_fingerprint: str, settings: TrainingSettings) -> str:
    """Stable hash of everything that changes a trial's numbers (not runner, report or display settings: the
    evaluation keys of :data:`DISPLAY_ONLY_EVALUATION` are hashed at their fixed value)."""
    evaluation = cfg.evaluation.model_copy(update=DISPLAY_ONLY_EVALUATION)
    # a key added since sweeps were first stored, at the value they ran with, is not hashed: their ids stay valid
    training = without_added_defaults(to_plain(settings), "training")
    relevant = {"model": cfg.model, "training": training, "evaluation": evaluation,
                "dtype": cfg.device.dtype, "deterministic": cfg.device.deterministic,
                "loss": loss, "seed": seed, "data": data_fingerprint}
    return f"{loss}-s{seed}-{config_fingerprint(relevant)}"


def evaluation_split(data: PreparedData, cfg: Config) -> tuple[str, Split, bool]:
    """(name, split, labels usable) for ``evaluation.split``; test labels need ``use_test_labels``."""
    name = cfg.evaluation.split
    split = data.split(name)
    if split is None:
        raise ValueError(f"evaluation.split: got {name!r} but the prepared data has no {name} split "
                         "(a test split needs data.use_test_set true and synthetic.test_split > 0, or the dataset's "
                         "test_path or split_test_from_train; or choose train/eval)")
    labelled = split.has_labels and (name != "test" or cfg.evaluation.use_test_labels)
    return name, split, labelled


def ece_settings(cfg: Config) -> dict[str, Any]:
    """Keyword arguments of the metrics functions from ``evaluation.*``."""
    ev = cfg.evaluation
    return dict(ece_method=ev.ece_method, bins=ev.ece_bins, min_count=ev.ece_min_count,
                smooth_bandwidth=ev.ece_smooth_bandwidth, smooth_grid_bins=ev.ece_smooth_grid_bins,
                small_prob_max=ev.small_prob_max, small_prob_quantile=ev.small_prob_quantile)
