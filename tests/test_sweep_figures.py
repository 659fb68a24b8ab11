"""le_ray.report.plots.sweep_figures and .rate_picture: the sweep's figures in detail — the rare-ad calibration by
rate (seed bars, excluded ads, labels, ticks, Wilson noise bands), paired deltas, per-condition gaps and the
comparison of losses."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import to_rgb
import polars as pl
import pytest

from le_ray.report import plots as P

from .plot_cases import DPI, comparison_table, delta_table, render


def test_condition_gaps_significance_groups():
    t = {"condition": ["a", "b", "c"], "base_rate": [0.01, 0.02, 0.03], "baseline_gap": [0.2, 0.1, 0.3],
         "candidate_gap": [0.1, 0.2, 0.3], "significant": [True, True, False], "p_value": [0.01, 0.02, 0.5]}
    fig = P.plot_condition_gaps(t)
    labels = [x.get_text() for x in fig.axes[0].get_legend().get_texts()]
    assert labels[:3] == ["significant, favours LE (1)", "significant, favours BCE (1)", "not significant (1)"]
    assert "favour the candidate" in fig.axes[0].get_title()


def test_condition_gaps_points_are_named_by_ad_id():
    t = {"condition": [0, 1], "ad_id": ["17753", "18993"], "base_rate": [0.01, 0.02], "baseline_gap": [0.2, 0.1],
         "candidate_gap": [0.1, 0.2], "significant": [False, False], "p_value": [0.5, 0.5]}
    assert {x.get_text() for x in P.plot_condition_gaps(t).axes[0].texts} == {"17753", "18993"}


def test_condition_gaps_set_untestable_ads_apart_from_not_significant_ones():
    t = {"condition": [0, 1, 2], "base_rate": [0.01, 0.02, 0.03], "baseline_gap": [0.1, 0.2, 0.3],
         "candidate_gap": [0.05, 0.25, 0.1], "significant": [False, False, True], "p_value": [0.25, 0.5, 0.01],
         "untestable": [True, False, False]}
    fig = P.plot_condition_gaps(t)
    legend = [x.get_text() for x in fig.axes[0].get_legend().get_texts()]
    assert "untestable with these seeds (no test could reach alpha) (1)" in legend
    fig.canvas.draw()  # both log axes in plain numbers (3×10⁻⁴ and 4×10⁻⁴ printed over each other)
    ticks = [x.get_text() for a in (fig.axes[0].xaxis, fig.axes[0].yaxis) for x in a.get_ticklabels(which="both")]
    assert any(ticks) and not any("$" in x for x in ticks)
    assert "not significant (1)" in legend and "significant, favours LE (1)" in legend


def test_comparison_sorted_by_base_rate_with_names():
    t = comparison_table(4)
    fig = P.plot_comparison_calibration(t)
    order = np.argsort(t["base_rate"].to_numpy())
    ticks = [x.get_text() for x in fig.axes[0].get_xticklabels()]
    assert [s.split(" ")[0] for s in ticks] == [str(i) for i in order]
    assert [x.get_text() for x in fig.axes[0].get_legend().get_texts()][:3] == ["BCE", "LE", "focal"]


def _rate_table(rates, ratios=(0.8, 1.0, 1.5), losses=("bce", "localized_entropy")):
    rows = [(loss, j, str(17000 + j), rate, ratio) for loss in losses for j, rate in enumerate(rates)
            for ratio in ratios]
    return pl.DataFrame(rows, orient="row", schema=["loss", "condition", "ad_id", "base_rate", "ratio"])


def test_calibration_by_rate_draws_every_loss_with_seed_bars_and_hollow_excluded(tmp_path):
    from matplotlib.collections import LineCollection

    fig = P.plot_calibration_by_rate(_rate_table((0.2, 0.01, 0.001)), excluded=[2])
    ax = fig.axes[0]
    markers = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(markers) == 6  # 2 losses × 3 conditions, one median point each
    assert sum(line.get_markerfacecolor() == "none" for line in markers) == 2  # the excluded condition, per loss
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert bars and all(np.allclose(seg[:, 1], [0.8, 1.5]) for c in bars for seg in c.get_segments())
    assert {t.get_text() for t in ax.texts} >= {"ad 17000", "ad 17001", "ad 17002 (too few clicks)"}
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "excluded: too few clicks to test" in legend
    render(fig, tmp_path, "cbr.png")


def test_calibration_by_rate_labels_of_neighbouring_ads_do_not_overlap(tmp_path):
    """Six ads a fraction of a percent apart in rate, at one ratio: every label is drawn and no two label boxes
    overlap once the figure is rendered (the staggering by three offsets let the fourth land on the first)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = P.plot_calibration_by_rate(_rate_table(tuple(0.010 + 0.0001 * j for j in range(6)), ratios=(1.0,)))
    render(fig, tmp_path, "crowded.png")
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    labels = [t for t in fig.axes[0].texts if t.get_text().startswith("ad ")]
    assert sorted(t.get_text() for t in labels) == [f"ad {17000 + j}" for j in range(6)]
    boxes = [t.get_window_extent(renderer) for t in labels]
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]


