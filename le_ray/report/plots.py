"""Diagnostic plots: one function per PNG, plain arrays / tables in, a ``Figure`` out.

Conventions shared by every function here:

* Agg backend only; figures are built as ``matplotlib.figure.Figure`` objects (not registered
  with pyplot, so nothing leaks when a caller forgets to close one) and written with
  :func:`save_figure` (PNG, atomic, figure closed afterwards).
* A "table" is a Polars ``DataFrame`` or a dict of equal-length lists / arrays (columns).
* Every figure has a title, axis labels with units and a legend; empty inputs draw an axes with
  a "no data" note; NaN / inf values are skipped; values ≤ 0 on log axes are raised to a floor
  (1e-7 for probabilities) and the axis label says how many were raised.
* Per-condition histograms draw at most ``MAX_HIST_CONDITIONS`` conditions (the largest by
  rows, noted in the title); scatter-style plots draw every condition and label points only
  when there are at most ``MAX_POINT_LABELS`` of them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from le_ray import registry  # noqa: E402
from le_ray.atomic import atomic_write_with  # noqa: E402
from le_ray.errors import ConfigError  # noqa: E402

__all__ = [
    "PROB_FLOOR", "MAX_HIST_CONDITIONS", "MAX_POINT_LABELS", "save_figure",
    "plot_avg_vs_train_rate", "plot_loss_curves", "plot_prediction_histograms", "plot_calibration_ratio",
    "plot_reliability_diagram", "plot_feature_distributions", "plot_le_stats", "plot_filter_stats",
    "plot_grad_sq", "plot_paired_deltas", "plot_condition_gaps", "plot_curves_band",
    "plot_comparison_calibration", "plot_calibration_by_rate", "condition_color", "loss_colors",
    "plot_tuning_curves",
]

PROB_FLOOR = 1e-7  #: probabilities ≤ 0 are drawn at this value on log axes
MAX_HIST_CONDITIONS = 12  #: per-condition histograms draw at most this many conditions
MAX_POINT_LABELS = 20  #: scatter points get their condition name up to this many points
MAX_TICK_LABELS = 30  #: per-condition category axes name their ticks up to this many conditions
LOSS_UNITS = "loss (nats / row)"


# --------------------------------------------------------------------------- saving


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (temp file in the same folder + rename), then close it.

    The pixel size is exactly ``figsize * dpi`` (no tight bounding box; figures use the
    constrained layout instead).  Returns the final path.
    """
    def write(tmp: str) -> None:
        fig.savefig(tmp, format="png", dpi=dpi)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; plots are meant to be shared

    try:
        return atomic_write_with(path, write)
    finally:
        plt.close(fig)


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
    """Condition display names: the ``name`` column, else ``condition``, else row numbers."""
    for key in ("name", "condition"):
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


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


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
    vals = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.zeros(0)
    if vals.size and (vals > 0).all():
        ax.set_yscale("log")
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


def plot_avg_vs_train_rate(conditions: Sequence[str], train_rate: np.ndarray, eval_pred_mean: np.ndarray,
                           eval_rate: np.ndarray | None = None, *,
                           title: str = "Eval mean prediction vs train click rate per condition") -> Figure:
    """Per condition (one point each): eval mean prediction (y) vs train click rate (x), log–log.

    ``conditions``: C display names; ``train_rate``, ``eval_pred_mean``, ``eval_rate`` (optional,
    drawn as a second marker): arrays of length C.  Points on the y = x line are calibrated to the
    train rate; points are named when C ≤ 20.
    """
    fig, axes = _figure(10, 8)
    ax = axes[0, 0]
    x, _, nx = _positive(train_rate)
    y, _, ny = _positive(eval_pred_mean)
    r, _, nr = _positive(eval_rate) if eval_rate is not None else (np.full(x.size, np.nan), 0.0, 0)
    ok = np.isfinite(x) & np.isfinite(y)
    note = _clip_note(nx, PROB_FLOOR)
    ynote = _clip_note(ny + nr, PROB_FLOOR)
    _label(ax, title, f"train click rate (probability, log){note}", f"eval rate (probability, log){ynote}")
    if not ok.any():
        _no_data(ax)
        return fig
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.scatter(x[ok], y[ok], s=36, color="tab:blue",
               label=f"eval mean prediction ({_plural(int(ok.sum()), 'condition')})")
    r_ok = np.isfinite(x) & np.isfinite(r)
    if r_ok.any():
        ax.scatter(x[r_ok], r[r_ok], s=40, marker="x", color="tab:orange", label="eval observed click rate")
    _diagonal(ax, x[ok], y[ok], r[r_ok])
    _annotate(ax, x[ok], y[ok], [n for n, k in zip(conditions, ok) if k])
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, loc="upper left")
    return fig


# --------------------------------------------------------------------------- 2. loss curves


def _loss_panel(ax, x: np.ndarray, series: list[tuple[str, np.ndarray, str]], title: str, xlabel: str) -> None:
    """Lines of (label, y, colour) over x on one axes; log y when every value is positive."""
    drawn = []
    _label(ax, title, xlabel, LOSS_UNITS)
    for label, y, color in series:
        xs, ys = _align(x, y)
        ok = np.isfinite(xs) & np.isfinite(ys)
        if ok.any():
            ax.plot(xs[ok], ys[ok], marker="o" if ok.sum() <= 60 else None, markersize=4, color=color, label=label)
            drawn.append(ys[ok])
    if not drawn:
        _no_data(ax)
        return
    if _log_y_if_positive(ax, *drawn):
        ax.set_ylabel(f"{LOSS_UNITS}, log scale")
    ax.grid(True, alpha=0.3)
    _legend(ax)


