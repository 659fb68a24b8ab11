"""Condition filters: hand-checked selections on a tiny stats frame, then the real Avazu sample."""

from __future__ import annotations

import warnings

import polars as pl
import pytest

from le_ray.config import load_config
from le_ray.data.filters import (
    coerce_ids, filter_select, filter_statistics, mix_values, resolve_mode, selection_table, top_k_values,
)
from le_ray.errors import DataError
from le_ray.errors import ConfigError
from tests.sample_data import require_sample

# value, count, clicks → mean, median (median of 0/1 labels: 1 if clicks > n/2, .5 if equal, else 0)
TINY = pl.DataFrame({
    "value": ["a", "b", "c", "d", "e", "f", "g", "h"],
    "count": [100, 80, 80, 50, 40, 30, 20, 4],
    "clicks": [10, 60, 8, 25, 0, 30, 2, 1],
}).with_columns(mean=pl.col("clicks") / pl.col("count"))
TINY = TINY.with_columns(median=pl.Series([0.0, 1.0, 0.0, 0.5, 0.0, 1.0, 0.0, 0.0]))


def flt(**changes):
    """A FilterConfig from the defaults with ``changes`` applied."""
    base = load_config().ctr.datasets["avazu"].filter
    return base.model_copy(update={"mode": None, "k": None, "ids": None, **changes})


def test_top_k_by_count_breaks_ties_by_value_text():
    # b and c both have 80 rows: b comes first (text ascending).
    assert filter_select(TINY, flt(mode="top_k", k=3, metric="count")) == ["a", "b", "c"]
    assert filter_select(TINY, flt(mode="top_k", k=2, metric="frequency")) == ["a", "b"]
    assert top_k_values(TINY, "impressions", 1) == ["a"]


def test_bottom_k_and_rate_metrics():
    assert filter_select(TINY, flt(mode="bottom_k", k=2, metric="rows")) == ["h", "g"]
    # means: a .1, b .75, c .1, d .5, e 0, f 1, g .1, h .25
    assert filter_select(TINY, flt(mode="top_k", k=3, metric="click_rate")) == ["f", "b", "d"]
    assert filter_select(TINY, flt(mode="bottom_k", k=4, metric="rate")) == ["e", "a", "c", "g"]
    assert filter_select(TINY, flt(mode="top_k", k=3, metric="mean")) == ["f", "b", "d"]


def test_top_k_by_median():
    # medians 1: b, f; .5: d; then 0 for the rest, ties by text.
    assert filter_select(TINY, flt(mode="top_k", k=4, metric="median")) == ["b", "f", "d", "a"]
    assert filter_select(TINY, flt(mode="bottom_k", k=2, metric="median")) == ["a", "c"]


def test_mix_selection_by_hand():
    # pool (top 6 by count, mean, median desc): a(100) b(80,.75) c(80,.1) d e f
    # by mean desc: f(1) b(.75) d(.5) a(.1,0,100) c(.1,0,80) e(0)
    # by median desc: b(1,.75) f(1,1 ... mean 1 > .75 → f first) → f b d a c e
    #   start floor((6-2)/2)=2 → d, a
    # low: last 2 of mean order, lowest first → e, c
    got = mix_values(TINY, preselect_k=6, high_k=2, middle_k=2, low_k=2)
    assert got == ["f", "b", "d", "a", "e", "c"]
    # overlaps are kept once, in order high, middle, low
    assert mix_values(TINY, preselect_k=3, high_k=2, middle_k=1, low_k=2) == ["b", "a", "c"]
    sel = filter_select(TINY, flt(mode="top_count_rate_mix", preselect_k=6, high_k=2, middle_k=2, low_k=2))
    assert sel == got


def test_min_count_applies_before_ranking():
    assert filter_select(TINY, flt(mode="bottom_k", k=2, metric="count", min_count=30)) == ["f", "e"]
    assert filter_select(TINY, flt(mode="top_k", k=1, metric="mean", min_count=50)) == ["b"]