def _tick_labels(ax):
    ax.figure.canvas.draw()  # tick labels exist once drawn
    lo, hi = ax.get_xlim()
    return [t.get_text() for t, v in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= v <= hi and t.get_text()]


def test_calibration_by_rate_has_a_labelled_tick_per_decade_and_no_excluded_entry_when_none():
    """Rates 0.05 %–0.9 %: the padded axis holds the decades 0.1 % and 1 %, each labelled; rates 4 %–30 % hold only
    the 10 % decade, so the axis widens to 1 %–100 %."""
    ax = P.plot_calibration_by_rate(_rate_table((0.0005, 0.002, 0.009))).axes[0]
    assert _tick_labels(ax) == ["0.1 %", "1 %"]
    assert ax.get_xlim() == pytest.approx((0.0005 / 1.5, 0.009 * 1.5))
    ax = P.plot_calibration_by_rate(_rate_table((0.04, 0.3))).axes[0]
    assert _tick_labels(ax) == ["1 %", "10 %", "100 %"] and ax.get_xlim() == pytest.approx((0.01, 1.0))
    assert "excluded: too few clicks to test" not in [t.get_text() for t in ax.get_legend().get_texts()]
    # an excluded id that is not drawn gives no entry either
    ax = P.plot_calibration_by_rate(_rate_table((0.0005, 0.002)), excluded=[9]).axes[0]
    assert "excluded: too few clicks to test" not in [t.get_text() for t in ax.get_legend().get_texts()]


def test_paired_deltas_title_states_the_direction_once():
    """The sweep's title names the loss a positive delta favours; the plot added its generic note besides, so the
    title said the direction twice. A title without a direction still gets the generic note."""
    fig = P.plot_paired_deltas(delta_table(2, 3), title="LE vs BCE: paired metric deltas by seed (delta > 0 favours LE)")
    assert fig._suptitle.get_text() == "LE vs BCE: paired metric deltas by seed (delta > 0 favours LE)"
    fig = P.plot_paired_deltas(delta_table(2, 3), title="Paired deltas")
    assert fig._suptitle.get_text() == "Paired deltas (delta > 0 favours the candidate)"


def _y_tick_labels(ax, minor):
    """The ratio axis's non-empty tick labels within its limits, once drawn."""
    ax.figure.canvas.draw()
    lo, hi = ax.get_ylim()
    ticks = zip(ax.get_yticklabels(minor=minor), ax.get_yticks(minor=minor))
    return [t.get_text() for t, v in ticks if lo <= v <= hi and t.get_text()]


