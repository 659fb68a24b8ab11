"""le_ray.report.plots: every plot renders a readable PNG, with titles, labels and legends, on edge cases too. The
sweep's figures (le_ray.report.plots.sweep_figures) have their details tested in tests/test_sweep_figures.py."""

from __future__ import annotations

import os

import matplotlib.image as mpimg
import numpy as np
import polars as pl
from matplotlib.colors import to_rgb
import pytest

from le_ray.report import plots as P

from .plot_cases import RNG, check_png, comparison_table, delta_table, rates, render


# --------------------------------------------------------------------------- fake data


def names(c: int) -> list[str]:
    return [f"ad_{i}" for i in range(c)]


def curves(n: int = 5, scale: float = 3e-5) -> dict:
    return {"epoch": list(range(n)), "train_loss": list(scale * 0.8 ** np.arange(n)),
            "eval_loss": list(scale * 0.85 ** np.arange(n))}


def preds(c: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    cond = RNG.integers(0, c, n)
    return np.clip(rates(c)[cond] * np.exp(RNG.normal(0, 1, n)), 0, 1), cond


def calib_series(c: int) -> dict:
    return {k: {"base_rate": rates(c), "calibration_ratio": np.exp(RNG.normal(0, .3, c)),
                "count": RNG.integers(10, 10_000, c)} for k in ("bce", "localized_entropy")}


def reliability(nbins: int = 10) -> pl.DataFrame:
    pred = np.logspace(-6, -0.3, nbins)
    lab = pred * np.exp(RNG.normal(0, .2, nbins))
    return pl.DataFrame({"bin": range(nbins), "count": RNG.integers(1, 10_000, nbins), "avg_pred": pred,
                         "avg_label": lab, "avg_label_low": lab * .8, "avg_label_high": lab * 1.2})


def le_table(c: int) -> dict:
    r = rates(c)
    den = 100 * -(r * np.log(r) + (1 - r) * np.log1p(-r))
    return {"condition": list(range(c)), "numerator": den * 1.1, "denominator": den,
            "count": [100] * c, "base_rate": r}


def filter_table(v: int) -> pl.DataFrame:
    count = RNG.integers(1, 100_000, v)
    mean = RNG.binomial(count, 0.02) / count
    return pl.DataFrame({"value": [f"v{i}" for i in range(v)], "count": count, "mean": mean,
                         "selected": np.arange(v) < 3})


def grad_table(c: int) -> dict:
    return {"condition": list(range(c)), "count": RNG.integers(10, 10_000, c),
            **{k: np.exp(RNG.normal(0, 1, c)) for k in
               ("ratio_raw", "ratio_normalised", "class_ratio_bce", "class_ratio_le")}}


def gap_table(c: int) -> dict:
    p = RNG.uniform(0, 0.2, c)
    return {"condition": names(c), "base_rate": rates(c), "baseline_gap": RNG.uniform(0, .5, c),
            "candidate_gap": RNG.uniform(0, .5, c), "significant": p < 0.05, "p_value": p}


def feature_args(c: int, n: int = 1000, f: int = 3) -> tuple:
    cond = RNG.integers(0, c, n)
    return RNG.normal(size=(n, f)), [f"x{j}" for j in range(f)], cond, names(c)


#: name → (builder(c) of a figure for c conditions / rows, whether it draws several series)
BUILDERS = {
    "avg": (lambda c: P.plot_avg_vs_train_rate(names(c), rates(c), rates(c), rates(c)), True),
    "loss": (lambda c: P.plot_loss_curves({**curves(), "batch_step": [0, 10, 20], "batch_train_loss": [3, 2, 1],
                                           "batch_eval_loss": [3, 2.5, 2]}), True),
    "preds": (lambda c: P.plot_prediction_histograms(*preds(c), names(c)), True),
    "calibration": (lambda c: P.plot_calibration_ratio(calib_series(c)), True),
    "reliability": (lambda c: P.plot_reliability_diagram({"bce": reliability(), "localized_entropy": reliability()}),
                    True),
    "features": (lambda c: P.plot_feature_distributions(*feature_args(c)), True),
    "le_stats": (lambda c: P.plot_le_stats(le_table(c)), True),
    "filter": (lambda c: P.plot_filter_stats(filter_table(c)), True),
    "grad_sq": (lambda c: P.plot_grad_sq(grad_table(c)), True),
    "deltas": (lambda c: P.plot_paired_deltas(delta_table(3, 6)), True),
    "gaps": (lambda c: P.plot_condition_gaps(gap_table(c)), True),
    "band": (lambda c: P.plot_curves_band({"bce": [curves(5, .05), curves(4, .05)],
                                           "localized_entropy": [curves(), curves()]}), True),
    "comparison": (lambda c: P.plot_comparison_calibration(comparison_table(c)), True),
}


# --------------------------------------------------------------------------- checks


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def has_title(fig) -> bool:
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return bool(sup) or all(ax.get_title() for ax in visible_axes(fig))


def has_legend(fig) -> bool:
    return bool(fig.legends) or any(ax.get_legend() is not None for ax in visible_axes(fig))


def texts(fig) -> str:
    sup = fig._suptitle.get_text() if fig._suptitle is not None else ""
    parts = [sup] + [t.get_text() for ax in fig.axes for t in ax.texts]
    parts += [ax.get_title() + ax.get_xlabel() + ax.get_ylabel() for ax in fig.axes]
    return "\n".join(parts)


def check_labels(fig, *, legend: bool = True) -> None:
    axes = visible_axes(fig)
    assert axes and has_title(fig)
    assert all(ax.get_ylabel() for ax in axes), [ax.get_ylabel() for ax in axes]
    assert any(ax.get_xlabel() for ax in axes)
    if legend:
        assert has_legend(fig)


def is_no_data(fig) -> bool:
    return "no data" in texts(fig)


# --------------------------------------------------------------------------- every plot, normal inputs


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_plot_renders_with_labels(name, tmp_path):
    build, several = BUILDERS[name]
    fig = build(15)
    check_labels(fig, legend=several)
    assert not is_no_data(fig)
    render(fig, tmp_path, f"{name}.png")


def test_default_dpi_gives_readable_size(tmp_path):
    fig = P.plot_avg_vs_train_rate(names(3), rates(3), rates(3))
    size = tuple(fig.get_size_inches())
    path = P.save_figure(fig, tmp_path / "avg.png")
    check_png(path, size, dpi=110)
    assert mpimg.imread(path).shape[1] >= 800


# --------------------------------------------------------------------------- save_figure


def test_save_figure_overwrites_atomically_and_cleans_up(tmp_path):
    target = tmp_path / "sub" / "loss.png"
    target.parent.mkdir()
    target.write_bytes(b"old")
    render(P.plot_loss_curves(curves()), tmp_path / "sub", "loss.png")
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["loss.png"]


def test_save_figure_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "avg.png"
    target.write_bytes(b"old")
    fig = P.plot_loss_curves(curves())

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(RuntimeError):
        P.save_figure(fig, target)
    assert target.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["avg.png"]


# --------------------------------------------------------------------------- empty inputs


EMPTY = {
    "avg": lambda: P.plot_avg_vs_train_rate([], np.array([]), np.array([])),
    "loss": lambda: P.plot_loss_curves({"epoch": [], "train_loss": [], "eval_loss": []}),
    "preds": lambda: P.plot_prediction_histograms(np.array([]), np.array([], dtype=int), []),
    "calibration": lambda: P.plot_calibration_ratio({}),
    "reliability": lambda: P.plot_reliability_diagram({"bce": pl.DataFrame(
        schema={"bin": pl.Int64, "count": pl.Int64, "avg_pred": pl.Float64, "avg_label": pl.Float64})}),
    "features": lambda: P.plot_feature_distributions(np.zeros((0, 2)), ["a", "b"], np.array([], dtype=int), []),
    "le_stats": lambda: P.plot_le_stats({}),
    "filter": lambda: P.plot_filter_stats(pl.DataFrame(schema={"value": pl.String, "count": pl.Int64,
                                                               "mean": pl.Float64, "selected": pl.Boolean})),
    "grad_sq": lambda: P.plot_grad_sq({}),
    "deltas": lambda: P.plot_paired_deltas({"metric": [], "seed": [], "delta": []}),
    "gaps": lambda: P.plot_condition_gaps(pl.DataFrame()),
    "band": lambda: P.plot_curves_band({}),
    "comparison": lambda: P.plot_comparison_calibration({"condition": [], "base_rate": []}),
}


def test_empty_inputs_cover_every_plot():
    assert set(EMPTY) == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(EMPTY))
