"""Shared figure plumbing: saving, table access, colours (one per condition and per loss), axes helpers."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display is ever needed

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from le_ray import registry
from le_ray.atomic import atomic_write_with
from le_ray.errors import ConfigError

PROB_FLOOR = 1e-7  #: probabilities ≤ 0 are drawn at this value on log axes
MAX_HIST_CONDITIONS = 12  #: per-condition histograms draw at most this many conditions
MAX_POINT_LABELS = 20  #: scatter points get their condition name up to this many points
MAX_TICK_LABELS = 30  #: per-condition category axes name their ticks up to this many conditions
LOSS_UNITS = "loss per row (BCE, focal: nats; LE: dimensionless)"  #: LE = Σ_j num_j / den_j / W, nats over nats


# --------------------------------------------------------------------------- saving


@dataclass(frozen=True)
class FigureJob:
    """One PNG to draw, as plain data: ``draw(*args, **kwargs)`` (a ``plot_*`` function of this package, so the
    job pickles by reference and can be drawn in another process) → a Figure, written at ``dpi``."""
    draw: Callable[..., Figure]
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    dpi: int = 110


def _png_bytes(fig: Figure, dpi: int) -> bytes:
    """``fig`` as PNG bytes at ``dpi``, the figure closed. The pixel size is exactly ``figsize * dpi`` (no tight
    bounding box; figures use the constrained layout instead)."""
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()
    finally:
        plt.close(fig)


def render_png(job: FigureJob) -> bytes:
    """The job's figure as PNG bytes (what :func:`save_figure` writes for the same figure), the figure closed."""
    return _png_bytes(job.draw(*job.args, **dict(job.kwargs)), job.dpi)


