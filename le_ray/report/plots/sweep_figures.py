"""Figures of a sweep's comparison: paired deltas by seed, per-ad gaps, calibration ratios compared (the rare-ad
picture is :mod:`le_ray.report.plots.rate_picture`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from le_ray.report.plots.axes import (
    MAX_TICK_LABELS, _annotate, _as_table, _bools, _category_axis, _clip_note, _col, _diagonal,
    _figure, _grid, _label, _legend, _loss_name, _names, _no_data, _positive, _rows, log_axes, loss_colors,
    plain_number, ratio_axis,
)


def plot_paired_deltas(table: Any, *, title: str = "Paired deltas by seed") -> Figure:
    """One panel per metric: the seed-paired delta (candidate vs baseline) per seed, zero line, mean.

    ``table``: columns ``metric`` (str), ``seed`` (int), ``delta`` (float, > 0 favours the
    candidate, e.g. LE over BCE).  NaN deltas are skipped.  The title always notes the sign, once: a title that
    already says which side a delta favours (``favours``, e.g. "delta > 0 favours LE") is kept as it is.
    """
    t = _as_table(table)
    full_title = title if "favours" in title else f"{title} (delta > 0 favours the candidate)"
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
        ties = pos[d == 0]
        if ties.size:  # a tie has no bar: a mark on the zero line
            ax.plot(ties, np.zeros(ties.size), linestyle="none", marker="o", markerfacecolor="none", color="0.3")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: plain_number(v)))  # no hidden 1e-5 offset
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.axhline(float(d.mean()), color="0.3", linestyle="--", linewidth=1)
        if d.size <= 20:
            ax.set_xticks(pos, [f"{v:g}" for v in s], fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    handles = [Patch(color="tab:green"), Patch(color="tab:red"),
               Line2D([], [], linestyle="none", marker="o", markerfacecolor="none", color="0.3"),
               Line2D([], [], color="0.3", linestyle="--")]
    fig.legend(handles, ["favours candidate (delta > 0)", "favours baseline (delta < 0)", "tie (delta = 0)",
                         "mean over seeds"], loc="outside lower center", ncols=4, fontsize="small")
    return fig


# --------------------------------------------------------------------------- 11. per-condition gaps


def plot_condition_gaps(table: Any, *, title: str = "Per-condition calibration gap: baseline vs candidate",
                        baseline: str = "BCE", candidate: str = "LE") -> Figure:
    """Per condition: baseline gap (x) vs candidate gap (y), log–log, with y = x.

    ``table``: columns ``condition``, ``base_rate``, ``baseline_gap``, ``candidate_gap``,
    ``significant`` (bool), ``p_value``, optionally ``untestable`` (bool: no test of the ad could reach alpha);
    a gap is e.g. |1 − calibration ratio|.  Points below the line favour the candidate; significant conditions
    are filled (green below the line, red above), untestable ones grey crosses, the others hollow.  Gaps of 0 are
    drawn a decade below the smallest positive gap.
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
    log_axes(ax, "x", "y")
    better = yv < xv
    untestable = _bools(t.get("untestable"), _rows(t)) & ~sig
    groups = ((ok & sig & better, "tab:green", "o", f"significant, favours {candidate}"),
              (ok & sig & ~better, "tab:red", "o", f"significant, favours {baseline}"),
              (ok & ~sig & ~untestable, "none", "o", "not significant"),
              (ok & untestable, "0.6", "x", "untestable with these seeds (no test could reach alpha)"))
    for mask, face, marker, label in groups:
        if mask.any():
            colours = {"facecolors": face, "edgecolors": "0.4" if face == "none" else "k"} if marker == "o" else \
                {"color": face}
            ax.scatter(xv[mask], yv[mask], s=40, marker=marker, linewidths=0.8, label=f"{label} ({int(mask.sum())})",
                       zorder=3, **colours)
    _diagonal(ax, xv[ok], yv[ok], label=f"y = x (below: {candidate} better)")
    _annotate(ax, xv[ok], yv[ok], [n for n, k in zip(_names(t), ok) if k])
    ax.grid(True, alpha=0.3)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a point
    return fig


# --------------------------------------------------------------------------- 12. curves over seeds


def _ratio_columns(t: dict[str, np.ndarray]) -> list[str]:
    cols = [c for c in t if c.startswith("calibration_ratio_")]
    known = ["calibration_ratio_bce", "calibration_ratio_localized_entropy", "calibration_ratio_focal"]
    return [c for c in known if c in cols] + [c for c in cols if c not in known]


def plot_comparison_calibration(table: Any, *, title: str = "Calibration ratio per condition by loss",
                                reference: str = "base rate") -> Figure:
    """Per condition (sorted by base rate): each loss's calibration ratio as grouped markers, line at 1.

    ``table``: columns ``condition`` (or ``name``), ``base_rate``, ``calibration_ratio_bce``,
    ``calibration_ratio_localized_entropy`` and optionally ``calibration_ratio_focal`` (any
    ``calibration_ratio_<loss>`` column is drawn).  Log y; ratios ≤ 0 are drawn a decade below the
    smallest positive ratio.  Conditions are named on the x axis up to 30 of them.  ``reference``: what
    ``base_rate`` is, in words (e.g. "true click probability"), for the axis labels.
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
    for k, (color, col) in enumerate(zip(loss_colors([c.removeprefix("calibration_ratio_") for c in cols]), cols)):
        y, _, n_low = _positive(_col(t, col), floor)
        y, pos = y[order], np.arange(order.size) + (k - (len(cols) - 1) / 2) * width
        ok = np.isfinite(y)
        ax.scatter(pos[ok], y[ok], s=28, color=color, label=_loss_name(col.removeprefix("calibration_ratio_")))
        clipped += n_low
    _label(ax, title, "", f"calibration ratio = mean prediction / {reference} (log){_clip_note(clipped, floor)}")
    if not _rows(t) or not any(c.get_offsets().size for c in ax.collections):
        ax.set_xlabel(f"condition (sorted by {reference})")
        _no_data(ax)
        return fig
    all_names = _names(t)
    names = [f"{all_names[i]} ({rate[i]:.1e})" for i in order]
    many = len(names) > MAX_TICK_LABELS
    _category_axis(ax, names, f"condition rank (sorted by {reference})" if many
                   else f"condition ({reference}), sorted by {reference}")
    for i in range(0, len(names) if len(names) <= 60 else 0, 2):  # shade every other condition
        ax.axvspan(i - 0.5, i + 0.5, color="0.93", zorder=0, linewidth=0)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ratio_axis(ax)
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="ratio = 1 (calibrated)")
    ax.grid(True, axis="y", alpha=0.3)
    _legend(ax)
    return fig
