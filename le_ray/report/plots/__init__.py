"""Report figures: one function per PNG, plain arrays / tables in, a ``Figure`` out; one module per family.

* :mod:`~le_ray.report.plots.axes`: saving (PNG, atomic, figure closed), figure jobs (``FigureJob``: a figure
  as plain data, drawn by :func:`render_png` in any process — the sweep driver hands them to its idle Ray
  workers), table access, one colour per condition and per loss, shared axes helpers.
* :mod:`~le_ray.report.plots.calibration`: a diagnostic run's calibration figures.
* :mod:`~le_ray.report.plots.curves`: loss curves of a run, the seed band of a sweep, tuning curves.
* :mod:`~le_ray.report.plots.data_figures`: data and LE internals (features, LE stats, filters, gradients).
* :mod:`~le_ray.report.plots.sweep_figures`: a sweep's comparison figures.
* :mod:`~le_ray.report.plots.rate_picture`: the rare-ad picture (calibration ratio against the ad's rate).

Conventions shared by every figure:

* Agg backend only; figures are built as ``matplotlib.figure.Figure`` objects (not registered
  with pyplot, so nothing leaks when a caller forgets to close one) and written with
  :func:`save_figure` (PNG, atomic, figure closed afterwards).
* A "table" is a Polars ``DataFrame`` or a dict of equal-length lists / arrays (columns).
* Every figure has a title, axis labels with units and a legend; empty inputs draw an axes with
  a "no data" note; NaN / inf values are skipped; values <= 0 on log axes are raised to a floor
  (1e-7 for probabilities) and the axis label says how many were raised.
* Per-condition histograms draw at most ``MAX_HIST_CONDITIONS`` conditions (the largest by
  rows, noted in the title); scatter-style plots draw every condition and label points only
  when there are at most ``MAX_POINT_LABELS`` of them.
"""


from le_ray.report.plots.axes import (
    MAX_HIST_CONDITIONS, MAX_POINT_LABELS, PROB_FLOOR, FigureJob, condition_color, loss_colors, render_png,
    save_figure, write_png,
)
from le_ray.report.plots.calibration import (
    plot_avg_vs_train_rate, plot_calibration_ratio, plot_prediction_histograms, plot_reliability_diagram,
)
from le_ray.report.plots.curves import plot_curves_band, plot_loss_curves, plot_tuning_curves
from le_ray.report.plots.data_figures import plot_feature_distributions, plot_filter_stats, plot_grad_sq, plot_le_stats
from le_ray.report.plots.rate_picture import plot_calibration_by_rate
from le_ray.report.plots.sweep_figures import plot_comparison_calibration, plot_condition_gaps, plot_paired_deltas

__all__ = [
    "PROB_FLOOR", "MAX_HIST_CONDITIONS", "MAX_POINT_LABELS", "save_figure", "FigureJob", "render_png", "write_png",
    "plot_avg_vs_train_rate", "plot_loss_curves", "plot_prediction_histograms", "plot_calibration_ratio",
    "plot_reliability_diagram", "plot_feature_distributions", "plot_le_stats", "plot_filter_stats",
    "plot_grad_sq", "plot_paired_deltas", "plot_condition_gaps", "plot_curves_band",
    "plot_comparison_calibration", "plot_calibration_by_rate", "condition_color", "loss_colors",
    "plot_tuning_curves",
]
