"""From a resolved config to :class:`PreparedData`: source rows → balance → split → weights → standardise.

Steps, identical for synthetic and CTR sources:

1. rows: the synthetic generator or the Polars CTR pipeline (labelled rows + optional test rows);
2. ``ctr.datasets.<name>.balance_by_condition``: every condition of the labelled rows is
   downsampled (seeded, without replacement) to the row count of the smallest condition, so no
   ad dominates the shared layers; done before the train/eval split so both splits are balanced;
3. train/eval split: a permutation from the seed's ``split`` stream (:mod:`le_ray.seeds`); the first ``floor(train_split · n)``
   positions are train, the rest eval (each kept in source order);
4. deprecated synthetic reweighting on the train split only;
5. numeric standardisation with train mean/std (std < 1e-6 → 1), applied to every split.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from le_ray import seeds
from le_ray.config import Config, config_fingerprint
from le_ray.data.arrays import EncodedRows, PreparedData, PreparedMeta, Split
from le_ray.data.synthetic import generate_synthetic, reweight_negatives

__all__ = ["prepare_data", "prepare_with_source", "validation_split", "split_train_eval", "balance_by_condition", "standardize", "le_base_rates",
           "le_evaluation_rates",
           "condition_counts"]


def split_train_eval(n: int, train_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (sorted) of the train and eval rows among ``n`` labelled rows."""
    perm = seeds.rng(seed, "split").permutation(n)
    n_train = int(math.floor(train_split * n))
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def balance_by_condition(cond: np.ndarray, seed: int) -> np.ndarray:
    """Sorted row indices keeping ``min_j count_j`` random rows of every present condition."""
    counts = np.bincount(cond)
    present = counts > 0
    if not present.any():
        return np.arange(0)
    target = counts[present].min()
    key = seeds.rng(seed, "balancing").random(len(cond))
    order = np.lexsort((key, cond))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(cond)) - starts[cond[order]]
    return np.sort(order[rank < target])


