"""Figures of a sweep's comparison: paired deltas by seed, per-ad gaps, calibration ratios compared, the rare-ad
picture (calibration ratio against the ad's rate, with a labelled tick per decade, ads named by their ad id and each
ad's evaluation-noise band: the ratios a calibrated model can show from the ad's evaluation clicks alone)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter

from le_ray import registry
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


# --------------------------------------------------------------------------- the rare-ad picture


MAX_RATE_LABELS = 12  #: the rare-ad picture labels every ad up to this many ...
RAREST_LABELS = 5  #: ... and only the rarest this many beyond that
LOSS_SHIFT = 0.08  #: the losses' points of one ad sit at its rate × e^±LOSS_SHIFT (side by side, bars apart), or
#: closer, inside the ad's own noise band, where another ad's rate is near (:func:`_band_half_widths`)
NOISE_HALF_WIDTH = 1.5 * LOSS_SHIFT  #: an ad's evaluation-noise band spans its rate × e^±NOISE_HALF_WIDTH along x
MIN_BAND_HALF_WIDTH = 0.25 * LOSS_SHIFT  #: ... or less, down to this, where another ad's rate is near
#: the noise band's light shade, behind the points; opaque, so the bands of ads at nearby rates overlap without
#: darkening into a shade that reads as more noise
NOISE_COLOR, NOISE_ALPHA = "0.88", 1.0


def _ad_points(t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per condition id (sorted): its reference rate (first finite positive value, else NaN) and its ad id."""
    cond, rate = _col(t, "condition"), _col(t, "base_rate")
    key = "ad_id" if "ad_id" in t else "value" if "value" in t else None
    ids = np.unique(cond[np.isfinite(cond)]).astype(int)
    rates, names = np.full(ids.size, np.nan), []
    for k, j in enumerate(ids):
        rows = np.flatnonzero(cond == j)
        good = rows[np.isfinite(rate[rows]) & (rate[rows] > 0)]
        rates[k] = rate[good[0]] if good.size else np.nan
        names.append(str(t[key][rows[0]]) if key else str(j))
    return ids, rates, names


def _labelled(rates: np.ndarray) -> np.ndarray:
    """Indices of the ads to label: all up to MAX_RATE_LABELS, else the RAREST_LABELS rarest."""
    drawn = np.flatnonzero(np.isfinite(rates))
    if drawn.size <= MAX_RATE_LABELS:
        return drawn
    return drawn[np.argsort(rates[drawn], kind="stable")[:RAREST_LABELS]]


def _decade_axis(ax, rates: np.ndarray, edges: Sequence[float] | None) -> None:
    """Log x axis over the ads' rates (padded ×1.5 for the losses' offsets and the markers), widened to whole
    decades when fewer than two decades fall inside; a labelled tick (in %) at every decade, and a dotted line at
    each band edge in ``edges`` that is not a decade."""
    from matplotlib.ticker import LogLocator, NullFormatter

    good = rates[np.isfinite(rates) & (rates > 0)]
    lo, hi = (good.min() / 1.5, good.max() * 1.5) if good.size else (1e-3, 1.0)
    if math.floor(math.log10(hi)) - math.ceil(math.log10(lo)) < 1:  # fewer than two decade ticks inside
        lo, hi = 10.0 ** math.floor(math.log10(lo)), 10.0 ** math.ceil(math.log10(hi))
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(LogLocator(base=10.0, numticks=40))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:g} %"))
    ax.xaxis.set_minor_locator(LogLocator(base=10.0, subs=np.arange(2, 10) / 10.0, numticks=40))
    ax.xaxis.set_minor_formatter(NullFormatter())
    for e in edges or ():
        if not math.isclose(math.log10(e), round(math.log10(e))):
            ax.axvline(e, color="0.5", linestyle=":", linewidth=1)


def _draw_losses(ax, t, losses, ids, rates, excluded) -> list[float]:
    """One median point with its min–max bar per loss and ad; returns each ad's median over the drawn points."""
    from le_ray.stats import median_range  # here: keeps scipy.stats out of a figure-drawing worker's imports

    cond, ratio, loss_col = _col(t, "condition"), _col(t, "ratio"), np.asarray(t["loss"]).astype(str)
    sides = np.linspace(-1.0, 1.0, len(losses)) if len(losses) > 1 else np.zeros(1)
    spread = _point_spreads(rates)
    mids: list[list[float]] = [[] for _ in ids]
    for color, loss, side in zip(loss_colors(losses), losses, sides):
        for k, j in enumerate(ids):
            shift = math.exp(side * spread[k])
            mid, lo, hi = median_range(ratio[(loss_col == loss) & (cond == j)])
            if not (np.isfinite(mid) and np.isfinite(rates[k])):
                continue
            mids[k].append(mid)
            ax.errorbar([rates[k] * shift], [mid], yerr=[[mid - lo], [hi - mid]], fmt="o", color=color,
                        markersize=7, markerfacecolor="none" if int(j) in excluded else color, capsize=3, alpha=0.9)
    return [float(np.median(m)) if m else math.nan for m in mids]


