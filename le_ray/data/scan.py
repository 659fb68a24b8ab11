"""Read a CTR source file: resolve it, scan it lazily, check its columns, validate its values.

Everything that touches the source files lives here (the stages ``stats``, ``materialise`` and
``normalise`` of :func:`le_ray.data.ctr.load_ctr`):

1. :func:`resolve_file` turns a configured path into a :class:`SourceFile` (DataError naming the
   config key when it is missing, empty, a directory, compressed, or Parquet to be read as text);
   :func:`scan_file` is the lazy Polars scan of it, with ``__row`` (the data-row index, header excluded)
   first; :func:`checked_scan` also checks that the header names each column once and every column the
   config asks for is there (DataError naming file, column and config key, with a hint when the header
   looks ';'- or tab-separated) and that every line of a text file is one row with the header's field
   count, refusing a ragged row, a blank line between data rows, an open quote or a line :mod:`csv`
   cannot read, and skipping trailing blank lines (one byte-level pass, :mod:`le_ray.data.lines`).
2. :func:`prepared` adds the 0/1 label ``__y`` (null where the source value is not a valid label)
   and the held-out flag ``__test``, and applies ``drop_na``; :func:`train_stats` is the one
   streaming pass over the label + filter columns that gives the per-value statistics of the train
   rows (:func:`le_ray.data.filters.filter_statistics`) and the file's row count, and checks every
   label is 0/1.
3. :func:`materialise` is a second streaming pass that keeps only the selected rows
   (:func:`keep_expr`) and the needed columns, in file order; :func:`normalise` makes them ready to
   cache and encode.

Choices:

* Columns the dataset kind always writes as integers (Avazu ``click``, ``hour``, ``C1``, ``C14``..;
  Criteo ``label``; :class:`KindFacts`) are parsed as Int64 (Criteo ``I1..I13`` as Float64): about
  half the parse cost of text. Everything else, hashed ids included, is read as text (Avazu ``id``
  never goes through float64). A value that does not parse is reported with file, column, data row
  and value; so is a NaN or infinity in a numeric column (Polars parses ``NaN``, ``inf``, ``-inf`` as
  numbers, and one of them would make the column's standardisation NaN and fail every trial after Ray
  starts). Missing text values become ``""``; numerics become float64, null = missing (what the
  encoder does with them is :mod:`le_ray.data.encode`'s business); ``drop_na`` drops rows with a
  missing numeric instead. ``hour`` must be YYMMDDHH with a real date and hour.
* Held-out part of a single file (when the plan splits, see :mod:`le_ray.data.ctr`): data-row index
  mod 1000 < 100 (Criteo, Avazu) or :func:`stable_hash` of (uid, item_id, timestamp) mod 1000 < 100
  (Yambda) — those rows are left out of every train statistic.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import polars as pl

from le_ray.config.schema import CtrDatasetConfig
from le_ray.data.filters import filter_statistics
from le_ray.data.lines import scan_lines
from le_ray.data.schema import (
    CRITEO_RAW_COLUMNS, SPLIT_MODULUS, SPLIT_TEST_BELOW, DataError, DatasetSchema, FileFormat, KindFacts,
    delimiter_hint, detect_format,
)

__all__ = ["ROW", "Y", "PART", "SourceFile", "ScanPlan", "resolve_file", "scan_file", "checked_scan", "stable_hash",
           "place_in_file",
           "prepared", "keep_expr", "train_stats", "materialise", "contiguous", "parse_hour", "hour_table",
           "normalise"]

ROW, Y, PART = "__row", "__y", "__test"
_HASH_PRIME = 2_147_483_647          # 2**31 - 1: every intermediate stays below 2**62 in Int64
_HASH_MULT = (1_000_003, 97_531)


@dataclass(frozen=True)
class SourceFile:
    """One input file: resolved ``path``, the config ``key`` that named it, its format and labels."""

    path: Path
    key: str
    fmt: FileFormat
    labelled: bool

    def identity(self) -> dict[str, Any]:
        """Path, size and mtime: what decides whether a cache built from this file is still valid (cheap, and
        local to the machine; the data fingerprint uses :meth:`content` instead)."""
        st = self.path.stat()
        return {"path": str(self.path), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "fmt": self.fmt}

    def sha256(self, cancel: threading.Event | None = None) -> str | None:
        """SHA-256 of the file's bytes, hex (hashlib releases the GIL while hashing, so it can run in a thread
        beside Polars' parse; ~0.6 GB/s on one core of this VM), read in 8 MiB blocks; None as soon as ``cancel``
        is set (a load that failed does not wait for the digest of a large file, in the process or at its exit)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            while block := f.read(8 << 20):
                if cancel is not None and cancel.is_set():
                    return None
                digest.update(block)
        return digest.hexdigest()

    def content(self, sha256: str) -> dict[str, Any]:
        """What the data fingerprint knows of the file: its bytes' SHA-256, size and format, not its path or
        mtime, so the same file copied to another machine or folder gives the same trial ids, and edited
        bytes give others."""
        return {"sha256": sha256, "bytes": self.path.stat().st_size, "fmt": self.fmt}


