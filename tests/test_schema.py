"""Dataset schemas: column roles from the merged config, leak checks and file format detection."""

from __future__ import annotations


import polars as pl
import pytest

from le_ray.config import load_config
from le_ray.data.schema import CRITEO_RAW_COLUMNS, DataError, build_schema, detect_format
from tests.sample_data import require_sample


def dataset(name, **changes):
    return load_config().ctr.datasets[name].model_copy(update=changes)


def test_default_schemas_have_the_documented_roles():
    avazu = build_schema("avazu", dataset("avazu"))
    assert (avazu.label_col, avazu.condition_col, avazu.filter_col) == ("click", "C14", "C14")
    assert avazu.positive_values is None
    assert avazu.time_col == "hour" and avazu.device_cols == ("device_ip", "device_id")
    assert "C14" not in avazu.categorical_cols and "id" not in avazu.feature_source_cols()
    criteo = build_schema("criteo", dataset("criteo"))
    assert criteo.numeric_cols == tuple(f"I{i}" for i in range(1, 14))
    assert criteo.categorical_cols == tuple(f"C{i}" for i in range(2, 27))
    assert criteo.facts.split == "row_mod" and criteo.time_col is None
    yambda = build_schema("yambda", dataset("yambda"))
    assert yambda.label_col == "event_type" and yambda.positive_values == ("like",)
    assert "event_type" not in yambda.feature_source_cols()
    assert yambda.facts.split == "hash" and yambda.facts.hash_cols == ("uid", "item_id", "timestamp")
    assert CRITEO_RAW_COLUMNS[:2] == ("label", "I1") and len(CRITEO_RAW_COLUMNS) == 40


def test_label_column_as_a_feature_is_rejected():
    with pytest.raises(DataError, match="'event_type' is the label source"):
        build_schema("yambda", dataset("yambda", categorical_cols=("uid", "is_organic", "event_type")))
    with pytest.raises(DataError, match="positive_event_types"):
        build_schema("yambda", dataset("yambda", positive_event_types=()))


def test_derived_features_only_where_the_columns_exist():
    with pytest.raises(DataError, match="derived_time"):
        build_schema("criteo", dataset("criteo", derived_time=True))
    with pytest.raises(DataError, match="device_counters"):
        build_schema("yambda", dataset("yambda", device_counters=True))
    off = build_schema("avazu", dataset("avazu", derived_time=False, device_counters=False))
    assert off.time_col is None and off.device_cols == ()


def test_filter_col_defaults_to_the_condition_column():
    ds = dataset("avazu")
    assert build_schema("avazu", ds.model_copy(update={"filter": ds.filter.model_copy(update={"col": "C17"})})
                        ).filter_col == "C17"


def test_format_detection(tmp_path):
    csv = require_sample("criteo", "criteo_sample.csv")
    assert detect_format(csv, "auto", "criteo") == "csv"
    df = pl.read_csv(csv, infer_schema=False).head(5)
    raw, tsv, pq = tmp_path / "train.txt", tmp_path / "train.tsv", tmp_path / "x.parquet"
    df.write_csv(raw, separator="\t", include_header=False)
    df.write_csv(tsv, separator="\t")
    df.write_parquet(pq)
    assert detect_format(raw, "auto", "criteo") == "criteo_raw"
    assert detect_format(tsv, "auto", "criteo") == "tsv"
    assert detect_format(pq, "auto", "yambda") == "parquet"
    assert detect_format(raw, "csv", "criteo") == "csv"  # an explicit format wins
    with pytest.raises(DataError, match="only criteo"):
        detect_format(raw, "auto", "avazu")


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_delimiter_hint_only_when_the_header_lacks_the_separator(tmp_path):
    from le_ray.data.schema import delimiter_hint

    path = tmp_path / "f.csv"
    for header, fmt, hint in [("a;b;c", "csv", "has no ',' but has ';'"),
                              ("a\tb\tc", "csv", "has no ',' but has tab, so the file looks tab-separated"),
                              ("a,b,c", "tsv", "has no tab but has ','"), ("a,b;c", "csv", ""), ("abc", "csv", ""),
                              ("a;b", "parquet", "")]:
        path.write_text(header + "\n1;2;3\n")
        assert (hint in delimiter_hint(path, fmt)) and (bool(hint) == bool(delimiter_hint(path, fmt))), (header, fmt)
