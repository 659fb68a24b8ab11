"""Tests for le_ray.metrics.compare on hand-made predictions: deltas, sort orders, closeness,
winners / percent changes (sign, tie, n/a) and the fixed-width text table."""

from __future__ import annotations


import numpy as np
import polars as pl
import pytest

from le_ray.metrics import compare as C
from le_ray.metrics import per_condition_metrics

# condition 0: base rate .25 (n 4); 1: .5 (n 4); 2: .125 (n 8)
Y = np.array([1, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=float)
COND = np.repeat([0, 1, 2], [4, 4, 8])
PRED = {  # constant prediction per condition
    "bce": (0.4, 0.5, 0.125),  # calibration ratios 1.6, 1.0, 1.0
    "localized_entropy": (0.3, 0.6, 0.125),  # 1.2, 1.2, 1.0
    "focal": (0.5, 0.45, 0.25),  # 2.0, 0.9, 2.0
}


@pytest.fixture(scope="module")
def tables():
    return {loss: per_condition_metrics(np.repeat(v, [4, 4, 8]), Y, COND) for loss, v in PRED.items()}


def _by_condition(df, column):
    return dict(zip(df["condition"].to_list(), df[column].to_list()))


def test_compare_conditions_columns_and_deltas(tables):
    out = C.compare_conditions(tables)
    for loss in PRED:
        for col in ("pred_mean", "calibration_ratio", "logloss", "le_ratio"):
            assert f"{col}_{loss}" in out.columns
    assert out.columns[:3] == ["condition", "count", "base_rate"]
    delta = _by_condition(out, "delta_calibration_ratio")
    assert delta[0] == pytest.approx(-0.4) and delta[1] == pytest.approx(0.2) and delta[2] == 0.0
    ll = _by_condition(out, "delta_logloss")
    bce_ll = _by_condition(tables["bce"], "logloss")
    le_ll = _by_condition(tables["localized_entropy"], "logloss")
    assert all(ll[j] == pytest.approx(le_ll[j] - bce_ll[j]) for j in range(3))
    assert _by_condition(out, "abs_delta_calibration")[0] == pytest.approx(0.4)
    assert _by_condition(out, "pred_mean_focal")[1] == pytest.approx(0.45)


def test_compare_conditions_sort_orders(tables):
    assert C.compare_conditions(tables)["condition"].to_list() == [1, 0, 2]
    by_cal = C.compare_conditions(tables, sort_by="abs_delta_calibration")
    assert by_cal["condition"].to_list() == [0, 1, 2]
    by_le = C.compare_conditions(tables, sort_by="abs_delta_le_ratio")
    vals = by_le["abs_delta_le_ratio"].fill_nan(None).to_list()
    finite = [v for v in vals if v is not None]
    assert finite == sorted(finite, reverse=True) and vals[: len(finite)] == finite  # NaN last
    with pytest.raises(ValueError) as err:
        C.compare_conditions(tables, sort_by="count")
    assert all(key in str(err.value) for key in C.SORT_KEYS)


def test_compare_conditions_generic_names_and_errors(tables):
    out = C.compare_conditions(tables, baseline="focal", candidate="localized_entropy")
    assert _by_condition(out, "delta_calibration_ratio")[2] == pytest.approx(1.0 - 2.0)
    with pytest.raises(ValueError, match="not in tables"):
        C.compare_conditions({"bce": tables["bce"]})
    with pytest.raises(ValueError, match="missing columns"):
        C.compare_conditions({"bce": tables["bce"], "localized_entropy": tables["bce"].drop("le_ratio")})


def test_compare_conditions_inner_join(tables):
    partial = dict(tables, localized_entropy=tables["localized_entropy"].filter(pl.col("condition") != 2))
    assert sorted(C.compare_conditions(partial)["condition"].to_list()) == [0, 1]


def test_calibration_closeness(tables):
    out = C.calibration_closeness(tables)
    assert out["condition"].to_list() == [1, 0, 2]
    bce = _by_condition(out, "abs_1_minus_calibration_bce")
    assert bce[0] == pytest.approx(0.6) and bce[1] == 0.0
    assert _by_condition(out, "abs_1_minus_calibration_focal")[1] == pytest.approx(0.1)
    assert _by_condition(out, "closest") == {0: "localized_entropy", 1: "bce", 2: "tie"}


def test_count_closer_conditions(tables):
    out = C.count_closer_conditions(tables)
    assert out == {"candidate_closer": 1, "baseline_closer": 1, "ties": 1, "conditions": 3}
    focal = C.count_closer_conditions(tables, baseline="focal")
    assert focal["candidate_closer"] == 2 and focal["conditions"] == 3  # LE beats focal on 0 and 2


SUMMARIES = {
    "bce": {"accuracy": 0.80, "logloss": 0.50, "brier": 0.20, "ece": 0.0},
    "localized_entropy": {"accuracy": 0.82, "logloss": 0.45, "brier": 0.20 + 5e-9, "ece": 0.01},
}


def test_compare_summary_winner_pct_tie_na():
    out = C.compare_summary(SUMMARIES)
    assert out.columns == ["metric", "higher_is_better", "baseline", "candidate", "winner", "pct_change",
                           "pct_change_label"]
    rows = {r["metric"]: r for r in out.iter_rows(named=True)}
    assert list(rows) == ["accuracy", "logloss", "brier", "ece"]
    assert rows["accuracy"]["winner"] == "localized_entropy" and rows["accuracy"]["pct_change"] == pytest.approx(2.5)
    assert rows["accuracy"]["pct_change_label"] == "+2.50%"
    assert rows["logloss"]["winner"] == "localized_entropy" and rows["logloss"]["pct_change"] == pytest.approx(10.0)
    assert rows["brier"]["winner"] == "tie" and rows["brier"]["pct_change"] == 0.0
    assert rows["ece"]["winner"] == "bce" and rows["ece"]["pct_change"] is None
    assert rows["ece"]["pct_change_label"] == "n/a"


def test_compare_summary_negative_when_candidate_worse_and_nan():
    worse = {"bce": {"accuracy": 0.9, "logloss": 0.4, "brier": 0.1, "ece": 0.02},
             "focal": {"accuracy": 0.85, "logloss": 0.5, "brier": float("nan"), "ece": 0.01}}
    out = C.compare_summary(worse, candidate="focal")
    rows = {r["metric"]: r for r in out.iter_rows(named=True)}
    assert rows["accuracy"]["winner"] == "bce" and rows["accuracy"]["pct_change"] < 0
    assert rows["logloss"]["pct_change"] == pytest.approx(-25.0)
    assert rows["ece"]["winner"] == "focal" and rows["ece"]["pct_change"] == pytest.approx(50.0)
    assert rows["brier"]["winner"] == "n/a" and rows["brier"]["pct_change"] is None
    with pytest.raises(ValueError, match="not in summaries"):
        C.compare_summary(worse)


def test_format_table_fixed_width():
    df = pl.DataFrame({"name": ["a", "bbb"], "x": [1.5, None], "n": [10, 2]})
    assert C.format_table(df, float_fmt=".2f") == (
        "name     x   n\n"
        "----  ----  --\n"
        "a     1.50  10\n"
        "bbb    n/a   2"
    )
    text = C.format_table(pl.DataFrame({"v": [float("nan"), 1.0, 2.0]}), max_rows=2)
    assert text.splitlines() == ["  v", "---", "nan", "  1", "… (1 more rows)"]
    for every in (0, -2):  # the reference's *top_k rule: <= 0 prints every row (-2 hid the last two and said "4 more")
        assert C.format_table(pl.DataFrame({"v": [1, 2, 3]}), max_rows=every).splitlines()[2:] == ["1", "2", "3"]


def test_format_table_names_the_csv_of_the_columns_left_out():
    wide = pl.DataFrame({f"col{j}": [j] for j in range(6)})
    note = "… (4 more columns: col2, col3, col4, col5; see {})"
    assert C.format_table(wide, max_width=10).splitlines()[-1] == note.format("the CSV")
    assert C.format_table(wide, max_width=10, csv="tables/wide.csv").splitlines()[-1] == note.format("tables/wide.csv")
    assert C.format_table(wide, csv="tables/wide.csv") == C.format_table(wide)  # nothing cut: no note


def test_format_table_of_real_comparison(tables):
    text = C.format_table(C.compare_summary(SUMMARIES))
    lines = text.splitlines()
    assert lines[0].startswith("metric") and set(lines[1]) <= {"-", " "}
    assert len(lines) == 2 + 4 and "n/a" in text


def test_data_differences_empty_when_every_table_has_the_same_rows_and_rates(tables):
    assert C.data_differences(tables, baseline="bce", candidate="localized_entropy") == []


def test_data_differences_names_missing_and_changed_conditions_up_to_the_limit(tables):
    other = per_condition_metrics(np.full(12, 0.3), Y[:12], COND[:12])  # condition 2 keeps 4 of its 8 rows
    other = other.vstack(other.filter(pl.col("condition") == 2).with_columns(pl.lit(9).cast(other["condition"].dtype)
                                                                            .alias("condition")))
    out = C.data_differences({"bce": tables["bce"], "le": other}, baseline="bce", candidate="le")
    assert out[0] == "1 condition(s) only in the le run"
    assert out[1] == "condition 2: 8 rows at rate 0.125 (bce) vs 4 rows at rate 0.25 (le)"
    assert len(out) == 2
    assert C.data_differences({"bce": tables["bce"], "le": other}, baseline="bce", candidate="le", limit=0)[1:] == [
        "and 1 more condition(s) whose rows or rate differ"]


def test_data_differences_name_conditions_whose_ad_ids_differ(tables):
    """Two runs are joined by condition index, which other filters give to other ads (tune/run audit)."""
    named = {name: t.with_columns(pl.Series("value", [f"ad{c}" for c in t["condition"]])) for name, t in tables.items()}
    assert C.data_differences(named, baseline="bce", candidate="localized_entropy") == []
    other = named["localized_entropy"].with_columns(
        pl.when(pl.col("condition") == 1).then(pl.lit("x9")).otherwise(pl.col("value")).alias("value"))
    assert C.data_differences({"bce": named["bce"], "le": other}, baseline="bce", candidate="le") == [
        "condition 1: ad 'ad1' (bce) vs ad 'x9' (le)"]


def test_markdown_tables_write_counts_with_thousands_separators_and_labels_plainly():
    """UX audit: report.md wrote per-ad rows as 6312 where the audit writes 25,504."""
    from le_ray.report.tables import markdown_table
    table = pl.DataFrame({"condition": [1204], "seed": [1042], "count": [6312], "clicks": [12], "tested": [True],
                          "rate": [0.0123456], "ad_id": ["17753"]})
    assert markdown_table(table).splitlines()[2] == "| 1204 | 1042 | 6,312 | 12 | True | 0.01235 | 17753 |"