def standardize(train_x: np.ndarray, enabled: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (float64 [F]) of the train features; std < 1e-6 → 1 (constant columns)."""
    f = train_x.shape[1]
    if not enabled or len(train_x) == 0:
        return np.zeros(f), np.ones(f)
    mean = train_x.mean(axis=0, dtype=np.float64)
    std = train_x.std(axis=0, dtype=np.float64)
    return mean, np.where(std < 1e-6, 1.0, std)


def _apply_standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x - mean) / std).astype(np.float32)


def condition_counts(cond: np.ndarray, y: np.ndarray, num_conditions: int,
                     w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(Σw, Σw·y) per condition, float64 [C]; unit weights when ``w`` is None."""
    weights = None if w is None else w.astype(np.float64)
    n = np.bincount(cond, weights=weights, minlength=num_conditions).astype(np.float64)
    pos = np.bincount(cond, weights=y if w is None else y * weights, minlength=num_conditions)
    return n, pos.astype(np.float64)


def le_base_rates(data: PreparedData, *, prior: str, use_true_rates: bool = False) -> np.ndarray:
    """Per-condition base rates p_j (float64 [C]) that normalise the LE loss during training.

    ``use_true_rates`` (synthetic only): the train split's mean true probability. Otherwise the
    train labels: ``prior="jeffreys"`` gives (Σw·y + 0.5) / (Σw + 1), never 0 or 1, so a condition
    without (or with only) positives keeps a finite LE denominator; ``prior="none"`` gives the raw
    mean Σw·y / Σw and warns naming the conditions whose rate is 0 or 1 (their LE term explodes).
    """
    if use_true_rates and data.true_base_rates is not None:
        return data.true_base_rates.astype(np.float64)
    train = data.train
    n, pos = condition_counts(train.cond, train.y, data.num_conditions, train.w)
    if prior == "jeffreys":
        return (pos + 0.5) / (n + 1.0)
    if prior != "none":
        raise ValueError(f"training.le.base_rate_prior: got {prior!r}; expected jeffreys or none")
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(n > 0, pos / np.maximum(n, 1e-300), 0.5)
    degenerate = [data.condition_values[j] for j in np.flatnonzero((n > 0) & ((pos <= 0) | (pos >= n)))]
    if degenerate:
        warnings.warn(f"training.le.base_rate_prior=none: conditions {degenerate} have a training rate of 0 or 1; "
                      "their LE denominator is ~0 and the loss will explode (use \"jeffreys\")",
                      RuntimeWarning, stacklevel=2)
    return rates


def le_evaluation_rates(data: PreparedData, split_name: str, *, prior: str, use_true_rates: bool = False) -> np.ndarray:
    """Per-condition base rates (float64 [C]) of the LE evaluation losses on the split ``split_name`` (a trial's
    eval curve and ``eval_compare``), by the earlier system's rule: with ``use_true_rates`` on synthetic data and the
    eval split, that split's own mean true probability per condition (NaN for a condition it lacks: LE then uses
    the condition's observed rate); otherwise the training rates of :func:`le_base_rates`."""
    split = data.split(split_name)
    if use_true_rates and split_name == "eval" and split is not None and split.p_true is not None:
        return _mean_true_rates(split, np.bincount(split.cond, minlength=data.num_conditions), data.num_conditions)
    return le_base_rates(data, prior=prior, use_true_rates=use_true_rates)


def _mean_true_rates(split: Split, rows: np.ndarray, c: int) -> np.ndarray:
    """Mean true probability per condition (float64 [C]) of ``split``, whose conditions hold ``rows`` rows each; NaN
    for a condition without a row."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, np.bincount(split.cond, weights=split.p_true, minlength=c) / np.maximum(rows, 1),
                        np.nan)


@dataclass(frozen=True)
class _Source:
    """What a source (generator or CTR pipeline) hands over before splitting."""
    labelled: EncodedRows
    test: EncodedRows | None
    num_conditions: int
    condition_values: tuple[str, ...]
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    cat_vocab_sizes: tuple[int, ...]
    fingerprint: str
    source_rows: int
    stage_seconds: dict[str, float]
    files: dict[str, dict[str, Any]]  # the CTR files read (PreparedMeta.files); {} for synthetic data
    ctr: Any = None  # the CtrSource of a CTR source (filter statistics for diagnostics); never shipped to trials


def _source(cfg: Config, seed: int) -> _Source:
    """Labelled rows, test rows and source metadata for synthetic or CTR data."""
    started = time.perf_counter()
    if cfg.data.source == "synthetic":
        syn = generate_synthetic(cfg.synthetic, seed=seed,
                                 test_split=cfg.synthetic.test_split if cfg.data.use_test_set else 0.0)
        c = cfg.synthetic.num_conditions
        total = len(syn.labelled) + (0 if syn.test is None else len(syn.test))
        return _Source(syn.labelled, syn.test, c, tuple(str(j) for j in range(c)), syn.numeric_features, (), (),
                       config_fingerprint({"synthetic": cfg.synthetic, "seed": seed}), total,
                       {"generate": time.perf_counter() - started}, {})
    from le_ray.data.ctr import load_ctr  # Polars pipeline; imported lazily for synthetic-only use

    src = load_ctr(cfg)
    return _Source(src.train_rows, src.test_rows if cfg.data.use_test_set else None, src.num_conditions,
                   tuple(src.condition_values), tuple(src.numeric_features), tuple(src.categorical_features),
                   tuple(src.cat_vocab_sizes), src.fingerprint, src.source_rows, dict(src.timings), src.files, src)


def _train_rates(train: Split, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(rows, positives, click rate, mean true probability or None) per condition of the train split."""
    counts, positives = condition_counts(train.cond, train.y, c)
    true_rates = None if train.p_true is None else _mean_true_rates(train, counts, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(counts > 0, positives / np.maximum(counts, 1), np.nan)
    return counts.astype(np.int64), positives.astype(np.int64), rates, true_rates


def _balanced(cfg: Config, rows: EncodedRows, seed: int) -> tuple[EncodedRows, bool]:
    balance = cfg.data.source == "ctr" and cfg.active_ctr.balance_by_condition
    return (rows.take(balance_by_condition(rows.cond, seed)) if balance else rows), balance


def prepare_with_source(cfg: Config, *, seed: int | None = None) -> tuple[PreparedData, Any]:
    """:func:`prepare_data` plus the CTR pipeline's ``CtrSource`` (None for synthetic data), for diagnostics."""
    seed = cfg.project.seed if seed is None else seed
    started = time.perf_counter()
    src = _source(cfg, seed)
    labelled, balance = _balanced(cfg, src.labelled, seed)
    train_idx, eval_idx = split_train_eval(len(labelled), cfg.data.train_split, seed)
    train_rows, eval_rows = labelled.take(train_idx), labelled.take(eval_idx)
    weights = None
    reweight = cfg.data.source == "synthetic" and cfg.synthetic.reweighting.enabled
    if reweight:
        train_rows, weights = reweight_negatives(train_rows, cfg.synthetic.reweighting.negative_downsample_rate,
                                                 seed=seed)
    mean, std = standardize(train_rows.x_num, cfg.data.standardize)
    make = lambda rows, w=None: Split.from_rows(rows, _apply_standardize(rows.x_num, mean, std), w)  # noqa: E731
    train = make(train_rows, weights)
    counts, positives, rates, true_rates = _train_rates(train, src.num_conditions)
    settings = {"source": src.fingerprint, "seed": seed, "train_split": cfg.data.train_split,
                "balance": balance, "reweight": cfg.synthetic.reweighting if reweight else None,
                "standardize": cfg.data.standardize, "test": src.test is not None}
    meta = PreparedMeta(source_rows=src.source_rows, kept_rows=len(src.labelled), labelled_rows=len(labelled),
                        seed=seed, prepare_seconds=time.perf_counter() - started,
                        stage_seconds=dict(src.stage_seconds), files=src.files)
    data = PreparedData(
        source=cfg.source_key, train=train, eval=make(eval_rows), test=None if src.test is None else make(src.test),
        num_conditions=src.num_conditions, condition_values=src.condition_values,
        numeric_features=src.numeric_features, categorical_features=src.categorical_features,
        cat_vocab_sizes=src.cat_vocab_sizes, numeric_mean=mean, numeric_std=std, train_condition_counts=counts,
        train_condition_positives=positives, train_condition_rates=rates, true_base_rates=true_rates,
        fingerprint=config_fingerprint(settings), meta=meta)
    return data, src.ctr


def prepare_data(cfg: Config, *, seed: int | None = None) -> PreparedData:
    """Build the arrays every trial trains on (steps 1-5 above). ``seed`` defaults to ``project.seed``."""
    return prepare_with_source(cfg, seed=seed)[0]


def validation_split(data: PreparedData, fraction: float, seed: int) -> PreparedData:
    """Tuning data: ``fraction`` of the TRAIN rows (``seed``'s ``validation`` stream) become the evaluation split.

    The rest stays the training split; the original evaluation and test splits are dropped, so a
    tuning trial never sees a row the test sweep evaluates on. Per-condition train statistics are
    recomputed on the remaining train rows; standardisation keeps the full train split's statistics.
    """
    n = len(data.train)
    order = seeds.rng(seed, "validation").permutation(n)
    n_val = int(math.floor(fraction * n))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    train = data.train.take(train_idx)
    counts, positives, rates, true_rates = _train_rates(train, data.num_conditions)
    fingerprint = config_fingerprint({"data": data.fingerprint, "validation": fraction, "seed": seed})
    return replace(data, train=train, eval=data.train.take(val_idx), test=None, train_condition_counts=counts,
                   train_condition_positives=positives, train_condition_rates=rates, true_base_rates=true_rates,
                   fingerprint=fingerprint)