class ScanPlan(Protocol):
    """What reading needs from the plan (:class:`le_ray.data.ctr._Plan` matches it; no import of it here)."""

    @property
    def ds(self) -> CtrDatasetConfig: ...

    @property
    def schema(self) -> DatasetSchema: ...

    @property
    def train(self) -> SourceFile: ...

    @property
    def split(self) -> bool: ...

    @property
    def where(self) -> str: ...


# --------------------------------------------------------------------------------------- resolve

def resolve_file(raw: str | None, key: str, ds: CtrDatasetConfig, name: str, labelled: bool) -> SourceFile:
    """Resolve ``raw`` against the working directory; DataError naming ``key`` if missing or empty."""
    if raw is None:
        raise DataError(f"{key}: not set; expected the path of the {name} file")
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq"))
        holds = f"; it holds {', '.join(inside[:5])}{' ...' if len(inside) > 5 else ''}" if inside else ""
        raise DataError(f"{key}: {raw!r} is a directory (resolved to {str(path.resolve())!r}); expected the path of "
                        f"a CSV file (or TSV / Parquet) of {name} rows{holds}")
    if not path.is_file():
        raise DataError(f"{key}: file not found: {raw!r} (resolved to {str(path.resolve())!r})")  # no '..' left
    if path.stat().st_size == 0:
        raise DataError(f"{key}: file {str(path)!r} is empty (0 bytes)")
    fmt = detect_format(path, ds.format, name)
    _refuse_binary(path, key, fmt, name)
    return SourceFile(path=path.resolve(), key=key, fmt=fmt, labelled=labelled)


#: leading bytes of compressed files, which Polars would decompress behind the line check's back (or not)
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd",
               b"PK\x03\x04": "zip"}


