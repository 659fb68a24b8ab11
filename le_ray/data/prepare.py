"""From a resolved config to :class:`PreparedData`: source rows → balance → split → weights → standardise.

Steps, identical for synthetic and CTR sources:

1. rows: the synthetic generator or the Polars CTR pipeline (labelled rows + optional test rows);
2. ``ctr.datasets.<name>.balance_by_condition``: every condition of the labelled rows is
   downsampled (seeded, without replacement) to the row count of the smallest condition, so no
   ad dominates the shared layers; done before the train/eval split so both splits are balanced;
3. train/eval split: a ``default_rng(seed)`` permutation; the first ``floor(train_split · n)``
   positions are train, the rest eval (each kept in source order);
4. deprecated synthetic reweighting on the train split only;
5. numeric standardisation with train mean/std (std < 1e-6 → 1), applied to every split.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from le_ray.config import Config, config_fingerprint
from le_ray.data.arrays import EncodedRows, PreparedData, Split
from le_ray.data.synthetic import generate_synthetic, reweight_negatives

__all__ = ["prepare_data", "split_train_eval", "balance_by_condition", "standardize", "le_base_rates",
           "condition_counts"]


def split_train_eval(n: int, train_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (sorted) of the train and eval rows among ``n`` labelled rows."""
    perm = np.random.default_rng(seed).permutation(n)
    n_train = int(math.floor(train_split * n))
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def balance_by_condition(cond: np.ndarray, seed: int) -> np.ndarray:
    """Sorted row indices keeping ``min_j count_j`` random rows of every present condition."""
    counts = np.bincount(cond)
    present = counts > 0
    if not present.any():
        return np.arange(0)
    target = counts[present].min()
    key = np.random.default_rng(seed).random(len(cond))
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


def _source_rows(cfg: Config, seed: int) -> dict[str, Any]:
    """Labelled rows, test rows and source metadata for synthetic or CTR data."""
    if cfg.data.source == "synthetic":
        syn = generate_synthetic(cfg.synthetic, seed=seed,
                                 test_split=cfg.synthetic.test_split if cfg.data.use_test_set else 0.0)
        c = cfg.synthetic.num_conditions
        return dict(labelled=syn.labelled, test=syn.test, num_conditions=c,
                    condition_values=tuple(str(j) for j in range(c)), numeric_features=syn.numeric_features,
                    categorical_features=(), cat_vocab_sizes=(),
                    fingerprint=config_fingerprint({"synthetic": cfg.synthetic, "seed": seed}),
                    info={"parameters": {k: v.tolist() for k, v in syn.parameters.items()}})
    from le_ray.data.ctr import load_ctr  # Polars pipeline; imported lazily for synthetic-only use

    src = load_ctr(cfg)
    test = src.test_rows if cfg.data.use_test_set else None
    return dict(labelled=src.train_rows, test=test, num_conditions=src.num_conditions,
                condition_values=tuple(src.condition_values), numeric_features=tuple(src.numeric_features),
                categorical_features=tuple(src.categorical_features), cat_vocab_sizes=tuple(src.cat_vocab_sizes),
                fingerprint=src.fingerprint,
                info={"ctr": src, "source_rows": src.source_rows, "kept_rows": src.kept_rows,
                      "timings": dict(src.timings)})


def prepare_data(cfg: Config, *, seed: int | None = None) -> PreparedData:
    """Build the arrays every trial trains on. ``seed`` defaults to ``project.seed``."""
    seed = cfg.project.seed if seed is None else seed
    started = time.perf_counter()
    src = _source_rows(cfg, seed)
    labelled: EncodedRows = src["labelled"]
    balance = cfg.data.source == "ctr" and cfg.active_ctr.balance_by_condition
    if balance:
        labelled = labelled.take(balance_by_condition(labelled.cond, seed))
    train_idx, eval_idx = split_train_eval(len(labelled), cfg.data.train_split, seed)
    train_rows, eval_rows = labelled.take(train_idx), labelled.take(eval_idx)
    weights = None
    reweight = cfg.data.source == "synthetic" and cfg.synthetic.reweighting.enabled
    if reweight:
        train_rows, weights = reweight_negatives(train_rows, cfg.synthetic.reweighting.negative_downsample_rate,
                                                 seed=seed)
    mean, std = standardize(train_rows.x_num, cfg.data.standardize)
    make = lambda rows, w=None: Split.from_rows(rows, _apply_standardize(rows.x_num, mean, std), w)  # noqa: E731
    test = src["test"]
    train = make(train_rows, weights)
    c = src["num_conditions"]
    counts, positives = condition_counts(train.cond, train.y, c)
    true_rates = None
    if train.p_true is not None:
        sums = np.bincount(train.cond, weights=train.p_true, minlength=c)
        true_rates = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(counts > 0, positives / np.maximum(counts, 1), np.nan)
    settings = {"source": src["fingerprint"], "seed": seed, "train_split": cfg.data.train_split,
                "balance": balance, "reweight": cfg.synthetic.reweighting if reweight else None,
                "standardize": cfg.data.standardize, "test": test is not None}
    info = dict(src["info"], prepare_seconds=time.perf_counter() - started)
    return PreparedData(
        source=cfg.source_key, train=train, eval=make(eval_rows), test=None if test is None else make(test),
        num_conditions=c, condition_values=src["condition_values"], numeric_features=src["numeric_features"],
        categorical_features=src["categorical_features"], cat_vocab_sizes=src["cat_vocab_sizes"],
        numeric_mean=mean, numeric_std=std, train_condition_counts=counts.astype(np.int64),
        train_condition_positives=positives.astype(np.int64), train_condition_rates=rates,
        true_base_rates=true_rates, fingerprint=config_fingerprint(settings), info=info)