def plot_loss_curves(curves: Mapping[str, Any], *, title: str = "Training and eval loss") -> Figure:
    """Loss by epoch, normalised entropy by epoch, and loss by optimiser step when tracked, for one trial.

    ``curves``: keys ``epoch``, ``train_loss``, ``eval_loss`` (lists; epoch 0 = before training),
    optionally ``train_ne``, ``eval_ne`` (normalised entropy: one per-row scale for train and eval, which
    LE's own value is not — its eval value is normalised over the whole split, the train value per batch)
    and ``batch_step``, ``batch_train_loss``, ``batch_eval_loss`` (a "loss by batch" panel).  A y series
    shorter than its x belongs to the last x values; a y axis is logarithmic when all its values are > 0.
    """
    c = curves or {}
    epoch, step = _floats(c.get("epoch")), _floats(c.get("batch_step"))
    panels = [("loss by epoch (each loss on its own normalisation)", epoch,
               [("train", _floats(c.get("train_loss")), "tab:blue"), ("eval", _floats(c.get("eval_loss")), "tab:orange")],
               "epoch (0 = before training)")]
    if _floats(c.get("eval_ne")).size:
        panels.append(("normalised entropy by epoch (one scale for train and eval)", epoch,
                       [("train NE", _floats(c.get("train_ne")), "tab:blue"),
                        ("eval NE", _floats(c.get("eval_ne")), "tab:orange")], "epoch (0 = before training)"))
    batch = [("train", _floats(c.get("batch_train_loss")), "tab:blue"),
             ("eval", _floats(c.get("batch_eval_loss")), "tab:orange")]
    if step.size and any(y.size for _, y, _ in batch):
        panels.append(("loss by batch", step, batch, "optimiser step"))
    fig, axes = _figure(6 * len(panels) if len(panels) > 1 else 10, 5.5, 1, len(panels))
    for ax, (name, x, series, xlabel) in zip(axes.flat, panels):
        _loss_panel(ax, x, series, name, xlabel)
    if len(panels) > 1:
        for ax in axes.flat[1:2]:
            if "normalised" in ax.get_title():
                ax.set_ylabel("NE = Σ BCE / (N·H(mean y)) (1 = base-rate predictor)")
    fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- 3. prediction histograms


def plot_prediction_histograms(p: np.ndarray, conditions: np.ndarray, condition_names: Sequence[str], *,
                               title: str = "Predicted probability per condition", bins: int = 50) -> Figure:
    """Overlaid step histograms of log10 p per condition (rows per bin, log y).

    ``p``: N predicted probabilities (clipped to [1e-7, 1], NaN skipped); ``conditions``: N integer
    condition ids indexing ``condition_names``.  At most 12 conditions (the largest by rows) are
    drawn, noted in the title; with several conditions the pooled histogram is drawn in grey.
    """
    fig, axes = _figure(11, 6)
    ax = axes[0, 0]
    p = _floats(p)
    cond = np.asarray(conditions).reshape(-1)[:p.size]
    ok = np.isfinite(p[:cond.size])
    p, cond = p[:cond.size][ok], cond[ok]
    clipped = int(((p < PROB_FLOOR) | (p > 1)).sum())
    lp = np.log10(np.clip(p, PROB_FLOOR, 1.0))
    xlabel = f"log10 p (p clipped to [1e-7, 1]; {clipped} rows clipped)" if clipped else "log10 p"
    ids, counts, total = _top_conditions(cond, MAX_HIST_CONDITIONS)
    _label(ax, _top_note(title, ids.size, total), xlabel, "rows per bin (log)")
    if not p.size:
        _no_data(ax)
        return fig
    lo, hi = float(lp.min()), float(lp.max())
    edges = np.linspace(lo - 0.05, hi + 0.05, max(int(bins), 1) + 1)
    if total > 1:
        ax.hist(lp, bins=edges, histtype="stepfilled", color="0.85", label=f"all conditions (n={p.size:,})")
    for color, cid, n in zip([condition_color(i) for i in ids], ids, counts):
        ax.hist(lp[cond == cid], bins=edges, histtype="step", linewidth=1.5, color=color,
                label=f"{_name_of(condition_names, int(cid))} (n={n:,})")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


# --------------------------------------------------------------------------- 4. calibration ratio


def plot_calibration_ratio(series: Mapping[str, Any], *,
                           title: str = "Calibration ratio (mean prediction / base rate) per condition") -> Figure:
    """Per-condition calibration ratio vs base rate, log–log, one marker colour per loss.

    ``series``: loss name → table / dict with ``base_rate``, ``calibration_ratio`` (arrays of
    length C) and optional ``count`` (marker area ∝ sqrt(count), scaled over all series).  A
    horizontal line marks ratio = 1; conditions with base rate ≤ 0 or a NaN ratio are skipped.
    """
    fig, axes = _figure(10, 7)
    ax = axes[0, 0]
    tables = {k: _as_table(v) for k, v in (series or {}).items()}
    counts = [_col(t, "count", required=False) for t in tables.values()]
    cmax = max([np.nanmax(c) for c in counts if np.isfinite(c).any()] or [1.0])
    floors = [_positive(_col(t, "calibration_ratio"), None) for t in tables.values()]
    floor = min([f for _, f, _ in floors] or [1e-3])
    clipped, drawn = 0, 0
    for color, (name, t), cnt in zip(loss_colors(list(tables)), tables.items(), counts):
        x = _col(t, "base_rate")
        y, _, n_low = _positive(_col(t, "calibration_ratio"), floor)
        ok = np.isfinite(x) & (x > 0) & np.isfinite(y)
        if not ok.any():
            continue
        size = np.where(np.isfinite(cnt), 12 + 250 * np.sqrt(np.clip(cnt, 0, None) / cmax), 30)
        ax.scatter(x[ok], y[ok], s=size[ok], color=color, alpha=0.6, edgecolors="k", linewidths=0.4,
                   label=f"{_loss_name(name)} ({_plural(int(ok.sum()), 'condition')})")
        clipped, drawn = clipped + n_low, drawn + 1
    size_note = "; marker area ∝ sqrt(rows)" if any(np.isfinite(c).any() for c in counts) else ""
    _label(ax, title + size_note.replace("; ", "\n"), "base rate (probability, log)",
           f"calibration ratio = mean prediction / base rate (log){_clip_note(clipped, floor)}")
    if not drawn:
        _no_data(ax)
        return fig
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="ratio = 1 (calibrated)")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, markerscale=0.6)
    return fig


# --------------------------------------------------------------------------- 5. reliability diagram


def _reliability_series(t: dict[str, np.ndarray], log_scale: bool, label_floor: float | None):
    """Sorted (avg_pred, avg_label, count, low, high, zero-rate mask) of the usable bins of one table."""
    fix_x = (lambda a: _positive(a, PROB_FLOOR)[0]) if log_scale else (lambda a: a)
    fix_y = (lambda a: _positive(a, label_floor)[0]) if log_scale else (lambda a: a)
    x = fix_x(_col(t, "avg_pred"))
    raw_y = _col(t, "avg_label")
    y, low, high = fix_y(raw_y), fix_y(_col(t, "avg_label_low", required=False)), \
        fix_y(_col(t, "avg_label_high", required=False))
    count = _col(t, "count", required=False)
    ok = np.isfinite(x) & np.isfinite(y) & ~(np.isfinite(count) & (count <= 0))
    order = np.argsort(x[ok], kind="stable")
    zero = (raw_y <= 0) if log_scale else np.zeros(raw_y.shape, dtype=bool)
    return x[ok][order], y[ok][order], count[ok][order], low[ok][order], high[ok][order], zero[ok][order]


def _label_floor(tables: Mapping[str, dict[str, np.ndarray]]) -> float:
    """A decade below the smallest positive observed rate over every table (where empty bins sit)."""
    labels = [_col(t, "avg_label") for t in tables.values()]
    pos = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in labels]) if labels else np.array([])
    return 10.0 ** (math.floor(math.log10(pos.min())) - 1) if pos.size else 1e-3


def _draw_reliability(top, bottom, name: str, color, series) -> None:
    x, y, count, low, high, zero = series
    top.plot(x[~zero], y[~zero], marker="o", markersize=4, color=color, label=_loss_name(name))
    if zero.any():
        top.scatter(x[zero], y[zero], marker="v", s=36, facecolors="none", edgecolors=color,
                    label=f"{_loss_name(name)}: bins without clicks")
    band = np.isfinite(low) & np.isfinite(high)
    if band.any():
        top.fill_between(x[band], low[band], high[band], color=color, alpha=0.2,
                         label=f"{_loss_name(name)} spread over seeds")
    if np.isfinite(count).any():
        bottom.plot(x, count, marker="s", markersize=3, color=color, label=_loss_name(name))


