"""le_ray.data.cache on small frames: round trip, manifest written last, unsound entries ignored."""

from __future__ import annotations

import json

import polars as pl
import pytest

from le_ray.data.cache import CACHE_VERSION, cache_read, cache_write


def frames() -> dict[str, pl.DataFrame]:
    train = pl.DataFrame({"__row": [0, 2, 5], "__y": [0.0, 1.0, 0.0], "C14": ["a", "", "b"],
                          "I1": [1.5, None, 3.0], "hour": [14102100, 14102101, 14102102]})
    stats = pl.DataFrame({"value": ["a", "b"], "count": [3, 1], "selected": [True, False]})
    return {"train": train, "test": train.head(1), "stats": stats}


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_round_trip_and_manifest(tmp_path, fmt):
    src = frames()
    path = cache_write(tmp_path / "c", "avazu-k", fmt, src, {"source_rows": 9})
    assert path == tmp_path / "c" / "avazu-k.json"
    manifest = json.loads(path.read_text())
    assert manifest["version"] == CACHE_VERSION and manifest["format"] == fmt and manifest["source_rows"] == 9
    assert set(manifest["parts"]) == {"train", "test", "stats"}
    assert manifest["parts"]["train"]["file"] == f"avazu-k.train.{fmt}"
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]
    got, again = cache_read(path.parent, "avazu-k", fmt)
    assert again == manifest and all(got[k].equals(v) for k, v in src.items())


def test_missing_manifest_is_a_miss_and_other_version_is_ignored(tmp_path):
    assert cache_read(tmp_path, "avazu-k", "parquet") is None
    path = cache_write(tmp_path, "avazu-k", "parquet", frames(), {"source_rows": 9})
    with pytest.warns(UserWarning, match="written by another version or format"):
        assert cache_read(tmp_path, "avazu-k", "csv") is None       # same stem, other format
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "version": CACHE_VERSION + 1}))
    with pytest.warns(UserWarning, match="written by another version or format"):
        assert cache_read(tmp_path, "avazu-k", "parquet") is None


def test_rewrite_drops_the_old_manifest_first(tmp_path, monkeypatch):
    cache_write(tmp_path, "avazu-k", "parquet", frames(), {"source_rows": 9})
    import le_ray.data.cache as cache

    def boom(*_):
        raise OSError("disk full")

    monkeypatch.setattr(cache, "_write_frame", boom)
    with pytest.raises(OSError, match="disk full"):
        cache_write(tmp_path, "avazu-k", "parquet", frames(), {"source_rows": 9})
    assert not (tmp_path / "avazu-k.json").exists()                    # never trust a half-rewritten entry
    assert cache_read(tmp_path, "avazu-k", "parquet") is None


def test_cache_key_follows_the_resolved_filter_column(tmp_path):
    from le_ray.config import load_config
    from le_ray.data.cache import cache_key
    from le_ray.data.scan import SourceFile

    src = tmp_path / "t.csv"
    src.write_text("click,C14\n0,1\n")
    train = SourceFile(path=src, key="k", fmt="csv", labelled=True)
    keys = {col: cache_key("avazu", load_config(sets=[f"ctr.datasets.avazu.filter_col={col}"]).ctr.datasets["avazu"],
                           train, None, split=False, use_test=False) for col in ("C14", "C1")}
    assert keys["C14"] != keys["C1"]
    default = cache_key("avazu", load_config().ctr.datasets["avazu"], train, None, split=False, use_test=False)
    assert default == keys["C14"]  # filter_col = C14 is the condition column: same rows, same entry


def test_parquet_entry_with_a_datetime_column_is_reused(tmp_path):
    import datetime as dt
    import warnings

    import polars as pl

    from le_ray.data.cache import cache_read, cache_write

    frames = {"train": pl.DataFrame({"t": [dt.datetime(2020, 1, 1)], "x": [1]}), "stats": pl.DataFrame({"v": ["a"]})}
    cache_write(tmp_path, "s", "parquet", frames, {"source_rows": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hit = cache_read(tmp_path, "s", "parquet")
    assert hit is not None and hit[0]["train"].equals(frames["train"])
