"""Calibration figures of one diagnostic run: mean prediction vs rate, calibration ratio, reliability diagram, prediction histograms."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from le_ray.report.plots.axes import (
    MAX_HIST_CONDITIONS, PROB_FLOOR, _annotate, _as_table, _clip_note, _col, _diagonal, _figure, _floats,
    _label, _legend, _log_y_if_positive, _loss_name, _name_of, _no_data, _plural, _positive, _top_conditions,
    _top_note, condition_color, log_axes, loss_colors, plain_number, ratio_axis,
)

#: one marker per series where several losses share an x (a circle under a circle disappears)
SERIES_MARKERS = ("o", "s", "^", "D", "v")


def plot_avg_vs_train_rate(conditions: Sequence[str], train_rate: np.ndarray, eval_pred_mean: np.ndarray,
                           eval_rate: np.ndarray | None = None, *,
                           title: str = "Eval mean prediction vs train click rate per condition") -> Figure:
    """Per condition (one point each): eval mean prediction (y) vs train click rate (x), log–log.

    ``conditions``: C display names; ``train_rate``, ``eval_pred_mean``, ``eval_rate`` (optional,
    drawn as a second marker): arrays of length C.  A mean prediction on the y = x line equals the ad's train
    click rate, which is calibration only where the eval split clicks at that rate too: the eval observed rate's
    marker shows how far it sits from the line.  Points are named when C ≤ 20.
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
    log_axes(ax, "x", "y")
    ax.scatter(x[ok], y[ok], s=36, color="tab:blue",
               label=f"eval mean prediction ({_plural(int(ok.sum()), 'condition')})")
    r_ok = np.isfinite(x) & np.isfinite(r)
    if r_ok.any():
        ax.scatter(x[r_ok], r[r_ok], s=40, marker="x", color="tab:orange", label="eval observed click rate")
    _diagonal(ax, x[ok], y[ok], r[r_ok], label="y = x (equal to the train click rate)")
    _annotate(ax, x[ok], y[ok], [n for n, k in zip(conditions, ok) if k])
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, loc="upper left")
    return fig


# --------------------------------------------------------------------------- 2. loss curves


