"""The rare-ad picture of a sweep: each ad's calibration ratio (mean prediction / its rate) against its rate, a
labelled tick per decade, ads named by their ad id, and each ad's evaluation-noise band (the ratios a calibrated
model can show from the ad's evaluation clicks alone). Per-ad quantities come from one group-by of the long table
per loss, so the picture costs seconds at 20,000 ads; beyond :data:`MANY_ADS` ads it draws points alone."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter

from le_ray import registry
from le_ray.report.plots.axes import _as_table, _col, _figure, _label, _loss_name, _no_data, _rows, loss_colors, \
    ratio_axis

__all__ = ["plot_calibration_by_rate", "MANY_ADS"]


MAX_RATE_LABELS = 12  #: the rare-ad picture labels every ad up to this many ...
RAREST_LABELS = 5  #: ... and only the rarest this many beyond that
#: beyond this many drawn ads the picture draws each loss's medians as small points, without seed bars or noise bands
#: (thousands of bars cover one another, and a matplotlib artist per ad took minutes at 20,000 ads)
MANY_ADS = 200
LOSS_SHIFT = 0.08  #: the losses' points of one ad sit at its rate × e^±LOSS_SHIFT (side by side, bars apart), or
#: closer, inside the ad's own noise band, where another ad's rate is near (:func:`_band_half_widths`)
NOISE_HALF_WIDTH = 1.5 * LOSS_SHIFT  #: an ad's evaluation-noise band spans its rate × e^±NOISE_HALF_WIDTH along x
MIN_BAND_HALF_WIDTH = 0.25 * LOSS_SHIFT  #: ... or less, down to this, where another ad's rate is near
#: the noise band's light shade, behind the points; opaque, so the bands of ads at nearby rates overlap without
#: darkening into a shade that reads as more noise
NOISE_COLOR, NOISE_ALPHA = "0.88", 1.0


def _ad_points(t: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per condition id (sorted): its reference rate (first finite positive value, else NaN) and its ad id (from
    its first row), found by one sort of the table, not one scan of it per ad."""
    cond, rate = _col(t, "condition"), _col(t, "base_rate")
    key = "ad_id" if "ad_id" in t else "value" if "value" in t else None
    rows = np.flatnonzero(np.isfinite(cond))
    ids, first = np.unique(cond[rows].astype(int), return_index=True)
    names = [str(t[key][i]) for i in rows[first]] if key else [str(j) for j in ids]
    good = rows[np.isfinite(rate[rows]) & (rate[rows] > 0)]
    rated, first_good = np.unique(cond[good].astype(int), return_index=True)
    rates = np.full(ids.size, np.nan)
    rates[np.searchsorted(ids, rated)] = rate[good[first_good]]
    return ids, rates, names


def _ad_stats(t: dict[str, np.ndarray], ids: np.ndarray, where: np.ndarray, **aggs: pl.Expr) -> dict[str, np.ndarray]:
    """Per ad of ``ids`` (sorted), each named polars aggregate of ``aggs`` (e.g. ``mid=pl.col("ratio").median()``)
    over the table's rows that ``where`` keeps; NaN for an ad without such a row. One group-by over the table (a mask
    per ad scanned it once per ad: minutes at 20,000 ads)."""
    keep = np.flatnonzero(where & np.isfinite(_col(t, "condition")))
    read = {c for expr in aggs.values() for c in expr.meta.root_names()}
    frame = pl.DataFrame({"condition": _col(t, "condition")[keep].astype(np.int64),
                          **{c: _col(t, c)[keep] for c in read}})
    found = frame.group_by("condition").agg(expr.alias(name) for name, expr in aggs.items())
    at = np.searchsorted(ids, found["condition"].to_numpy())
    out = {name: np.full(ids.size, np.nan) for name in aggs}
    for name in aggs:
        out[name][at] = found[name].to_numpy().astype(float)
    return out


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


def _draw_losses(ax, t, losses, ids, rates, excluded) -> np.ndarray:
    """Per loss and ad the median over seeds (a point) and min–max (a bar), from one group-by per loss; drawn as one
    point and bar per ad and loss up to :data:`MANY_ADS` drawn ads, beyond that as points alone (small, one call per
    loss: bars of thousands of ads cover one another). Returns each ad's median over its drawn points [C]."""
    ratio, loss_col = _col(t, "ratio"), np.asarray(t["loss"]).astype(str)
    sides = np.linspace(-1.0, 1.0, len(losses)) if len(losses) > 1 else np.zeros(1)
    spread, hollow = _point_spreads(rates), np.isin(ids, sorted(excluded))
    r = pl.col("ratio")
    stats = {loss: _ad_stats(t, ids, (loss_col == loss) & np.isfinite(ratio) & (ratio > 0), mid=r.median(),
                             lo=r.min(), hi=r.max()) for loss in losses}
    drawn = [np.isfinite(stats[loss]["mid"]) & np.isfinite(rates) for loss in losses]
    dense = int(np.any(drawn, axis=0).sum()) > MANY_ADS
    for color, loss, side, ok in zip(loss_colors(losses), losses, sides, drawn):
        s, x = stats[loss], rates * np.exp(side * spread)
        if dense:
            for sel, face in ((ok & ~hollow, color), (ok & hollow, "none")):
                ax.plot(x[sel], s["mid"][sel], "o", color=color, markerfacecolor=face, markersize=3, alpha=0.6)
            continue
        for k in np.flatnonzero(ok):
            ax.errorbar([x[k]], [s["mid"][k]], yerr=[[s["mid"][k] - s["lo"][k]], [s["hi"][k] - s["mid"][k]]],
                        fmt="o", color=color, markersize=7, markerfacecolor="none" if hollow[k] else color, capsize=3,
                        alpha=0.9)
    mids = np.array([np.where(ok, stats[loss]["mid"], np.nan) for loss, ok in zip(losses, drawn)])
    any_drawn, out = np.any(drawn, axis=0), np.full(ids.size, np.nan)
    out[any_drawn] = np.nanmedian(mids[:, any_drawn], axis=0)
    return out


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