def test_empty_inputs_draw_no_data(name, tmp_path):
    fig = EMPTY[name]()
    assert is_no_data(fig)
    check_labels(fig, legend=False)
    render(fig, tmp_path)


def test_loss_curves_none_and_partial_keys(tmp_path):
    render(P.plot_loss_curves({}), tmp_path, "a.png")
    fig = P.plot_loss_curves({"epoch": [0, 1, 2], "train_loss": [2.0, 1.0], "eval_loss": [3.0, 2.0, 1.0],
                              "batch_step": [], "batch_train_loss": []})
    assert len(visible_axes(fig)) == 1  # no batch panel without batch data
    train = fig.axes[0].get_lines()[0]
    assert list(train.get_xdata()) == [1.0, 2.0]  # a shorter series belongs to the last epochs
    render(fig, tmp_path, "b.png")


# --------------------------------------------------------------------------- NaN and zero values


def test_nan_values_are_skipped(tmp_path):
    r = rates(6)
    pred = r.copy()
    pred[[1, 3]] = np.nan
    fig = P.plot_avg_vs_train_rate(names(6), r, pred)
    assert fig.axes[0].collections[0].get_offsets().shape[0] == 4
    render(fig, tmp_path, "avg.png")
    p, cond = preds(3)
    p[:10] = np.nan
    fig = P.plot_prediction_histograms(p, cond, names(3))
    assert sum(patch.get_path().vertices.size > 0 for patch in fig.axes[0].patches) > 0
    table = reliability().with_columns(avg_label=pl.when(pl.col("bin") < 3).then(None).otherwise(pl.col("avg_label")))
    fig = P.plot_reliability_diagram({"bce": table})
    assert fig.axes[0].get_lines()[0].get_xdata().size == 7
    render(fig, tmp_path, "rel.png")
    curves_nan = {"epoch": [0, 1, 2], "train_loss": [np.nan, 1.0, 0.5], "eval_loss": [None, 2.0, 1.0]}
    render(P.plot_loss_curves(curves_nan), tmp_path, "loss.png")
    x = RNG.normal(size=(100, 2))
    x[:, 1] = np.nan
    fig = P.plot_feature_distributions(x, ["a", "b"], RNG.integers(0, 2, 100), names(2))
    assert not fig.axes[0].texts and "no data" in [t.get_text() for t in fig.axes[1].texts]
    gaps = gap_table(5)
    gaps["candidate_gap"][0] = np.nan
    assert sum(len(c.get_offsets()) for c in P.plot_condition_gaps(gaps).axes[0].collections) == 4