def write_png(path: str | Path, png: bytes) -> Path:
    """Write PNG bytes at ``path`` atomically (temp file in the same folder + rename), readable by all; returns the
    final path."""
    def write(tmp: str) -> None:
        Path(tmp).write_bytes(png)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; plots are meant to be shared

    return atomic_write_with(path, write)


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (:func:`write_png`), the figure closed; returns the final path."""
    return write_png(path, _png_bytes(fig, dpi))


# --------------------------------------------------------------------------- input helpers


def _floats(values: Any) -> np.ndarray:
    """1-D float64 array (None → NaN; None / missing → empty)."""
    if values is None:
        return np.zeros(0)
    if isinstance(values, pl.Series):
        values = values.to_numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def _as_table(table: Any) -> dict[str, np.ndarray]:
    """Columns of a Polars frame or a dict of lists / arrays as numpy arrays ({} for None)."""
    if table is None:
        return {}
    if isinstance(table, pl.LazyFrame):
        table = table.collect()
    if isinstance(table, pl.DataFrame):
        return {c: table.get_column(c).to_numpy() for c in table.columns}
    if isinstance(table, Mapping):
        return {str(k): np.asarray(v.to_numpy() if isinstance(v, pl.Series) else v).reshape(-1)
                for k, v in table.items()}
    raise TypeError(f"expected a Polars DataFrame or a dict of columns, got {type(table).__name__}")


def _rows(t: dict[str, np.ndarray]) -> int:
    return len(next(iter(t.values()))) if t else 0


def _col(t: dict[str, np.ndarray], name: str, *, required: bool = True) -> np.ndarray:
    """Column ``name`` as floats; a missing optional column is all-NaN."""
    if name in t:
        return _floats(t[name])
    if required and _rows(t):
        raise KeyError(f"plot table lacks column {name!r} (has {sorted(t)})")
    return np.full(_rows(t), np.nan)


def _names(t: dict[str, np.ndarray]) -> list[str]:
    """Condition display names: the ``name`` column, else ``ad_id`` (the raw condition value), else ``condition``,
    else row numbers."""
    for key in ("name", "ad_id", "condition"):
        if key in t:
            return ["?" if v is None else str(v) for v in t[key]]
    return [str(i) for i in range(_rows(t))]


def _bools(values: Any, n: int) -> np.ndarray:
    if values is None:
        return np.zeros(n, dtype=bool)
    return np.array([bool(v) if v is not None and v == v else False for v in values], dtype=bool)


def _positive(values: np.ndarray, floor: float | None = PROB_FLOOR) -> tuple[np.ndarray, float, int]:
    """Values ≤ 0 raised to ``floor`` (None: a decade below the smallest positive value).

    Returns (values, floor, how many were raised); NaN / inf stay as they are.
    """
    v = _floats(values)
    low = np.isfinite(v) & (v <= 0)
    if floor is None:
        pos = v[np.isfinite(v) & (v > 0)]
        floor = 10.0 ** (math.floor(math.log10(pos.min())) - 1) if pos.size else 1e-3
    return np.where(low, floor, v), float(floor), int(low.sum())


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def plain_number(v: float) -> str:
    """A tick value written out in full, never in e-notation: 0.00001, 0.5, 1, 20, 1,000, 10,000 (6 significant
    digits, thousands separated by commas)."""
    if not math.isfinite(v):
        return str(v)
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return np.format_float_positional(float(f"{v:.6g}"), trim="-")


#: the ratio axis labels every minor tick (0.5, 0.7, 2, 3 ...) while it spans at most this many decades, only the
#: 2s and 5s up to MINOR_25_DECADES, and beyond that its decades alone (minor labels would print over one another)
MINOR_ALL_DECADES, MINOR_25_DECADES = 1.2, 2.5


def _minor_ratio_label(ax, v: float, axis: str = "y") -> str:
    """The label of a log axis's minor tick at ``v``, by the decades the axis (``"x"`` or ``"y"`` of ``ax``) spans
    when it is drawn."""
    lo, hi = sorted(abs(x) for x in (ax.get_xlim() if axis == "x" else ax.get_ylim()))
    span = math.log10(hi / lo) if lo > 0 and v > 0 else math.inf
    if span > MINOR_25_DECADES:
        return ""
    mantissa = round(v / 10.0 ** math.floor(math.log10(v) + 1e-9))
    return plain_number(v) if span <= MINOR_ALL_DECADES or mantissa in (2, 5) else ""


class _RatioMinorLocator(LogLocator):
    """Minor ticks of a log ratio axis: 2–9 in each decade, and 1.25 and 1.5 too while at most
    :data:`MINOR_ALL_DECADES` are in view, so that over-prediction (1.1–2) has labelled ticks as under-prediction
    (0.5–0.9) does."""

    def __init__(self) -> None:
        super().__init__(base=10.0, subs=tuple(range(2, 10)))

    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:
        ticks = np.asarray(super().tick_values(vmin, vmax), dtype=float)
        lo, hi = sorted((vmin, vmax))
        if lo > 0 and math.log10(hi / lo) <= MINOR_ALL_DECADES:
            decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
            extra = [m * 10.0 ** d for d in decades for m in (1.25, 1.5)]
            ticks = np.union1d(ticks, [x for x in extra if lo <= x <= hi])
        return ticks


def plain_log_ticks(ax, axis: str = "y") -> None:
    """A log axis's ticks (``axis`` "y" or "x" of ``ax``) in plain numbers (0.01, 1, 1,000; no 10^k or 2×10^0):
    every decade, and the minor ticks while few decades are in view (:func:`_minor_ratio_label`)."""
    which = ax.xaxis if axis == "x" else ax.yaxis
    which.set_major_formatter(FuncFormatter(lambda v, _: plain_number(v)))
    which.set_minor_formatter(FuncFormatter(lambda v, _: _minor_ratio_label(ax, v, axis)))


def log_axes(ax, *which: str) -> None:
    """Log scale on each of ``which`` ("x", "y") of ``ax``, its ticks in plain numbers (:func:`plain_log_ticks`)."""
    for axis in which:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        plain_log_ticks(ax, axis)


def ratio_axis(ax) -> None:
    """Log y axis of calibration ratios: each decade labelled in plain numbers (0.01, 1, 1,000, 10,000; no
    e-notation), minor ticks labelled only while few decades are in view (:func:`_minor_ratio_label`)."""
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(_RatioMinorLocator())
    plain_log_ticks(ax)


def _clip_note(n: int, floor: float) -> str:
    return f" [{n} value{'s' if n != 1 else ''} ≤ 0 drawn at {floor:.0e}]" if n else ""


def _name_of(names: Sequence[str], i: int) -> str:
    return str(names[i]) if 0 <= i < len(names) else f"condition {i}"


def _loss_name(key: str) -> str:
    """A registered loss name or alias → its display label; anything else (already a label) unchanged."""
    try:
        return registry.label(key)
    except ConfigError:
        return key


def _align(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pair x and y of different lengths: a shorter y belongs to the last x values."""
    if x.size == 0:
        return np.arange(y.size, dtype=float), y
    if y.size < x.size:
        return x[x.size - y.size:], y
    return x, y[:x.size]


