"""Figures of the data and of LE's internals: feature distributions, LE statistics, filter statistics, squared logit gradients."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from le_ray.report.plots.axes import (
    MAX_HIST_CONDITIONS, _as_table, _bools, _category_axis, _clip_note, _col, _colors, _figure, _grid, _label,
    _legend, _name_of, _names, _no_data, _positive, _rows, _top_conditions, _top_note, condition_color, log_axes,
)


def _feature_panel(ax, v: np.ndarray, cond: np.ndarray, ids: np.ndarray, colors: list, bins: int,
                   name: str, units: str = "input units") -> None:
    ok = np.isfinite(v)
    _label(ax, name, f"feature value ({units})", "density (1 / value unit)")
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
                               max_conditions: int = MAX_HIST_CONDITIONS, bins: int = 40,
                               units: str = "input units") -> Figure:
    """One panel per numeric feature: per-condition density histograms (step lines).

    ``x_num``: [N, F] values (NaN skipped); ``feature_names``: F names; ``conditions``: N integer
    ids indexing ``condition_names``.  Draws the ``max_conditions`` largest conditions (noted in
    the title) and at most 32 features; one legend for the figure.  ``units``: what the values are in, for the
    axes (e.g. "standardised: sd units").
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
        _feature_panel(ax, x[:, j], cond, ids, colors, bins, name, units)
    handles = [Line2D([], [], color=c, linewidth=1.5) for c in colors[:ids.size]]
    labels = [f"{_name_of(condition_names, int(i))} (n={n:,})" for i, n in zip(ids, counts)]
    fig.legend(handles, labels, loc="outside right upper", fontsize="small", title="condition")
    return fig


# --------------------------------------------------------------------------- 7. LE statistics




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
        log_axes(right, "x", "y")
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
    log_axes(ax, "x", "y")
    ax.grid(True, alpha=0.3)
    _legend(ax)
    return fig


# --------------------------------------------------------------------------- 9. gradient diagnostics


def plot_grad_sq(table: Any, *, x: str = "count",
                 title: str = "Mean squared logit gradient, LE relative to BCE, per condition") -> Figure:
    """Per condition: LE/BCE squared-gradient ratios (left) and class ratios y=1 / y=0 (right), log y.

    ``table``: columns ``condition``, ``count``, ``ratio_raw``, ``ratio_normalised``,
    ``class_ratio_bce``, ``class_ratio_le`` (see :mod:`le_ray.training.grad_diagnostics`).  ``x``: the
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
        log_axes(ax, "x", "y")
        ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="ratio = 1")
        ax.grid(True, alpha=0.3)
        _legend(ax)
    return fig


# --------------------------------------------------------------------------- 10. paired deltas