def test_all_nan_draws_no_data(tmp_path):
    nan = np.full(4, np.nan)
    assert is_no_data(P.plot_avg_vs_train_rate(names(4), nan, nan))
    assert is_no_data(P.plot_calibration_ratio({"bce": {"base_rate": nan, "calibration_ratio": nan}}))
    assert is_no_data(P.plot_paired_deltas({"metric": ["a"] * 4, "seed": range(4), "delta": nan}))
    render(P.plot_grad_sq({"condition": range(4), "count": nan, "ratio_raw": nan, "ratio_normalised": nan,
                           "class_ratio_bce": nan, "class_ratio_le": nan}), tmp_path)


def test_zero_probabilities_are_clipped_and_labelled(tmp_path):
    r = rates(5)
    r[0] = 0.0
    fig = P.plot_avg_vs_train_rate(names(5), r, np.where(r > 0, r, 0.0))
    assert "drawn at 1e-07" in fig.axes[0].get_xlabel() and "drawn at 1e-07" in fig.axes[0].get_ylabel()
    assert fig.axes[0].get_xscale() == "log"
    render(fig, tmp_path, "avg.png")
    p, cond = preds(3)
    p[:7] = 0.0
    fig = P.plot_prediction_histograms(p, cond, names(3))
    assert "7 rows clipped" in fig.axes[0].get_xlabel()
    table = reliability().with_columns(avg_label=pl.when(pl.col("bin") == 0).then(0.0).otherwise(pl.col("avg_label")))
    fig = P.plot_reliability_diagram({"bce": table})
    assert "drawn at 1e-07" in fig.axes[0].get_ylabel()
    stats = filter_table(20).with_columns(mean=pl.when(pl.col("count") > 0).then(0.0))
    fig = P.plot_filter_stats(stats)
    assert "≤ 0 drawn at" in fig.axes[0].get_ylabel() and fig.axes[0].get_yscale() == "log"
    render(fig, tmp_path, "filter.png")
    gaps = gap_table(5)
    gaps["baseline_gap"][:] = [0.0, 0.1, 0.2, 0.3, 0.0]
    gaps["candidate_gap"][:] = [0.05, 0.1, 0.3, 0.2, 0.4]
    fig = P.plot_condition_gaps(gaps)
    assert "2 values ≤ 0 drawn at 1e-03" in fig.axes[0].get_xlabel()
    render(fig, tmp_path, "gaps.png")