def test_calibration_by_rate_labels_minor_ratio_ticks_only_over_few_decades_and_writes_numbers_plainly():
    """Ratios 0.01–10,000 (the decades profile): every minor tick was labelled (10000, 9000, 8000 ... over one
    another) and large values in e-notation; now the decades alone, written out. Ratios 0.7–1.4 (under a decade in
    view): every minor tick labelled (0.7, 0.8 ...); 0.2–8 (about 1.8 decades): only the 2s and 5s."""
    ax = P.plot_calibration_by_rate(_rate_table((0.001, 0.01, 0.1), ratios=(0.01, 1.0, 10_000.0))).axes[0]
    assert _y_tick_labels(ax, minor=True) == []
    assert {"0.01", "1", "1,000", "10,000"} <= set(_y_tick_labels(ax, minor=False))
    assert not any("e" in t or "$" in t for t in _y_tick_labels(ax, minor=False))
    ax = P.plot_calibration_by_rate(_rate_table((0.001, 0.01), ratios=(0.7, 1.0, 1.4))).axes[0]
    assert {"0.7", "0.8", "0.9"} <= set(_y_tick_labels(ax, minor=True))
    ax = P.plot_calibration_by_rate(_rate_table((0.001, 0.01), ratios=(0.2, 1.0, 8.0))).axes[0]
    minor = _y_tick_labels(ax, minor=True)
    assert {"0.2", "0.5", "2", "5"} <= set(minor) and not {"0.3", "3", "4"} & set(minor)
    job = P.FigureJob(P.plot_calibration_by_rate, (_rate_table((0.001, 0.1), ratios=(0.01, 1e4)),), {}, DPI)
    assert P.render_png(job) == P.render_png(job)  # deterministic PNG


def test_every_calibration_ratio_axis_writes_its_ticks_plainly():
    """The run's comparison and calibration-ratio figures still labelled 3 × 10⁰ and 2 × 10⁰ (matplotlib's log
    minor labels) where the rare-ad picture wrote 3 and 2."""
    t = {"condition": [0, 1, 2, 3], "base_rate": [0.03, 0.01, 0.005, 0.001],
         "calibration_ratio_bce": [0.9, 1.2, 0.8, 0.97], "calibration_ratio_localized_entropy": [1.0, 1.05, 1.3, 3.3]}
    one = {"bce": {"base_rate": np.array(t["base_rate"]), "calibration_ratio": np.array(t["calibration_ratio_bce"]) * 3}}
    for fig in (P.plot_comparison_calibration(t), P.plot_calibration_ratio(one)):
        ax = fig.axes[0]
        labels = _y_tick_labels(ax, minor=True) + _y_tick_labels(ax, minor=False)
        assert "1" in labels and "2" in labels and not any("$" in x or "times" in x for x in labels)
    # within a decade or so, over-prediction between 1 and 2 gets labelled ticks too (there were none)
    close = dict(t, calibration_ratio_localized_entropy=[1.0, 1.05, 1.36, 1.23])
    assert {"1.25", "0.9"} <= set(_y_tick_labels(P.plot_comparison_calibration(close).axes[0], minor=True))


def test_ratio_figures_name_their_reference_and_colour_each_loss_as_everywhere():
    """The run's ratio figures said 'base rate' (the evaluation click rate, by the glossary) while drawing ratios to
    the true click probability; and the comparison coloured losses by position (LE blue when BCE was absent)."""
    t = {"condition": [0, 1], "base_rate": [0.01, 0.02], "calibration_ratio_localized_entropy": [1.1, 0.9],
         "calibration_ratio_focal": [1.2, 0.8]}
    ax = P.plot_comparison_calibration(t, reference="true click probability").axes[0]
    assert ax.get_ylabel().startswith("calibration ratio = mean prediction / true click probability")
    assert "sorted by true click probability" in ax.get_xlabel()
    colours = {c.get_label(): tuple(c.get_facecolor()[0][:3]) for c in ax.collections if c.get_label() in ("LE", "focal")}
    assert colours == {name: tuple(to_rgb(c)) for name, c in zip(("LE", "focal"), P.loss_colors(["LE", "focal"]))}
    one = {"bce": {"base_rate": np.array([0.01, 0.02]), "calibration_ratio": np.array([1.1, 0.9])}}
    ax = P.plot_calibration_ratio(one, reference="evaluation click rate").axes[0]
    assert ax.get_xlabel().startswith("evaluation click rate") and "/ evaluation click rate" in ax.get_ylabel()


