"""Synthetic per-condition CTR data: net worth and age drive a click probability per condition.

Generation for condition j (one stream, ``le_ray.seeds.rng(seed, "generation")``, conditions in order,
draws in this order):

1. parameters, each uniform over its grid ``linspace(lo, hi, points)``: sigmoid centre ``mu_j``
   (log10 dollars), sigmoid scale ``s_j`` (log10 dollars), age centre ``mu_age_j`` and spread
   ``sd_age_j`` (years), interest scale ``10 ** x_j``;
2. net worth ``W ~ LogNormal(base_mu_ln, base_sigma_ln)`` (dollars), ``n`` rows;
3. age ``A ~ UniformInt[age_min, age_max)`` (years);
4. one ``N(noise_mean, noise_std)`` column per ``noise*`` feature, in feature order;
5. ``p0 = logistic((log10(W + 1) − mu_j) / s_j)``;
   ``interest = φ(A; mu_age_j, sd_age_j) / φ(50; mu_age_j, sd_age_j) / 10**x_j``;
   ``p = clip(p0 · interest, 0, 1)``;
6. ``condition_mode`` ``uniform`` / ``uniform_log10`` (the same path): the feature-driven ``p``
   only supplies a rank ``r`` (stable sort); ``q = clip((r + 0.5)/n, 1e-6, 1 − 1e-6)`` and
   ``log10 p = mean_j + std · Φ⁻¹(q)`` capped at 0, so per-condition rates follow a log10-normal
   bell (mean probability ``10 ** (mean_j + std² · ln 10 / 2)``) while keeping the features'
   ordering learnable. ``random`` keeps the feature-driven ``p``;
7. labels ``y ~ Bernoulli(p)`` as ``uniform[0,1) < p``.

After all conditions: one permutation of all rows from the same stream; its last
``floor(test_split · n)`` positions are the test set (when ``data.use_test_set``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import expit, ndtri

from le_ray import seeds
from le_ray.config.schema import SyntheticConfig
from le_ray.data.arrays import EncodedRows

__all__ = ["SyntheticRows", "generate_synthetic", "condition_parameters", "reweight_negatives",
           "expected_condition_rate"]


@dataclass(frozen=True)
class SyntheticRows:
    """Labelled rows (to be split into train/eval) and the held-out test rows (or None)."""
    labelled: EncodedRows
    test: EncodedRows | None
    numeric_features: tuple[str, ...]
    parameters: dict[str, np.ndarray]


def _grid_choice(rng: np.random.Generator, grid: tuple[float, ...]) -> float:
    lo, hi, points = grid
    return float(rng.choice(np.linspace(lo, hi, int(points))))


def condition_parameters(rng: np.random.Generator, cfg: SyntheticConfig) -> dict[str, float]:
    """Step 1: one condition's generator parameters, drawn from the configured grids."""
    return {
        "sigmoid_mu": _grid_choice(rng, cfg.sigmoid_mu_range),
        "sigmoid_s": _grid_choice(rng, cfg.sigmoid_s_range),
        "age_mu": _grid_choice(rng, cfg.age_mu_range),
        "age_sigma": _grid_choice(rng, cfg.age_sigma_range),
        "interest_scale": 10.0 ** _grid_choice(rng, cfg.interest_scale_log10_range),
    }


