"""The filter cache: the kept, normalised rows of a CTR source, written once and reused.

With ``ctr.datasets.<name>.filter.cache.enabled`` the frames :mod:`le_ray.data.ctr` builds
(``train``, ``test`` when there is one, and the filter ``stats``) are written by
:func:`cache_write` (stage ``cache_write``) and read back by :func:`cache_read` (``cache_read``)
instead of scanning the source again.

One entry, for stem ``<dataset>-<cache_key>`` in the cache folder:

* ``<stem>.<part>.parquet`` (or ``.csv`` with ``filter.cache.format = csv``) per frame;
* ``<stem>.json``, the manifest: ``version`` (:data:`CACHE_VERSION`), ``stem``, ``format``,
  ``parts`` (per frame: ``file``, ``bytes``, ``rows``, ``dtypes`` column → dtype name),
  ``source_rows`` and ``sha256`` (the source files' content digests, for the data fingerprint, so a
  cache hit need not read the sources again).

Every file is written atomically (:mod:`le_ray.atomic`), and the manifest last, after deleting the
old one: a manifest means a complete entry, so a half-written entry is never trusted. An entry whose
manifest has another version or format, a part file that is missing, has the wrong size or does not
match its manifest's rows and dtypes, is ignored with a warning and rebuilt.

:func:`cache_key` fingerprints the source files' identity (path, size, mtime, format) and every
setting that changes the cached rows — not the encoding settings (vocabulary and condition caps,
device counter cap, numeric transform), which only act on the rows after the cache.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import polars as pl

from le_ray.atomic import atomic_write_text, atomic_write_with
from le_ray.config import config_fingerprint
from le_ray.config.schema import CtrDatasetConfig
from le_ray.data.scan import SourceFile, contiguous
from le_ray.config import to_plain

__all__ = ["CACHE_VERSION", "cache_key", "row_settings", "cache_dir", "cache_write", "cache_note", "cache_read"]

#: Bump when the cached frames or the encoding change meaning (invalidates caches and fingerprints).
CACHE_VERSION = 1

_DTYPES = {str(t): t for t in (pl.String, pl.Boolean, pl.Float32, pl.Float64, pl.Int8, pl.Int16, pl.Int32,
                                 pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)}


def cache_key(name: str, ds: CtrDatasetConfig, train: SourceFile, test: SourceFile | None, *, split: bool,
              use_test: bool) -> str:
    """Fingerprint of the source files' identity (path, size, mtime) and every setting that changes the cached
    (filtered) rows."""
    return config_fingerprint({"version": CACHE_VERSION, "dataset": name, "settings": row_settings(ds),
                               "use_test_set": use_test, "split": split,
                               "train": train.identity(),
                               "test": test.identity() if test else None})


def row_settings(ds: CtrDatasetConfig) -> dict:
    """The dataset settings that change the filtered rows (not the encoding's: vocabulary and condition caps,
    device counter cap, numeric transform, which act on the rows after the cache)."""
    settings = to_plain(ds)
    for key in ("categorical_max_values", "max_conditions", "device_counter_cap", "missing_numeric",
                "balance_by_condition", "plot_sample_size", "weight_col", "filter_col", "filter_top_k",
                "train_path", "test_path"):  # the files are identified apart: by path (cache) or content (data)
        settings.pop(key, None)
    settings["filter"].pop("cache", None)
    # the column the filter ranks, as resolved (filter.col, else the legacy filter_col, else the condition)
    settings["filter"]["col"] = ds.filter.col or ds.filter_col or ds.condition_col
    return settings


def cache_dir(configured: str) -> Path:
    """The cache folder ``filter.cache.dir``, ``~`` expanded, relative to the working directory."""
    directory = Path(configured).expanduser()
    return directory if directory.is_absolute() else Path.cwd() / directory


def _write_frame(df: pl.DataFrame, path: Path, fmt: str) -> None:
    atomic_write_with(path, (lambda p: df.write_parquet(p)) if fmt == "parquet" else (lambda p: df.write_csv(p)))


def _read_frame(path: Path, fmt: str, dtypes: dict[str, str]) -> pl.DataFrame:
    if fmt == "parquet":  # parquet keeps every dtype itself (Datetime included); the manifest check compares them
        return pl.read_parquet(path)
    schema = {c: _DTYPES[t] for c, t in dtypes.items()}
    df = pl.read_csv(path, schema=schema)
    return df.with_columns(pl.col(c).fill_null("") for c, t in schema.items() if t == pl.String)


def _cache_files(directory: Path, stem: str, fmt: str) -> dict[str, Path]:
    ext = "parquet" if fmt == "parquet" else "csv"
    return {part: directory / f"{stem}.{part}.{ext}" for part in ("train", "test", "stats")}


def cache_write(directory: Path, stem: str, fmt: str, frames: dict[str, pl.DataFrame], extra: dict) -> Path:
    """Write each frame, then the manifest last (atomically): a manifest means a complete entry."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest_path = directory / f"{stem}.json"
    manifest_path.unlink(missing_ok=True)
    paths = _cache_files(directory, stem, fmt)
    entries = {}
    for part, df in frames.items():
        _write_frame(df, paths[part], fmt)
        entries[part] = {"file": paths[part].name, "bytes": paths[part].stat().st_size, "rows": df.height,
                         "dtypes": {c: str(t) for c, t in df.schema.items()}}
    manifest = {"version": CACHE_VERSION, "stem": stem, "format": fmt, "parts": entries, **extra}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    return manifest_path


def cache_note(directory: Path, stem: str, extra: dict) -> None:
    """Add ``extra`` to the manifest of entry ``stem`` (atomically; the parts are untouched): the source digests of
    an entry written before they were stored, so it is hashed once, not on every hit. A manifest that cannot be
    rewritten (a read-only cache folder) is left as it is, with a warning: the digests are then computed again."""
    path = directory / f"{stem}.json"
    try:
        atomic_write_text(path, json.dumps({**json.loads(path.read_text()), **extra}, indent=1))
    except (OSError, ValueError) as exc:
        warnings.warn(f"filter cache {str(path)!r}: could not store the source digests ({exc}); they are computed "
                      "again on each hit", stacklevel=3)


def _read_part(directory: Path, entry: dict, fmt: str) -> pl.DataFrame:
    """One cached frame, checked against its manifest entry (ValueError when it does not match)."""
    path = directory / entry["file"]
    if not path.is_file() or path.stat().st_size != entry["bytes"]:
        raise ValueError(f"{path.name} is missing or has the wrong size (interrupted write?)")
    df = _read_frame(path, fmt, entry["dtypes"])
    if df.height != entry["rows"] or [str(t) for t in df.schema.values()] != list(entry["dtypes"].values()):
        raise ValueError(f"{path.name} does not match its manifest")
    return contiguous(df)


def cache_read(directory: Path, stem: str, fmt: str) -> tuple[dict[str, pl.DataFrame], dict] | None:
    """The cached frames and manifest, or None (with a warning if an entry exists but is not sound)."""
    manifest_path = directory / f"{stem}.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("version") != CACHE_VERSION or manifest.get("format") != fmt:
            raise ValueError("written by another version or format")
        frames = {part: _read_part(directory, entry, fmt) for part, entry in manifest["parts"].items()}
        return frames, manifest
    except (ValueError, KeyError, TypeError, OSError, pl.exceptions.PolarsError) as exc:
        warnings.warn(f"ignoring filter cache {str(manifest_path)!r}: {exc}; rebuilding it", stacklevel=3)
        return None