def test_loss_axis_log_only_when_positive():
    assert P.plot_loss_curves(curves()).axes[0].get_yscale() == "log"
    negative = {"epoch": [0, 1], "train_loss": [1.0, -0.5], "eval_loss": [1.0, 0.5]}
    assert P.plot_loss_curves(negative).axes[0].get_yscale() == "linear"


# --------------------------------------------------------------------------- one and many conditions


@pytest.mark.parametrize("name", ["avg", "preds", "calibration", "features", "le_stats", "filter", "grad_sq",
                                  "gaps", "comparison"])
def test_single_condition(name, tmp_path):
    fig = BUILDERS[name][0](1)
    check_labels(fig)
    assert not is_no_data(fig)
    render(fig, tmp_path)


def test_many_conditions_histograms_show_top_12(tmp_path):
    p, cond = preds(200, n=5000)
    fig = P.plot_prediction_histograms(p, cond, names(200))
    assert "top 12 of" in fig.axes[0].get_title()
    assert len(fig.axes[0].get_legend().get_texts()) == 13  # 12 conditions + all rows
    render(fig, tmp_path, "preds.png")
    fig = P.plot_feature_distributions(*feature_args(200, n=3000, f=2))
    assert "top 12 of" in fig._suptitle.get_text()
    assert len(fig.legends[0].get_texts()) == 12
    render(fig, tmp_path, "features.png")
    fig = P.plot_feature_distributions(*feature_args(20, n=500, f=1), max_conditions=3)
    assert len(fig.legends[0].get_texts()) == 3 and "top 3 of 20" in fig._suptitle.get_text()


@pytest.mark.parametrize("name", ["avg", "calibration", "le_stats", "grad_sq", "gaps", "comparison"])
def test_many_conditions_scatter_plots_draw_all(name):
    fig = BUILDERS[name][0](200)
    ax = fig.axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) >= 200 or len(ax.patches) == 200
    assert not ax.texts  # no per-point names beyond 20 conditions


def test_point_labels_up_to_20_conditions():
    fig = P.plot_avg_vs_train_rate(names(5), rates(5), rates(5))
    assert sorted(t.get_text() for t in fig.axes[0].texts) == sorted(names(5))


# --------------------------------------------------------------------------- table formats and details


def test_tables_accept_dicts_and_polars():
    table = le_table(4)
    for i, t in enumerate((table, pl.DataFrame(table))):
        fig = P.plot_le_stats(t)
        assert len(fig.axes[0].patches) == 4
    rows = delta_table(2, 3)
    for i, t in enumerate((rows, rows.to_dict(as_series=False))):
        fig = P.plot_paired_deltas(t)
        assert "delta > 0 favours the candidate" in fig._suptitle.get_text()
        assert len(visible_axes(fig)) == 2


def test_calibration_ratio_dict_form_and_reference_line():
    fig = P.plot_calibration_ratio(calib_series(8))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()][:2] == ["BCE (8 conditions)", "LE (8 conditions)"]
    assert any(np.allclose(line.get_ydata(), 1.0) for line in ax.get_lines())
    sizes = ax.collections[0].get_sizes()
    assert sizes.min() < sizes.max()  # marker area follows the counts


def test_reliability_band_and_linear_scale():
    fig = P.plot_reliability_diagram({"bce": reliability()}, log_scale=False)
    top, bottom = fig.axes[0], fig.axes[1]
    assert top.get_xscale() == "linear" and bottom.get_yscale() == "log"
    assert "spread over seeds" in " ".join(t.get_text() for t in top.get_legend().get_texts())
    empty_bins = reliability().with_columns(count=pl.when(pl.col("bin") < 4).then(0).otherwise(pl.col("count")))
    assert P.plot_reliability_diagram({"bce": empty_bins}).axes[0].get_lines()[0].get_xdata().size == 6


def test_curves_band_one_panel_per_loss():
    fig = P.plot_curves_band({"bce": [curves(5, .05), curves(3, .05)], "localized_entropy": [curves()]})
    axes = visible_axes(fig)
    assert [ax.get_title() for ax in axes] == ["BCE (2 seeds)", "LE (1 seed)"]
    assert all(ax.get_yscale() == "log" for ax in axes)


def test_condition_colors_are_stable_across_plots():
    assert P.condition_color(3) == P.condition_color(23)
    assert P.condition_color(3) != P.condition_color(4)
    assert P.loss_colors(["localized_entropy", "bce"]) == P.loss_colors(["LE", "BCE"])


def test_tuning_curves_best_so_far_and_samples(tmp_path):
    from le_ray.report.tuning import best_so_far

    finals = {"bce": [0.05, 0.04, None, 0.045], "localized_entropy": [0.3, 0.049]}
    curves = {k: best_so_far(v, higher_is_better=False) for k, v in finals.items()}
    assert curves["bce"] == [0.05, 0.04, 0.04, 0.04]
    fig = P.plot_tuning_curves(curves, finals, metric="logloss")
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    assert list(ax.lines[0].get_ydata()) == [0.05, 0.04, 0.04, 0.04]
    render(fig, tmp_path, "tuning.png")


def test_equal_mass_rows_per_bin_are_drawn_linearly_from_zero():
    """Equal-mass bins of 468 and 469 rows: a log axis labelled 4.680×10² … 4.69×10² and drew the one-row
    difference as a zigzag (figure audit)."""
    table = reliability().with_columns(count=pl.Series([468, 469] * 5))
    fig = P.plot_reliability_diagram({"bce": table})
    bottom = fig.axes[1]
    fig.canvas.draw()
    assert bottom.get_yscale() == "linear" and bottom.get_ylim()[0] == 0 and bottom.get_ylabel() == "rows"
    assert not any("times" in t.get_text() or "$" in t.get_text() for t in bottom.get_yticklabels())


def test_loss_curves_write_plain_ticks_and_keep_the_losses_colours_for_losses():
    fig = P.plot_loss_curves(curves())
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
    assert labels and not any("$" in x for x in labels)  # 0.0001, not 10^-4
    loss_rgb = {tuple(np.round(to_rgb(c), 3)) for c in P.loss_colors(["bce", "localized_entropy", "focal"])}
    assert not {tuple(np.round(to_rgb(line.get_color()), 3)) for line in ax.get_lines()} & loss_rgb


def test_losses_at_the_same_point_keep_apart_by_marker():
    same = {"base_rate": np.array([0.01, 0.02]), "calibration_ratio": np.array([0.87, 1.1])}
    ax = P.plot_calibration_ratio({"bce": same, "localized_entropy": same}).axes[0]
    paths = [c.get_paths()[0].vertices.shape for c in ax.collections]
    assert len(paths) == 2 and paths[0] != paths[1]  # a circle and a square, not one disc over the other


def test_feature_axes_name_the_units_the_values_are_in():
    """The run's figure was titled 'standardised' while every axis said 'input units' (figure audit)."""
    fig = P.plot_feature_distributions(*feature_args(2), units="standardised: sd units")
    assert {ax.get_xlabel() for ax in visible_axes(fig)} == {"feature value (standardised: sd units)"}
    assert {ax.get_xlabel() for ax in visible_axes(P.plot_feature_distributions(*feature_args(2)))} == {
        "feature value (input units)"}


