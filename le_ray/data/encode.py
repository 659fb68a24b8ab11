"""Encode the kept rows of a CTR source into numpy arrays (the ``encode`` stage of :mod:`le_ray.data.ctr`).

Input: the normalised train / test frames of :mod:`le_ray.data.scan` (or the filter cache). Output:
:class:`EncodedRows` with condition ids, categorical ids, numeric features and labels, built with
Polars expressions only — no Python loop over rows. Every vocabulary is learnt from the train rows.

Choices:

* Condition ids: the ``max_conditions`` values with most train rows (ties: value ascending —
  numeric for integer columns, text otherwise) get ids 0.. in that order; everything else, and
  unseen test values, go to ``"__other__"`` (last id), which exists only when some row needs it.
  Condition values are reported as text (``str`` of the integer); a missing value is ``""``.
* Categorical vocabularies: the ``categorical_max_values`` most frequent train values (same ties)
  get ids 0..n-1, id n is "other" (always reserved, so vocab size n + 1).
* Numerics (``missing_numeric``): ``log1p_indicator`` → sign(x)·log(1 + |x|), missing → 0;
  ``zero_indicator`` → raw x, missing → 0. Either way a ``<col>_missing`` 0/1 feature is added for
  each numeric column with a missing value in the train rows (``drop_na`` rows never get here, see
  :mod:`le_ray.data.scan`). Standardisation is left to :mod:`le_ray.data.prepare`.
* Avazu ``derived_time``: ``hour`` (YYMMDDHH) becomes hour-of-day 0..23, plus ``wd`` (day of week,
  Monday = 0) and ``wd_hour`` (wd·24 + hour) categoricals (:func:`time_features`).
  ``device_counters``: rows per ``device_ip`` / ``device_id`` value over the kept train rows, capped
  at ``device_counter_cap``; test rows look those counts up (unseen → 0). Features
  ``device_ip_count``, ``device_id_count`` (:func:`device_counts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from le_ray.config.schema import CtrDatasetConfig
from le_ray.data.arrays import OTHER_VALUE, EncodedRows
from le_ray.data.scan import ROW, Y, hour_table
from le_ray.data.schema import DatasetSchema

__all__ = ["Encoding", "time_features", "device_counts", "encode_frames", "condition_table"]


def _ranked_vocabs(df: pl.DataFrame, wanted: Sequence[tuple[str, int]]) -> list[list]:
    """For each (column, limit): its ``limit`` most frequent values (ties: value ascending), most frequent first.

    One group-by per column, run together so Polars spreads them over the cores.
    """
    queries = [df.lazy().group_by(col).agg(pl.len().alias("__n"))
               .sort(["__n", col], descending=[True, False], nulls_last=True).head(limit) for col, limit in wanted]
    return [frame[col].to_list() for (col, _), frame in zip(wanted, pl.collect_all(queries))]


def _encode_expr(col: str, vocab: list, other_id: int, dtype: pl.DataType) -> pl.Expr:
    """Ids of ``col`` against ``vocab`` (position), ``other_id`` for anything else; int32.

    Text columns go through an Enum cast (one hash lookup per row), other dtypes through
    ``replace_strict``; both give the same ids.
    """
    if dtype == pl.String:
        if not vocab:
            return pl.repeat(other_id, pl.len(), dtype=pl.Int32).alias(col)
        ids = pl.col(col).cast(pl.Enum(vocab), strict=False).to_physical().cast(pl.Int32)
        return ids.fill_null(other_id).alias(col)
    return pl.col(col).replace_strict(vocab, list(range(len(vocab))), default=other_id, return_dtype=pl.Int32)


def time_features(df: pl.DataFrame, col: str) -> pl.DataFrame:
    """Replace YYMMDDHH ``col`` by hour-of-day and add ``wd`` (Monday = 0) and ``wd_hour`` = wd·24 + hour.

    Parsed once per distinct value (a few hundred in Avazu), then looked up per row (int16).
    """
    table = hour_table(df[col])
    idx = pl.col(col).replace_strict(table["key"], pl.Series(range(table.height), dtype=pl.UInt32))
    return df.with_columns(pl.lit(table[name]).gather(idx).alias(out)
                           for name, out in (("hour", col), ("wd", "wd"), ("wd_hour", "wd_hour")))


def device_counts(train: pl.DataFrame, others: list[pl.DataFrame], cols: Sequence[str], cap: int
                  ) -> tuple[pl.DataFrame, list[pl.DataFrame], list[str]]:
    """Add ``<col>_count`` = min(train rows with that value, cap) (unseen → 0), float32, to every frame.

    Counted with a window sum over the train rows stacked on the others, so there is no join.
    """
    names = [f"{col}_count" for col in cols]
    frames = [train, *others]
    stacked = pl.concat([f.select(*cols, __train=pl.lit(i == 0)) for i, f in enumerate(frames)], rechunk=False)
    counts = stacked.select(pl.col("__train").cast(pl.Int32).sum().over(col).clip(upper_bound=cap)
                            .cast(pl.Float32).alias(name) for col, name in zip(cols, names))
    out, start = [], 0
    for f in frames:
        out.append(f.with_columns(counts.slice(start, f.height)))
        start += f.height
    return out[0], out[1:], names


def _numeric_exprs(train: pl.DataFrame, cols: Sequence[str], mode: str) -> tuple[list[pl.Expr], list[str]]:
    """Transformed numeric columns then ``<col>_missing`` indicators (for columns missing in train)."""
    exprs, names = [], []
    for col in cols:
        x = pl.col(col)
        value = (x.sign() * x.abs().log1p()) if mode == "log1p_indicator" else x
        exprs.append(value.fill_null(0.0).alias(col))
        names.append(col)
    for col in cols:
        if train[col].null_count():
            exprs.append(pl.col(col).is_null().cast(pl.Float64).alias(f"{col}_missing"))
            names.append(f"{col}_missing")
    return exprs, names


@dataclass(frozen=True)
class Encoding:
    """How frames become arrays: condition values, numeric / categorical exprs, vocab sizes."""

    condition_values: tuple[str, ...]
    cond_expr: pl.Expr
    num_exprs: list[pl.Expr]
    numeric_features: tuple[str, ...]
    cat_exprs: list[pl.Expr]
    categorical_features: tuple[str, ...]
    cat_vocab_sizes: tuple[int, ...]


def _build_encoding(schema: DatasetSchema, ds: CtrDatasetConfig, train: pl.DataFrame, test: pl.DataFrame | None,
                    extra_num: list[str]) -> Encoding:
    """Vocabularies from the train frame: condition values (+ other if needed), categorical ids, numerics."""
    s = schema
    cats = list(s.categorical_cols)
    if s.time_col:
        cats = (cats if s.time_col in cats else cats + [s.time_col]) + ["wd", "wd_hour"]
    kept, *vocabs = _ranked_vocabs(train, [(s.condition_col, ds.max_conditions)]
                                   + [(col, ds.categorical_max_values) for col in cats])
    cond = s.condition_col
    cond_expr = _encode_expr(cond, kept, len(kept), train.schema[cond])
    needs_other = train[cond].n_unique() > len(kept) or (
        test is not None and bool((test.select(cond_expr).to_series() == len(kept)).any()))
    cond_values = tuple("" if v is None else str(v) for v in kept) + ((OTHER_VALUE,) if needs_other else ())
    num_exprs, num_names = _numeric_exprs(train, s.numeric_cols, ds.missing_numeric)
    num_exprs += [pl.col(c) for c in extra_num]
    cat_exprs = [_encode_expr(col, vocab, len(vocab), train.schema[col]) for col, vocab in zip(cats, vocabs)]
    return Encoding(cond_values, cond_expr, num_exprs, tuple(num_names + extra_num), cat_exprs, tuple(cats),
                    tuple(len(v) + 1 for v in vocabs))


def _matrix(df: pl.DataFrame, exprs: list[pl.Expr], dtype: type) -> np.ndarray:
    """C-contiguous [n, len(exprs)] array of ``exprs`` evaluated on ``df`` (filled column by column)."""
    out = np.empty((df.height, len(exprs)), dtype=dtype)
    if exprs:
        for j, series in enumerate(df.select(exprs).iter_columns()):
            out[:, j] = series.to_numpy()
    return out


def _to_rows(df: pl.DataFrame, enc: Encoding, labelled: bool) -> EncodedRows:
    """Apply ``enc`` to ``df`` and return C-contiguous numpy arrays."""
    x_num = _matrix(df, enc.num_exprs, np.float32)
    x_cat = _matrix(df, enc.cat_exprs, np.int32)
    cond = df.select(enc.cond_expr).to_series().to_numpy().astype(np.int32, copy=False)
    y = df[Y].to_numpy().astype(np.float32) if labelled else None
    return EncodedRows(x_num=x_num, x_cat=x_cat, cond=cond, y=y, row_id=df[ROW].to_numpy().astype(np.int64))


def encode_frames(schema: DatasetSchema, ds: CtrDatasetConfig, train: pl.DataFrame, test: pl.DataFrame | None,
                  test_labelled: bool) -> tuple[EncodedRows, EncodedRows | None, Encoding]:
    """Derived features, then vocabularies from ``train``, then the arrays of both frames."""
    s = schema
    if s.time_col:
        train = time_features(train, s.time_col)
        test = time_features(test, s.time_col) if test is not None else None
    extra: list[str] = []
    if s.device_cols:
        train, others, extra = device_counts(train, [test] if test is not None else [], s.device_cols,
                                              s.device_counter_cap)
        test = others[0] if others else None
    enc = _build_encoding(s, ds, train, test, extra)
    test_rows = _to_rows(test, enc, test_labelled) if test is not None else None
    return _to_rows(train, enc, True), test_rows, enc


def condition_table(rows: EncodedRows, values: tuple[str, ...]) -> pl.DataFrame:
    """value, id, rows, clicks, rate per condition id over ``rows`` (rate null when no rows)."""
    k = len(values)
    n = np.bincount(rows.cond, minlength=k).astype(np.int64)
    clicks = np.rint(np.bincount(rows.cond, weights=rows.y, minlength=k)).astype(np.int64)
    table = pl.DataFrame({"value": list(values), "id": np.arange(k, dtype=np.int32), "rows": n, "clicks": clicks})
    return table.with_columns(rate=pl.when(pl.col("rows") > 0).then(pl.col("clicks") / pl.col("rows")))
