"""Loss-vs-loss comparison tables (BCE vs Localized Entropy, and focal when trained).

Inputs are the outputs of ``le_ray.metrics``: per-condition tables
(``per_condition_metrics``, one per loss: ``dict[loss_name, pl.DataFrame]``) and summary
dicts (``model_summary``, one per loss).  Loss names used in the project: "bce",
"localized_entropy", "focal"; every function takes ``baseline``/``candidate`` names, so
BCE vs focal and LE vs focal work the same way.  Deltas are ``candidate − baseline``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import polars as pl

__all__ = [
    "SORT_KEYS",
    "SUMMARY_METRICS",
    "TIE_TOL",
    "compare_conditions",
    "calibration_closeness",
    "compare_summary",
    "count_closer_conditions",
    "data_differences",
    "format_table",
    "terminal_width",
]

SORT_KEYS = ("base_rate", "abs_delta_calibration", "abs_delta_le_ratio")
SUMMARY_METRICS: dict[str, bool] = {"accuracy": True, "logloss": False, "brier": False, "ece": False}
TIE_TOL = 1e-8  # |candidate − baseline| ≤ TIE_TOL is a tie in compare_summary
ZERO_TOL = 1e-12  # |baseline| ≤ ZERO_TOL: percent change is "n/a"
GAP_TOL = 1e-12  # gaps within GAP_TOL are ties in count_closer_conditions
_PER_LOSS = ("pred_mean", "calibration_ratio", "logloss", "le_ratio")
_REQUIRED = ("condition", "count", "base_rate", *_PER_LOSS)


def _check_tables(tables: Mapping[str, pl.DataFrame], names) -> list[str]:
    """Validate the per-condition tables; return loss names, ``names`` first, then the rest."""
    if len(set(names)) != len(names):
        raise ValueError(f"baseline and candidate must differ, got {names}")
    for name in names:
        if name not in tables:
            raise ValueError(f"loss {name!r} not in tables; available: {list(tables)}")
    for loss, table in tables.items():
        missing = [c for c in _REQUIRED if c not in table.columns]
        if missing:
            raise ValueError(f"table for {loss!r} is missing columns {missing}")
    return [*names, *(k for k in tables if k not in names)]


def _joined(tables: Mapping[str, pl.DataFrame], losses, columns) -> pl.DataFrame:
    """condition, count, base_rate (from the first loss) + ``{column}_{loss}`` for each loss.

    Inner join on condition: only conditions present in every table are kept.
    """
    out = tables[losses[0]].select(["condition", "count", "base_rate"])
    for loss in losses:
        out = out.join(tables[loss].select(["condition", *[pl.col(c).alias(f"{c}_{loss}") for c in columns]]),
                       on="condition", how="inner")
    return out


def _sort_desc(df: pl.DataFrame, key: str) -> pl.DataFrame:
    """Sort by ``key`` descending (NaN/null last), then count desc, condition id asc."""
    tmp = df.with_columns(pl.col(key).cast(pl.Float64).fill_nan(None).alias("__key"))
    return tmp.sort(["__key", "count", "condition"], descending=[True, True, False], nulls_last=True).drop("__key")


def compare_conditions(tables: Mapping[str, pl.DataFrame], *, baseline: str = "bce",
                       candidate: str = "localized_entropy", sort_by: str = "base_rate") -> pl.DataFrame:
    """Per-condition comparison of all losses in ``tables``, deltas = candidate − baseline.

    Columns: condition, count, base_rate (from the baseline table); per loss
    ``pred_mean_{loss}``, ``calibration_ratio_{loss}``, ``logloss_{loss}``, ``le_ratio_{loss}``
    (baseline, candidate, then the other losses); delta_pred_mean, delta_calibration_ratio,
    delta_logloss, delta_le_ratio; abs_delta_calibration = |delta_calibration_ratio|,
    abs_delta_le_ratio = |delta_le_ratio|.  Only conditions present in every table.
    ``sort_by`` ∈ SORT_KEYS, descending (NaN last; ties: count desc, condition asc).
    """
    if sort_by not in SORT_KEYS:
        raise ValueError(f"sort_by must be one of {', '.join(SORT_KEYS)}; got {sort_by!r}")
    losses = _check_tables(tables, [baseline, candidate])
    df = _joined(tables, losses, _PER_LOSS)
    df = df.with_columns([(pl.col(f"{c}_{candidate}") - pl.col(f"{c}_{baseline}")).alias(f"delta_{c}")
                          for c in _PER_LOSS])
    df = df.with_columns(pl.col("delta_calibration_ratio").abs().alias("abs_delta_calibration"),
                         pl.col("delta_le_ratio").abs().alias("abs_delta_le_ratio"))
    return _sort_desc(df, sort_by)


def calibration_closeness(tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """|1 − calibration_ratio| per condition and loss (0 = perfectly calibrated on average).

    Columns: condition, count, base_rate (first loss's table), ``abs_1_minus_calibration_{loss}``
    for every loss in ``tables`` order, and ``closest``: the loss with the smallest value,
    "tie" when several are within 1e-12 of it, null when every value is NaN.
    Conditions present in every table; sorted by base_rate desc, count desc, id asc.
    """
    losses = _check_tables(tables, [])
    if not losses:
        raise ValueError("tables is empty")
    df = _joined(tables, losses, ["calibration_ratio"])
    cols = [f"abs_1_minus_calibration_{loss}" for loss in losses]
    df = df.with_columns([(1.0 - pl.col(f"calibration_ratio_{loss}")).abs().alias(c)
                          for loss, c in zip(losses, cols)]).drop([f"calibration_ratio_{loss}" for loss in losses])
    values = df.select(cols).to_numpy().astype(np.float64).reshape(df.height, len(cols))
    df = df.with_columns(pl.Series("closest", _closest(values, losses), dtype=pl.String))
    return _sort_desc(df, "base_rate")


def _closest(values: np.ndarray, losses) -> list:
    """Per row, the loss with the smallest finite value; "tie" within GAP_TOL; None if all NaN."""
    out = []
    for row in values:
        finite = np.isfinite(row)
        if not finite.any():
            out.append(None)
            continue
        best = np.min(row[finite])
        winners = np.flatnonzero(finite & (row <= best + GAP_TOL))
        out.append(losses[winners[0]] if winners.size == 1 else "tie")
    return out


def _summary_row(metric: str, higher: bool, base: float, cand: float, baseline: str, candidate: str) -> dict:
    """One compare_summary row; improvement > 0 favours the candidate."""
    row = {"metric": metric, "higher_is_better": higher, "baseline": base, "candidate": cand,
           "winner": "n/a", "pct_change": None, "pct_change_label": "n/a"}
    if not (math.isfinite(base) and math.isfinite(cand)):
        return row
    improvement = (cand - base) if higher else (base - cand)
    tie = abs(cand - base) <= TIE_TOL
    row["winner"] = "tie" if tie else (candidate if improvement > 0 else baseline)
    if abs(base) > ZERO_TOL:
        row["pct_change"] = 0.0 if tie else 100.0 * improvement / abs(base)
        row["pct_change_label"] = f"{row['pct_change']:+.2f}%"
    return row


def compare_summary(summaries: Mapping[str, Mapping[str, float]], *, baseline: str = "bce",
                    candidate: str = "localized_entropy", metrics: Mapping[str, bool] | None = None) -> pl.DataFrame:
    """Headline metrics of ``candidate`` vs ``baseline`` (``model_summary`` dicts per loss).

    Rows: accuracy, logloss, brier, ece (``metrics``: name → higher_is_better).  Columns:
    metric, higher_is_better, baseline, candidate (values), winner (loss name, "tie" when
    |candidate − baseline| ≤ 1e-8, "n/a" when a value is NaN), pct_change = 100·improvement
    / |baseline| in percent with improvement = candidate − baseline (higher is better) or
    baseline − candidate (lower is better) — positive favours the candidate; 0 for a tie;
    null ("n/a") when |baseline| ≤ 1e-12 — and pct_change_label ("+1.23%" or "n/a").
    """
    for name in (baseline, candidate):
        if name not in summaries:
            raise ValueError(f"loss {name!r} not in summaries; available: {list(summaries)}")
    metrics = SUMMARY_METRICS if metrics is None else metrics
    rows = [_summary_row(m, hib, float(summaries[baseline].get(m, np.nan)),
                         float(summaries[candidate].get(m, np.nan)), baseline, candidate)
            for m, hib in metrics.items()]
    schema = {"metric": pl.String, "higher_is_better": pl.Boolean, "baseline": pl.Float64,
              "candidate": pl.Float64, "winner": pl.String, "pct_change": pl.Float64,
              "pct_change_label": pl.String}
    return pl.DataFrame(rows, schema=schema)


def count_closer_conditions(tables: Mapping[str, pl.DataFrame], *, baseline: str = "bce",
                            candidate: str = "localized_entropy") -> dict:
    """How many conditions have the candidate's |pred_mean − base_rate| smaller than the baseline's.

    Gaps in probability units, compared per condition present in both tables; gaps within
    1e-12 are ties.  Returns {"candidate_closer", "baseline_closer", "ties", "conditions"}.
    """
    _check_tables(tables, [baseline, candidate])
    df = _joined(tables, [baseline, candidate], ["pred_mean", "base_rate"])
    gap_b = (df.get_column(f"pred_mean_{baseline}") - df.get_column(f"base_rate_{baseline}")).abs().to_numpy()
    gap_c = (df.get_column(f"pred_mean_{candidate}") - df.get_column(f"base_rate_{candidate}")).abs().to_numpy()
    diff = gap_b - gap_c
    return {"candidate_closer": int(np.count_nonzero(diff > GAP_TOL)),
            "baseline_closer": int(np.count_nonzero(diff < -GAP_TOL)),
            "ties": int(np.count_nonzero(np.abs(diff) <= GAP_TOL)),
            "conditions": int(df.height)}


def data_differences(tables: Mapping[str, pl.DataFrame], *, baseline: str, candidate: str,
                     limit: int = 5) -> list[str]:
    """Where the two runs' evaluation data differ, one sentence each (empty when they agree).

    Per condition, its row ``count`` and click ``base_rate`` (a probability) must be the same in both
    tables, else the per-condition comparison sets two different evaluation sets side by side (e.g. runs of
    different seeds on redrawn synthetic data); :func:`compare_conditions` shows the baseline's count and rate.
    Rates are compared to 1e-12. Lists at most ``limit`` differing conditions, and the count of the rest."""
    _check_tables(tables, [baseline, candidate])
    ids = {name: set(tables[name].get_column("condition").cast(pl.String).to_list()) for name in (baseline, candidate)}
    out = [f"{len(ids[a] - ids[b])} condition(s) only in the {a} run" for a, b in
           ((baseline, candidate), (candidate, baseline)) if ids[a] - ids[b]]
    out += _ad_id_differences(tables, baseline, candidate, limit)
    df = _joined(tables, [baseline, candidate], ["count", "base_rate"])
    counts = [df.get_column(f"count_{name}").to_numpy().astype(np.float64) for name in (baseline, candidate)]
    rates = [df.get_column(f"base_rate_{name}").to_numpy().astype(np.float64) for name in (baseline, candidate)]
    differ = np.flatnonzero((counts[0] != counts[1]) | ~np.isclose(rates[0], rates[1], rtol=0.0, atol=GAP_TOL))
    for i in differ[:limit]:
        out.append(f"condition {df.get_column('condition')[int(i)]}: {counts[0][i]:.0f} rows at rate "
                   f"{rates[0][i]:.6g} ({baseline}) vs {counts[1][i]:.0f} rows at rate {rates[1][i]:.6g} ({candidate})")
    if differ.size > limit:
        out.append(f"and {differ.size - limit} more condition(s) whose rows or rate differ")
    return out


def _ad_id_differences(tables: Mapping[str, pl.DataFrame], baseline: str, candidate: str, limit: int) -> list[str]:
    """Conditions whose ad id (``value``, the raw condition value) differs between the two runs: the tables are
    joined by condition index, which two runs with other filters give to other ads."""
    if not all("value" in tables[name].columns for name in (baseline, candidate)):
        return []
    df = _joined(tables, [baseline, candidate], ["value"])
    a, b = (df.get_column(f"value_{name}").cast(pl.String) for name in (baseline, candidate))
    differ = df.filter((a != b).fill_null(False))
    out = [f"condition {row[0]}: ad {row[1]!r} ({baseline}) vs ad {row[2]!r} ({candidate})"
           for row in differ.select("condition", f"value_{baseline}", f"value_{candidate}").head(limit).iter_rows()]
    if differ.height > limit:
        out.append(f"and {differ.height - limit} more condition(s) whose ad id differs")
    return out


def _cell(value, float_fmt: str, null: str) -> str:
    """Text of one table cell."""
    if value is None:
        return null
    if isinstance(value, float):
        return format(value, float_fmt) if math.isfinite(value) else str(value)
    return str(value)


def format_table(df, *, float_fmt: str = ".6g", null: str = "n/a", max_rows: int | None = None,
                 max_width: int | None = None, csv: str | None = None) -> str:
    """Fixed-width text rendering of a table for logs and terminals.

    ``df``: Polars (or pandas) frame.  Floats use ``format(v, float_fmt)``; nulls print as
    ``null``; numeric columns are right-aligned, others left-aligned; columns separated by
    two spaces; a dashed rule under the header.  ``max_rows`` truncates with a "…" line (None or ≤ 0: every
    row, the reference's rule for its ``*top_k`` keys);
    ``max_width`` (characters, e.g. the terminal's) keeps the leading columns that fit and
    names how many were left out and the file that keeps every column: ``csv`` as given (a name or
    path, e.g. ``"report/tables/summary.csv"``) when given, else "the CSV".
    """
    if not isinstance(df, pl.DataFrame):
        df = pl.from_pandas(df)
    shown = df if max_rows is None or max_rows <= 0 else df.head(max_rows)
    columns, used = [], 0
    for name in df.columns:
        cells = [_cell(v, float_fmt, null) for v in shown.get_column(name).to_list()]
        width = max([len(name), *map(len, cells)])
        if max_width is not None and columns and used + 2 + width > max_width:
            break
        used += width + (2 if columns else 0)
        right = df.schema[name].is_numeric()
        columns.append([s.rjust(width) if right else s.ljust(width) for s in [name, "-" * width, *cells]])
    lines = ["  ".join(parts).rstrip() for parts in zip(*columns)] if columns else []
    if shown.height < df.height:
        lines.append(f"… ({df.height - shown.height} more rows)")
    if len(columns) < df.width:
        where = csv if csv else "the CSV"
        lines.append(f"… ({df.width - len(columns)} more columns: {', '.join(df.columns[len(columns):])[:200]}; "
                     f"see {where})")
    return "\n".join(lines)


def terminal_width(default: int = 120) -> int:
    """Columns of the terminal le_ray prints to (``default`` when not a terminal)."""
    import shutil

    return shutil.get_terminal_size((default, 24)).columns
