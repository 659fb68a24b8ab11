"""Load a real CTR file (Avazu, Criteo, Yambda) into encoded arrays: :func:`load_ctr`.

Pipeline (each stage timed in ``CtrSource.timings``, seconds):

1. ``stats``: one streaming Polars pass over the projected label + filter columns gives per-value
   counts, clicks, mean and median of the train rows (:func:`le_ray.data.filters.filter_statistics`),
   the file's row count, and checks every label is 0/1.
2. ``select``: the condition filter picks the values to keep (:func:`filter_select`).
3. ``materialise``: a second streaming pass keeps only the selected rows and the needed columns;
   ``normalise`` parses numerics and validates ``hour``. With ``filter.cache.enabled`` those rows
   are written once (``cache_write``) and reused next time (``cache_read``).
4. ``encode``: condition ids, vocabularies, derived features, numpy arrays — Polars expressions
   only, no Python loop over rows.

Choices (documented here once):

* Columns the dataset kind always writes as integers (Avazu ``click``, ``hour``, ``C1``, ``C14``..;
  Criteo ``label``; :class:`KindFacts`) are parsed as Int64 (Criteo ``I1..I13`` as Float64): about
  half the parse cost of text. Everything else, hashed ids included, is read as text (Avazu ``id``
  never goes through float64). A value that does not parse is reported with file, column, data row
  and value. Condition values are reported as text (``str`` of the integer); a missing value is
  ``""``.
* Condition ids: the ``max_conditions`` values with most train rows (ties: value ascending —
  numeric for integer columns, text otherwise) get ids 0.. in that order; everything else, and
  unseen test values, go to ``"__other__"`` (last id), which exists only when some row needs it.
* Categorical vocabularies: the ``categorical_max_values`` most frequent train values (same ties)
  get ids 0..n-1, id n is "other" (always reserved, so vocab size n + 1).
* Numerics (``missing_numeric``): ``log1p_indicator`` → sign(x)·log(1 + |x|), missing → 0;
  ``zero_indicator`` → raw x, missing → 0. Either way a ``<col>_missing`` 0/1 feature is added for
  each numeric column with a missing value in the train rows. ``drop_na`` drops rows with a missing
  numeric instead. Standardisation is left to :mod:`le_ray.data.prepare`.
* Avazu ``derived_time``: ``hour`` (YYMMDDHH) becomes hour-of-day 0..23, plus ``wd`` (day of week,
  Monday = 0) and ``wd_hour`` (wd·24 + hour) categoricals. ``device_counters``: rows per
  ``device_ip`` / ``device_id`` value over the kept train rows, capped at ``device_counter_cap``;
  test rows look those counts up (unseen → 0). Features ``device_ip_count``, ``device_id_count``.
* Test rows: ``test_path`` when set; else, with ``split_test_from_train``, data-row index mod 1000
  < 100 (Criteo, Avazu) or a stable integer hash of (uid, item_id, timestamp) mod 1000 < 100
  (Yambda) — those rows are left out of every train statistic. No test rows, and no split, when
  ``data.use_test_set`` is false.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from le_ray.config import config_fingerprint
from le_ray.config_schema import Config, CtrDatasetConfig
from le_ray.data.arrays import OTHER_VALUE, EncodedRows
from le_ray.data.filters import filter_select, filter_statistics, resolve_mode, selection_table
from le_ray.data.schema import (
    CRITEO_RAW_COLUMNS, SPLIT_MODULUS, SPLIT_TEST_BELOW, DataError, DatasetSchema, FileFormat, KindFacts, build_schema,
    detect_format,
)
from le_ray.typed import to_plain

__all__ = ["CtrSource", "SourceFile", "load_ctr", "stable_hash", "scan_file", "time_features", "device_counts",
           "CACHE_VERSION"]

#: Bump when the cached frames or the encoding change meaning (invalidates caches and fingerprints).
CACHE_VERSION = 1
ROW, Y, PART = "__row", "__y", "__test"
_HASH_PRIME = 2_147_483_647          # 2**31 - 1: every intermediate stays below 2**62 in Int64
_HASH_MULT = (1_000_003, 97_531)


@dataclass(frozen=True)
class CtrSource:
    """Encoded rows of one CTR source plus what is needed to explain them.

    ``train_rows``: the labelled train file after filtering and encoding (not split, balanced or
    standardised); ``test_rows``: the test file / held-out part (``y`` None when unlabelled) or None.
    ``condition_values[j]``: text of condition id j; ``condition_table``: value, id, rows, clicks,
    rate per condition id over ``train_rows``; ``filter_stats``: value, count, clicks, mean, median,
    selected, order per value of the filter column over the train rows. ``source_rows``: data rows
    read from the train file (both parts when split); ``kept_rows``: ``len(train_rows)``.
    ``fingerprint``: hash of the source files' identity and every setting that changes the arrays.
    """

    train_rows: EncodedRows
    test_rows: EncodedRows | None
    num_conditions: int
    condition_values: tuple[str, ...]
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    cat_vocab_sizes: tuple[int, ...]
    condition_table: pl.DataFrame
    filter_stats: pl.DataFrame
    source_rows: int
    kept_rows: int
    timings: dict[str, float]
    fingerprint: str
    cache_path: str | None


@dataclass(frozen=True)
class SourceFile:
    """One input file: resolved ``path``, the config ``key`` that named it, its format and labels."""

    path: Path
    key: str
    fmt: FileFormat
    labelled: bool

    def identity(self) -> dict[str, Any]:
        """Path, size and mtime: what decides whether a cache built from this file is still valid."""
        st = self.path.stat()
        return {"path": str(self.path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "fmt": self.fmt}


@dataclass(frozen=True)
class _Plan:
    """Everything :func:`load_ctr` resolved from the config before reading any data."""

    name: str
    ds: CtrDatasetConfig
    schema: DatasetSchema
    train: SourceFile
    test: SourceFile | None
    split: bool
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"ctr.datasets.{self.name}"


# --------------------------------------------------------------------------------------- resolve

def _resolve_file(raw: str | None, key: str, ds: CtrDatasetConfig, name: str, labelled: bool) -> SourceFile:
    """Resolve ``raw`` against the working directory; DataError naming ``key`` if missing or empty."""
    if raw is None:
        raise DataError(f"{key}: not set; expected the path of the {name} file")
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_file():
        raise DataError(f"{key}: file not found: {raw!r} (resolved to {str(path)!r})")
    if path.stat().st_size == 0:
        raise DataError(f"{key}: file {str(path)!r} is empty (0 bytes)")
    return SourceFile(path=path.resolve(), key=key, fmt=detect_format(path, ds.format, name), labelled=labelled)


def _plan(cfg: Config) -> _Plan:
    """Resolve dataset, schema and files (DataError before any data is read)."""
    name = cfg.data.ctr_dataset
    if name not in cfg.ctr.datasets:
        raise DataError(f"data.ctr_dataset: got {name!r}; no ctr.datasets entry of that name")
    ds = cfg.ctr.datasets[name]
    schema = build_schema(name, ds)
    where = f"ctr.datasets.{name}"
    train = _resolve_file(ds.train_path, f"{where}.train_path", ds, name, True)
    test, split = None, False
    if cfg.data.use_test_set and ds.test_path is not None:
        test = _resolve_file(ds.test_path, f"{where}.test_path", ds, name, ds.test_has_labels)
        if ds.split_test_from_train:
            warnings.warn(f"{where}: test_path is set, so split_test_from_train is ignored", stacklevel=3)
    elif cfg.data.use_test_set and ds.split_test_from_train:
        split = True
    _warn_config(cfg, name, ds)
    return _Plan(name=name, ds=ds, schema=schema, train=train, test=test, split=split)


def _warn_config(cfg: Config, name: str, ds: CtrDatasetConfig) -> None:
    if ds.weight_col is not None:
        warnings.warn(f"ctr.datasets.{name}.weight_col: {ds.weight_col!r} is ignored (rows are unweighted)",
                      stacklevel=4)
    if cfg.ctr.warn_root_csv:
        root = sorted(p.name for p in (Path.cwd() / "data").glob("*.csv"))
        if root:
            warnings.warn(f"data/ holds CSV files directly ({', '.join(root[:5])}); put each dataset in its "
                          f"own folder (data/avazu, data/criteo, ...) as configured by ctr.datasets.*.train_path",
                          stacklevel=4)


# ------------------------------------------------------------------------------------------ scan

def _read_error(src: SourceFile, exc: Exception) -> DataError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{src.key}: file {str(src.path)!r} could not be read as {src.fmt}: {first}")


def _guarded(src: SourceFile, fn: Callable[[], Any], plan: _Plan | None = None) -> Any:
    """Run ``fn`` (a Polars read); turn Polars/IO errors into one DataError naming the file.

    With ``plan``, a failed typed read is re-checked as text first, so the error names the
    column, data row and value that is not a number.
    """
    try:
        return fn()
    except (pl.exceptions.PolarsError, OSError) as exc:
        if plan is not None and src.fmt != "parquet" and isinstance(exc, pl.exceptions.PolarsError):
            try:
                _raise_untyped_value(plan, src)
            except pl.exceptions.PolarsError:
                pass  # the text re-read fails too: report the original error below
        raise _read_error(src, exc) from exc


def _raise_untyped_value(plan: _Plan, src: SourceFile) -> None:
    """Find the first value of a typed column (int/float facts) that does not parse; DataError."""
    facts = plan.schema.facts
    lf = scan_file(src, plan.ds.max_rows, as_text=True)
    names = lf.collect_schema().names()
    typed = [(c, pl.Int64) for c in facts.int_cols if c in names] + [(c, pl.Float64) for c in facts.float_cols
                                                                      if c in names]
    if not typed:
        return
    bad = [pl.col(c).is_not_null() & pl.col(c).cast(t, strict=False).is_null() for c, t in typed]
    hit = lf.filter(pl.any_horizontal(bad)).head(1).collect()
    if hit.height == 0:
        return
    row = hit.row(0, named=True)
    col, dtype = next((c, t) for c, t in typed if row[c] is not None
                      and pl.Series([row[c]]).cast(t, strict=False).is_null().all())
    expected = ("YYMMDDHH (e.g. 14102100 = 2014-10-21 00h)" if col == plan.schema.time_col
                else "an integer" if dtype == pl.Int64 else "a number or an empty field")
    raise DataError(f"{src.key}: file {str(src.path)!r}, column {col!r}, data row {row[ROW]}: got {row[col]!r}; "
                    f"expected {expected}")


def scan_file(src: SourceFile, max_rows: int | None = None, facts: KindFacts | None = None,
              as_text: bool = False) -> pl.LazyFrame:
    """Lazy scan of ``src`` with ``__row`` (int64 data-row index, header excluded) first.

    Text files: the ``facts.int_cols`` / ``float_cols`` present are parsed as Int64 / Float64,
    every other column is text (so ids never pass through float64); ``as_text`` reads all as text.
    Parquet keeps its types. Raw Criteo uses :data:`CRITEO_RAW_COLUMNS` (without ``label`` when
    ``src`` is unlabelled).
    """
    if src.fmt == "parquet":
        lf = pl.scan_parquet(src.path, n_rows=max_rows, row_index_name=ROW)
        return lf.with_columns(pl.col(ROW).cast(pl.Int64))
    opts: dict[str, Any] = {"separator": "\t", "quote_char": None} if src.fmt != "csv" else {}
    if src.fmt == "criteo_raw":
        names = list(CRITEO_RAW_COLUMNS if src.labelled else CRITEO_RAW_COLUMNS[1:])
        _check_raw_width(src, len(names))
        opts.update(has_header=False, new_columns=names)
    if facts is not None and not as_text:
        header = _guarded(src, pl.scan_csv(src.path, infer_schema=False, n_rows=1, **opts).collect_schema).names()
        typed = {c: pl.Int64 for c in facts.int_cols if c in header}
        typed.update({c: pl.Float64 for c in facts.float_cols if c in header})
        opts["schema_overrides"] = typed
    lf = pl.scan_csv(src.path, infer_schema=False, n_rows=max_rows, row_index_name=ROW, **opts)
    return lf.with_columns(pl.col(ROW).cast(pl.Int64))


def _check_raw_width(src: SourceFile, expected: int) -> None:
    with open(src.path, "rb") as fh:
        fields = fh.readline(1 << 20).rstrip(b"\r\n").split(b"\t")
    if len(fields) != expected:
        raise DataError(f"{src.key}: file {str(src.path)!r} has {len(fields)} tab-separated fields on its first "
                        f"line; raw Criteo {'train' if src.labelled else 'test'} rows have {expected}")


def _roles(plan: _Plan, labelled: bool) -> dict[str, str]:
    """File column → the config key that asks for it (for 'missing column' messages)."""
    s, w = plan.schema, plan.where
    roles: dict[str, str] = {}
    for col in s.categorical_cols:
        roles.setdefault(col, f"{w}.categorical_cols")
    for col in s.numeric_cols:
        roles.setdefault(col, f"{w}.numeric_cols")
    if s.time_col:
        roles.setdefault(s.time_col, f"{w}.derived_time")
    for col in s.device_cols:
        roles.setdefault(col, f"{w}.device_counters")
    if plan.split and s.facts.split == "hash":
        for col in s.facts.hash_cols:
            roles.setdefault(col, f"{w}.split_test_from_train")
    roles[s.condition_col] = f"{w}.condition_col"
    roles.setdefault(s.filter_col, f"{w}.filter.col")
    if labelled:
        roles[s.label_col] = f"{w}.label_col"
    return roles


def _checked_scan(plan: _Plan, src: SourceFile) -> tuple[pl.LazyFrame, pl.Schema]:
    """Scan ``src`` and check every needed column is there (DataError naming file, column, key)."""
    lf = scan_file(src, plan.ds.max_rows, plan.schema.facts)
    file_schema = _guarded(src, lf.collect_schema)
    for col, key in _roles(plan, src.labelled).items():
        if col not in file_schema:
            have = [c for c in file_schema.names() if c != ROW]
            raise DataError(f"{src.key}: file {str(src.path)!r} has no column {col!r} (needed by {key}); "
                            f"columns: {', '.join(have[:40])}")
    return lf, file_schema


def _label_expr(schema: DatasetSchema) -> pl.Expr:
    """0.0/1.0 label from the label column, null where the source value is not a valid label."""
    raw = pl.col(schema.label_col)
    if schema.positive_values is not None:
        text = raw.cast(pl.String)
        return pl.when(text.is_null()).then(None).otherwise(text.is_in(schema.positive_values)).cast(pl.Float64)
    value = raw.cast(pl.Float64, strict=False)
    return pl.when(value.is_in([0.0, 1.0])).then(value).otherwise(None)


def stable_hash(cols: Sequence[str]) -> pl.Expr:
    """Stable integer hash in [0, 2**31 - 1) of non-negative integer columns (Int64 arithmetic only).

    Per column: h = (h·1000003 + x mod p) mod p; h ^= h // 2**15; h = h·97531 mod p, with
    p = 2**31 - 1. Unlike ``Expr.hash`` it does not depend on the Polars version or platform.
    """
    h = pl.lit(0, dtype=pl.Int64)
    for col in cols:
        x = pl.col(col).cast(pl.Int64) % _HASH_PRIME
        h = (h * _HASH_MULT[0] + x) % _HASH_PRIME
        h = h.xor(h // 32768)
        h = (h * _HASH_MULT[1]) % _HASH_PRIME
    return h


def _test_part_expr(schema: DatasetSchema) -> pl.Expr:
    """True for rows of a single file that form the deterministic test part (10 %)."""
    key = pl.col(ROW) if schema.facts.split == "row_mod" else stable_hash(schema.facts.hash_cols)
    return (key % SPLIT_MODULUS) < SPLIT_TEST_BELOW


def _keep_expr(col: str, dtype: pl.DataType, selected: Sequence[str]) -> pl.Expr:
    """Rows whose ``col`` (of file dtype ``dtype``) has one of the ``selected`` texts ("" = missing)."""
    values = [v for v in selected if v != ""]
    if dtype != pl.String:
        values = pl.Series(values, dtype=pl.String).cast(dtype).to_list()
    keep = pl.col(col).is_in(values)
    return (keep | pl.col(col).is_null()) if "" in selected else keep


def _prepared(plan: _Plan, lf: pl.LazyFrame, src: SourceFile, split: bool) -> pl.LazyFrame:
    """Add ``__y`` (0/1 label, null if invalid) and ``__test`` (held-out part); apply ``drop_na``."""
    s = plan.schema
    label = _label_expr(s) if src.labelled else pl.lit(None, dtype=pl.Float64)
    part = _test_part_expr(s) if split else pl.lit(False)
    lf = lf.with_columns(label.alias(Y), part.alias(PART))
    if plan.ds.drop_na and s.numeric_cols:
        lf = lf.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in s.numeric_cols))
    return lf


# ----------------------------------------------------------------------------------------- stats

def _raise_bad_label(lf: pl.LazyFrame, src: SourceFile, schema: DatasetSchema) -> None:
    bad = _guarded(src, lambda: lf.filter(pl.col(Y).is_null()).select(ROW, schema.label_col).head(1).collect())
    row, value = bad[ROW][0], bad[schema.label_col][0]
    expected = (f"one of the event types (positives: {list(schema.positive_values)})"
                if schema.positive_values is not None else "0 or 1")
    raise DataError(f"{src.key}: file {str(src.path)!r}, column {schema.label_col!r}, data row {row}: "
                    f"got {value!r}; expected {expected}")


def _train_stats(plan: _Plan, lf: pl.LazyFrame) -> tuple[pl.DataFrame, int]:
    """Per-value statistics of the train rows and the file's data-row count (both parts)."""
    src, s = plan.train, plan.schema
    stats = _guarded(src, lambda: filter_statistics(lf, s.filter_col, Y, by=[PART]), plan)
    if stats["invalid"].sum() > 0:
        _raise_bad_label(lf, src, s)
    total = int(stats["count"].sum())
    if total == 0:
        raise DataError(f"{src.key}: file {str(src.path)!r} has no data rows"
                        + (" left after drop_na" if plan.ds.drop_na else ""))
    train = stats.filter(~pl.col(PART)).drop(PART, "invalid")
    if train.height == 0:
        raise DataError(f"{src.key}: file {str(src.path)!r}: every one of its {total} rows fell in the test split")
    return train, total