# --------------------------------------------------------------------------- shared bins, counted band minima


def _step_edges(fig) -> np.ndarray:
    """The x coordinates of every drawn histogram's steps (the bin edges it uses)."""
    xs = [patch.get_path().vertices[:, 0] for patch in fig.axes[0].patches]
    return np.unique(np.round(np.concatenate(xs), 9))


def test_prediction_histograms_of_two_losses_share_bin_edges():
    p, cond = preds(3)
    narrow = np.clip(p, 1e-3, 0.05)  # another loss's predictions: a narrower, shifted range
    wide_edges, narrow_edges = (_step_edges(P.plot_prediction_histograms(x, cond, names(3))) for x in (p, narrow))
    assert np.isin(narrow_edges, wide_edges).all()  # the same grid wherever the two overlap
    assert np.allclose(np.diff(narrow_edges), 0.05)  # 20 bins a decade
    ax = P.plot_prediction_histograms(narrow, cond, names(3)).axes[0]
    assert ax.get_xlim() == (-3.0, -1.0)  # whole decades around log10 1e-3 .. log10 0.05


def test_decade_grid_edges_cover_every_value():
    from le_ray.report.plots.calibration import decade_grid_edges
    for values in (np.array([-2.0]), np.array([-2.0, 0.0]), np.array([-6.98, -0.01]), np.array([-0.05, -0.05]),
                   np.array([-3.8500000000000005]), np.array([0.0])):  # a hair below k / 20 (review); p = 1
        edges = decade_grid_edges(values, 20)
        counts, _ = np.histogram(values, bins=edges)
        assert counts.sum() == values.size and edges.size >= 2
        assert np.allclose(edges * 20, np.round(edges * 20))  # on the grid
    assert decade_grid_edges(np.array([-1.3, 0.0]), 20)[-1] == 0.0  # p = 1 adds no bin of p > 1
    rng = np.random.default_rng(3)  # values at and a few ulps around many grid points: none dropped
    grid = np.arange(-140, 1) / 20
    near = np.concatenate([np.nextafter(grid, -np.inf), grid, np.nextafter(grid, np.inf)])
    for values in (near, rng.choice(near, 50)):
        values = values[values <= 0]
        assert np.histogram(values, bins=decade_grid_edges(values, 20))[0].sum() == values.size
        assert all(np.histogram([v], bins=decade_grid_edges(np.array([v]), 20))[0].sum() == 1 for v in values)


def test_reliability_band_minima_of_zero_are_counted():
    table = reliability().with_columns(avg_label_low=pl.when(pl.col("bin") < 2).then(0.0)
                                       .otherwise(pl.col("avg_label_low")))
    label = P.plot_reliability_diagram({"bce": table}).axes[0].get_ylabel()
    assert "2 band minima of 0 drawn at" in label and "without clicks" not in label
    table = table.with_columns(avg_label=pl.when(pl.col("bin") == 0).then(0.0).otherwise(pl.col("avg_label")))
    label = P.plot_reliability_diagram({"bce": table}).axes[0].get_ylabel()
    assert "1 bin without clicks and 1 band minimum of 0 drawn at" in label
    assert "band" not in P.plot_reliability_diagram({"bce": reliability()}).axes[0].get_ylabel()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_log_axis_writes_its_ticks_plainly(name):
    fig = BUILDERS[name][0](6)
    fig.canvas.draw()
    labels = [t.get_text() for ax in visible_axes(fig) for axis in (ax.xaxis, ax.yaxis) if axis.get_scale() == "log"
              for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True) if t.get_text()]  # shared x: one labelled
    if name in ("avg", "preds", "calibration", "reliability", "le_stats", "filter", "grad_sq", "gaps", "comparison"):
        assert labels, name  # these draw log axes
    assert not any("$" in x for x in labels), (name, labels)  # 0.0001, not 10^-4


def test_avg_figure_names_its_diagonal_the_train_rate_not_calibration():
    legend = [t.get_text() for t in BUILDERS["avg"][0](4).axes[0].get_legend().get_texts()]
    assert "y = x (equal to the train click rate)" in legend and not any("calibrated" in x for x in legend)