def plot_reliability_diagram(tables: Mapping[str, Any], *, title: str = "Reliability diagram",
                             log_scale: bool = True) -> Figure:
    """Observed click rate vs mean prediction per probability bin, one line per loss, with y = x.

    ``tables``: loss name → table with columns ``bin``, ``count``, ``avg_pred``, ``avg_label``
    (``abs_gap`` ignored) and optional ``avg_label_low`` / ``avg_label_high`` (drawn as a band, e.g.
    mean of seeds ± spread).  NaN and empty bins are skipped.  The lower panel shows rows per bin
    (log y).  ``log_scale``: log–log upper panel; bins with no clicks are drawn as hollow
    triangles a decade below the smallest observed rate (not joined to the line), predictions
    of 0 at 1e-7.
    """
    fig, axes = _figure(10, 9, 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top, bottom = axes[0, 0], axes[1, 0]
    fig.suptitle(title)
    raw = {k: _as_table(v) for k, v in (tables or {}).items()}
    floor = _label_floor(raw) if log_scale else None
    data = {k: _reliability_series(t, log_scale, floor) for k, t in raw.items()}
    zeros = sum(int(s[5].sum()) for s in data.values())
    scale = "probability, log" if log_scale else "probability"
    note = f" [{_plural(zeros, 'bin')} without clicks drawn at {floor:.0e}]" if zeros else ""
    _label(top, "observed rate vs mean prediction per bin", "", f"observed click rate ({scale}){note}")
    _label(bottom, "rows per bin", f"mean prediction in bin ({scale})", "rows (log)")
    if not any(s[0].size for s in data.values()):
        _no_data(top)
        _no_data(bottom)
        return fig
    for color, (name, series) in zip(loss_colors(list(data)), data.items()):
        if series[0].size:
            _draw_reliability(top, bottom, name, color, series)
    if log_scale:
        top.set_xscale("log")
        top.set_yscale("log")
        _diagonal(top, *[s[0] for s in data.values()], *[s[1] for s in data.values()])
    else:
        top.axline((0, 0), (1, 1), color="0.3", linestyle="--", linewidth=1, label="y = x (calibrated)")
    _log_y_if_positive(bottom, *[s[2] for s in data.values()])
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        _legend(ax)
    return fig


# --------------------------------------------------------------------------- 6. feature distributions


def _feature_panel(ax, v: np.ndarray, cond: np.ndarray, ids: np.ndarray, colors: list, bins: int,
                   name: str) -> None:
    ok = np.isfinite(v)
    _label(ax, name, "feature value (input units)", "density (1 / value unit)")
    if not ok.any():
        _no_data(ax)
        return
    lo, hi = float(v[ok].min()), float(v[ok].max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, max(int(bins), 1) + 1)
    for color, cid in zip(colors, ids):
        sel = ok & (cond == cid)
        if sel.any():
            ax.hist(v[sel], bins=edges, density=True, histtype="step", linewidth=1.2, color=color)
    ax.grid(True, alpha=0.3)


def plot_feature_distributions(x_num: np.ndarray, feature_names: Sequence[str], conditions: np.ndarray,
                               condition_names: Sequence[str], *,
                               title: str = "Numeric feature distributions per condition",
                               max_conditions: int = MAX_HIST_CONDITIONS, bins: int = 40) -> Figure:
    """One panel per numeric feature: per-condition density histograms (step lines).

    ``x_num``: [N, F] values (NaN skipped); ``feature_names``: F names; ``conditions``: N integer
    ids indexing ``condition_names``.  Draws the ``max_conditions`` largest conditions (noted in
    the title) and at most 32 features; one legend for the figure.
    """
    x = np.asarray(x_num, dtype=np.float64)
    x = x.reshape(-1, 1) if x.ndim == 1 else x.reshape(x.shape[0], int(np.prod(x.shape[1:])))
    cond = np.asarray(conditions).reshape(-1)[:x.shape[0]]
    x = x[:cond.size]
    n_feat = min(x.shape[1], 32) if x.shape[0] else 0
    nrows, ncols = _grid(n_feat, 1 if n_feat == 1 else 2 if n_feat <= 4 else 3 if n_feat <= 9 else 4)
    fig, axes = _figure(10 if ncols <= 2 else 12, 4.5 if nrows == 1 else 3.2 * nrows, nrows, ncols)
    ids, counts, total = _top_conditions(cond, max(int(max_conditions), 1))
    note = "" if n_feat in (0, x.shape[1]) else f" (first {n_feat} of {x.shape[1]} features)"
    fig.suptitle(_top_note(title + note, ids.size, total))
    if n_feat == 0:
        _label(axes[0, 0], "no rows or features", "feature value", "density (1 / value unit)")
        _no_data(axes[0, 0])
        return fig
    colors = [condition_color(i) for i in ids]
    for j, ax in enumerate(axes.flat):
        if j >= n_feat:
            ax.set_visible(False)
            continue
        name = str(feature_names[j]) if j < len(feature_names) else f"x{j}"
        _feature_panel(ax, x[:, j], cond, ids, colors, bins, name)
    handles = [Line2D([], [], color=c, linewidth=1.5) for c in colors[:ids.size]]
    labels = [f"{_name_of(condition_names, int(i))} (n={n:,})" for i, n in zip(ids, counts)]
    fig.legend(handles, labels, loc="outside right upper", fontsize="small", title="condition")
    return fig


# --------------------------------------------------------------------------- 7. LE statistics


def _category_axis(ax, names: Sequence[str], xlabel: str) -> None:
    ax.set_xlabel(xlabel)
    if len(names) <= MAX_TICK_LABELS:
        ax.set_xticks(np.arange(len(names)), [str(n) for n in names], rotation=60, ha="right", fontsize=8)


def plot_le_stats(table: Any, *,
                  title: str = "Localized-entropy numerator and denominator per condition") -> Figure:
    """LE's per-condition terms: numerator / denominator bars, and both terms vs base rate (log–log).

    ``table``: columns ``condition`` or ``name``, ``numerator``, ``denominator``, ``count``,
    ``base_rate`` (one row per condition).  Bars are sorted by base rate; a ratio of 1 means the
    model's cross-entropy equals the condition's base-rate entropy.
    """
    t = _as_table(table)
    fig, axes = _figure(12, 6, 1, 2)
    left, right = axes[0, 0], axes[0, 1]
    fig.suptitle(title)
    _label(left, "numerator / denominator per condition", "", "numerator / denominator (ratio)")
    _label(right, "terms vs base rate", "base rate (probability, log)", "term value (nats, summed over rows, log)")
    num, den, rate = _col(t, "numerator"), _col(t, "denominator"), _col(t, "base_rate")
    if not _rows(t):
        _no_data(left)
        _no_data(right)
        return fig
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    order = np.argsort(np.where(np.isfinite(rate), rate, np.inf), kind="stable")
    all_names = _names(t)
    names = [all_names[i] for i in order]
    left.bar(np.arange(order.size), np.nan_to_num(ratio[order], nan=0.0), color="tab:blue",
             label="numerator / denominator")
    left.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="ratio = 1")
    top = np.nanmax(np.append(ratio[np.isfinite(ratio)], 1.0))
    left.set_ylim(0, top * 1.25)  # headroom for the legend
    _category_axis(left, names, "condition (sorted by base rate)")
    terms = (("numerator", num, "o", "tab:blue"), ("denominator", den, "s", "tab:orange"))
    for name, vals, marker, color in terms:
        ok = np.isfinite(rate) & (rate > 0) & np.isfinite(vals) & (vals > 0)
        right.scatter(rate[ok], vals[ok], marker=marker, color=color, alpha=0.7, label=name)
    if any(c.get_offsets().size for c in right.collections):
        right.set_xscale("log")
        right.set_yscale("log")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        _legend(ax)
    return fig