def _refuse_binary(path: Path, key: str, fmt: str, name: str) -> None:
    """DataError for a compressed file (the line check reads bytes: it would pass broken rows of a gzip file or
    crash on it) and for a Parquet file to be read as text (its header would be binary)."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    packed = next((what for magic, what in _COMPRESSED.items() if head.startswith(magic)), None)
    if packed:
        raise DataError(f"{key}: file {str(path)!r} is {packed}-compressed; expected an uncompressed CSV / TSV file "
                        "or a Parquet file: decompress it first (e.g. gunzip -k for gzip)")
    if head.startswith(b"PAR1") and fmt != "parquet":
        raise DataError(f"{key}: file {str(path)!r} is a Parquet file but would be read as {fmt}; set "
                        f"ctr.datasets.{name}.format to parquet (or to auto, with a .parquet suffix)")


# ------------------------------------------------------------------------------------------ scan

def _read_error(src: SourceFile, exc: Exception) -> DataError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = _first_non_utf8(src.path) if "utf-8" in first.lower() and src.fmt != "parquet" else ""
    return DataError(f"{src.key}: file {str(src.path)!r} could not be read as {src.fmt}: {first}{where}")


def _first_non_utf8(path: Path, block: int = 8 << 20) -> str:
    """`` (first at line N: byte 0xE9; ...)`` for a text file Polars refused as not UTF-8 (error path only)."""
    line, carry, bad = 1, b"", None
    with open(path, "rb") as fh:
        while bad is None and (chunk := fh.read(block)):
            data, carry = carry + chunk, b""
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                line += data.count(b"\n", 0, exc.start)
                if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
                    carry = data[exc.start:]  # a character cut by the block's end (or the file's)
                else:
                    bad = data[exc.start]
                continue
            line += data.count(b"\n")
    bad = carry[0] if bad is None and carry else bad
    if bad is None:
        return ""
    return f" (first at line {line}: byte 0x{bad:02X}; save the file as UTF-8, e.g. iconv -f latin1 -t utf-8)"


def _guarded(src: SourceFile, fn: Callable[[], Any], plan: ScanPlan | None = None) -> Any:
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
            except (pl.exceptions.PolarsError, OSError):
                pass  # the text re-read fails too: report the original error below
        raise _read_error(src, exc) from exc


def _raise_untyped_value(plan: ScanPlan, src: SourceFile) -> None:
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
                else _label_expected(plan.schema) if col == plan.schema.label_col
                else "an integer (64-bit: at most 9,223,372,036,854,775,807)" if dtype == pl.Int64
                else "a number or an empty field")
    raise DataError(f"{src.key}: file {str(src.path)!r}, column {col!r}, {_row_place(src, row[ROW])}: "
                    f"got {row[col]!r}; expected {expected}")


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


def _roles(plan: ScanPlan, labelled: bool) -> dict[str, str]:
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


def checked_scan(plan: ScanPlan, src: SourceFile) -> tuple[pl.LazyFrame, pl.Schema]:
    """Scan ``src``, check every needed column is there (DataError naming file, column, key) and every line
    (:func:`_checked_rows`); trailing blank lines are left out of the scan."""
    lf = scan_file(src, plan.ds.max_rows, plan.schema.facts)
    file_schema = _guarded(src, lf.collect_schema)
    roles = _roles(plan, src.labelled)
    _refuse_duplicate_columns(src, file_schema.names(), roles)
    for col, key in roles.items():
        if col not in file_schema:
            have = [c for c in file_schema.names() if c != ROW]
            raise DataError(f"{src.key}: file {str(src.path)!r} has no column {col!r} (needed by {key}); "
                            f"columns: {', '.join(have[:40])}{delimiter_hint(src.path, src.fmt)}")
    rows = _checked_rows(src, plan.ds.max_rows)
    if rows is not None:
        lf = scan_file(src, rows, plan.schema.facts)
    return lf, file_schema


def _refuse_duplicate_columns(src: SourceFile, names: Sequence[str], needed: Mapping[str, str]) -> None:
    """DataError for a header that names a column the config reads (``needed``: column → key) twice: Polars keeps
    the first under the name and renames the next ``<name>_duplicated_0``, so a feature would silently read the
    wrong column. A repeated column nothing reads is left alone."""
    present = set(names)
    for name in names:
        match = re.fullmatch(r"(.+)_duplicated_(\d+)", name)
        if match and match.group(1) in present and match.group(1) in needed:
            base = match.group(1)
            times = 1 + sum(1 for n in names if re.fullmatch(re.escape(base) + r"_duplicated_\d+", n))
            raise DataError(f"{src.key}: file {str(src.path)!r}: its header names column {base!r} {times} times, "
                            f"and {needed[base]} reads it; expected each column name once (rename or drop the extra "
                            "column)")


def _checked_rows(src: SourceFile, max_rows: int | None) -> int | None:
    """Refuse a ragged row or a blank line between data rows (DataError naming file and line); the rows to read
    when the file ends with blank lines (they are skipped), else None. Text files only: one byte-level pass,
    :mod:`le_ray.data.lines` says why that and not Polars."""
    if src.fmt == "parquet":
        return None
    raw = src.fmt == "criteo_raw"
    expected = (len(CRITEO_RAW_COLUMNS) - (0 if src.labelled else 1)) if raw else None
    csv = src.fmt == "csv"
    found = scan_lines(src.path, separator="," if csv else "\t", quote='"' if csv else None, header=not raw,
                       expected=expected, max_rows=max_rows)
    where = f"{src.key}: file {str(src.path)!r}"
    if found.header_blank:
        raise DataError(f"{where}: line 1 is blank; expected the header (the column names)")
    if found.unparsable is not None:
        line, why = found.unparsable
        place = "line 1 (the header)" if line == 0 and not raw else _row_place(src, line - (0 if raw else 1))
        raise DataError(f"{where}, {place}: {why}; expected one row per line, as Avazu, Criteo and Yambda files "
                        "are written")
    if found.blank is not None:
        raise DataError(f"{where}: blank line {found.blank + 1} of the file, between data rows; blank lines are "
                        "skipped only at the end of the file; expected a data row (remove the line)")
    if found.ragged is not None:
        line, got = found.ragged
        whose = f"as raw Criteo {'train' if src.labelled else 'test'} rows have" if raw else "as in the header"
        raise DataError(f"{where}, {_row_place(src, line - (0 if raw else 1))}: expected {found.expected} fields "
                        f"({whose}), got {got}")
    if found.trailing_blank and found.rows is not None:
        return found.rows if max_rows is None else min(max_rows, found.rows)
    return None


# ------------------------------------------------------------------------------ label and split

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


def keep_expr(col: str, dtype: pl.DataType, selected: Sequence[str]) -> pl.Expr:
    """Rows whose ``col`` (of file dtype ``dtype``) has one of the ``selected`` texts ("" = missing)."""
    values = [v for v in selected if v != ""]
    if dtype != pl.String:
        values = pl.Series(values, dtype=pl.String).cast(dtype).to_list()
    keep = pl.col(col).is_in(values)
    return (keep | pl.col(col).is_null()) if "" in selected else keep


def prepared(plan: ScanPlan, lf: pl.LazyFrame, src: SourceFile, split: bool) -> pl.LazyFrame:
    """Add ``__y`` (0/1 label, null if invalid) and ``__test`` (held-out part); apply ``drop_na``."""
    s = plan.schema
    label = _label_expr(s) if src.labelled else pl.lit(None, dtype=pl.Float64)
    part = _test_part_expr(s) if split else pl.lit(False)
    lf = lf.with_columns(label.alias(Y), part.alias(PART))
    if plan.ds.drop_na and s.numeric_cols:
        lf = lf.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in s.numeric_cols))
    return lf


# ----------------------------------------------------------------------------------------- stats

def _row_place(src: SourceFile, row: int) -> str:
    """Where data row ``row`` (0-based, header excluded) is, as a person finds it: counted from 1 with its line in a
    text file (the header is line 1; raw Criteo has none: data row 5 is line 6 of a CSV, line 5 of raw Criteo), its
    0-based index in a Parquet file (as Polars and pandas number it)."""
    if src.fmt == "parquet":
        return f"row {row} (counting from 0)"
    return f"data row {row + 1} (line {row + (1 if src.fmt == 'criteo_raw' else 2)} of the file)"


def place_in_file(raw: str | None, key: str, ds: CtrDatasetConfig, name: str, row: int) -> str:
    """Where data row ``row`` of the configured file ``raw`` (config ``key``) is, as :func:`_row_place` says it (its
    file line); just ``data row N`` when the file can no longer be resolved."""
    try:
        src = resolve_file(raw, key, ds, name, True)
    except DataError:
        return f"data row {row + 1}"
    return f"{_row_place(src, row)} of {str(src.path)!r}"


def _label_expected(schema: DatasetSchema) -> str:
    return (f"one of the event types (positives: {list(schema.positive_values)})"
            if schema.positive_values is not None else "0 or 1")


def _raise_bad_label(lf: pl.LazyFrame, src: SourceFile, schema: DatasetSchema) -> None:
    bad = _guarded(src, lambda: lf.filter(pl.col(Y).is_null()).select(ROW, schema.label_col).head(1).collect())
    row, value = bad[ROW][0], bad[schema.label_col][0]
    got = "an empty field" if value is None else repr(value)
    raise DataError(f"{src.key}: file {str(src.path)!r}, column {schema.label_col!r}, {_row_place(src, row)}: "
                    f"got {got}; expected {_label_expected(schema)}")


def train_stats(plan: ScanPlan, lf: pl.LazyFrame) -> tuple[pl.DataFrame, int]:
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

def _keep_cols(plan: ScanPlan) -> list[str]:
    s = plan.schema
    return list(dict.fromkeys([ROW, Y, s.condition_col, s.filter_col, *s.feature_source_cols()]))


def materialise(plan: ScanPlan, lf: pl.LazyFrame, src: SourceFile, keep: pl.Expr | None) -> pl.DataFrame:
    """Collect the kept rows and columns in one streaming pass, in file order."""
    if keep is not None:
        lf = lf.filter(keep)
    df = _guarded(src, lambda: lf.select(*_keep_cols(plan), PART).collect(engine="streaming"), plan)
    return contiguous(df if df[ROW].is_sorted() else df.sort(ROW))


def contiguous(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with one chunk per column (encoding is ~2x faster), copying one column at a time."""
    for col in df.columns:
        if df.get_column(col).n_chunks() > 1:
            df = df.with_columns(df.get_column(col).rechunk())
    return df


