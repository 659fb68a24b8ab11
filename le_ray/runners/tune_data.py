"""What a tune may see: its seeds never meet the test seeds, and its rows never meet a test seed's evaluation rows.

The tuning rows are ``tune.validation_split`` of the training split of ``project.seed``'s data
(:func:`tuning_data`). On synthetic data every test seed draws new rows, and with one split for every seed
(``repeats.resample_data`` false) the evaluation rows are never among the training rows; but a CTR file with
``repeats.resample_data`` true redraws the train / evaluation split of the same rows for every test seed, so most
tuning rows land in other seeds' evaluation splits (about 60 % of seeds 43's and 44's on the shipped Avazu sample):
:func:`refuse_shared_rows` refuses that before any work.
"""

from __future__ import annotations

from le_ray.config import Config
from le_ray.data.arrays import PreparedData
from le_ray.data.prepare import validation_split
from le_ray.errors import ConfigError
from le_ray.sweep.plan import sweep_seeds

__all__ = ["tuning_seed_range", "refuse_shared_rows", "tuning_data", "SEED_DRAWS"]

SEED_DRAWS = 1_000_000  # tuning seeds are drawn from [project.seed + seed_offset, ... + SEED_DRAWS)


def tuning_seed_range(cfg: Config) -> tuple[int, int]:
    """[low, high) of tuning seeds; a ConfigError when it could meet the test seeds."""
    low = cfg.project.seed + cfg.tune.seed_offset
    if max(sweep_seeds(cfg)) >= low:
        raise ConfigError(f"tune.seed_offset: got {cfg.tune.seed_offset}; expected > the test seeds' span "
                          f"(repeats.num_runs x repeats.seed_stride = {cfg.repeats.num_runs * cfg.repeats.seed_stride})")
    return low, low + SEED_DRAWS


def refuse_shared_rows(cfg: Config) -> None:
    """ConfigError when the test sweep would evaluate rows the search trained or scored on (module docstring): a CTR
    source whose every seed redraws its train / evaluation split (``repeats.resample_data``), evaluated on that split."""
    if cfg.data.source == "synthetic" or not cfg.repeats.resample_data or cfg.evaluation.split == "test":
        return
    raise ConfigError("repeats.resample_data: got true for le-ray tune on a CTR file; each test seed would redraw the "
                      "train / evaluation split of the same rows, so the rows the search trained and scored on "
                      "(carved from project.seed's training split) would fall into the other seeds' evaluation "
                      "splits, and the test would score rows the search has seen; set repeats.resample_data=false "
                      "(one split: the tuning rows come from its training rows only), or evaluate on a separate "
                      "test file (evaluation.split=test)")


def tuning_data(cfg: Config, data: PreparedData, echo) -> PreparedData:
    """The tuning split of ``data`` (``prepare_data(cfg)``): ``tune.validation_split`` of its training rows."""
    tuning = validation_split(data, cfg.tune.validation_split, cfg.project.seed)
    echo(f"tuning data: {len(tuning.train):,} train / {len(tuning.eval):,} validation rows, carved from the "
         f"{len(data.train):,} train rows (the {len(data.eval):,} evaluation rows are the test sweep's only)")
    return tuning