def test_paired_deltas_mark_ties_and_write_small_deltas_plainly():
    t = {"metric": ["logloss"] * 4, "seed": [1, 2, 3, 4], "delta": [2e-5, -6e-5, 0.0, 1e-5]}
    fig = P.plot_paired_deltas(t)
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = [x.get_text() for x in ax.get_yticklabels() if x.get_text()]
    assert "-0.00006" in labels or "-0.00005" in labels or "-0.00004" in labels
    assert ax.yaxis.get_offset_text().get_text() == ""  # no hidden ×1e-5
    assert "tie (delta = 0)" in [x.get_text() for x in fig.legends[0].get_texts()]


def test_calibration_by_rate_labels_the_rightmost_ad_to_its_left_inside_the_axes(tmp_path):
    """The rightmost ad's label (here a long one: too few clicks) ran over the right edge of the axes; a point in
    the right 15 % of the axes is now labelled to its left, right-aligned, and its box ends inside the axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = P.plot_calibration_by_rate(_rate_table((0.001, 0.01, 0.3)), excluded=[2])
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    ax = fig.axes[0]
    labels = {t.get_text(): t for t in ax.texts if t.get_text().startswith("ad ")}
    right = labels["ad 17002 (too few clicks)"]
    assert right.get_horizontalalignment() == "right" and right.xyann[0] < 0
    assert right.get_window_extent(renderer).x1 <= ax.get_window_extent(renderer).x1
    assert all(labels[f"ad {17000 + j}"].get_horizontalalignment() == "left" for j in (0, 1))
    render(fig, tmp_path, "right_label.png")


def test_calibration_by_rate_labels_every_ad_up_to_12_then_the_5_rarest():
    rates = np.geomspace(0.001, 0.3, 12)
    ax = P.plot_calibration_by_rate(_rate_table(rates)).axes[0]
    assert sorted(t.get_text() for t in ax.texts if t.get_text().startswith("ad ")) == sorted(
        f"ad {17000 + j}" for j in range(12))
    rates = np.geomspace(0.3, 0.001, 13)  # ids 12 → 0 rarest
    ax = P.plot_calibration_by_rate(_rate_table(rates)).axes[0]
    assert sorted(t.get_text() for t in ax.texts if t.get_text().startswith("ad ")) == sorted(
        f"ad {17000 + j}" for j in range(8, 13))


def test_calibration_by_rate_says_the_losses_sit_side_by_side_and_draws_them_so():
    """The losses' points of one ad are offset along x (×e^∓0.08); before, the footnote did not say so and a reader
    took the offset points for different rates."""
    ax = P.plot_calibration_by_rate(_rate_table((0.0387,))).axes[0]
    note = next(t.get_text() for t in ax.texts if t.get_text().startswith("point = median"))
    assert "losses drawn side by side at the ad's rate ×0.92–×1.08" in note
    xs = sorted(line.get_xdata()[0] for line in ax.lines if line.get_marker() == "o")
    assert xs[0] == pytest.approx(0.0387 * math.exp(-0.08)) and xs[-1] == pytest.approx(0.0387 * math.exp(0.08))


def test_calibration_by_rate_without_finite_ratio_warns_nothing():
    import warnings

    table = _rate_table((0.01, 0.001)).with_columns(
        pl.when(pl.col("condition") == 1).then(float("nan")).otherwise(pl.col("ratio")).alias("ratio"))
    nan_rate = _rate_table((float("nan"), 0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in (table, nan_rate):
            ax = P.plot_calibration_by_rate(t).axes[0]
            assert len([line for line in ax.lines if line.get_marker() == "o"]) == 2  # only the finite ad


def _counted_table(counts, rates, ratios=(0.8, 1.0, 1.5), losses=("bce", "localized_entropy")):
    """The rare-ad table with each ad's evaluation clicks (ref_sum) and rows (n), the same for every seed and loss."""
    return _rate_table(rates, ratios, losses).with_columns(
        pl.col("condition").replace_strict({j: float(k) for j, (k, _) in enumerate(counts)}).alias("ref_sum"),
        pl.col("condition").replace_strict({j: float(n) for j, (_, n) in enumerate(counts)}).alias("n"),
        pl.lit("base_rate").alias("reference"))


