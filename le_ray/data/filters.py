"""Condition filters: per-value click statistics of the train rows, and which values to keep.

:func:`filter_statistics` aggregates a (lazy, streamed) frame into one row per value of the filter
column; :func:`filter_select` is a pure function from that small table and a
:class:`FilterConfig` to the list of kept values, so every mode can be checked by hand.

Statistics per value (the ``stats`` frame): ``value`` (str, the value as text), ``count``
(int64 rows), ``clicks`` (int64 positives), ``mean`` (float64 click rate = clicks / count),
``median`` (float64: the median of the value's 0/1 labels, i.e. 1.0 when clicks > count / 2,
0.5 when clicks == count / 2, else 0.0 — what Polars' / pandas' ``median`` of a 0/1 column gives,
as the earlier pipeline used; computed from count and clicks so it streams).

Modes (``filter.mode``; null → ``ids`` when ids are given, else ``top_k`` when k is given, else no
filter, every value kept):

* ``ids``: the listed values, coerced to text the way the column's values are written.
* ``top_k`` / ``bottom_k``: k values with the highest / lowest ``metric`` (count and its aliases
  frequency/impressions/rows; mean and its aliases rate/click_rate; median). Ties are broken by the
  value's text, ascending, in both modes.
* ``top_count_rate_mix``: pool = top ``preselect_k`` by (count, mean, median) desc; high = first
  ``high_k`` of the pool by (mean, median, count) desc; middle = ``middle_k`` consecutive values of
  the pool sorted by (median, mean, count) desc, starting at floor((len(pool) - middle_k) / 2);
  low = last ``low_k`` of the mean-sorted order, lowest first; the union in order high, middle, low
  without duplicates. Every sort ends with the value text ascending, so ties are deterministic.

``min_count`` (optional) first drops values seen on fewer rows, in every mode. Listed ids missing
from the train rows are dropped with a warning; an empty selection raises :class:`DataError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import polars as pl

from le_ray.config.schema import FilterConfig
from le_ray.errors import DataError
from le_ray.errors import ConfigError

__all__ = ["METRIC_ALIASES", "STATS_SCHEMA", "binary_median", "filter_statistics", "resolve_mode",
           "coerce_ids", "filter_select", "top_k_values", "mix_values", "selection_table", "filter_mode_of"]

#: Metric names accepted by ``filter.metric`` → the stats column they rank by.
METRIC_ALIASES: dict[str, str] = {
    "count": "count", "frequency": "count", "impressions": "count", "rows": "count",
    "mean": "mean", "rate": "mean", "click_rate": "mean", "median": "median",
}
STATS_SCHEMA = {"value": pl.String, "count": pl.Int64, "clicks": pl.Int64, "mean": pl.Float64,
                "median": pl.Float64}


def binary_median(count: pl.Expr, clicks: pl.Expr) -> pl.Expr:
    """Median of ``count`` 0/1 labels of which ``clicks`` are 1: 1.0, 0.5 (exact half) or 0.0."""
    twice = clicks * 2
    return (pl.when(twice > count).then(pl.lit(1.0)).when(twice == count).then(pl.lit(0.5))
            .otherwise(pl.lit(0.0)))


def filter_statistics(lazy_frame: pl.LazyFrame, col: str, label_col: str,
                      by: Sequence[str] = ()) -> pl.DataFrame:
    """Per-value statistics of ``col`` in one streaming pass over ``lazy_frame``.

    ``label_col`` must hold 0.0/1.0 with null where the source label was invalid. Values are
    grouped in the column's own dtype and reported as text (a missing value as ``""``). Returns the
    columns of ``STATS_SCHEMA`` plus ``invalid`` (int64 rows with a null label) and one column per
    extra group key in ``by``; sorted by (``by``..., value) so the result is deterministic.
    """
    label = pl.col(label_col)
    out = (lazy_frame.group_by(pl.col(col).alias("value"), *by)
           .agg(count=pl.len().cast(pl.Int64), clicks=label.sum().cast(pl.Int64),
                invalid=label.is_null().sum().cast(pl.Int64))
           .collect(engine="streaming"))
    return (out.with_columns(value=pl.col("value").cast(pl.String).fill_null(""),
                             mean=pl.col("clicks") / pl.col("count"),
                             median=binary_median(pl.col("count"), pl.col("clicks")))
            .select(*by, *STATS_SCHEMA, "invalid").sort([*by, "value"], nulls_last=True))


def resolve_mode(flt: FilterConfig) -> str | None:
    """The filter mode to run: ``flt.mode``, else ``ids`` / ``top_k`` by which keys are set, else None."""
    if flt.mode is not None:
        return flt.mode
    if flt.ids is not None:
        return "ids"
    if flt.k is not None:
        return "top_k"
    return None


def _integral(value: str | int | float) -> int | None:
    """``value`` as an int when it is integral (``"15706"``, ``15706``, ``15706.0``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return int(number) if number.is_integer() else None


def coerce_ids(ids: Sequence[str | int | float], dtype: pl.DataType | None = None,
               where: str = "filter.ids") -> list[str]:
    """Listed ids as the text the column's values are compared as.

    Integer columns (and text columns, for numbers given in JSON): integral numbers → ``str(int)``
    (``15706.0`` → ``"15706"``); float columns: ``str(float)``; text stays as is. A non-integral
    id for an integer column raises ConfigError naming ``where``.
    """
    out: list[str] = []
    for v in ids:
        as_int = _integral(v)
        if dtype is not None and dtype.is_integer():
            if as_int is None:
                raise ConfigError(f"{where}: got {v!r}; expected an integer (the column is {dtype})")
            out.append(str(as_int))
        elif dtype is not None and dtype.is_float():
            out.append(str(float(v)))
        elif isinstance(v, float) and as_int is not None:
            out.append(str(as_int))
        else:
            out.append(str(v))
    return list(dict.fromkeys(out))


def top_k_values(stats: pl.DataFrame, metric: str, k: int, *, bottom: bool = False) -> list[str]:
    """``k`` values with the highest (``bottom``: lowest) ``metric``; ties by value text ascending."""
    col = METRIC_ALIASES[metric]
    ranked = stats.sort([col, "value"], descending=[not bottom, False], nulls_last=True)
    return ranked["value"].head(k).to_list()


def mix_values(stats: pl.DataFrame, preselect_k: int, high_k: int, middle_k: int, low_k: int) -> list[str]:
    """``top_count_rate_mix`` selection: high-rate, middle-median and low-rate values of the top-count pool."""
    def order(frame: pl.DataFrame, cols: list[str]) -> pl.DataFrame:
        return frame.sort([*cols, "value"], descending=[True] * len(cols) + [False], nulls_last=True)

    pool = order(stats, ["count", "mean", "median"]).head(preselect_k)
    by_mean = order(pool, ["mean", "median", "count"])["value"].to_list()
    by_median = order(pool, ["median", "mean", "count"])["value"].to_list()
    high = by_mean[:high_k]
    start = max(0, (len(by_median) - middle_k) // 2)
    middle = by_median[start:start + middle_k]
    low = list(reversed(by_mean[len(by_mean) - low_k:])) if low_k else []
    return list(dict.fromkeys([*high, *middle, *low]))


def _check_keys(flt: FilterConfig, mode: str, where: str) -> None:
    if mode in ("top_k", "bottom_k") and flt.k is None:
        raise ConfigError(f"{where}.k: got null; expected an integer >= 1 for mode {mode}")
    if mode == "ids" and not flt.ids:
        raise ConfigError(f"{where}.ids: got {list(flt.ids or [])}; expected a non-empty list for mode ids")
    if mode in ("top_k", "bottom_k") and flt.metric not in METRIC_ALIASES:
        raise ConfigError(f"{where}.metric: got {flt.metric!r}; expected one of {', '.join(METRIC_ALIASES)}")


def filter_select(stats: pl.DataFrame, flt: FilterConfig, *, where: str = "filter", col: str = "value",
                  dtype: pl.DataType | None = None) -> list[str]:
    """Values of the filter column to keep, in selection order (see the module docstring).

    ``stats``: value, count, mean, median (clicks optional) per value of the train rows.
    ``where`` names the filter in messages (e.g. ``ctr.datasets.avazu.filter``), ``col`` the column,
    ``dtype`` the column's source dtype for coercing listed ids. Raises DataError when nothing is kept.
    """
    mode = resolve_mode(flt)
    candidates = stats if flt.min_count is None else stats.filter(pl.col("count") >= flt.min_count)
    if mode is None:
        selected = candidates.sort("value")["value"].to_list()
    else:
        _check_keys(flt, mode, where)
        if mode == "ids":
            wanted = coerce_ids(flt.ids or (), dtype, f"{where}.ids")
            present = set(candidates["value"].to_list())
            missing = [v for v in wanted if v not in present]
            if missing:
                warnings.warn(f"{where} (mode ids, column {col!r}): {len(missing)} listed value(s) not in the "
                              f"train rows{'' if flt.min_count is None else ' (or below min_count)'}, dropped: "
                              f"{missing[:10]}", stacklevel=2)
            selected = [v for v in wanted if v in present]
        elif mode in ("top_k", "bottom_k"):
            selected = top_k_values(candidates, flt.metric, int(flt.k or 0), bottom=mode == "bottom_k")
        else:
            selected = mix_values(candidates, flt.preselect_k, flt.high_k, flt.middle_k, flt.low_k)
    if not selected:
        raise DataError(f"{where} (mode {mode or 'none'}, column {col!r}): the filter keeps no value of "
                        f"{stats.height} in the train rows" + ("" if flt.min_count is None
                                                               else f" (min_count {flt.min_count})"))
    return selected


def selection_table(stats: pl.DataFrame, selected: Sequence[str]) -> pl.DataFrame:
    """``stats`` plus ``selected`` (bool) and ``order`` (int32 position in the selection, null if not kept)."""
    lookup = pl.DataFrame({"value": list(selected), "order": list(range(len(selected)))},
                          schema={"value": pl.String, "order": pl.Int32})
    return (stats.join(lookup, on="value", how="left")
            .with_columns(selected=pl.col("order").is_not_null())
            .select(*STATS_SCHEMA, "selected", "order").sort("value", nulls_last=True))


def filter_mode_of(cfg) -> str:
    """The active CTR filter's mode as an output-folder level (``none`` for synthetic data or no filter)."""
    if cfg.data.source != "ctr":
        return "none"
    return resolve_mode(cfg.active_ctr.filter) or "none"