def test_ids_coercion_missing_ids_warn_and_empty_selection_errors():
    stats = TINY.with_columns(value=pl.Series([str(v) for v in (15706, 15704, 3, 4, 5, 6, 7, 8)]))
    assert filter_select(stats, flt(mode="ids", ids=(15706, 15704.0, "3"))) == ["15706", "15704", "3"]
    with pytest.warns(UserWarning, match="not in the train rows"):
        assert filter_select(stats, flt(ids=(15706, 99999)), where="f") == ["15706"]
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"ctr\.datasets\.avazu\.filter.*keeps no value"):
        filter_select(stats, flt(mode="ids", ids=(1, 2)), where="ctr.datasets.avazu.filter", col="C14")
    assert coerce_ids([7, "7", 7.0], pl.UInt32) == ["7"]
    with pytest.raises(ConfigError, match="expected an integer"):
        coerce_ids([7.5], pl.Int64)


def test_mode_inference_and_missing_keys():
    assert resolve_mode(flt(ids=("a",))) == "ids"
    assert resolve_mode(flt(k=3)) == "top_k"
    assert resolve_mode(flt()) is None
    assert filter_select(TINY, flt()) == list("abcdefgh")
    assert filter_select(TINY, flt(k=2)) == ["a", "b"]
    with pytest.raises(ConfigError, match=r"\.k: got null"):
        filter_select(TINY, flt(mode="top_k"))


def test_selection_table_marks_selected_in_order():
    table = selection_table(TINY, ["c", "a"])
    assert table.columns == ["value", "count", "clicks", "mean", "median", "selected", "order"]
    assert table.filter("selected")["value"].to_list() == ["a", "c"]
    assert table.filter(pl.col("value") == "c")["order"].item() == 0


@pytest.fixture(scope="module")
def avazu_stats():
    path = require_sample("avazu", "avazu_sample.csv")
    lf = pl.scan_csv(path, infer_schema=False).with_columns(y=pl.col("click").cast(pl.Float64))
    return path, filter_statistics(lf, "C14", "y")


def test_filter_statistics_matches_an_in_memory_group_by(avazu_stats):
    path, stats = avazu_stats
    df = pl.read_csv(path, schema_overrides={"C14": pl.String})
    ref = (df.group_by("C14").agg(count=pl.len(), clicks=pl.col("click").sum(),
                                  mean=pl.col("click").mean(), median=pl.col("click").median())
           .sort("C14"))
    assert stats["value"].to_list() == ref["C14"].to_list()
    assert stats["count"].to_list() == ref["count"].to_list()
    assert stats["clicks"].to_list() == ref["clicks"].to_list()
    assert stats["median"].to_list() == ref["median"].to_list()  # the binary median == Polars' median
    assert stats["invalid"].sum() == 0 and stats["count"].sum() == 41_557
    assert set(stats["median"].unique().to_list()) <= {0.0, 0.5, 1.0}


def test_real_sample_selections(avazu_stats):
    _, stats = avazu_stats
    top10 = filter_select(stats, flt(mode="top_k", k=10, metric="count"))
    # PROVENANCE.md: top 10 C14 groups of the shared file
    assert top10 == ["18993", "20596", "21611", "15701", "15708", "15707", "15704", "15699", "15703", "15706"]
    mix = filter_select(stats, flt(mode="top_count_rate_mix", preselect_k=200, high_k=10, middle_k=10, low_k=10))
    pool = stats.sort(["count", "mean", "median", "value"], descending=[True, True, True, False]).head(200)
    means = dict(zip(pool["value"], pool["mean"]))
    assert len(mix) == len(set(mix)) and 20 < len(mix) <= 30 and set(mix) <= set(means)
    assert means[mix[0]] == max(means.values())
    low = [v for v in mix if means[v] == min(means.values())]
    assert low, "the lowest-rate pool value must be in the low group"
    rows = list(zip(stats["value"].to_list(), stats["count"].to_list(), stats["mean"].to_list()))
    expected = [v for v, _, _ in sorted(rows, key=lambda r: (r[1], r[0]))[:5]]
    assert filter_select(stats, flt(mode="bottom_k", k=5, metric="rows")) == expected
    expected = [v for v, _, _ in sorted((r for r in rows if r[1] >= 50), key=lambda r: (-r[2], r[0]))[:7]]
    assert filter_select(stats, flt(mode="top_k", k=7, metric="rate", min_count=50)) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert filter_select(stats, flt(ids=("15706", 15704))) == ["15706", "15704"]