def _noise_counts(t: dict[str, np.ndarray], ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per ad of ``ids``, its evaluation clicks k (``ref_sum``) and rows n (``n``): the median over its rows with
    finite counts (one split every seed shares gives every row the same counts); NaN without them."""
    k, n = _col(t, "ref_sum"), _col(t, "n")
    stats = _ad_stats(t, ids, np.isfinite(k) & np.isfinite(n), k=pl.col("ref_sum").median(), n=pl.col("n").median())
    return stats["k"], stats["n"]


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


def _noise_bands(ax, t: dict[str, np.ndarray], ids: np.ndarray, rates: np.ndarray, mids: np.ndarray) -> list[int]:
    """Behind each drawn ad, the ratios evaluation noise alone allows a calibrated model: r / r̂ ∈ [L / r̂, U / r̂],
    [L, U] the Wilson interval (``NOISE_CONFIDENCE``) of r̂ = k / n from the ad's k evaluation clicks in n rows
    (:func:`_noise_counts`), as :func:`le_ray.report.bottom_line.noise_range` gives the verdict (all ads at once:
    :func:`~le_ray.report.bottom_line.noise_ranges`); drawn over x ∈ rate × e^±NOISE_HALF_WIDTH. No band for an ad
    without a click or a row, nor beyond :data:`MANY_ADS` drawn ads. Returns the banded indices."""
    from le_ray.report.bottom_line import noise_ranges  # here: scipy only for a table with counts

    drawn = np.isfinite(mids) & np.isfinite(rates)
    if int(drawn.sum()) > MANY_ADS:
        return []
    low, high = noise_ranges(*_noise_counts(t, ids))
    banded, half = [], _band_half_widths(rates)
    for k in np.flatnonzero(drawn & np.isfinite(low)):
        x0, x1 = rates[k] * math.exp(-half[k]), rates[k] * math.exp(half[k])
        ax.add_patch(Rectangle((x0, low[k]), x1 - x0, high[k] - low[k], facecolor=NOISE_COLOR, alpha=NOISE_ALPHA,
                               linewidth=0, zorder=0.5, gid=f"noise band {int(ids[k])}"))
        banded.append(int(k))
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


def _rate_footnote(ax, rates: np.ndarray, n_losses: int, noise: str, drawn: int) -> None:
    shown = "every ad" if len(_labelled(rates)) == np.isfinite(rates).sum() else f"the {RAREST_LABELS} rarest ads"
    close = bool((_point_spreads(rates) < LOSS_SHIFT)[np.isfinite(rates)].any())
    spread = (f"; losses drawn side by side at the ad's rate ×{math.exp(-LOSS_SHIFT):.2f}–×{math.exp(LOSS_SHIFT):.2f}"
              + (" (closer where ads' rates are near)" if close else "")) if n_losses > 1 else ""
    what = ("point = median over seeds, bar = min–max over seeds" if drawn <= MANY_ADS else
            f"point = median over seeds ({drawn:,} ads, more than {MANY_ADS}: no seed bars or noise bands, which would "
            "cover one another;\nthe per-ad tables hold every ad)")
    ax.text(0.0, -0.12, f"{what}{spread}; labels: {shown}" + (f"\n{noise}" if noise else ""), transform=ax.transAxes,
            fontsize=8, color="0.35", va="top")


def _noise_note(drawn: int, banded: int, noise: bool, counted: bool) -> str:
    """The footnote's line on the noise band: what it is, and which drawn ads have none and why (nothing beyond
    :data:`MANY_ADS` drawn ads, where no band is drawn and the footnote says so)."""
    if not noise or not drawn or drawn > MANY_ADS:
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
    _rate_footnote(ax, rates, len(losses), _noise_note(drawn, len(banded), noise, counted), drawn)
    labelled = sorted((k for k in _labelled(rates) if np.isfinite(mids[k])), key=lambda k: rates[k])
    _place_labels(ax, [(rates[k], mids[k]) for k in labelled],
                  [f"ad {names[k]}" + (" (too few clicks)" if int(ids[k]) in excluded else "") for k in labelled])
    return fig