# ------------------------------------------------------------------------------------- normalise

def _first_bad(df: pl.DataFrame, mask: pl.Series, col: str, src: SourceFile, expected: str) -> None:
    if mask.any():
        i = int(mask.arg_max())
        raise DataError(f"{src.key}: file {str(src.path)!r}, column {col!r}, {_row_place(src, df[ROW][i])}: "
                        f"got {df[col][i]!r}; expected {expected}")


#: the largest float32 (training's dtype): a value beyond it becomes inf when the features are cast
FLOAT32_MAX = 3.4028234663852886e38


def _refuse_non_finite(plan: ScanPlan, df: pl.DataFrame, col: str, src: SourceFile) -> None:
    """DataError for a NaN / inf in numeric ``col`` (Polars parses ``NaN``, ``nan``, ``inf``, ``-inf``, ``1e999`` as
    numbers): it would make the column's mean and std NaN and every trial fail after Ray starts; likewise a finite
    value beyond float32's range when it enters the model as it is (``missing_numeric`` other than
    ``log1p_indicator``). Empty = missing stays allowed. The value is quoted as written in the file (one more
    scan, on this error path only)."""
    bad = df[col].is_not_null() & ~df[col].is_finite()
    raw = plan.ds.missing_numeric != "log1p_indicator"
    if raw:
        bad = bad | (df[col].abs() > FLOAT32_MAX).fill_null(False)
    if not bad.any():
        return
    i = int(bad.arg_max())
    row = int(df[ROW][i])
    value: Any = df[col][i]
    if src.fmt != "parquet":
        text = _guarded(src, lambda: scan_file(src, plan.ds.max_rows, as_text=True).filter(pl.col(ROW) == row)
                        .select(col).head(1).collect())
        value = text[col][0] if text.height else value
    if math.isfinite(df[col][i]):  # finite, so beyond float32's range
        raise DataError(f"{src.key}: file {str(src.path)!r}, column {col!r}, {_row_place(src, row)}: got {value!r}; "
                        f"expected a number of magnitude at most {FLOAT32_MAX:.3g} or an empty field: with "
                        f"{plan.where}.missing_numeric = {plan.ds.missing_numeric} values enter the model as they "
                        "are, in float32 (log1p_indicator takes their log)")
    raise DataError(f"{src.key}: file {str(src.path)!r}, column {col!r}, {_row_place(src, row)}: got {value!r}; "
                    "expected a finite number or an empty field (NaN and infinities poison the column's "
                    "standardisation)")