#: Label offsets (points from the ad's point) tried in turn until a label overlaps none placed before it.
LABEL_OFFSETS = ((6, 6), (6, -14), (6, 18), (6, -26), (6, 30), (6, -38), (6, 42), (6, -50), (6, 54), (6, -62), (6, 66))
#: a point further right than this fraction of the axes' width is labelled to its left (mirrored offsets, text
#: right-aligned), so that its label ends inside the axes instead of running over the right edge
LABEL_LEFT_FROM = 0.85


def _label_side(ax, x: float, y: float) -> tuple[int, str]:
    """(sign of the x offsets, horizontal alignment) of the label of the point (x, y) in data coordinates: (1,
    "left") to its right, or (-1, "right") to its left for a point in the right part of the axes (LABEL_LEFT_FROM)."""
    fx = ax.transAxes.inverted().transform(ax.transData.transform((x, y)))[0]
    return (-1, "right") if fx > LABEL_LEFT_FROM else (1, "left")


def _place_labels(ax, points: Sequence[tuple[float, float]], texts: Sequence[str]) -> None:
    """Annotate each point with its text at the first of :data:`LABEL_OFFSETS` whose box (display coordinates,
    after the axes' scales and limits are set), on the preferred side or else the other, that overlaps no label
    placed before it and no marker or seed bar (:func:`_mark_boxes`) and stays inside the axes; else the first on
    the preferred side that overlaps no label; the last offset when none is free. By hand: matplotlib places annotations without regard to each other, and neighbouring ads' labels
    (rates a few % apart) otherwise print over one another. A point in the right part of the axes is labelled to
    its left (:func:`_label_side`). Call it last: the figure's constrained layout is settled first (everything else
    drawn), and the labels stay out of it."""
    figure = ax.figure
    renderer = FigureCanvasAgg(figure).get_renderer()  # the PNG's own backend
    figure.draw_without_rendering()  # the constrained layout fixes the axes' place before any box is measured
    marks, frame = _mark_boxes(ax, renderer), ax.get_window_extent(renderer)
    placed = []
    for (x, y), text in zip(points, texts):
        sign, align = _label_side(ax, x, y)
        other = "left" if align == "right" else "right"
        # the preferred side first (LABEL_OFFSETS), then the other side: a neighbouring loss's bar often fills one
        options = [((sign * dx, dy), align) for dx, dy in LABEL_OFFSETS] + \
            [((-sign * dx, dy), other) for dx, dy in LABEL_OFFSETS]
        boxes = [_label_box(ax, renderer, text, (x, y), offset, side) for offset, side in options]
        free = [k for k in range(len(LABEL_OFFSETS)) if not any(boxes[k].overlaps(b) for b in placed)]
        clear = [k for k, box in enumerate(boxes) if not any(box.overlaps(b) for b in placed)
                 and not any(box.overlaps(mark) for mark in marks) and _inside(box, frame)]
        k = (clear or free or [len(LABEL_OFFSETS) - 1])[0]  # clear of labels and marks, else of labels
        (offset, side) = options[k]
        label = ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", fontsize=8,
                            horizontalalignment=side)
        label.set_in_layout(False)
        placed.append(boxes[k])


def _inside(box, frame) -> bool:
    """Whether the display box ``box`` lies within ``frame`` (the axes)."""
    return frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def _label_box(ax, renderer, text: str, xy: tuple[float, float], offset: tuple[int, int], align: str):
    """The display box a label of ``text`` at ``offset`` points from ``xy`` would take (drawn, measured, removed)."""
    label = ax.annotate(text, xy, xytext=offset, textcoords="offset points", fontsize=8, horizontalalignment=align)
    box = label.get_window_extent(renderer)
    label.remove()
    return box


def _mark_boxes(ax, renderer) -> list:
    """Display boxes of what a label must not cover: every marker, cap and seed bar drawn (the lines that carry a
    marker, and the bars' line collections), not the reference lines across the axes."""
    from matplotlib.collections import LineCollection
    from matplotlib.transforms import Bbox

    lines = [line for line in ax.lines if line.get_marker() not in (None, "None", "", " ")]
    boxes = [line.get_window_extent(renderer) for line in lines]
    for bars in (c for c in ax.collections if isinstance(c, LineCollection)):  # their own extent reads empty here
        for segment in bars.get_segments():
            (x0, y0), (x1, y1) = ax.transData.transform(segment).min(0), ax.transData.transform(segment).max(0)
            boxes.append(Bbox([[x0 - 2, y0], [x1 + 2, y1]]))  # a bar is ~1.5 px wide: pad it to a target
    return boxes