def _normal_pdf(x: np.ndarray | float, mu: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((np.asarray(x, dtype=np.float64) - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))


def _feature_probability(net_worth: np.ndarray, age: np.ndarray, par: dict[str, float]) -> np.ndarray:
    """Step 5: feature-driven click probability, float64 [n] in [0, 1]."""
    base = expit((np.log10(net_worth + 1.0) - par["sigmoid_mu"]) / par["sigmoid_s"])
    interest = (_normal_pdf(age, par["age_mu"], par["age_sigma"])
                / _normal_pdf(50.0, par["age_mu"], par["age_sigma"]) / par["interest_scale"])
    return np.clip(base * interest, 0.0, 1.0)


def _log10_normal_by_rank(p: np.ndarray, mean: float, std: float) -> np.ndarray:
    """Step 6: keep only the rank of ``p``; map it onto a log10-normal bell centred at ``mean``."""
    n = len(p)
    rank = np.empty(n, dtype=np.float64)
    rank[np.argsort(p, kind="stable")] = np.arange(n, dtype=np.float64)
    q = np.clip((rank + 0.5) / n, 1e-6, 1.0 - 1e-6)
    return 10.0 ** np.minimum(mean + std * ndtri(q), 0.0)


def _numeric_columns(names: tuple[str, ...], net_worth: np.ndarray, age: np.ndarray,
                     noise: dict[str, np.ndarray]) -> np.ndarray:
    known = {"age": age.astype(np.float64), "net_worth": net_worth, "log10_net_worth": np.log10(net_worth + 1.0)}
    return np.column_stack([known[name] if name in known else noise[name] for name in names]).astype(np.float32)


def _generate_condition(rng: np.random.Generator, cfg: SyntheticConfig, j: int) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    n = cfg.samples_per_condition
    par = condition_parameters(rng, cfg)
    net_worth = rng.lognormal(cfg.base_mu_ln, cfg.base_sigma_ln, n)
    age = rng.integers(cfg.age_min, cfg.age_max, n)
    noise = {name: rng.normal(cfg.noise_mean, cfg.noise_std, n)
             for name in cfg.numeric_features if name.startswith("noise")}
    p = _feature_probability(net_worth, age, par)
    if cfg.condition_mode in ("uniform", "uniform_log10"):
        p = _log10_normal_by_rank(p, cfg.uniform_log10_means[j], cfg.uniform_log10_std)
    y = (rng.random(n) < p).astype(np.float32)
    return par, _numeric_columns(cfg.numeric_features, net_worth, age, noise), p, y


def generate_synthetic(cfg: SyntheticConfig, *, seed: int, test_split: float | None = None) -> SyntheticRows:
    """Generate ``num_conditions × samples_per_condition`` rows; hold out the test part.

    ``test_split`` overrides ``cfg.test_split`` (pass 0 when ``data.use_test_set`` is false).
    """
    rng = seeds.rng(seed, "generation")
    parts = [_generate_condition(rng, cfg, j) for j in range(cfg.num_conditions)]
    x_num = np.concatenate([part[1] for part in parts])
    p_true = np.concatenate([part[2] for part in parts])
    y = np.concatenate([part[3] for part in parts])
    n_per = cfg.samples_per_condition
    cond = np.repeat(np.arange(cfg.num_conditions, dtype=np.int32), n_per)
    rows = EncodedRows(x_num, np.zeros((len(cond), 0), dtype=np.int32), cond, y,
                       np.arange(len(cond), dtype=np.int64), p_true)
    perm = rng.permutation(len(cond))
    n_test = int(math.floor((cfg.test_split if test_split is None else test_split) * len(cond)))
    labelled, test = rows.take(perm[: len(cond) - n_test]), rows.take(perm[len(cond) - n_test:]) if n_test else None
    params = {key: np.array([part[0][key] for part in parts]) for key in parts[0][0]}
    return SyntheticRows(labelled, test, tuple(cfg.numeric_features), params)


def expected_condition_rate(mean_log10: float, std_log10: float) -> float:
    """Mean of ``10**X`` for ``X ~ N(mean, std²)`` (ignoring the cap at 1): ``10**(mean + std²·ln10/2)``."""
    return 10.0 ** (mean_log10 + std_log10 ** 2 * math.log(10.0) / 2.0)


def reweight_negatives(rows: EncodedRows, rate: float, *, seed: int) -> tuple[EncodedRows, np.ndarray]:
    """DEPRECATED negative downsampling of the train split, with unbiased weights.

    Per condition keep every positive and ``ceil(n_neg / (R + 1))`` negatives chosen at random
    (R = ``rate``); each kept negative gets weight ``R + 1`` so weighted sums estimate the full
    data's. The earlier system weighted kept negatives by R, which under-counts negatives by a
    factor R/(R+1) and biases every calibrated rate upwards; le_ray uses R + 1.
    Returns the kept rows (original order) and float32 weights [n_kept].
    """
    warnings.warn("synthetic.reweighting is deprecated and will be removed; it downsamples negatives of the "
                  "train split and weights the kept ones by R + 1", FutureWarning, stacklevel=2)
    rng = seeds.rng(seed, "reweighting")
    y = rows.y
    # A random key per row; within each condition the negatives with the smallest keys are kept.
    key = rng.random(len(rows))
    order = np.lexsort((key, y, rows.cond))  # by condition, then negatives first, then key
    neg_sorted = (y[order] < 0.5)
    cond_sorted = rows.cond[order]
    n_neg = np.bincount(rows.cond[y < 0.5], minlength=int(rows.cond.max(initial=-1)) + 1)
    quota = np.ceil(n_neg / (rate + 1.0)).astype(np.int64)
    starts = np.searchsorted(cond_sorted, np.arange(len(n_neg)))
    rank_in_cond = np.arange(len(order)) - starts[cond_sorted]
    keep_sorted = ~neg_sorted | (rank_in_cond < quota[cond_sorted])
    keep = np.sort(order[keep_sorted])
    weights = np.where(rows.y[keep] < 0.5, rate + 1.0, 1.0).astype(np.float32)
    return rows.take(keep), weights