def plot_prediction_histograms(p: np.ndarray, conditions: np.ndarray, condition_names: Sequence[str], *,
                               title: str = "Predicted probability per condition",
                               bins_per_decade: int = 20) -> Figure:
    """Overlaid step histograms of log10 p per condition (rows per bin, log y).

    ``p``: N predicted probabilities (clipped to [1e-7, 1], NaN skipped); ``conditions``: N integer
    condition ids indexing ``condition_names``.  At most 12 conditions (the largest by rows) are
    drawn, noted in the title; with several conditions the pooled histogram is drawn in grey.  Bin edges lie on
    one fixed grid of 1 / ``bins_per_decade`` decade and the x axis spans whole decades, so the figures of
    different losses (each drawn when its trial finishes) share their bins wherever their predictions overlap.
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
    edges = decade_grid_edges(lp, bins_per_decade)
    if total > 1:
        ax.hist(lp, bins=edges, histtype="stepfilled", color="0.85", label=f"all conditions (n={p.size:,})")
    for color, cid, n in zip([condition_color(i) for i in ids], ids, counts):
        ax.hist(lp[cond == cid], bins=edges, histtype="step", linewidth=1.5, color=color,
                label=f"{_name_of(condition_names, int(cid))} (n={n:,})")
    log_axes(ax, "y")
    ax.set_xlim(math.floor(edges[0]), math.ceil(edges[-1]))
    ax.grid(True, alpha=0.3)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def decade_grid_edges(log10_values: np.ndarray, bins_per_decade: int) -> np.ndarray:
    """Histogram edges at k / ``bins_per_decade`` (k integer) covering every value of ``log10_values`` (finite,
    non-empty): the same grid for any data, so two histograms' bins coincide where their ranges overlap. The edges are
    k / n, computed by a division (1 / 20 is inexact in binary: k · 0.05 can land a hair above a value it should lie
    below), then widened by a bin at either end until they hold the extremes; the last edge may equal the largest
    value (``np.histogram`` counts it in the last bin), so p = 1 (log10 0) adds no bin above 0."""
    n = max(int(bins_per_decade), 1)
    lo, hi = float(log10_values.min()), float(log10_values.max())
    first, last = math.floor(lo * n), math.ceil(hi * n)
    while first / n > lo:
        first -= 1
    while last / n < hi:
        last += 1
    return np.arange(first, max(last, first + 1) + 1) / n


# --------------------------------------------------------------------------- 4. calibration ratio


def plot_calibration_ratio(series: Mapping[str, Any], *,
                           title: str = "Calibration ratio (mean prediction / base rate) per condition",
                           reference: str = "base rate") -> Figure:
    """Per-condition calibration ratio vs base rate, log–log, one marker colour per loss.

    ``series``: loss name → table / dict with ``base_rate``, ``calibration_ratio`` (arrays of
    length C) and optional ``count`` (marker area ∝ sqrt(count), scaled over all series).  A
    horizontal line marks ratio = 1; conditions with base rate ≤ 0 or a NaN ratio are skipped.  ``reference``:
    what ``base_rate`` is, in words (e.g. "true click probability"), for the axis labels.
    """
    fig, axes = _figure(10, 7)
    ax = axes[0, 0]
    tables = {k: _as_table(v) for k, v in (series or {}).items()}
    counts = [_col(t, "count", required=False) for t in tables.values()]
    cmax = max([np.nanmax(c) for c in counts if np.isfinite(c).any()] or [1.0])
    floors = [_positive(_col(t, "calibration_ratio"), None) for t in tables.values()]
    floor = min([f for _, f, _ in floors] or [1e-3])
    clipped, drawn = 0, 0
    for k, (color, (name, t), cnt) in enumerate(zip(loss_colors(list(tables)), tables.items(), counts)):
        x = _col(t, "base_rate")
        y, _, n_low = _positive(_col(t, "calibration_ratio"), floor)
        ok = np.isfinite(x) & (x > 0) & np.isfinite(y)
        if not ok.any():
            continue
        size = np.where(np.isfinite(cnt), 12 + 250 * np.sqrt(np.clip(cnt, 0, None) / cmax), 30)
        ax.scatter(x[ok], y[ok], s=size[ok], color=color, alpha=0.6, edgecolors="k", linewidths=0.4,
                   marker=SERIES_MARKERS[k % len(SERIES_MARKERS)],  # a loss under another's point stays visible
                   label=f"{_loss_name(name)} ({_plural(int(ok.sum()), 'condition')})")
        clipped, drawn = clipped + n_low, drawn + 1
    size_note = "; marker area ∝ sqrt(rows)" if any(np.isfinite(c).any() for c in counts) else ""
    _label(ax, title + size_note.replace("; ", "\n"), f"{reference} (probability, log)",
           f"calibration ratio = mean prediction / {reference} (log){_clip_note(clipped, floor)}")
    if not drawn:
        _no_data(ax)
        return fig
    log_axes(ax, "x")
    ratio_axis(ax)
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="ratio = 1 (calibrated)")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, markerscale=0.6)
    return fig


# --------------------------------------------------------------------------- 5. reliability diagram


def _reliability_series(t: dict[str, np.ndarray], log_scale: bool, label_floor: float | None):
    """Sorted (avg_pred, avg_label, count, low, high, zero-rate mask, zero-low mask) of the usable bins of one
    table; on a log scale a rate or band minimum of 0 is drawn at ``label_floor`` and flagged in its mask."""
    fix_x = (lambda a: _positive(a, PROB_FLOOR)[0]) if log_scale else (lambda a: a)
    fix_y = (lambda a: _positive(a, label_floor)[0]) if log_scale else (lambda a: a)
    x = fix_x(_col(t, "avg_pred"))
    raw_y, raw_low = _col(t, "avg_label"), _col(t, "avg_label_low", required=False)
    y, low, high = fix_y(raw_y), fix_y(raw_low), fix_y(_col(t, "avg_label_high", required=False))
    count = _col(t, "count", required=False)
    ok = np.isfinite(x) & np.isfinite(y) & ~(np.isfinite(count) & (count <= 0))
    order = np.argsort(x[ok], kind="stable")
    zero = (raw_y <= 0) if log_scale else np.zeros(raw_y.shape, dtype=bool)
    zero_low = (raw_low <= 0) & (raw_y > 0) if log_scale else np.zeros(raw_y.shape, dtype=bool)
    return tuple(a[ok][order] for a in (x, y, count, low, high, zero, zero_low))


def _label_floor(tables: Mapping[str, dict[str, np.ndarray]]) -> float:
    """A decade below the smallest positive observed rate over every table (where empty bins sit)."""
    labels = [_col(t, "avg_label") for t in tables.values()]
    pos = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in labels]) if labels else np.array([])
    return 10.0 ** (math.floor(math.log10(pos.min())) - 1) if pos.size else 1e-3


def _draw_reliability(top, bottom, name: str, color, series) -> None:
    x, y, count, low, high, zero, _ = series
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


def _rows_axis(ax, counts: list[np.ndarray]) -> None:
    """The rows-per-bin axis: log when the counts span more than a decade, else linear from 0 (equal-mass bins
    hold nearly equal counts: a log axis drew a one-row difference as a zigzag), in plain numbers either way."""
    rows = np.concatenate([c[np.isfinite(c) & (c > 0)] for c in counts]) if counts else np.zeros(0)
    if rows.size and rows.max() > 10 * rows.min():
        _log_y_if_positive(ax, rows)
        ax.set_ylabel("rows (log)")
        return
    ax.set_ylim(0, 1.1 * rows.max() if rows.size else 1.0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: plain_number(v)))


def plot_reliability_diagram(tables: Mapping[str, Any], *, title: str = "Reliability diagram",
                             log_scale: bool = True) -> Figure:
    """Observed click rate vs mean prediction per probability bin, one line per loss, with y = x.

    ``tables``: loss name → table with columns ``bin``, ``count``, ``avg_pred``, ``avg_label``
    (``abs_gap`` ignored) and optional ``avg_label_low`` / ``avg_label_high`` (drawn as a band, e.g.
    mean of seeds ± spread).  NaN and empty bins are skipped.  The lower panel shows rows per bin
    (:func:`_rows_axis`).  ``log_scale``: log–log upper panel; bins with no clicks are drawn as hollow
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
    zero_lows = sum(int(s[6].sum()) for s in data.values())  # a band reaching 0 clicks, its end drawn at the floor
    scale = "probability, log" if log_scale else "probability"
    notes = [f"{_plural(zeros, 'bin')} without clicks"] if zeros else []
    notes += [f"{_plural(zero_lows, 'band minimum', 'band minima')} of 0"] if zero_lows else []
    note = f" [{' and '.join(notes)} drawn at {floor:.0e}]" if notes else ""
    _label(top, "observed rate vs mean prediction per bin", "", f"observed click rate ({scale}){note}")
    _label(bottom, "rows per bin", f"mean prediction in bin ({scale})", "rows")
    if not any(s[0].size for s in data.values()):
        _no_data(top)
        _no_data(bottom)
        return fig
    for color, (name, series) in zip(loss_colors(list(data)), data.items()):
        if series[0].size:
            _draw_reliability(top, bottom, name, color, series)
    if log_scale:
        log_axes(top, "x", "y")
        _diagonal(top, *[s[0] for s in data.values()], *[s[1] for s in data.values()])
    else:
        top.axline((0, 0), (1, 1), color="0.3", linestyle="--", linewidth=1, label="y = x (calibrated)")
    _rows_axis(bottom, [s[2] for s in data.values()])
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        _legend(ax)
    return fig


# --------------------------------------------------------------------------- 6. feature distributions