def _noise_counts(t: dict[str, np.ndarray], j: int) -> tuple[float, float]:
    """The ad's evaluation clicks k (``ref_sum``) and rows n (``n``): the median over its rows with finite counts (one
    split every seed shares gives every row the same counts); NaN without them."""
    cond, k, n = _col(t, "condition"), _col(t, "ref_sum"), _col(t, "n")
    rows = (cond == j) & np.isfinite(k) & np.isfinite(n)
    return (float(np.median(k[rows])), float(np.median(n[rows]))) if rows.any() else (math.nan, math.nan)


def _has_counts(t: dict[str, np.ndarray]) -> bool:
    """Whether ``t`` holds each ad's evaluation clicks and rows: ``ref_sum`` and ``n``, the reference being the
    evaluation click rate (``reference`` absent or ``base_rate``; Σ p_true of a ``true_rate`` is no click count)."""
    ref = t.get("reference")
    return {"ref_sum", "n"} <= set(t) and (ref is None or all(str(r) == "base_rate" for r in ref))


def _band_half_widths(rates: np.ndarray) -> np.ndarray:
    """Half-width in ln(rate) of each ad's noise band: :data:`NOISE_HALF_WIDTH`, narrowed to half the distance to the
    nearest other ad's rate so that neighbouring bands never cover each other (an ad's band, not its neighbour's,
    says which of its ratios noise allows); at least :data:`MIN_BAND_HALF_WIDTH`, visible where rates coincide."""
    rates = np.asarray(rates, dtype=float)
    usable = np.flatnonzero(np.isfinite(rates) & (rates > 0))
    nearest = np.full(rates.shape, np.inf)
    if usable.size > 1:  # sorted, an ad's nearest rate is a neighbour: O(C log C), no C × C matrix at 10^4+ ads
        order = usable[np.argsort(rates[usable], kind="stable")]
        steps = np.diff(np.log(rates[order]))
        nearest[order] = np.minimum(np.append(np.inf, steps), np.append(steps, np.inf))
    return np.clip(nearest / 2, MIN_BAND_HALF_WIDTH, NOISE_HALF_WIDTH)


def _point_spreads(rates: np.ndarray) -> np.ndarray:
    """Per ad, how far in ln(rate) its outermost loss's point sits from its rate: :data:`LOSS_SHIFT`, or less, so that
    an ad's points stay inside its own noise band (:func:`_band_half_widths`)."""
    return np.minimum(LOSS_SHIFT, 0.8 * _band_half_widths(rates))


def _noise_bands(ax, t: dict[str, np.ndarray], ids: np.ndarray, rates: np.ndarray, mids: list[float]) -> list[int]:
    """Behind each drawn ad, the ratios evaluation noise alone allows a calibrated model: r / r̂ ∈ [L / r̂, U / r̂],
    [L, U] the Wilson interval (``NOISE_CONFIDENCE``) of r̂ = k / n from the ad's k evaluation clicks in n rows
    (:func:`_noise_counts`), computed by :func:`le_ray.report.bottom_line.noise_range` (the verdict's range); drawn
    over x ∈ rate × e^±NOISE_HALF_WIDTH. No band for an ad without a click or a row. Returns the banded indices."""
    from le_ray.report.bottom_line import noise_range  # here: scipy.stats only for a table with counts

    banded, half = [], _band_half_widths(rates)
    for k, j in enumerate(ids):
        span = noise_range(*_noise_counts(t, int(j))) if np.isfinite(mids[k]) and np.isfinite(rates[k]) else None
        if span is None:
            continue
        x0, x1 = rates[k] * math.exp(-half[k]), rates[k] * math.exp(half[k])
        ax.add_patch(Rectangle((x0, span[0]), x1 - x0, span[1] - span[0], facecolor=NOISE_COLOR, alpha=NOISE_ALPHA,
                               linewidth=0, zorder=0.5, gid=f"noise band {int(j)}"))
        banded.append(k)
    return banded


def _noise_label() -> str:
    from le_ray.report.bottom_line import NOISE_CONFIDENCE

    return f"{NOISE_CONFIDENCE:.0%} Wilson range of a calibrated model's ratio,\nfrom the ad's evaluation clicks"