# --------------------------------------------------------------------------- le-ray prepare

def _condition_rows(cfg: Config) -> tuple[list[dict[str, Any]], dict[str, Any], Any]:
    """Per-condition rows/clicks of the (filtered) source before any split, plus counts/timings."""
    if cfg.data.source == "ctr":
        from le_ray.data.ctr import load_ctr

        src = load_ctr(cfg)
        table = src.condition_table.sort("id")
        conditions = [{"value": v, "id": int(i), "rows": int(r), "clicks": int(c)}
                      for v, i, r, c in table.select("value", "id", "rows", "clicks").iter_rows()]
        return conditions, {"source_rows": src.source_rows, "kept_rows": src.kept_rows,
                            "timings": dict(src.timings)}, src
    started = time.perf_counter()
    syn = generate_synthetic(cfg.synthetic, seed=cfg.project.seed,
                             test_split=cfg.synthetic.test_split if cfg.data.use_test_set else 0.0)
    rows = syn.labelled
    counts = np.bincount(rows.cond, minlength=cfg.synthetic.num_conditions)
    clicks = np.bincount(rows.cond, weights=rows.y, minlength=cfg.synthetic.num_conditions)
    conditions = [{"value": str(j), "id": j, "rows": int(counts[j]), "clicks": int(clicks[j])}
                  for j in range(cfg.synthetic.num_conditions)]
    total = len(rows) + (0 if syn.test is None else len(syn.test))
    return conditions, {"source_rows": total, "kept_rows": len(rows),
                        "timings": {"generate": time.perf_counter() - started}}, None


def prepare_main(argv=None) -> int:
    """``le-ray prepare``: run the data pipeline alone; print the per-condition table and timings."""
    import argparse
    import polars as pl

    from le_ray.cli import add_config_arguments, config_from_args
    from le_ray.atomic import atomic_write_json
    from le_ray.report.tables import format_table

    parser = argparse.ArgumentParser(prog="le-ray prepare", description="Run the data pipeline (filter, encode) "
                                     "alone and print the per-condition table and timings.")
    add_config_arguments(parser)
    parser.add_argument("--json", metavar="FILE", help="also write the table and timings as JSON")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    conditions, counts, src = _condition_rows(cfg)
    frame = pl.DataFrame(conditions, schema={"value": pl.String, "id": pl.Int64, "rows": pl.Int64,
                                             "clicks": pl.Int64})
    frame = frame.with_columns((pl.col("clicks") / pl.col("rows")).alias("rate"))
    print(f"{cfg.source_key}: {counts['source_rows']} source rows, {counts['kept_rows']} kept, "
          f"{len(conditions)} conditions")
    print(format_table(frame))
    print("timings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in counts["timings"].items()))
    if src is not None and cfg.plots.enabled and cfg.plots.ctr_filter_stats:
        from le_ray.report import plots
        from le_ray.run import filter_mode_of

        path = Path(cfg.output.dir) / "prepare" / cfg.source_key / filter_mode_of(cfg) / "filter_stats.png"
        plots.save_figure(plots.plot_filter_stats(src.filter_stats), path, dpi=cfg.plots.dpi)
        print(f"filter statistics plot: {path}")
    if args.json:
        atomic_write_json(args.json, {**counts, "conditions": conditions})
    return 0


def main(argv=None) -> int:
    from le_ray.cli import exit_on_user_error

    return exit_on_user_error(prepare_main)(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
