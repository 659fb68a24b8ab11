"""Figures of a sweep's comparison: paired deltas by seed, per-condition gaps, calibration ratios compared, the rare-ad picture (calibration ratio against base rate)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from le_ray import registry
from le_ray.report.plots.axes import (
    _category_axis, MAX_POINT_LABELS, MAX_TICK_LABELS, _annotate, _as_table, _bools, _clip_note, _col, _colors, _diagonal,
    _figure, _grid, _label, _legend, _loss_name, _names, _no_data, _positive, _rows, loss_colors,
)


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