# --------------------------------------------------------------------------- 8. CTR filter statistics


def plot_filter_stats(stats: Any, *, value_col: str = "value",
                      title: str = "CTR filter statistics: rows vs click rate per value") -> Figure:
    """Per filter-column value: row count (x, log) vs click rate (y, log), selected values highlighted.

    ``stats``: table with ``value_col``, ``count``, ``mean`` (click rate) and optional ``selected``
    (bool).  The legend names the first selected values (from ``value_col``; points are not labelled,
    the selected ones usually cluster).  The dashed line is the pooled click rate.  Rates of 0 are
    drawn a decade below the smallest positive rate (noted in the label).
    """
    t = _as_table(stats)
    fig, axes = _figure(10, 7)
    ax = axes[0, 0]
    count = _col(t, "count")
    rate, floor, n_low = _positive(_col(t, "mean"), None)
    sel = _bools(t.get("selected"), _rows(t))
    ok = np.isfinite(count) & (count > 0) & np.isfinite(rate)
    _label(ax, title, "rows per value (log)", f"click rate (probability, log){_clip_note(n_low, floor)}")
    if not ok.any():
        _no_data(ax)
        return fig
    rest = ok & ~sel
    ax.scatter(count[rest], rate[rest], s=14, color="0.6", alpha=0.6, label=f"not selected ({int(rest.sum()):,})")
    if (ok & sel).any():
        values = [str(v) for v in t.get(value_col, np.arange(_rows(t)))]
        picked = [values[i] for i in np.flatnonzero(ok & sel)]
        shown = ", ".join(picked[:6]) + (", …" if len(picked) > 6 else "")
        ax.scatter(count[ok & sel], rate[ok & sel], s=40, color="tab:red", edgecolors="k", linewidths=0.5,
                   label=f"selected ({len(picked):,}): {shown}", zorder=3)
    pooled = float(np.nansum(count[ok] * _col(t, "mean")[ok]) / np.nansum(count[ok]))
    if pooled > 0:
        ax.axhline(pooled, color="0.3", linestyle="--", linewidth=1, label=f"pooled click rate {pooled:.2g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    return fig


# --------------------------------------------------------------------------- 9. gradient diagnostics


def plot_grad_sq(table: Any, *, x: str = "count",
                 title: str = "Mean squared logit gradient, LE relative to BCE, per condition") -> Figure:
    """Per condition: LE/BCE squared-gradient ratios (left) and class ratios y=1 / y=0 (right), log y.

    ``table``: columns ``condition``, ``count``, ``ratio_raw``, ``ratio_normalised``,
    ``class_ratio_bce``, ``class_ratio_le`` (see :mod:`le_ray.grad_diagnostics`).  ``x``: the
    x column, ``count`` (default) or ``base_rate`` when the table has it; both axes are log.
    """
    t = _as_table(table)
    xcol = x if x in t else "count"
    xv = _col(t, xcol)
    xlabel = "rows per condition (log)" if xcol == "count" else f"{xcol} (probability, log)"
    fig, axes = _figure(12, 5.5, 1, 2)
    fig.suptitle(title)
    panels = ((axes[0, 0], "LE / BCE mean squared gradient", "ratio LE / BCE (log)",
               (("ratio_raw", "raw", "o"), ("ratio_normalised", "normalised by each loss's global mean", "s"))),
              (axes[0, 1], "positive / negative class gradient", "mean g² (y = 1) / mean g² (y = 0) (log)",
               (("class_ratio_bce", "BCE", "o"), ("class_ratio_le", "LE", "s"))))
    for ax, panel_title, ylabel, cols in panels:
        _label(ax, panel_title, xlabel, ylabel)
        drawn = False
        for color, (col, label, marker) in zip(_colors(2), cols):
            y = _col(t, col, required=False)
            ok = np.isfinite(xv) & (xv > 0) & np.isfinite(y) & (y > 0)
            if ok.any():
                ax.scatter(xv[ok], y[ok], marker=marker, color=color, alpha=0.7, label=label)
                drawn = True
        if not drawn:
            _no_data(ax)
            continue
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="ratio = 1")
        ax.grid(True, alpha=0.3)
        _legend(ax)
    return fig