def parse_hour(col: pl.Expr) -> pl.Expr:
    """YYMMDDHH text → datetime (null when not exactly 8 digits or not a real date/hour)."""
    ok = col.str.contains(r"^\d{8}$")
    return pl.when(ok).then((col + "00").str.strptime(pl.Datetime, "%y%m%d%H%M", strict=False))


def hour_table(values: pl.Series) -> pl.DataFrame:
    """Distinct YYMMDDHH values (text or int) with hour-of-day, ``wd`` (Monday = 0), ``wd_hour`` (int16).

    Unparsable values get nulls.
    """
    stamp = parse_hour(pl.col("key").cast(pl.String))
    wd = (stamp.dt.weekday() - 1).cast(pl.Int16)
    hour = stamp.dt.hour().cast(pl.Int16)
    return pl.DataFrame({"key": values.unique().sort()}).with_columns(hour=hour, wd=wd, wd_hour=wd * 24 + hour)


def normalise(plan: ScanPlan, df: pl.DataFrame, src: SourceFile) -> pl.DataFrame:
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
        _refuse_non_finite(plan, df, col, src)
    if s.time_col:
        bad = hour_table(df[s.time_col]).filter(pl.col("hour").is_null())["key"].to_list()
        mask = df[s.time_col].is_in([v for v in bad if v is not None]) | df[s.time_col].is_null()
        _first_bad(df, mask, s.time_col, src, "YYMMDDHH (e.g. 14102100 = 2014-10-21 00h)")
    if src.labelled and df[Y].null_count():
        _first_bad(df, df[Y].is_null(), s.label_col, src, "0 or 1")
    return df.drop(PART)