def _bands(ax):
    return {p.get_gid(): p for p in ax.patches if str(p.get_gid()).startswith("noise band")}


def test_calibration_by_rate_shades_each_ads_wilson_noise_range_and_none_without_a_click(tmp_path):
    """Ad 0: 3 clicks in 300 rows, ad 2: 40 in 1,000: each band spans [L / r̂, U / r̂] of scipy's 95 % Wilson interval
    [L, U] of r̂ = k / n, around the ad's rate; ad 1 has no click (its rate here is made up): no band."""
    from scipy.stats import binomtest

    counts, rates = [(3, 300), (0, 500), (40, 1000)], (0.01, 0.002, 0.04)
    fig = P.plot_calibration_by_rate(_counted_table(counts, rates))
    ax = fig.axes[0]
    bands = _bands(ax)
    assert sorted(bands) == ["noise band 0", "noise band 2"]
    for j in (0, 2):
        k, n = counts[j]
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        band = bands[f"noise band {j}"]
        assert band.get_y() == pytest.approx(ci.low / (k / n), rel=1e-12)
        assert band.get_y() + band.get_height() == pytest.approx(ci.high / (k / n), rel=1e-12)
        assert band.get_x() < rates[j] * math.exp(-0.08) and band.get_x() + band.get_width() > rates[j] * math.exp(0.08)
        assert band.get_zorder() < min(line.get_zorder() for line in ax.lines)  # behind the points
    legend = [t.get_text().replace("\n", " ") for t in ax.get_legend().get_texts()]
    assert "95% Wilson range of a calibrated model's ratio, from the ad's evaluation clicks" in legend
    note = next(t.get_text() for t in ax.texts if t.get_text().startswith("point = median"))
    assert "no band for an ad without an evaluation click" in note
    assert ax.get_ylim()[0] <= bands["noise band 0"].get_y()  # the whole range is in view
    render(fig, tmp_path, "cbr_noise.png")
    job = P.FigureJob(P.plot_calibration_by_rate, (_counted_table(counts, rates),), {}, DPI)
    assert P.render_png(job) == P.render_png(job)  # deterministic PNG


def test_noise_bands_of_neighbouring_ads_never_cover_each_other():
    """Avazu sample (figure audit): ads at 6.0 % and 6.4 % had bands 24 % wide in rate, so one ad's band hid under
    its neighbours' and a ratio outside it looked within noise. Each band now ends halfway to the nearest rate."""
    counts, rates = [(30, 500), (32, 500), (40, 1000)], (0.060, 0.064, 0.04)
    bands = _bands(P.plot_calibration_by_rate(_counted_table(counts, rates)).axes[0])
    a, b = bands["noise band 0"], bands["noise band 1"]
    assert a.get_x() + a.get_width() <= b.get_x() * (1 + 1e-12)
    assert a.get_x() + a.get_width() == pytest.approx(math.sqrt(0.060 * 0.064), rel=1e-9)  # the geometric midpoint
    ax = P.plot_calibration_by_rate(_counted_table(counts, rates)).axes[0]
    for j in (0, 1):  # every point of an ad lies inside its own band, none inside its neighbour's
        band = _bands(ax)[f"noise band {j}"]
        xs = [float(line.get_xdata()[0]) for line in ax.lines if line.get_marker() == "o"
              and abs(math.log(float(line.get_xdata()[0]) / rates[j])) < 0.03]
        assert len(xs) == 2 and all(band.get_x() < x < band.get_x() + band.get_width() for x in xs)
    far = bands["noise band 2"]  # 0.04 is far from both: its full width, rate × e^±0.12
    assert far.get_x() == pytest.approx(0.04 * math.exp(-0.12)) and far.get_x() + far.get_width() == pytest.approx(
        0.04 * math.exp(0.12))


