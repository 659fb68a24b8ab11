"""Loss curves: one run's train / eval curves, the seed band of a sweep, tuning curves."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from le_ray.report.plots.axes import (
    LOSS_UNITS, _align, _figure, _floats, _grid, _label, _legend, _log_y_if_positive, _loss_name, _no_data,
    log_axes, loss_colors,
)

#: train and eval lines: neutral colours, never a loss's own (BCE blue, LE orange, focal green)
TRAIN_COLOR, EVAL_COLOR = "0.15", "tab:purple"


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
    optionally ``train_ne``, ``eval_ne`` (normalised entropy: one per-row scale for every loss; LE's train and eval
    values are each a weighted mean of per-batch LE at the training batch size, but the train value's batches
    also hold the cross-batch windows when they are on)
    and ``batch_step``, ``batch_train_loss``, ``batch_eval_loss`` (a "loss by batch" panel).  A y series
    shorter than its x belongs to the last x values; a y axis is logarithmic when all its values are > 0.
    """
    c = curves or {}
    epoch, step = _floats(c.get("epoch")), _floats(c.get("batch_step"))
    panels = [("loss by epoch (each loss on its own normalisation)", epoch,
               [("train", _floats(c.get("train_loss")), TRAIN_COLOR), ("eval", _floats(c.get("eval_loss")), EVAL_COLOR)],
               "epoch (0 = before training)")]
    if _floats(c.get("eval_ne")).size:
        panels.append(("normalised entropy by epoch (one scale for train and eval)", epoch,
                       [("train NE", _floats(c.get("train_ne")), TRAIN_COLOR),
                        ("eval NE", _floats(c.get("eval_ne")), EVAL_COLOR)], "epoch (0 = before training)"))
    batch = [("train", _floats(c.get("batch_train_loss")), TRAIN_COLOR),
             ("eval", _floats(c.get("batch_eval_loss")), EVAL_COLOR)]
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
            ax.fill_between(ep, lo, hi, color=EVAL_COLOR, alpha=0.25, label="eval min–max over seeds")
            ax.plot(ep, mean, marker="o", markersize=4, color=EVAL_COLOR, label="eval mean")
        if tep.size:
            ax.plot(tep, tmean, linestyle="--", color=TRAIN_COLOR, label="train mean")
        if _log_y_if_positive(ax, lo, hi, tmean):
            ax.set_ylabel(f"{units}, log scale")
        ax.grid(True, alpha=0.3)
        _legend(ax)
    for ax in list(axes.flat)[len(losses):]:
        ax.set_visible(False)
    return fig


# --------------------------------------------------------------------------- 13. BCE vs LE calibration


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
        log_axes(ax, "y")
        ax.set_ylabel(f"validation {metric} (log)")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig
