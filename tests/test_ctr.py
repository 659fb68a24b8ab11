"""load_ctr on the real Avazu / Criteo samples (../shared/data) and a synthetic Yambda parquet."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from le_ray.config import load_config
from le_ray.data.arrays import OTHER_VALUE
from le_ray.data.ctr import load_ctr, time_features
from le_ray.errors import DataError
from le_ray.errors import ConfigError
from tests.sample_data import require_sample

TOP10 = ["18993", "20596", "21611", "15701", "15708", "15707", "15704", "15699", "15703", "15706"]


def _q(value) -> str:
    return json.dumps(None if value is None else str(value))


def avazu_cfg(train, test=None, *sets, profile="avazu_top10_by_count"):
    return load_config(profile=profile, sets=[f"ctr.datasets.avazu.train_path={_q(train)}",
                                              f"ctr.datasets.avazu.test_path={_q(test)}", *sets])


def criteo_cfg(train, *sets):
    return load_config(profile="criteo_top20_by_count", sets=[f"ctr.datasets.criteo.train_path={_q(train)}", *sets])


def cache_sets(directory, fmt="parquet", overwrite=False):
    return ["ctr.datasets.avazu.filter.cache.enabled=true", f"ctr.datasets.avazu.filter.cache.dir={_q(directory)}",
            f"ctr.datasets.avazu.filter.cache.format={_q(fmt)}",
            f"ctr.datasets.avazu.filter.cache.overwrite={json.dumps(overwrite)}"]


def same_rows(a, b) -> bool:
    if a is None or b is None:
        return a is b
    fields = ("x_num", "x_cat", "cond", "y", "row_id")
    return all((getattr(a, f) is None and getattr(b, f) is None) or np.array_equal(getattr(a, f), getattr(b, f))
               for f in fields)


@pytest.fixture(scope="module")
def avazu_path():
    return require_sample("avazu", "avazu_sample.csv")


@pytest.fixture(scope="module")
def avazu_test_path():
    return require_sample("avazu", "avazu_test_format_sample.csv")


@pytest.fixture(scope="module")
def criteo_path():
    return require_sample("criteo", "criteo_sample.csv")


@pytest.fixture(scope="module")
def avazu_raw(avazu_path):
    return pl.read_csv(avazu_path, infer_schema=False)


@pytest.fixture(scope="module")
def avazu_top10(avazu_path, avazu_test_path):
    return load_ctr(avazu_cfg(avazu_path, avazu_test_path))


# ------------------------------------------------------------------------------------- avazu

def test_avazu_top10_contract(avazu_top10, avazu_raw):
    src = avazu_top10
    tr, te = src.train_rows, src.test_rows
    assert src.condition_values == tuple(TOP10) and src.num_conditions == 10
    assert src.source_rows == 41_557 and src.kept_rows == len(tr) == 12_287
    assert tr.x_num.dtype == np.float32 and tr.x_cat.dtype == np.int32 and tr.cond.dtype == np.int32
    assert tr.y.dtype == np.float32 and set(np.unique(tr.y)) == {0.0, 1.0} and tr.row_id.dtype == np.int64
    assert tr.x_num.flags.c_contiguous and tr.x_cat.shape == (len(tr), len(src.categorical_features))
    assert src.numeric_features == ("device_ip_count", "device_id_count")
    assert src.categorical_features[-2:] == ("wd", "wd_hour") and "hour" in src.categorical_features
    assert len(src.cat_vocab_sizes) == tr.x_cat.shape[1] and (tr.x_cat.max(axis=0) < src.cat_vocab_sizes).all()
    # row ids point back at the source rows, and condition ids at their C14 text
    c14 = avazu_raw["C14"].gather(tr.row_id).to_numpy()
    assert (np.asarray(src.condition_values, dtype=object)[tr.cond] == c14).all()
    table = src.condition_table
    assert table.columns == ["value", "id", "rows", "clicks", "rate"]
    assert table["rows"].to_list()[:3] == [1496, 1481, 1336] and table["rows"].sum() == len(tr)
    assert table["clicks"].sum() == int(tr.y.sum())
    assert src.filter_stats.filter("selected").height == 10 and src.filter_stats.height == 1236
    assert te is not None and te.y is None and set(np.unique(te.cond)) <= set(range(10))
    assert set(src.timings) >= {"stats", "select", "materialise", "encode", "total"}
    assert src.cache_path is None and len(src.fingerprint) == 16


def test_derived_time_features():
    df = time_features(pl.DataFrame({"hour": ["14102100", "14103023", "14102213"]}), "hour")
    assert df["hour"].to_list() == [0, 23, 13]          # hour of day
    assert df["wd"].to_list() == [1, 3, 2]              # 2014-10-21 Tuesday, 10-30 Thursday, 10-22 Wednesday
    assert df["wd_hour"].to_list() == [24, 95, 61]


def test_hour_ids_follow_hour_of_day(avazu_top10, avazu_raw):
    src, tr = avazu_top10, avazu_top10.train_rows
    hh = avazu_raw["hour"].gather(tr.row_id).str.slice(6, 2).to_numpy()
    ids = tr.x_cat[:, src.categorical_features.index("hour")]
    pairs = set(zip(hh.tolist(), ids.tolist()))
    assert len(pairs) == len(set(hh.tolist())) == len(set(ids.tolist())) == 24


def test_device_counters_capped_and_unseen_zero(avazu_top10, avazu_raw, avazu_test_path):
    tr, te = avazu_top10.train_rows, avazu_top10.test_rows
    kept = avazu_raw[tr.row_id.tolist()]
    for j, col in enumerate(("device_ip", "device_id")):
        counts = kept[col].value_counts(name="n")
        expected = kept.join(counts, on=col, how="left", maintain_order="left")["n"].clip(upper_bound=8)
        assert np.array_equal(tr.x_num[:, j], expected.to_numpy().astype(np.float32))
        test_raw = pl.read_csv(avazu_test_path, infer_schema=False)[te.row_id.tolist()]
        looked_up = (test_raw.join(counts, on=col, how="left", maintain_order="left")["n"]
                     .fill_null(0).clip(upper_bound=8))
        assert np.array_equal(te.x_num[:, j], looked_up.to_numpy().astype(np.float32))
    assert tr.x_num[:, 1].max() == 8 and tr.x_num[:, 0].max() == 8 and tr.x_num[:, 0].min() == 1
    assert (te.x_num[:, 0] == 0).any()


def test_vocab_cap_other_bucket_and_condition_cap(avazu_path, avazu_raw):
    src = load_ctr(avazu_cfg(avazu_path, None, "ctr.datasets.avazu.categorical_max_values=5",
                             "ctr.datasets.avazu.max_conditions=3"))
    assert max(src.cat_vocab_sizes) == 6 and src.test_rows is None
    assert src.condition_values == (*TOP10[:3], OTHER_VALUE) and src.num_conditions == 4
    other = src.condition_table.filter(pl.col("value") == OTHER_VALUE)
    assert other["id"].item() == 3 and other["rows"].item() == 12_287 - (1496 + 1481 + 1336)
    tr = src.train_rows
    kept = avazu_raw[tr.row_id.tolist()]
    top5 = (kept["site_id"].value_counts(name="n").sort(["n", "site_id"], descending=[True, False])
            .head(5)["site_id"].to_list())
    ids = tr.x_cat[:, src.categorical_features.index("site_id")]
    expected = np.array([top5.index(v) if v in top5 else 5 for v in kept["site_id"].to_list()], dtype=np.int32)
    assert np.array_equal(ids, expected)


def test_unseen_test_values_go_to_other(avazu_path, avazu_test_path):
    src = load_ctr(avazu_cfg(avazu_path, avazu_test_path, "ctr.datasets.avazu.filter.apply_to_test=false"))
    te = src.test_rows
    assert len(te) == 13_991 and src.condition_values[-1] == OTHER_VALUE and src.num_conditions == 11
    test_c14 = pl.read_csv(avazu_test_path, infer_schema=False)["C14"].to_numpy()
    assert np.array_equal(te.cond == 10, ~np.isin(test_c14, TOP10))
    assert (src.train_rows.cond < 10).all()
    site = src.categorical_features.index("site_id")
    assert (te.x_cat[:, site] == src.cat_vocab_sizes[site] - 1).any()   # an unseen site → "other" id


def test_two_loads_give_identical_arrays(avazu_path, avazu_test_path, avazu_top10):
    again = load_ctr(avazu_cfg(avazu_path, avazu_test_path))
    assert same_rows(again.train_rows, avazu_top10.train_rows) and same_rows(again.test_rows, avazu_top10.test_rows)
    assert again.fingerprint == avazu_top10.fingerprint
    assert again.filter_stats.equals(avazu_top10.filter_stats)
    other = load_ctr(avazu_cfg(avazu_path, avazu_test_path, profile="avazu_top6_by_count"))
    assert other.fingerprint != avazu_top10.fingerprint and other.num_conditions == 6


def test_mix_profile_on_the_sample(avazu_path):
    src = load_ctr(avazu_cfg(avazu_path, None, profile="avazu_top200_mix30"))
    selected = src.filter_stats.filter("selected").sort("order")["value"].to_list()
    assert 20 < len(selected) <= 30 and set(src.condition_values) == set(selected)


def test_max_rows_and_relative_paths(avazu_path, monkeypatch):
    monkeypatch.chdir(avazu_path.parent.parent)
    src = load_ctr(avazu_cfg("avazu/avazu_sample.csv", None, "ctr.datasets.avazu.max_rows=3000"))
    assert src.source_rows == 3000 and src.train_rows.row_id.max() < 3000


def test_config_warnings(avazu_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("x\n")
    with pytest.warns(UserWarning) as record:
        load_ctr(avazu_cfg(avazu_path, None, 'ctr.datasets.avazu.weight_col="w"'))
    text = " ".join(str(w.message) for w in record)
    assert "weight_col" in text and "data/ holds CSV files directly" in text


# ------------------------------------------------------------------------------------- cache

def test_cache_reuse_and_invalidation(avazu_path, tmp_path):
    source = tmp_path / "train.csv"
    shutil.copyfile(avazu_path, source)
    cache = tmp_path / "cache"
    first = load_ctr(avazu_cfg(source, None, *cache_sets(cache)))
    assert "cache_write" in first.timings and Path(first.cache_path).is_file()
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]
    second = load_ctr(avazu_cfg(source, None, *cache_sets(cache)))
    assert "cache_read" in second.timings and "stats" not in second.timings
    assert same_rows(first.train_rows, second.train_rows) and second.fingerprint == first.fingerprint
    assert second.filter_stats.equals(first.filter_stats) and second.source_rows == first.source_rows
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))        # the source changed
    third = load_ctr(avazu_cfg(source, None, *cache_sets(cache)))
    assert "stats" in third.timings and third.cache_path != first.cache_path
    forced = load_ctr(avazu_cfg(source, None, *cache_sets(cache, overwrite=True)))
    assert "cache_write" in forced.timings and "cache_read" not in forced.timings
    assert same_rows(forced.train_rows, first.train_rows)


def test_the_data_fingerprint_follows_the_files_bytes_not_their_path_or_mtime(avazu_path, tmp_path):
    """Reproducibility audit: the fingerprint hashed path, size and mtime, so a copy of the same file elsewhere (or
    touched) gave other trial ids, and compare-sweeps refused two sweeps run on two machines as "different data",
    while bytes edited at the same size and mtime kept the ids. It now hashes the content (SHA-256)."""
    original = load_ctr(avazu_cfg(avazu_path))
    copy = tmp_path / "elsewhere" / "train.csv"
    copy.parent.mkdir()
    shutil.copyfile(avazu_path, copy)
    os.utime(copy, ns=(1, 10**18))
    assert load_ctr(avazu_cfg(copy)).fingerprint == original.fingerprint
    text = copy.read_bytes()
    header, first, rest = text.split(b"\n", 2)
    click = header.split(b",").index(b"click")
    fields = first.split(b",")
    fields[click] = b"1" if fields[click] == b"0" else b"0"  # one label flipped: same size
    st = copy.stat()
    copy.write_bytes(b"\n".join([header, b",".join(fields), rest]))
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert copy.stat().st_size == st.st_size and load_ctr(avazu_cfg(copy)).fingerprint != original.fingerprint
    # a cache hit takes the digests from the entry, without reading the source again; an entry written before
    # digests were stored has them computed once
    cache = tmp_path / "cache"
    cached = load_ctr(avazu_cfg(avazu_path, None, *cache_sets(cache)))
    hit = load_ctr(avazu_cfg(avazu_path, None, *cache_sets(cache)))
    assert cached.fingerprint == hit.fingerprint == original.fingerprint
    digest = hashlib.sha256(Path(avazu_path).read_bytes()).hexdigest()
    assert original.files == hit.files == {"train": {"path": str(Path(avazu_path).resolve()),
                                                     "bytes": Path(avazu_path).stat().st_size, "sha256": digest}}
    assert "sha256_wait" in cached.timings and "sha256" not in hit.timings and "cache_read" in hit.timings
    manifest = json.loads(Path(hit.cache_path).read_text())
    assert manifest["sha256"] == {"train": digest}
    Path(hit.cache_path).write_text(json.dumps({k: v for k, v in manifest.items() if k != "sha256"}))
    old = load_ctr(avazu_cfg(avazu_path, None, *cache_sets(cache)))
    assert "sha256" in old.timings and old.fingerprint == original.fingerprint
    assert json.loads(Path(hit.cache_path).read_text())["sha256"] == {"train": digest}  # stored in the old entry
    upgraded = load_ctr(avazu_cfg(avazu_path, None, *cache_sets(cache)))
    assert "sha256" not in upgraded.timings and upgraded.fingerprint == original.fingerprint
    # the digest runs in a thread beside the parse: a failed load cancels it at its next block
    from le_ray.data.scan import SourceFile
    source = SourceFile(Path(avazu_path), "ctr.datasets.avazu.train_path", "csv", True)
    cancel = threading.Event()
    assert source.sha256(cancel) == digest
    cancel.set()
    assert source.sha256(cancel) is None


def test_partial_or_corrupt_cache_is_never_trusted(avazu_path, tmp_path):
    cache = tmp_path / "cache"
    good = load_ctr(avazu_cfg(avazu_path, None, *cache_sets(cache)))
    data_file = next(cache.glob("*.train.parquet"))
    data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])   # interrupted write
    with pytest.warns(UserWarning, match="ignoring filter cache"):
        rebuilt = load_ctr(avazu_cfg(avazu_path, None, *cache_sets(cache)))
    assert "stats" in rebuilt.timings and same_rows(rebuilt.train_rows, good.train_rows)
    size = data_file.stat().st_size
    data_file.write_bytes(b"\0" * size)                                       # right size, garbage
    with pytest.warns(UserWarning, match="ignoring filter cache"):
        assert same_rows(load_ctr(avazu_cfg(avazu_path, None, *cache_sets(cache))).train_rows, good.train_rows)
    Path(good.cache_path).unlink()                                            # no manifest: never read
    data_file.write_bytes(b"junk")
    again = load_ctr(avazu_cfg(avazu_path, None, *cache_sets(cache)))
    assert "cache_write" in again.timings and same_rows(again.train_rows, good.train_rows)
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]


def test_csv_cache_matches_parquet(avazu_path, avazu_test_path, tmp_path, avazu_top10):
    for _ in range(2):
        src = load_ctr(avazu_cfg(avazu_path, avazu_test_path, *cache_sets(tmp_path, fmt="csv")))
        assert src.cache_path and same_rows(src.train_rows, avazu_top10.train_rows)
        assert same_rows(src.test_rows, avazu_top10.test_rows)
    assert "cache_read" in src.timings and list(tmp_path.glob("*.train.csv"))


# ------------------------------------------------------------------------------------ criteo

def test_criteo_csv_split_and_missing_numerics(criteo_path):
    src = load_ctr(criteo_cfg(criteo_path))
    tr, te = src.train_rows, src.test_rows
    assert (tr.row_id % 1000 >= 100).all() and (te.row_id % 1000 < 100).all() and te.y is not None
    assert src.num_conditions == 20 and src.condition_values[:2] == ("05db9164", "68fd1e64")
    assert src.numeric_features[:13] == tuple(f"I{i}" for i in range(1, 14)) and "I1_missing" in src.numeric_features
    assert np.isfinite(tr.x_num).all() and tr.x_cat.shape[1] == 25
    raw = pl.read_csv(criteo_path, infer_schema=False)
    i1 = raw["I1"].gather(tr.row_id)
    col = src.numeric_features.index("I1_missing")
    assert np.array_equal(tr.x_num[:, col] == 1, i1.is_null().to_numpy())
    assert (tr.x_num[i1.is_null().to_numpy(), 0] == 0).all()
    x = i1.cast(pl.Float64).to_numpy()
    ok = ~np.isnan(x)
    assert np.allclose(tr.x_num[ok, 0], np.sign(x[ok]) * np.log1p(np.abs(x[ok])), rtol=1e-6)
    whole = load_ctr(criteo_cfg(criteo_path, "data.use_test_set=false"))
    assert whole.test_rows is None and len(whole.train_rows) == len(tr) + len(te)


def test_criteo_raw_tab_format_with_blanks(criteo_path, tmp_path):
    rows = pl.read_csv(criteo_path, infer_schema=False).head(1500)
    rows = rows.with_columns(C1=pl.when(pl.int_range(pl.len()).is_between(200, 204)).then(None).otherwise("C1"))
    assert rows["I1"].null_count() > 0 and rows["C26"].null_count() > 0
    raw, csv = tmp_path / "train.txt", tmp_path / "train.csv"
    rows.write_csv(raw, separator="\t", include_header=False)
    rows.write_csv(csv)
    a = load_ctr(criteo_cfg(raw, "ctr.datasets.criteo.missing_numeric=\"zero_indicator\""))
    b = load_ctr(criteo_cfg(csv, "ctr.datasets.criteo.missing_numeric=\"zero_indicator\""))
    assert a.source_rows == 1500 and same_rows(a.train_rows, b.train_rows) and same_rows(a.test_rows, b.test_rows)
    assert a.condition_values == b.condition_values and a.numeric_features == b.numeric_features
    i2 = rows["I2"].gather(a.train_rows.row_id).cast(pl.Float64).to_numpy()
    assert np.array_equal(a.train_rows.x_num[:, 1], i2.astype(np.float32))   # raw values, no transform
    assert a.filter_stats.filter(pl.col("value") == "")["count"].item() == 5        # blank condition → ""
    with pytest.warns(UserWarning, match="held-out part .* has no row of a kept ad"):  # rows 200-204: all training
        blank = load_ctr(criteo_cfg(raw, 'ctr.datasets.criteo.filter.mode="ids"', 'ctr.datasets.criteo.filter.ids=[""]'))
    assert blank.condition_values == ("",) and blank.train_rows.row_id.tolist() == [200, 201, 202, 203, 204]
    dropped = load_ctr(criteo_cfg(raw, "ctr.datasets.criteo.drop_na=true"))
    assert "I1_missing" not in dropped.numeric_features and len(dropped.train_rows) < len(a.train_rows)


# -------------------------------------------------------------------------------- bad inputs

def write_variant(raw: pl.DataFrame, path: Path, **columns) -> Path:
    raw.with_columns(**columns).write_csv(path)
    return path


def test_missing_file_names_the_key_and_path(tmp_path):
    with pytest.raises(DataError, match=r"ctr\.datasets\.avazu\.train_path: file not found: '.*nowhere\.csv'"):
        load_ctr(avazu_cfg(tmp_path / "nowhere.csv"))
    with pytest.raises(DataError, match=r"ctr\.datasets\.avazu\.test_path: file not found"):
        load_ctr(avazu_cfg(require_sample("avazu", "avazu_sample.csv"), tmp_path / "t.csv"))
    (tmp_path / "sub").mkdir()  # a relative path with '..' is reported resolved, without the '..' (UX audit)
    with pytest.raises(DataError, match=rf"file not found: '.*' \(resolved to '{re.escape(str(tmp_path))}/gone\.csv'\)"):
        load_ctr(avazu_cfg(tmp_path / "sub" / ".." / "gone.csv"))


def test_missing_column(avazu_raw, tmp_path):
    path = tmp_path / "train.csv"
    avazu_raw.drop("C15").write_csv(path)
    with pytest.raises(DataError, match=r"train\.csv' has no column 'C15' "
                                        r"\(needed by ctr\.datasets\.avazu\.categorical_cols\)"):
        load_ctr(avazu_cfg(path))


def test_non_binary_label(avazu_raw, tmp_path):
    path = write_variant(avazu_raw, tmp_path / "train.csv",
                         click=pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("2")).otherwise(pl.col("click")))
    with pytest.raises(DataError, match=r"train\.csv', column 'click', data row 8 \(line 9 of the file\): "
                                        r"got '?2'?; expected 0 or 1"):
        load_ctr(avazu_cfg(path))
    path = write_variant(avazu_raw, tmp_path / "train2.csv",
                         click=pl.when(pl.int_range(pl.len()) == 9).then(pl.lit("yes")).otherwise(pl.col("click")))
    with pytest.raises(DataError, match=r"train2\.csv', column 'click', data row 10 \(line 11 of the file\): "
                                        r"got 'yes'; expected 0 or 1"):
        load_ctr(avazu_cfg(path))
    path = write_variant(avazu_raw, tmp_path / "train3.csv",
                         click=pl.when(pl.int_range(pl.len()) == 4).then(None).otherwise(pl.col("click")))
    with pytest.raises(DataError, match=r"train3\.csv', column 'click', data row 5 \(line 6 of the file\): "
                                        r"got an empty field; expected 0 or 1"):
        load_ctr(avazu_cfg(path))


def test_unparsable_hour(avazu_raw, tmp_path):
    path = write_variant(avazu_raw, tmp_path / "train.csv",
                         hour=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("14102199")).otherwise(pl.col("hour")))
    with pytest.raises(DataError, match=r"column 'hour', data row 1 \(line 2 of the file\): got '?14102199'?; "
                                        r"expected YYMMDDHH"):
        load_ctr(avazu_cfg(path))
    path = write_variant(avazu_raw, tmp_path / "train2.csv",
                         hour=pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("2014-10-21")).otherwise(pl.col("hour")))
    with pytest.raises(DataError, match=r"column 'hour', data row 6 \(line 7 of the file\): got '2014-10-21'; "
                                        r"expected YYMMDDHH"):
        load_ctr(avazu_cfg(path))


def test_empty_and_header_only_files(avazu_raw, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match=r"ctr\.datasets\.avazu\.train_path: file '.*empty\.csv' is empty"):
        load_ctr(avazu_cfg(empty))
    header = tmp_path / "header.csv"
    avazu_raw.head(0).write_csv(header)
    with pytest.raises(DataError, match=r"header\.csv' has no data rows"):
        load_ctr(avazu_cfg(header))


def test_an_empty_test_split_is_refused_where_it_is_evaluated_and_named_elsewhere(avazu_path, avazu_test_path,
                                                                                  tmp_path):
    """A header-only test file was accepted for evaluation.split test (0 rows evaluated); where the test split only
    gets predictions, a warning names it (a filter keeping ads absent from the test day is legitimate)."""
    empty = tmp_path / "test.csv"
    empty.write_text(avazu_test_path.read_text().splitlines()[0] + "\n")
    evaluate = ["data.use_test_set=true", "evaluation.split=test", "evaluation.use_test_labels=false"]
    with pytest.raises(DataError, match=r"ctr\.datasets\.avazu\.test_path: file '.*test\.csv' has no data rows; "
                                        r"expected test rows to evaluate on"):
        load_ctr(avazu_cfg(avazu_path, empty, *evaluate))
    with pytest.warns(UserWarning, match=r"test_path: file '.*test\.csv' has no data rows; the test split is empty"):
        load_ctr(avazu_cfg(avazu_path, empty, "data.use_test_set=true"))
    other = tmp_path / "other.csv"  # rows, but none of the kept ads
    lines = avazu_test_path.read_text().splitlines()
    c14 = lines[0].split(",").index("C14")
    other.write_text("\n".join([lines[0]] + [line for line in lines[1:] if line.split(",")[c14] not in TOP10]) + "\n")
    with pytest.warns(UserWarning, match=r"none of the [\d,]+ rows of file '.*other\.csv' is left: the filter applies "
                                         r"to the test file \(ctr\.datasets\.avazu\.filter\.apply_to_test\)"):
        load_ctr(avazu_cfg(avazu_path, other, "data.use_test_set=true"))


def test_filter_leaving_no_rows(avazu_path):
    with pytest.warns(UserWarning, match="not in the train rows"), \
            pytest.raises(DataError, match=r"ctr\.datasets\.avazu\.filter \(mode ids, column 'C14'\): "
                                           r"the filter keeps no"):
        load_ctr(avazu_cfg(avazu_path, None, 'ctr.datasets.avazu.filter.mode="ids"',
                           'ctr.datasets.avazu.filter.ids=[1, "2"]'))
    with pytest.raises(ConfigError, match=r"filter\.ids: got 'no-such-ad'; expected an integer"):
        load_ctr(avazu_cfg(avazu_path, None, 'ctr.datasets.avazu.filter.mode=null', 'ctr.datasets.avazu.filter.k=null',
                           'ctr.datasets.avazu.filter.ids=["no-such-ad"]'))
    with pytest.raises(DataError, match=r"min_count 100000"):
        load_ctr(avazu_cfg(avazu_path, None, "ctr.datasets.avazu.filter.min_count=100000"))


def test_unparsable_numeric(criteo_path, tmp_path):
    rows = pl.read_csv(criteo_path, infer_schema=False).head(400)
    path = write_variant(rows, tmp_path / "c.csv",
                         I3=pl.when(pl.int_range(pl.len()) == 150).then(pl.lit("abc")).otherwise(pl.col("I3")))
    with pytest.raises(DataError, match=r"column 'I3', data row 151 \(line 152 of the file\): got 'abc'; "
                                             r"expected a number"):
        load_ctr(criteo_cfg(path))


def _criteo_lines(criteo_path, n=400) -> list[str]:
    """The header and the first ``n`` data rows of the Criteo sample, as text lines."""
    return criteo_path.read_text().splitlines()[: n + 1]


def _write_lines(path: Path, lines: list[str], tail: str = "\n") -> Path:
    path.write_text("\n".join(lines) + tail)
    return path


@pytest.mark.parametrize("value", ["NaN", "nan", "inf", "-inf", "1e999"])
def test_non_finite_numeric_is_refused_with_its_line(criteo_path, tmp_path, value):
    lines = _criteo_lines(criteo_path)
    fields = lines[151].split(",")
    fields[3] = value                                   # I3 of data row 150 (0-based: line 152)
    path = _write_lines(tmp_path / "c.csv", lines[:151] + [",".join(fields)] + lines[152:])
    with pytest.raises(DataError, match=rf"c\.csv', column 'I3', data row 151 \(line 152 of the file\): "
                                        rf"got '{re.escape(value)}'; expected a finite number or an empty field"):
        load_ctr(criteo_cfg(path))


@pytest.mark.parametrize("change, got", [(lambda f: f[:-1], 39), (lambda f: f + ["x"], 41)])
def test_ragged_row_is_refused_with_line_and_field_counts(criteo_path, tmp_path, change, got):
    lines = _criteo_lines(criteo_path)
    lines[121] = ",".join(change(lines[121].split(",")))   # data row 120 (0-based)
    path = _write_lines(tmp_path / "c.csv", lines)
    with pytest.raises(DataError, match=rf"criteo\.train_path: file '.*c\.csv', data row 121 \(line 122 of the "
                                        rf"file\): expected 40 fields \(as in the header\), got {got}$"):
        load_ctr(criteo_cfg(path))
    raw = _write_lines(tmp_path / "train.txt", [line.replace(",", "\t") for line in lines[1:]])
    with pytest.raises(DataError, match=rf"data row 121 \(line 121 of the file\): expected 40 fields \(as raw "
                                        rf"Criteo train rows have\), got {got}$"):
        load_ctr(criteo_cfg(raw))


def test_trailing_blank_lines_are_skipped(criteo_path, tmp_path):
    lines = _criteo_lines(criteo_path)
    plain = load_ctr(criteo_cfg(_write_lines(tmp_path / "plain.csv", lines)))
    padded = load_ctr(criteo_cfg(_write_lines(tmp_path / "padded.csv", lines, tail="\n\n   \r\n\n")))
    assert padded.source_rows == plain.source_rows == 400
    assert same_rows(plain.train_rows, padded.train_rows) and same_rows(plain.test_rows, padded.test_rows)
    raw = _write_lines(tmp_path / "train.txt", [line.replace(",", "\t") for line in lines[1:]], tail="\n\n")
    assert load_ctr(criteo_cfg(raw)).source_rows == 400


def test_blank_line_between_data_rows_is_refused(criteo_path, tmp_path):
    lines = _criteo_lines(criteo_path)
    path = _write_lines(tmp_path / "c.csv", lines[:101] + ["  "] + lines[101:])
    with pytest.raises(DataError, match=r"c\.csv': blank line 102 of the file, between data rows; blank lines are "
                                        r"skipped only at the end of the file"):
        load_ctr(criteo_cfg(path))


def test_compressed_files_and_parquet_read_as_text_are_refused_by_their_first_bytes(criteo_path, tmp_path):
    """A gzip file under a .csv name passed the byte-level line check (broken rows filled with nulls) or crashed in
    it; a Parquet file read as CSV printed its binary header as column names."""
    import gzip
    lines = _criteo_lines(criteo_path)
    packed = tmp_path / "c.csv"
    packed.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(DataError, match=r"criteo\.train_path: file '.*c\.csv' is gzip-compressed; expected an "
                                        r"uncompressed CSV / TSV file or a Parquet file"):
        load_ctr(criteo_cfg(packed))
    parquet = tmp_path / "p.csv"
    pl.read_csv(_write_lines(tmp_path / "plain.csv", lines), infer_schema=False).write_parquet(parquet)
    with pytest.raises(DataError, match=r"p\.csv' is a Parquet file but would be read as csv; set "
                                        r"ctr\.datasets\.criteo\.format to parquet"):
        load_ctr(criteo_cfg(parquet, "ctr.datasets.criteo.format=csv"))


@pytest.mark.parametrize("field, why", [
    ('"68fd1e64', r"a quoted field runs on into the next line \(an odd number of '\"'\): if the field is meant to "
                  r"span lines, remove its line breaks; if the quote is stray, remove it"),
    ('"68fd1e64"\r80e26c9b', r"it cannot be read as one row \(new-line character seen in unquoted field"),
])
def test_a_line_that_is_not_one_row_is_refused_with_its_line(criteo_path, tmp_path, field, why):
    """An open quote merged two rows silently (every later row then sat one line off); a bare carriage return
    next to a quote crashed the line check with csv.Error."""
    lines = _criteo_lines(criteo_path)
    fields = lines[51].split(",")
    fields[20] = field                                  # a categorical of data row 50 (0-based)
    path = _write_lines(tmp_path / "c.csv", lines[:51] + [",".join(fields)] + lines[52:])
    with pytest.raises(DataError, match=rf"c\.csv', data row 51 \(line 52 of the file\): {why}.*expected one row per "
                                        r"line"):
        load_ctr(criteo_cfg(path))


def test_a_file_that_is_not_utf8_is_refused_with_its_first_bad_line(criteo_path, tmp_path):
    """Polars says only "invalid utf-8 sequence"; the error path finds the line (blocks of any size: a UTF-8
    character cut by a block's end is carried over, not taken for the culprit)."""
    from le_ray.data.scan import _first_non_utf8
    lines = _criteo_lines(criteo_path)
    lines[40] = lines[40].replace(",", ",caf\u00e9 ", 1)       # valid UTF-8 (2 bytes)
    fields = lines[90].split(",")
    fields[20] = "caf\xe9"                                      # Latin-1 é: not UTF-8
    lines[90] = ",".join(fields)
    path = tmp_path / "c.csv"
    path.write_bytes(("\n".join(lines[:90]) + "\n").encode() + ("\n".join(lines[90:]) + "\n").encode("latin-1"))
    with pytest.raises(DataError, match=r"c\.csv' could not be read as csv: .*utf-8.* \(first at line 91: byte 0xE9; "
                                        r"save the file as UTF-8"):
        load_ctr(criteo_cfg(path))
    assert all(_first_non_utf8(path, block).startswith(" (first at line 91: byte 0xE9") for block in (5, 64, 4096))
    path.write_bytes(b"a,b\n1,2\n3,caf\xe9")  # ends inside a character: still located
    assert _first_non_utf8(path).startswith(" (first at line 3: byte 0xE9")


def test_a_header_naming_a_column_twice_is_refused(criteo_path, tmp_path):
    """Polars renames the second copy <name>_duplicated_0 and le_ray read the first as the feature."""
    lines = _criteo_lines(criteo_path)
    lines[0] = lines[0].replace("I5,", "I4,", 1)
    with pytest.raises(DataError, match=r"c\.csv': its header names column 'I4' 2 times, and "
                                        r"ctr\.datasets\.criteo\.numeric_cols reads it; expected each column name once"):
        load_ctr(criteo_cfg(_write_lines(tmp_path / "c.csv", lines)))
    lines = _criteo_lines(criteo_path)
    unread = [lines[0] + ",spare,spare"] + [line + ",1,2" for line in lines[1:]]
    assert load_ctr(criteo_cfg(_write_lines(tmp_path / "u.csv", unread))).kept_rows  # a repeated column nothing reads


def test_a_value_beyond_float32_is_refused_only_where_it_enters_the_model_as_it_is(criteo_path, tmp_path):
    """1e39 is finite in float64 but inf in float32: with zero_indicator it made the standardisation NaN and failed
    the first training step; log1p_indicator takes its log (≈ 90)."""
    lines = _criteo_lines(criteo_path)
    fields = lines[31].split(",")
    fields[5] = "1e39"                                  # I5 of data row 30 (0-based)
    path = _write_lines(tmp_path / "c.csv", lines[:31] + [",".join(fields)] + lines[32:])
    with pytest.raises(DataError, match=r"column 'I5', data row 31 \(line 32 of the file\): got '1e39'; expected a "
                                        r"number of magnitude at most 3.4e\+38 or an empty field: with "
                                        r"ctr\.datasets\.criteo\.missing_numeric = zero_indicator"):
        load_ctr(criteo_cfg(path, "ctr.datasets.criteo.missing_numeric=zero_indicator"))
    source = load_ctr(criteo_cfg(path, "ctr.datasets.criteo.missing_numeric=log1p_indicator"))
    assert np.isfinite(source.train_rows.x_num).all()


def test_directory_as_data_path_says_directory(tmp_path, criteo_path):
    shutil.copy(criteo_path, tmp_path / "criteo_sample.csv")
    with pytest.raises(DataError, match=r"criteo\.train_path: '.*' is a directory \(resolved to '.*'\); expected the "
                                        r"path of a CSV file \(or TSV / Parquet\) of criteo rows; it holds "
                                        r"criteo_sample\.csv"):
        load_ctr(criteo_cfg(tmp_path))


def test_semicolon_header_gets_a_delimiter_hint(criteo_path, tmp_path):
    path = _write_lines(tmp_path / "c.csv", [line.replace(",", ";") for line in _criteo_lines(criteo_path, 50)])
    with pytest.raises(DataError, match=r"has no column 'C2' .*; its header \(line 1\) has no ',' but has ';', so the "
                                        r"file looks ';'-separated"):
        load_ctr(criteo_cfg(path))


# ------------------------------------------------------------------------------------ yambda

def python_hash(values) -> int:
    """Pure-Python twin of ``ctr.stable_hash`` (guards its stability across Polars versions)."""
    p, h = 2**31 - 1, 0
    for x in values:
        h = (h * 1_000_003 + x % p) % p
        h ^= h // 32768
        h = (h * 97_531) % p
    return h


def yambda_frame(n=6000, seed=0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    events = rng.choice(["listen", "like", "dislike", "unlike", "undislike"], n, p=[0.7, 0.15, 0.07, 0.05, 0.03])
    played = np.where(events == "listen", rng.integers(0, 101, n), -1)
    return pl.DataFrame({
        "uid": rng.integers(0, 40, n).astype(np.uint32), "timestamp": rng.integers(0, 10**7, n).astype(np.uint32),
        "item_id": rng.zipf(1.6, n).clip(1, 900).astype(np.uint32),
        "is_organic": rng.integers(0, 2, n).astype(np.uint8),
        "event_type": events, "played_ratio_pct": pl.Series(played).replace(-1, None).cast(pl.UInt16),
        "track_length_seconds": rng.integers(60, 400, n).astype(np.uint32)})


def yambda_cfg(path, *sets):
    return load_config(profile="yambda_top200", sets=[f"ctr.datasets.yambda.train_path={_q(path)}", *sets])


def test_yambda_event_type_is_label_not_feature(tmp_path):
    frame = yambda_frame()
    frame.write_parquet(tmp_path / "a.parquet")
    # every non-positive event type swapped for another: same labels; features must not move
    frame.with_columns(event_type=pl.col("event_type").replace({"listen": "dislike", "dislike": "listen"})
                       ).write_parquet(tmp_path / "b.parquet")
    a, b = (load_ctr(yambda_cfg(tmp_path / f"{x}.parquet")) for x in "ab")
    assert "event_type" not in a.categorical_features + a.numeric_features
    assert a.categorical_features == ("uid", "is_organic")
    assert same_rows(a.train_rows, b.train_rows) and same_rows(a.test_rows, b.test_rows)
    is_like = (frame["event_type"] == "like").to_numpy()
    assert np.array_equal(a.train_rows.y, is_like[a.train_rows.row_id].astype(np.float32))


def test_yambda_hash_split_is_stable(tmp_path):
    frame = yambda_frame()
    frame.write_parquet(tmp_path / "a.parquet")
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    shuffled.write_parquet(tmp_path / "s.parquet")
    keep_all = ["ctr.datasets.yambda.filter.mode=null", "ctr.datasets.yambda.filter.k=null",
                "ctr.datasets.yambda.max_conditions=1000"]
    a = load_ctr(yambda_cfg(tmp_path / "a.parquet", *keep_all))
    expected = np.array([python_hash(r) % 1000 < 100
                         for r in frame.select("uid", "item_id", "timestamp").iter_rows()])
    assert np.array_equal(np.sort(a.test_rows.row_id), np.flatnonzero(expected))
    assert 0.07 < expected.mean() < 0.13
    s = load_ctr(yambda_cfg(tmp_path / "s.parquet", *keep_all))
    keys = lambda df, ids: set(df[ids.tolist()].select("uid", "item_id", "timestamp").iter_rows())
    assert keys(frame, a.test_rows.row_id) == keys(shuffled, s.test_rows.row_id)


@pytest.mark.parametrize("fmt, place", [("csv", "data row 6 (line 7 of the file)"),
                                        ("tsv", "data row 6 (line 7 of the file)"),
                                        ("criteo_raw", "data row 6 (line 6 of the file)"),
                                        ("parquet", "row 5 (counting from 0)")])
def test_a_bad_value_is_placed_at_the_line_a_person_opens(fmt, place):
    from pathlib import Path

    from le_ray.data.scan import SourceFile, _row_place

    assert _row_place(SourceFile(Path("f"), "k", fmt, True), 5) == place  # raw Criteo has no header line