def test_calibration_by_rate_draws_no_band_without_click_counts():
    """No band (and no crash) when the table lacks n / ref_sum, when its reference is the synthetic truth (Σ p_true
    counts no click), or when the caller says the reference is no single evaluation split (``noise=False``)."""
    counted = _counted_table([(3, 300), (5, 800)], (0.01, 0.006))
    for table, kwargs in ((_rate_table((0.01, 0.006)), {}), (counted.drop("ref_sum"), {}),
                          (counted.with_columns(pl.lit("true_rate").alias("reference")), {}),
                          (counted, {"noise": False})):
        ax = P.plot_calibration_by_rate(table, **kwargs).axes[0]
        assert not _bands(ax)
        assert not any("Wilson" in t.get_text() for t in ax.get_legend().get_texts())
    assert len(_bands(P.plot_calibration_by_rate(counted).axes[0])) == 2


def test_rare_ad_labels_keep_off_the_points_and_bars_where_there_is_room():
    """Figure audit: 'ad 1' sat on focal's bar and 'ad 0' on BCE's; labels avoided only one another. Three losses,
    four ads with bars reaching ±20 % around each median: every label now clears every marker and seed bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection

    rates, medians = (0.0013, 0.0065, 0.013, 0.026), {"bce": (0.91, 0.97, 1.0, 0.9),
                                                      "localized_entropy": (1.25, 0.9, 0.93, 0.94),
                                                      "focal": (2.5, 1.19, 1.01, 0.83)}
    rows = [(loss, j, str(j), rate, r * d) for loss, rs in medians.items() for j, (rate, r) in enumerate(zip(rates, rs))
            for d in (0.8, 1.0, 1.2)]
    ax = P.plot_calibration_by_rate(pl.DataFrame(rows, orient="row", schema=["loss", "condition", "ad_id",
                                                                             "base_rate", "ratio"])).axes[0]
    renderer = FigureCanvasAgg(ax.figure).get_renderer()
    marks = [line.get_window_extent(renderer) for line in ax.lines if line.get_marker() not in ("None", None, "")]
    for bars in (c for c in ax.collections if isinstance(c, LineCollection)):
        for segment in bars.get_segments():
            (x0, y0), (x1, y1) = ax.transData.transform(segment).min(0), ax.transData.transform(segment).max(0)
            marks.append(type(marks[0]).from_extents(x0 - 1, y0, x1 + 1, y1))
    labels = [t for t in ax.texts if t.get_text().startswith("ad ")]
    assert len(labels) == 4
    for label in labels:
        box = label.get_window_extent(renderer)
        assert not any(box.overlaps(m) for m in marks), label.get_text()


def test_noise_band_half_widths_reach_halfway_to_the_nearest_rate():
    from le_ray.report.plots.rate_picture import MIN_BAND_HALF_WIDTH, NOISE_HALF_WIDTH, _band_half_widths
    rng = np.random.default_rng(5)
    rates = np.exp(rng.uniform(-9, -1, 300))
    rates[[3, 40]] = np.nan
    rates[7] = 0.0
    rates[11] = rates[12]  # a tie: the smallest band, still visible
    half = _band_half_widths(rates)
    logs = np.log(np.where(rates > 0, rates, np.nan))
    for i in range(rates.size):  # brute force: every other usable rate
        others = [abs(logs[i] - logs[j]) for j in range(rates.size) if j != i and rates[j] > 0]
        expected = np.clip(min(others) / 2, MIN_BAND_HALF_WIDTH, NOISE_HALF_WIDTH) if rates[i] > 0 else NOISE_HALF_WIDTH
        assert half[i] == pytest.approx(expected, rel=1e-12), i
    assert half[11] == MIN_BAND_HALF_WIDTH
    assert _band_half_widths(np.array([0.01])) == pytest.approx([NOISE_HALF_WIDTH])


def _many_ads_table(ads: int, seeds: int, rng) -> dict:
    """A long table of the rare-ad picture: 2 losses × seeds × ads, ratios with NaNs and non-positive values."""
    rates = np.exp(rng.uniform(np.log(1e-4), np.log(0.3), ads))
    loss, cond, seed = np.meshgrid(["bce", "localized_entropy"], np.arange(ads), np.arange(seeds), indexing="ij")
    ratio = np.exp(rng.normal(0, 0.3, loss.size))
    ratio[rng.random(loss.size) < 0.05] = np.nan
    ratio[rng.random(loss.size) < 0.02] = 0.0
    n = np.full(loss.size, 5000.0)
    return {"loss": loss.ravel(), "condition": cond.ravel(), "seed": seed.ravel(),
            "ad_id": [f"a{j}" for j in cond.ravel()], "base_rate": rates[cond.ravel()], "ratio": ratio, "n": n, "ref_sum": np.round(n * rates[cond.ravel()])}


def test_the_rare_ad_pictures_points_are_each_ads_median_over_its_positive_ratios():
    """Review of the many-ads rewrite: one group-by per loss gives what a scan per ad gave (median_range)."""
    from le_ray.stats import median_range
    t = _many_ads_table(40, 6, np.random.default_rng(11))
    ax = P.plot_calibration_by_rate(t).axes[0]
    drawn = sorted(float(line.get_ydata()[0]) for line in ax.lines if line.get_marker() == "o")
    expected = sorted(m for loss in ("bce", "localized_entropy") for j in range(40)
                      if np.isfinite(m := median_range(t["ratio"][(t["loss"] == loss) & (t["condition"] == j)])[0]))
    assert drawn == pytest.approx(expected, rel=1e-12) and len(drawn) == 80


def test_beyond_many_ads_the_rare_ad_picture_draws_points_alone_and_says_so():
    """Scalability audit: at 20,000 ads the picture took 392 s (a scan of the table and artists per ad) and was a
    blob of bars. Beyond MANY_ADS ads: a line of points per loss, no seed bars nor noise bands, said in the footnote."""
    from matplotlib.collections import LineCollection

    from le_ray.report.plots.rate_picture import MANY_ADS
    t = _many_ads_table(MANY_ADS + 50, 4, np.random.default_rng(12))
    ax = P.plot_calibration_by_rate(t).axes[0]
    points = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(points) <= 4 and sum(line.get_xdata().size for line in points) == 2 * (MANY_ADS + 50)
    assert not [c for c in ax.collections if isinstance(c, LineCollection)]  # no seed bars
    assert not [p for p in ax.patches if str(p.get_gid()).startswith("noise band")]
    footnote = " ".join(x.get_text() for x in ax.texts)
    assert f"{MANY_ADS + 50:,} ads, more than {MANY_ADS}: no seed bars or noise bands" in footnote
    small = P.plot_calibration_by_rate(_many_ads_table(30, 4, np.random.default_rng(13))).axes[0]
    assert [p for p in small.patches if str(p.get_gid()).startswith("noise band")]  # bands where they can be read
