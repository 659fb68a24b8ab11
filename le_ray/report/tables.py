"""Tables for logs and reports: Markdown / CSV writers and the data diagnostics of a run.

Diagnostics (all Polars frames, one group-by each, no per-row Python):

* ``feature_stats``: mean, std, min, max of every numeric feature per split (standardised units,
  as the model sees them);
* ``condition_stats``: rows, positives and click rate per condition and split;
* ``label_stats``: rows, positives and rate per split;
* ``train_rate_vs_eval_prediction``: per condition, the train click rate next to the mean
  predicted probability on the evaluation split (the reference's per-ad train/eval check).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from le_ray.metrics.compare import format_table
from le_ray.data.arrays import PreparedData
from le_ray.atomic import atomic_write_with

__all__ = ["markdown_table", "write_csv", "format_table", "feature_stats", "condition_stats", "label_stats",
           "train_rate_vs_eval_prediction", "prediction_summary"]


#: integer columns that are labels, not amounts: written without thousands separators (seed 1042, condition 1204)
LABEL_INT_COLUMNS = frozenset({"seed", "condition", "epoch", "bin", "id", "step", "ad", "ad_id", "value"})


def _cell(value, float_fmt: str, label_column: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return format(value, float_fmt)
    if isinstance(value, int) and not isinstance(value, bool) and not label_column:
        return f"{value:,}"  # 6,312 rows, as the audit and the console write counts
    return str(value).replace("|", "\\|")


def markdown_table(df: pl.DataFrame, *, float_fmt: str = ".4g", max_rows: int | None = None,
                   csv: str | None = None, rest_in: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (NaN/null → n/a); ``max_rows`` ≤ 0 or None shows all; the note on the
    rows left out names ``csv`` (the file under report/tables/ that holds them all) or ``rest_in`` (any other
    place, in words) when given."""
    if df.width == 0:
        return "_(empty)_"
    shown = df if not max_rows or max_rows <= 0 else df.head(max_rows)
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    labels = [name in LABEL_INT_COLUMNS for name in df.columns]
    for row in shown.iter_rows():
        lines.append("| " + " | ".join(_cell(v, float_fmt, lab) for v, lab in zip(row, labels)) + " |")
    if shown.height < df.height:
        where = rest_in or (f"`report/tables/{csv}`" if csv else "the CSV")
        lines.append(f"\n_{df.height - shown.height} more rows in {where}._")
    return "\n".join(lines)


def write_csv(df: pl.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV atomically."""
    return atomic_write_with(path, lambda tmp: df.write_csv(tmp))


def _splits(data: PreparedData) -> list[tuple[str, object]]:
    return [(name, s) for name, s in (("train", data.train), ("eval", data.eval), ("test", data.test))
            if s is not None and len(s) > 0]


def feature_stats(data: PreparedData) -> pl.DataFrame:
    """Columns split, feature, mean, std, min, max (numeric features after standardisation)."""
    rows = []
    for name, split in _splits(data):
        x = split.x_num.astype(np.float64)
        for j, feature in enumerate(data.numeric_features):
            col = x[:, j]
            rows.append({"split": name, "feature": feature, "mean": col.mean(), "std": col.std(),
                         "min": col.min(), "max": col.max()})
    return pl.DataFrame(rows, schema={"split": pl.String, "feature": pl.String, "mean": pl.Float64,
                                      "std": pl.Float64, "min": pl.Float64, "max": pl.Float64})


def condition_stats(data: PreparedData) -> pl.DataFrame:
    """Columns condition, value, split, rows, positives (null without labels), rate."""
    frames = []
    for name, split in _splits(data):
        c = data.num_conditions
        rows = np.bincount(split.cond, minlength=c)
        pos = np.bincount(split.cond, weights=split.y, minlength=c) if split.y is not None else np.full(c, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.where(rows > 0, pos / np.maximum(rows, 1), np.nan)
        frames.append(pl.DataFrame({"condition": np.arange(c), "value": list(data.condition_values),
                                    "split": [name] * c, "rows": rows, "positives": pos, "rate": rate}))
    return pl.concat(frames) if frames else pl.DataFrame()


def label_stats(data: PreparedData) -> pl.DataFrame:
    """Columns split, rows, positives, rate (null rate when the split has no labels)."""
    rows = []
    for name, split in _splits(data):
        pos = float(split.y.sum()) if split.y is not None else None
        rows.append({"split": name, "rows": len(split), "positives": pos,
                     "rate": None if pos is None else pos / len(split)})
    return pl.DataFrame(rows, schema={"split": pl.String, "rows": pl.Int64, "positives": pl.Float64,
                                      "rate": pl.Float64})


def train_rate_vs_eval_prediction(data: PreparedData, cond: np.ndarray, p: np.ndarray) -> pl.DataFrame:
    """Per condition: train rows and click rate vs eval rows and mean predicted probability."""
    c = data.num_conditions
    n_eval = np.bincount(cond, minlength=c)
    with np.errstate(invalid="ignore", divide="ignore"):
        pred_mean = np.where(n_eval > 0, np.bincount(cond, weights=p, minlength=c) / np.maximum(n_eval, 1), np.nan)
        ratio = pred_mean / data.train_condition_rates
    return pl.DataFrame({"condition": np.arange(c), "value": list(data.condition_values),
                         "train_rows": data.train_condition_counts, "train_rate": data.train_condition_rates,
                         "eval_rows": n_eval, "eval_pred_mean": pred_mean, "pred_over_train_rate": ratio})


def prediction_summary(p: np.ndarray, cond: np.ndarray, names: tuple[str, ...]) -> pl.DataFrame:
    """Per condition and overall: rows, mean, min, median, max of predicted probabilities."""
    frame = pl.DataFrame({"condition": cond.astype(np.int64), "p": p})
    per = (frame.group_by("condition").agg(pl.len().alias("rows"), pl.col("p").mean().alias("mean"),
                                           pl.col("p").min().alias("min"), pl.col("p").median().alias("median"),
                                           pl.col("p").max().alias("max"))
           .sort("condition")
           .with_columns(pl.col("condition").map_elements(lambda j: names[j], return_dtype=pl.String).alias("value")))
    overall = frame.select(pl.lit(-1, dtype=pl.Int64).alias("condition"), pl.len().alias("rows"),
                           pl.col("p").mean().alias("mean"), pl.col("p").min().alias("min"),
                           pl.col("p").median().alias("median"), pl.col("p").max().alias("max"),
                           pl.lit("(all)").alias("value"))
    return pl.concat([per, overall], how="vertical_relaxed")