# ----------------------------------------------------------------------------------- materialise

def _keep_cols(plan: _Plan) -> list[str]:
    s = plan.schema
    return list(dict.fromkeys([ROW, Y, s.condition_col, s.filter_col, *s.feature_source_cols()]))


def _materialise(plan: _Plan, lf: pl.LazyFrame, src: SourceFile, keep: pl.Expr | None) -> pl.DataFrame:
    """Collect the kept rows and columns in one streaming pass, in file order."""
    if keep is not None:
        lf = lf.filter(keep)
    df = _guarded(src, lambda: lf.select(*_keep_cols(plan), PART).collect(engine="streaming"), plan)
    return _contiguous(df if df[ROW].is_sorted() else df.sort(ROW))


def _contiguous(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with one chunk per column (encoding is ~2x faster), copying one column at a time."""
    for col in df.columns:
        if df.get_column(col).n_chunks() > 1:
            df = df.with_columns(df.get_column(col).rechunk())
    return df


def _first_bad(df: pl.DataFrame, mask: pl.Series, col: str, src: SourceFile, expected: str) -> None:
    if mask.any():
        i = int(mask.arg_max())
        raise DataError(f"{src.key}: file {str(src.path)!r}, column {col!r}, data row {df[ROW][i]}: "
                        f"got {df[col][i]!r}; expected {expected}")


def _parse_hour(col: pl.Expr) -> pl.Expr:
    """YYMMDDHH text → datetime (null when not exactly 8 digits or not a real date/hour)."""
    ok = col.str.contains(r"^\d{8}$")
    return pl.when(ok).then((col + "00").str.strptime(pl.Datetime, "%y%m%d%H%M", strict=False))


def _normalise(plan: _Plan, df: pl.DataFrame, src: SourceFile) -> pl.DataFrame:
    """Kept rows, ready to cache: missing text → ``""``, numerics float64 (null = missing), ``hour`` checked.

    Raises DataError naming file, column, data row and value for a bad numeric, hour or label.
    """
    s = plan.schema
    text = [c for c in dict.fromkeys([s.condition_col, s.filter_col, *s.categorical_cols, *s.device_cols])
            if df.schema[c] == pl.String]
    df = df.with_columns(pl.col(c).fill_null("") for c in text)
    for col in s.numeric_cols:
        if df[col].dtype == pl.String:
            parsed = df[col].str.strip_chars().cast(pl.Float64, strict=False)
            _first_bad(df, parsed.is_null() & df[col].is_not_null(), col, src, "a number or an empty field")
            df = df.with_columns(parsed.alias(col))
        else:
            df = df.with_columns(pl.col(col).cast(pl.Float64))
    if s.time_col:
        bad = _hour_table(df[s.time_col]).filter(pl.col("hour").is_null())["key"].to_list()
        mask = df[s.time_col].is_in([v for v in bad if v is not None]) | df[s.time_col].is_null()
        _first_bad(df, mask, s.time_col, src, "YYMMDDHH (e.g. 14102100 = 2014-10-21 00h)")
    if src.labelled and df[Y].null_count():
        _first_bad(df, df[Y].is_null(), s.label_col, src, "0 or 1")
    return df.drop(PART)


# ----------------------------------------------------------------------------------------- cache

_DTYPES = {str(t): t for t in (pl.String, pl.Boolean, pl.Float32, pl.Float64, pl.Int8, pl.Int16, pl.Int32,
                                 pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)}


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` to a hidden temp file next to ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _cache_key(plan: _Plan, use_test: bool) -> str:
    """Fingerprint of the source files and every setting that changes the cached (filtered) rows."""
    ds = to_plain(plan.ds)
    for key in ("categorical_max_values", "max_conditions", "device_counter_cap", "missing_numeric",
                "balance_by_condition", "plot_sample_size", "weight_col", "filter_col", "filter_top_k"):
        ds.pop(key, None)
    ds["filter"].pop("cache", None)
    return config_fingerprint({"version": CACHE_VERSION, "dataset": plan.name, "settings": ds,
                               "use_test_set": use_test, "split": plan.split,
                               "train": plan.train.identity(),
                               "test": plan.test.identity() if plan.test else None})


def _write_frame(df: pl.DataFrame, path: Path, fmt: str) -> None:
    _atomic_write(path, (lambda p: df.write_parquet(p)) if fmt == "parquet" else (lambda p: df.write_csv(p)))


def _read_frame(path: Path, fmt: str, dtypes: dict[str, str]) -> pl.DataFrame:
    schema = {c: _DTYPES[t] for c, t in dtypes.items()}
    if fmt == "parquet":
        return pl.read_parquet(path)
    df = pl.read_csv(path, schema=schema)
    return df.with_columns(pl.col(c).fill_null("") for c, t in schema.items() if t == pl.String)


def _cache_files(directory: Path, stem: str, fmt: str) -> dict[str, Path]:
    ext = "parquet" if fmt == "parquet" else "csv"
    return {part: directory / f"{stem}.{part}.{ext}" for part in ("train", "test", "stats")}


def _cache_write(directory: Path, stem: str, fmt: str, frames: dict[str, pl.DataFrame], extra: dict) -> Path:
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
    _atomic_write(manifest_path, lambda p: p.write_text(json.dumps(manifest, indent=1)))
    return manifest_path


def _cache_read(directory: Path, stem: str, fmt: str) -> tuple[dict[str, pl.DataFrame], dict] | None:
    """The cached frames and manifest, or None (with a warning if an entry exists but is not sound)."""
    manifest_path = directory / f"{stem}.json"
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("version") != CACHE_VERSION or manifest.get("format") != fmt:
            raise ValueError("written by another version or format")
        frames = {}
        for part, entry in manifest["parts"].items():
            path = directory / entry["file"]
            if not path.is_file() or path.stat().st_size != entry["bytes"]:
                raise ValueError(f"{path.name} is missing or has the wrong size (interrupted write?)")
            df = _read_frame(path, fmt, entry["dtypes"])
            if df.height != entry["rows"] or [str(t) for t in df.schema.values()] != list(entry["dtypes"].values()):
                raise ValueError(f"{path.name} does not match its manifest")
            frames[part] = _contiguous(df)
        return frames, manifest
    except (ValueError, KeyError, TypeError, OSError, pl.exceptions.PolarsError) as exc:
        warnings.warn(f"ignoring filter cache {str(manifest_path)!r}: {exc}; rebuilding it", stacklevel=3)
        return None


# ---------------------------------------------------------------------------------------- encode

def _ranked_vocabs(df: pl.DataFrame, wanted: Sequence[tuple[str, int]]) -> list[list]:
    """For each (column, limit): its ``limit`` most frequent values (ties: value ascending), most frequent first.

    One group-by per column, run together so Polars spreads them over the cores.
    """
    queries = [df.lazy().group_by(col).agg(pl.len().alias("__n"))
               .sort(["__n", col], descending=[True, False], nulls_last=True).head(limit) for col, limit in wanted]
    return [frame[col].to_list() for (col, _), frame in zip(wanted, pl.collect_all(queries))]


def _encode_expr(col: str, vocab: list, other_id: int, dtype: pl.DataType) -> pl.Expr:
    """Ids of ``col`` against ``vocab`` (position), ``other_id`` for anything else; int32.

    Text columns go through an Enum cast (one hash lookup per row), other dtypes through
    ``replace_strict``; both give the same ids.
    """
    if dtype == pl.String:
        if not vocab:
            return pl.repeat(other_id, pl.len(), dtype=pl.Int32).alias(col)
        ids = pl.col(col).cast(pl.Enum(vocab), strict=False).to_physical().cast(pl.Int32)
        return ids.fill_null(other_id).alias(col)
    return pl.col(col).replace_strict(vocab, list(range(len(vocab))), default=other_id, return_dtype=pl.Int32)


def _hour_table(values: pl.Series) -> pl.DataFrame:
    """Distinct YYMMDDHH values (text or int) with hour-of-day, ``wd`` (Monday = 0), ``wd_hour`` (int16).

    Unparsable values get nulls.
    """
    stamp = _parse_hour(pl.col("key").cast(pl.String))
    wd = (stamp.dt.weekday() - 1).cast(pl.Int16)
    hour = stamp.dt.hour().cast(pl.Int16)
    return pl.DataFrame({"key": values.unique().sort()}).with_columns(hour=hour, wd=wd, wd_hour=wd * 24 + hour)


def time_features(df: pl.DataFrame, col: str) -> pl.DataFrame:
    """Replace YYMMDDHH ``col`` by hour-of-day and add ``wd`` (Monday = 0) and ``wd_hour`` = wd·24 + hour.

    Parsed once per distinct value (a few hundred in Avazu), then looked up per row (int16).
    """
    table = _hour_table(df[col])
    idx = pl.col(col).replace_strict(table["key"], pl.Series(range(table.height), dtype=pl.UInt32))
    return df.with_columns(pl.lit(table[name]).gather(idx).alias(out)
                           for name, out in (("hour", col), ("wd", "wd"), ("wd_hour", "wd_hour")))


def device_counts(train: pl.DataFrame, others: list[pl.DataFrame], cols: Sequence[str], cap: int
                  ) -> tuple[pl.DataFrame, list[pl.DataFrame], list[str]]:
    """Add ``<col>_count`` = min(train rows with that value, cap) (unseen → 0), float32, to every frame.

    Counted with a window sum over the train rows stacked on the others, so there is no join.
    """
    names = [f"{col}_count" for col in cols]
    frames = [train, *others]
    stacked = pl.concat([f.select(*cols, __train=pl.lit(i == 0)) for i, f in enumerate(frames)], rechunk=False)
    counts = stacked.select(pl.col("__train").cast(pl.Int32).sum().over(col).clip(upper_bound=cap)
                            .cast(pl.Float32).alias(name) for col, name in zip(cols, names))
    out, start = [], 0
    for f in frames:
        out.append(f.with_columns(counts.slice(start, f.height)))
        start += f.height
    return out[0], out[1:], names


def _numeric_exprs(train: pl.DataFrame, cols: Sequence[str], mode: str) -> tuple[list[pl.Expr], list[str]]:
    """Transformed numeric columns then ``<col>_missing`` indicators (for columns missing in train)."""
    exprs, names = [], []
    for col in cols:
        x = pl.col(col)
        value = (x.sign() * x.abs().log1p()) if mode == "log1p_indicator" else x
        exprs.append(value.fill_null(0.0).alias(col))
        names.append(col)
    for col in cols:
        if train[col].null_count():
            exprs.append(pl.col(col).is_null().cast(pl.Float64).alias(f"{col}_missing"))
            names.append(f"{col}_missing")
    return exprs, names


@dataclass(frozen=True)
class _Encoding:
    """How frames become arrays: condition values, numeric / categorical exprs, vocab sizes."""

    condition_values: tuple[str, ...]
    cond_expr: pl.Expr
    num_exprs: list[pl.Expr]
    numeric_features: tuple[str, ...]
    cat_exprs: list[pl.Expr]
    categorical_features: tuple[str, ...]
    cat_vocab_sizes: tuple[int, ...]


def _build_encoding(plan: _Plan, train: pl.DataFrame, test: pl.DataFrame | None, extra_num: list[str]) -> _Encoding:
    """Vocabularies from the train frame: condition values (+ other if needed), categorical ids, numerics."""
    s, ds = plan.schema, plan.ds
    cats = list(s.categorical_cols)
    if s.time_col:
        cats = (cats if s.time_col in cats else cats + [s.time_col]) + ["wd", "wd_hour"]
    kept, *vocabs = _ranked_vocabs(train, [(s.condition_col, ds.max_conditions)]
                                   + [(col, ds.categorical_max_values) for col in cats])
    cond = s.condition_col
    cond_expr = _encode_expr(cond, kept, len(kept), train.schema[cond])
    needs_other = train[cond].n_unique() > len(kept) or (
        test is not None and bool((test.select(cond_expr).to_series() == len(kept)).any()))
    cond_values = tuple("" if v is None else str(v) for v in kept) + ((OTHER_VALUE,) if needs_other else ())
    num_exprs, num_names = _numeric_exprs(train, s.numeric_cols, ds.missing_numeric)
    num_exprs += [pl.col(c) for c in extra_num]
    cat_exprs = [_encode_expr(col, vocab, len(vocab), train.schema[col]) for col, vocab in zip(cats, vocabs)]
    return _Encoding(cond_values, cond_expr, num_exprs, tuple(num_names + extra_num), cat_exprs, tuple(cats),
                     tuple(len(v) + 1 for v in vocabs))


def _matrix(df: pl.DataFrame, exprs: list[pl.Expr], dtype: type) -> np.ndarray:
    """C-contiguous [n, len(exprs)] array of ``exprs`` evaluated on ``df`` (filled column by column)."""
    out = np.empty((df.height, len(exprs)), dtype=dtype)
    if exprs:
        for j, series in enumerate(df.select(exprs).iter_columns()):
            out[:, j] = series.to_numpy()
    return out


def _to_rows(df: pl.DataFrame, enc: _Encoding, labelled: bool) -> EncodedRows:
    """Apply ``enc`` to ``df`` and return C-contiguous numpy arrays."""
    x_num = _matrix(df, enc.num_exprs, np.float32)
    x_cat = _matrix(df, enc.cat_exprs, np.int32)
    cond = df.select(enc.cond_expr).to_series().to_numpy().astype(np.int32, copy=False)
    y = df[Y].to_numpy().astype(np.float32) if labelled else None
    return EncodedRows(x_num=x_num, x_cat=x_cat, cond=cond, y=y, row_id=df[ROW].to_numpy().astype(np.int64))


def _encode(plan: _Plan, train: pl.DataFrame, test: pl.DataFrame | None, test_labelled: bool
            ) -> tuple[EncodedRows, EncodedRows | None, _Encoding]:
    s = plan.schema
    if s.time_col:
        train = time_features(train, s.time_col)
        test = time_features(test, s.time_col) if test is not None else None
    extra: list[str] = []
    if s.device_cols:
        train, others, extra = device_counts(train, [test] if test is not None else [], s.device_cols,
                                              s.device_counter_cap)
        test = others[0] if others else None
    enc = _build_encoding(plan, train, test, extra)
    test_rows = _to_rows(test, enc, test_labelled) if test is not None else None
    return _to_rows(train, enc, True), test_rows, enc


def _condition_table(rows: EncodedRows, values: tuple[str, ...]) -> pl.DataFrame:
    """value, id, rows, clicks, rate per condition id over ``rows`` (rate null when no rows)."""
    k = len(values)
    n = np.bincount(rows.cond, minlength=k).astype(np.int64)
    clicks = np.rint(np.bincount(rows.cond, weights=rows.y, minlength=k)).astype(np.int64)
    table = pl.DataFrame({"value": list(values), "id": np.arange(k, dtype=np.int32), "rows": n, "clicks": clicks})
    return table.with_columns(rate=pl.when(pl.col("rows") > 0).then(pl.col("clicks") / pl.col("rows")))


# ------------------------------------------------------------------------------------------ load

def _timed(plan: _Plan, stage: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    out = fn()
    plan.timings[stage] = plan.timings.get(stage, 0.0) + time.perf_counter() - start
    return out


def _select(plan: _Plan, stats: pl.DataFrame, file_schema: pl.Schema) -> list[str] | None:
    """Selected filter values, or None when no filter is configured (every row kept)."""
    flt = plan.ds.filter
    selected = filter_select(stats, flt, where=f"{plan.where}.filter", col=plan.schema.filter_col,
                             dtype=file_schema[plan.schema.filter_col])
    return None if resolve_mode(flt) is None and flt.min_count is None else selected


def _build_frames(plan: _Plan) -> tuple[dict[str, pl.DataFrame], int]:
    """Run stats → select → materialise → normalise; frames ``train`` / ``test`` / ``stats``."""
    lf, file_schema = _checked_scan(plan, plan.train)
    lf = _prepared(plan, lf, plan.train, plan.split)
    stats, total = _timed(plan, "stats", lambda: _train_stats(plan, lf))
    selected = _timed(plan, "select", lambda: _select(plan, stats, file_schema))
    col = plan.schema.filter_col
    keep = None if selected is None else _keep_expr(col, file_schema[col], selected)
    apply_test = plan.ds.filter.apply_to_test and keep is not None
    frames = {"stats": selection_table(stats, selected if selected is not None else stats["value"].to_list())}
    if plan.split:
        both_keep = keep if apply_test or keep is None else (pl.col(PART) | keep)
        both = _timed(plan, "materialise", lambda: _materialise(plan, lf, plan.train, both_keep))
        frames["train"], frames["test"] = both.filter(~pl.col(PART)), both.filter(pl.col(PART))
    else:
        frames["train"] = _timed(plan, "materialise", lambda: _materialise(plan, lf, plan.train, keep))
        if plan.test is not None:
            tlf, _ = _checked_scan(plan, plan.test)
            tlf = _prepared(plan, tlf, plan.test, False)
            frames["test"] = _timed(plan, "materialise", lambda: _materialise(
                plan, tlf, plan.test, keep if apply_test else None))
    test_src = plan.test or plan.train
    for part, src in (("train", plan.train), ("test", test_src)):
        if part in frames:
            frames[part] = _timed(plan, "normalise", lambda: _normalise(plan, frames[part], src))
    return frames, total


def _frames(plan: _Plan, use_test: bool) -> tuple[dict[str, pl.DataFrame], int, str | None]:
    """The filtered frames, from the cache when enabled and sound, else built (and cached)."""
    cache = plan.ds.filter.cache
    if not cache.enabled:
        return (*_build_frames(plan), None)
    directory = Path(cache.dir).expanduser()
    directory = directory if directory.is_absolute() else Path.cwd() / directory
    stem = f"{plan.name}-{_cache_key(plan, use_test)}"
    hit = None if cache.overwrite else _timed(plan, "cache_read", lambda: _cache_read(directory, stem, cache.format))
    if hit is not None:
        frames, manifest = hit
        return frames, int(manifest["source_rows"]), str(directory / f"{stem}.json")
    frames, total = _build_frames(plan)
    path = _timed(plan, "cache_write", lambda: _cache_write(directory, stem, cache.format, frames,
                                                            {"source_rows": total}))
    return frames, total, str(path)


def _fingerprint(plan: _Plan, use_test: bool) -> str:
    ds = plan.ds
    return config_fingerprint({"rows": _cache_key(plan, use_test), "version": CACHE_VERSION,
                               "encode": [ds.categorical_max_values, ds.max_conditions, ds.device_counter_cap,
                                          ds.missing_numeric]})


def load_ctr(cfg: Config) -> CtrSource:
    """Read, filter and encode the active CTR dataset (``data.ctr_dataset``) of ``cfg``.

    Raises :class:`DataError` (file, column, value) for a missing/empty file, a missing column,
    a non-binary label, an unparsable ``hour`` or numeric, or a filter that keeps nothing.
    """
    start = time.perf_counter()
    plan = _plan(cfg)
    use_test = cfg.data.use_test_set
    frames, total, cache_path = _frames(plan, use_test)
    train_df, test_df = frames["train"], frames.get("test")
    if train_df.height == 0:
        raise DataError(f"{plan.where}.filter: no train rows left in {str(plan.train.path)!r} after filtering")
    test_labelled = plan.test.labelled if plan.test is not None else True
    train_rows, test_rows, enc = _timed(plan, "encode", lambda: _encode(plan, train_df, test_df, test_labelled))
    table = _condition_table(train_rows, enc.condition_values)
    plan.timings["total"] = time.perf_counter() - start
    return CtrSource(
        train_rows=train_rows, test_rows=test_rows, num_conditions=len(enc.condition_values),
        condition_values=enc.condition_values, numeric_features=enc.numeric_features,
        categorical_features=enc.categorical_features, cat_vocab_sizes=enc.cat_vocab_sizes,
        condition_table=table, filter_stats=frames["stats"], source_rows=total, kept_rows=len(train_rows),
        timings=dict(plan.timings), fingerprint=_fingerprint(plan, use_test), cache_path=cache_path)