# --------------------------------------------------------------------------- 10. paired deltas


def plot_paired_deltas(table: Any, *, title: str = "Paired deltas by seed") -> Figure:
    """One panel per metric: the seed-paired delta (candidate vs baseline) per seed, zero line, mean.

    ``table``: columns ``metric`` (str), ``seed`` (int), ``delta`` (float, > 0 favours the
    candidate, e.g. LE over BCE).  NaN deltas are skipped.  The title always notes the sign.
    """
    t = _as_table(table)
    note = "delta > 0 favours the candidate"
    full_title = title if note in title else f"{title} ({note})"
    metrics = list(dict.fromkeys(str(m) for m in t.get("metric", [])))
    nrows, ncols = _grid(len(metrics), 4)
    fig, axes = _figure(12 if ncols > 2 else 10, max(4.5, 3.2 * nrows), nrows, ncols)
    fig.suptitle(full_title)
    if not metrics:
        _label(axes[0, 0], "no metrics", "seed", "delta (metric units)")
        _no_data(axes[0, 0])
        return fig
    metric_col = np.array([str(m) for m in t["metric"]])
    seed, delta = _col(t, "seed"), _col(t, "delta")
    for ax, metric in zip(axes.flat, metrics):
        sel = np.flatnonzero((metric_col == metric) & np.isfinite(delta))
        sel = sel[np.argsort(seed[sel], kind="stable")]
        s, d = seed[sel], delta[sel]
        ax.set_xlabel("seed")
        ax.set_ylabel("delta (metric units)")
        if not d.size:
            ax.set_title(metric)
            _no_data(ax)
            continue
        ax.set_title(f"{metric}\nmean {d.mean():+.3g}, {int((d > 0).sum())}/{d.size} > 0", fontsize=10)
        pos = np.arange(d.size)
        ax.bar(pos, d, color=np.where(d > 0, "tab:green", "tab:red"))
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.axhline(float(d.mean()), color="0.3", linestyle="--", linewidth=1)
        if d.size <= 20:
            ax.set_xticks(pos, [f"{v:g}" for v in s], fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    handles = [Patch(color="tab:green"), Patch(color="tab:red"), Line2D([], [], color="0.3", linestyle="--")]
    fig.legend(handles, ["favours candidate (delta > 0)", "favours baseline (delta ≤ 0)", "mean over seeds"],
               loc="outside lower center", ncols=3, fontsize="small")
    return fig


# --------------------------------------------------------------------------- 11. per-condition gaps


def plot_condition_gaps(table: Any, *, title: str = "Per-condition calibration gap: baseline vs candidate",
                        baseline: str = "BCE", candidate: str = "LE") -> Figure:
    """Per condition: baseline gap (x) vs candidate gap (y), log–log, with y = x.

    ``table``: columns ``condition``, ``base_rate``, ``baseline_gap``, ``candidate_gap``,
    ``significant`` (bool), ``p_value``; a gap is e.g. |1 − calibration ratio|.  Points below the
    line favour the candidate; significant conditions are filled (green below the line, red
    above), the others hollow.  Gaps of 0 are drawn a decade below the smallest positive gap.
    """
    t = _as_table(table)
    fig, axes = _figure(10, 8)
    ax = axes[0, 0]
    bx, by = _col(t, "baseline_gap"), _col(t, "candidate_gap")
    floor = _positive(np.concatenate([bx, by]), None)[1]
    (xv, _, nx), (yv, _, ny) = _positive(bx, floor), _positive(by, floor)
    sig = _bools(t.get("significant"), _rows(t))
    ok = np.isfinite(xv) & np.isfinite(yv)
    _label(ax, f"{title}\n(points below y = x favour the candidate, {candidate})",
           f"baseline ({baseline}) calibration gap (log){_clip_note(nx, floor)}",
           f"candidate ({candidate}) calibration gap (log){_clip_note(ny, floor)}")
    if not ok.any():
        _no_data(ax)
        return fig
    ax.set_xscale("log")
    ax.set_yscale("log")
    better = yv < xv
    groups = ((ok & sig & better, "tab:green", f"significant, favours {candidate}"),
              (ok & sig & ~better, "tab:red", f"significant, favours {baseline}"),
              (ok & ~sig, "none", "not significant"))
    for mask, face, label in groups:
        if mask.any():
            edge = "0.4" if face == "none" else "k"
            ax.scatter(xv[mask], yv[mask], s=40, facecolors=face, edgecolors=edge, linewidths=0.8,
                       label=f"{label} ({int(mask.sum())})", zorder=3)
    _diagonal(ax, xv[ok], yv[ok], label=f"y = x (below: {candidate} better)")
    _annotate(ax, xv[ok], yv[ok], [n for n, k in zip(_names(t), ok) if k])
    ax.grid(True, alpha=0.3)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a point
    return fig


# --------------------------------------------------------------------------- 12. curves over seeds


def _seed_band(curves: Sequence[Mapping[str, Any]], key: str):
    """(epochs, mean, min, max, seeds) of ``key`` over seed curves, aligned on the epoch values."""
    by_epoch: dict[float, list[float]] = {}
    for cur in curves or []:
        xs, ys = _align(_floats(cur.get("epoch")), _floats(cur.get(key)))
        for e, v in zip(xs, ys):
            if np.isfinite(e) and np.isfinite(v):
                by_epoch.setdefault(float(e), []).append(float(v))
    epochs = np.array(sorted(by_epoch))
    vals = [np.array(by_epoch[e]) for e in epochs]
    return (epochs, np.array([v.mean() for v in vals]), np.array([v.min() for v in vals]),
            np.array([v.max() for v in vals]), len(curves or []))


def plot_curves_band(curves_by_loss: Mapping[str, Sequence[Mapping[str, Any]]], *,
                     title: str = "Loss curves over seeds (mean, min–max band)", normalised: bool = False) -> Figure:
    """One panel per loss: eval loss by epoch, mean over seeds with a min–max band, train mean dashed.

    ``curves_by_loss``: loss name → list of per-seed curve dicts as in :func:`plot_loss_curves`
    (``epoch``, ``train_loss``, ``eval_loss``).  Seeds are aligned on epoch values (a seed that
    stopped early simply contributes fewer epochs).  Separate panels because LE and BCE losses
    differ by orders of magnitude; each y axis is log when its values are positive.
    """
    losses = list((curves_by_loss or {}).items())
    nrows, ncols = _grid(len(losses), 3)
    fig, axes = _figure(10 if ncols == 1 else 12, 5.5 if nrows == 1 else 4.5 * nrows, nrows, ncols)
    fig.suptitle(title)
    if not losses:
        _label(axes[0, 0], "no curves", "epoch (0 = before training)", LOSS_UNITS)
        _no_data(axes[0, 0])
        return fig
    train_key, eval_key = ("train_ne", "eval_ne") if normalised else ("train_loss", "eval_loss")
    units = "normalised entropy (1 = base-rate predictor)" if normalised else LOSS_UNITS
    for ax, (name, curves) in zip(axes.flat, losses):
        ep, mean, lo, hi, n = _seed_band(curves, eval_key)
        tep, tmean, _, _, _ = _seed_band(curves, train_key)
        _label(ax, f"{_loss_name(name)} ({n} seed{'s' if n != 1 else ''})", "epoch (0 = before training)", units)
        if not ep.size and not tep.size:
            _no_data(ax)
            continue
        if ep.size:
            ax.fill_between(ep, lo, hi, color="tab:orange", alpha=0.25, label="eval min–max over seeds")
            ax.plot(ep, mean, marker="o", markersize=4, color="tab:orange", label="eval mean")
        if tep.size:
            ax.plot(tep, tmean, linestyle="--", color="tab:blue", label="train mean")
        if _log_y_if_positive(ax, lo, hi, tmean):
            ax.set_ylabel(f"{units}, log scale")
        ax.grid(True, alpha=0.3)
        _legend(ax)
    for ax in list(axes.flat)[len(losses):]:
        ax.set_visible(False)
    return fig


# --------------------------------------------------------------------------- 13. BCE vs LE calibration


def _ratio_columns(t: dict[str, np.ndarray]) -> list[str]:
    cols = [c for c in t if c.startswith("calibration_ratio_")]
    known = ["calibration_ratio_bce", "calibration_ratio_localized_entropy", "calibration_ratio_focal"]
    return [c for c in known if c in cols] + [c for c in cols if c not in known]


def plot_comparison_calibration(table: Any, *,
                                title: str = "Calibration ratio per condition by loss") -> Figure:
    """Per condition (sorted by base rate): each loss's calibration ratio as grouped markers, line at 1.

    ``table``: columns ``condition`` (or ``name``), ``base_rate``, ``calibration_ratio_bce``,
    ``calibration_ratio_localized_entropy`` and optionally ``calibration_ratio_focal`` (any
    ``calibration_ratio_<loss>`` column is drawn).  Log y; ratios ≤ 0 are drawn a decade below the
    smallest positive ratio.  Conditions are named on the x axis up to 30 of them.
    """
    t = _as_table(table)
    cols = _ratio_columns(t)
    fig, axes = _figure(12, 6.5)
    ax = axes[0, 0]
    rate = _col(t, "base_rate")
    order = np.argsort(np.where(np.isfinite(rate), rate, np.inf), kind="stable")
    allv = np.concatenate([_col(t, c) for c in cols]) if cols else np.zeros(0)
    floor = _positive(allv, None)[1]
    clipped, width = 0, 0.8 / max(len(cols), 1)
    for k, (color, col) in enumerate(zip(_colors(len(cols)), cols)):
        y, _, n_low = _positive(_col(t, col), floor)
        y, pos = y[order], np.arange(order.size) + (k - (len(cols) - 1) / 2) * width
        ok = np.isfinite(y)
        ax.scatter(pos[ok], y[ok], s=28, color=color, label=_loss_name(col.removeprefix("calibration_ratio_")))
        clipped += n_low
    _label(ax, title, "", f"calibration ratio = mean prediction / base rate (log){_clip_note(clipped, floor)}")
    if not _rows(t) or not any(c.get_offsets().size for c in ax.collections):
        ax.set_xlabel("condition (sorted by base rate)")
        _no_data(ax)
        return fig
    all_names = _names(t)
    names = [f"{all_names[i]} ({rate[i]:.1e})" for i in order]
    many = len(names) > MAX_TICK_LABELS
    _category_axis(ax, names, "condition rank (sorted by base rate)" if many
                   else "condition (base rate), sorted by base rate")
    for i in range(0, len(names) if len(names) <= 60 else 0, 2):  # shade every other condition
        ax.axvspan(i - 0.5, i + 0.5, color="0.93", zorder=0, linewidth=0)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_yscale("log")
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="ratio = 1 (calibrated)")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax)
    return fig