# --------------------------------------------------------------------------- drawing helpers


def _figure(width: float = 10.0, height: float = 6.0, nrows: int = 1, ncols: int = 1,
            **kwargs: Any) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kwargs)


def _colors(k: int) -> list:
    """``k`` distinct colours: tab10, then tab20's dark shades followed by its light ones."""
    if k <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(max(k, 1))]
    cmap = matplotlib.colormaps["tab20"]
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return [cmap(order[i % 20]) for i in range(k)]


def condition_color(condition_id: int):
    """The colour of condition id ``condition_id`` in every plot of a run (tab20, dark shades first)."""
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return matplotlib.colormaps["tab20"](order[int(condition_id) % 20])


_LOSS_COLORS = {"BCE": "tab:blue", "LE": "tab:orange", "focal": "tab:green"}


def loss_colors(names: Sequence[str]) -> list:
    """One colour per loss, the same for a loss in every plot (BCE blue, LE orange, focal green)."""
    spare = iter(_colors(len(names) + 3)[3:])
    return [_LOSS_COLORS.get(_loss_name(n)) or next(spare) for n in names]


def _no_data(ax, note: str = "no data") -> None:
    ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=14, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(ax, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**{"fontsize": "small", **kwargs})


def _label(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _log_y_if_positive(ax, *arrays: np.ndarray) -> bool:
    """Log y (its ticks written plainly, :func:`plain_log_ticks`) when every finite value is positive."""
    vals = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(0)
    if vals.size and (vals > 0).all():
        ax.set_yscale("log")
        plain_log_ticks(ax)
        return True
    return False


def _diagonal(ax, *arrays: np.ndarray, label: str = "y = x (calibrated)") -> None:
    """The y = x line over the data range and equal limits on both (log) axes."""
    vals = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays])
    if not vals.size:
        return
    lo, hi = vals.min() / 2.0, vals.max() * 2.0
    ax.axline((lo, lo), (hi, hi), color="0.3", linestyle="--", linewidth=1, label=label)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)


def _annotate(ax, x: np.ndarray, y: np.ndarray, names: Sequence[str]) -> None:
    if len(names) <= MAX_POINT_LABELS:
        for xi, yi, name in zip(x, y, names):
            if np.isfinite(xi) and np.isfinite(yi):
                ax.annotate(str(name), (xi, yi), xytext=(4, 4), textcoords="offset points", fontsize=8)


def _top_conditions(cond: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The ``k`` condition ids with the most rows: (ids, counts, number of distinct ids)."""
    ids, counts = np.unique(cond, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:k]
    return ids[order], counts[order], ids.size


def _top_note(title: str, shown: int, total: int) -> str:
    return title if shown >= total else f"{title}\n(top {shown} of {total} conditions by rows)"


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    ncols = max(1, min(n, max_cols))
    return max(1, math.ceil(n / ncols)), ncols


# --------------------------------------------------------------------------- 1. avg vs train rate


def _category_axis(ax, names: Sequence[str], xlabel: str) -> None:
    ax.set_xlabel(xlabel)
    if len(names) <= MAX_TICK_LABELS:
        ax.set_xticks(np.arange(len(names)), [str(n) for n in names], rotation=60, ha="right", fontsize=8)