def _rate_legend(ax, losses: list[str], excluded_drawn: bool, banded: bool) -> None:
    """The legend outside the axes: a marker per loss, the calibrated line, then the excluded marker and the noise
    band when one is drawn."""
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=_loss_name(n))
               for c, n in zip(loss_colors(losses), losses)]
    handles.append(Line2D([], [], color="0.3", linestyle="--", label="calibrated (ratio 1)"))
    if excluded_drawn:
        handles.append(Line2D([], [], marker="o", linestyle="", color="0.4", markerfacecolor="none",
                              label="excluded: too few clicks to test"))
    if banded:
        handles.append(Patch(facecolor=NOISE_COLOR, alpha=NOISE_ALPHA, linewidth=0, label=_noise_label()))
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _rate_footnote(ax, rates: np.ndarray, n_losses: int, noise: str) -> None:
    shown = "every ad" if len(_labelled(rates)) == np.isfinite(rates).sum() else f"the {RAREST_LABELS} rarest ads"
    close = bool((_point_spreads(rates) < LOSS_SHIFT)[np.isfinite(rates)].any())
    spread = (f"; losses drawn side by side at the ad's rate ×{math.exp(-LOSS_SHIFT):.2f}–×{math.exp(LOSS_SHIFT):.2f}"
              + (" (closer where ads' rates are near)" if close else "")) if n_losses > 1 else ""
    ax.text(0.0, -0.12, f"point = median over seeds, bar = min–max over seeds{spread}; labels: {shown}"
            + (f"\n{noise}" if noise else ""), transform=ax.transAxes, fontsize=8, color="0.35", va="top")


def _noise_note(drawn: int, banded: int, noise: bool, counted: bool) -> str:
    """The footnote's line on the noise band: what it is, and which drawn ads have none and why."""
    if not noise or not drawn:
        return ""
    if not counted:
        return "no evaluation-noise band: the table lacks the ads' evaluation clicks and rows"
    what = ("shaded band = " + _noise_label().replace("\n", " ")) if banded else ""
    none = "no band for an ad without an evaluation click" if banded < drawn else ""
    return "; ".join(x for x in (what, none) if x)


def plot_calibration_by_rate(table: Any, *, excluded: Sequence[int] = (), reference: str = "base rate",
                             title: str = "Calibration by base rate",
                             edges: Sequence[float] | None = None, noise: bool = True) -> Figure:
    """Per ad and loss: calibration ratio (mean prediction / rate, log; 1 = calibrated) vs the ad's rate (log, %).

    ``table``: long table with columns loss, condition, ad_id (or value), base_rate and ratio, one row per
    seed × loss × condition, and optionally n and ref_sum (the ad's evaluation rows and clicks) and reference.
    Each point is the median over seeds, its bar the min–max over seeds; losses are
    offset slightly along x so their bars do not overlap; the x axis has a labelled tick at every decade (and a
    dotted line at each non-decade band edge in ``edges``); points are labelled by ad id (every ad up to
    MAX_RATE_LABELS, else the RAREST_LABELS rarest); ads in ``excluded`` (too few clicks to test) are drawn
    hollow, with a legend entry only when one is drawn. With ``noise`` (the reference is the evaluation click rate
    of one split every seed shares) and the counts in the table, a shaded band behind each ad with k ≥ 1 clicks in
    n rows spans [L / r̂, U / r̂], [L, U] the Wilson interval of r̂ = k / n: the ratios a calibrated model can show
    from evaluation noise alone (:func:`_noise_bands`).
    """
    t = _as_table(table)
    fig, axes = _figure(11, 7)
    ax = axes[0, 0]
    _label(ax, title, f"{reference} of the ad (log; a tick per decade)",
           f"calibration ratio = mean prediction / {reference} (log; 1 = calibrated)")
    if not _rows(t):
        _no_data(ax)
        return fig
    order = list(registry.LOSSES)
    losses = sorted(dict.fromkeys(str(x) for x in t["loss"]), key=lambda n: order.index(n) if n in order else 99)
    ids, rates, names = _ad_points(t)
    excluded = {int(j) for j in excluded}
    mids = _draw_losses(ax, t, losses, ids, rates, excluded)
    counted = _has_counts(t)
    banded = _noise_bands(ax, t, ids, rates, mids) if noise and counted else []
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1)
    _decade_axis(ax, rates, edges)
    ratio_axis(ax)
    ax.grid(True, which="both", alpha=0.3)
    drawn = int(sum(np.isfinite(m) and np.isfinite(r) for m, r in zip(mids, rates)))
    _rate_legend(ax, losses, any(int(j) in excluded and np.isfinite(m) for j, m in zip(ids, mids)), bool(banded))
    _rate_footnote(ax, rates, len(losses), _noise_note(drawn, len(banded), noise, counted))
    labelled = sorted((k for k in _labelled(rates) if np.isfinite(mids[k])), key=lambda k: rates[k])
    _place_labels(ax, [(rates[k], mids[k]) for k in labelled],
                  [f"ad {names[k]}" + (" (too few clicks)" if int(ids[k]) in excluded else "") for k in labelled])
    return fig