# --------------------------------------------------------------------------- the rare-ad picture


def _seed_summary(values: np.ndarray) -> tuple[float, float, float]:
    """(median, min, max) of the finite, positive per-seed ratios of one condition (NaN when none)."""
    v = values[np.isfinite(values) & (values > 0)]
    if not v.size:
        return (math.nan,) * 3
    return float(np.median(v)), float(v.min()), float(v.max())


def plot_calibration_by_rate(table: Any, *, excluded: Sequence[int] = (), reference: str = "base rate",
                             title: str = "Calibration by base rate") -> Figure:
    """Per condition and loss: calibration ratio (mean prediction / rate, log; 1 = calibrated) vs base rate (log).

    ``table``: long table with columns loss, condition, value, base_rate and ratio, one row per
    seed × loss × condition. Each point is the median over seeds, its bar the min–max over seeds;
    losses are offset slightly along x so their bars do not overlap; points are labelled by the
    condition's value; conditions in ``excluded`` (too few clicks to test) are drawn hollow.
    """
    t = _as_table(table)
    fig, axes = _figure(11, 7)
    ax = axes[0, 0]
    _label(ax, title, f"{reference} of the condition (probability, log)",
           f"calibration ratio = mean prediction / {reference} (log; 1 = calibrated)")
    if not _rows(t):
        _no_data(ax)
        return fig
    order = list(registry.LOSSES)
    losses = sorted(dict.fromkeys(str(x) for x in t["loss"]), key=lambda n: order.index(n) if n in order else 99)
    cond, rate, ratio = _col(t, "condition"), _col(t, "base_rate"), _col(t, "ratio")
    values = [str(v) for v in t["value"]] if "value" in t else [str(int(c)) for c in cond]
    ids = np.unique(cond[np.isfinite(cond)]).astype(int)
    shifts = np.exp(np.linspace(-0.08, 0.08, len(losses))) if len(losses) > 1 else [1.0]
    for color, loss, shift in zip(loss_colors(losses), losses, shifts):
        for j in ids:
            rows = (np.asarray(t["loss"]).astype(str) == loss) & (cond == j)
            mid, lo, hi = _seed_summary(ratio[rows])
            x = float(np.nanmean(rate[rows])) * shift
            if not (np.isfinite(mid) and x > 0):
                continue
            hollow = int(j) in set(excluded)
            ax.errorbar([x], [mid], yerr=[[mid - lo], [hi - mid]], fmt="o", color=color, markersize=7,
                        markerfacecolor="none" if hollow else color, capsize=3, alpha=0.9)
    for j in ids:
        rows = cond == j
        x, y = float(np.nanmean(rate[rows])), float(np.nanmedian(ratio[rows]))
        if np.isfinite(x) and np.isfinite(y) and x > 0 and y > 0 and ids.size <= MAX_POINT_LABELS:
            name = values[int(np.flatnonzero(rows)[0])]
            ax.annotate(name + (" (too few clicks)" if int(j) in set(excluded) else ""), (x, y), xytext=(6, 6),
                        textcoords="offset points", fontsize=8)
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # ratios read as 0.5, 1, 2 rather than 5×10⁻¹
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain if axis is ax.yaxis else FuncFormatter(lambda v, _: ""))
    ax.grid(True, which="both", alpha=0.3)
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=_loss_name(n))
               for c, n in zip(loss_colors(losses), losses)]
    handles += [Line2D([], [], color="0.3", linestyle="--", label="calibrated (ratio 1)"),
                Line2D([], [], marker="o", linestyle="", color="0.4", markerfacecolor="none",
                       label="excluded: too few clicks to test")]
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.text(0.0, -0.1, "point = median over seeds, bar = min–max over seeds", transform=ax.transAxes, fontsize=8,
            color="0.35")
    return fig


def plot_tuning_curves(curves: Mapping[str, Sequence[float]], finals: Mapping[str, Sequence[float | None]], *,
                       metric: str, title: str = "Tuning: best validation metric so far") -> Figure:
    """Per loss: the best ``metric`` among the first k samples (line) and every sample's final value (dots)."""
    fig, axes = _figure(10, 6)
    ax = axes[0, 0]
    _label(ax, title, "samples tried (in order)", f"validation {metric}")
    if not any(len(v) for v in curves.values()):
        _no_data(ax)
        return fig
    for color, (name, best) in zip(loss_colors(list(curves)), curves.items()):
        k = np.arange(1, len(best) + 1)
        ax.plot(k, _floats(best), color=color, linewidth=2, label=f"{_loss_name(name)}: best so far")
        values = _floats([np.nan if v is None else v for v in finals.get(name, [])])
        ax.scatter(np.arange(1, values.size + 1), values, color=color, s=18, alpha=0.6,
                   label=f"{_loss_name(name)}: each sample")
    finite = [v for vals in finals.values() for v in vals if v is not None and np.isfinite(v)]
    if finite and min(finite) > 0:
        ax.set_yscale("log")
        ax.set_ylabel(f"validation {metric} (log)")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
