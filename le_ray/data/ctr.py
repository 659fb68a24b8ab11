"""Load a real CTR file (Avazu, Criteo, Yambda) into encoded arrays: :func:`load_ctr`.

Pipeline (each stage timed in ``CtrSource.timings``, seconds):

0. ``lines``: the file's columns and a byte-level pass over its lines (ragged rows, blank lines;
   :mod:`le_ray.data.lines`), before Polars parses it.
1. ``stats``: one streaming Polars pass over the projected label + filter columns gives per-value
   counts, clicks, mean and median of the train rows (:func:`le_ray.data.filters.filter_statistics`),
   the file's row count, and checks every label is 0/1 (:func:`le_ray.data.scan.train_stats`).
2. ``select``: the condition filter picks the values to keep (:func:`filter_select`).
3. ``materialise``: a second streaming pass keeps only the selected rows and the needed columns;
   ``normalise`` parses numerics and validates ``hour`` (:mod:`le_ray.data.scan`). With
   ``filter.cache.enabled`` those rows are written once (``cache_write``) and reused next time
   (``cache_read``) (:mod:`le_ray.data.cache`).
4. ``encode``: condition ids, vocabularies, derived features, numpy arrays — Polars expressions
   only, no Python loop over rows (:mod:`le_ray.data.encode`).

Each of those modules documents the choices of its stage (typed columns and value checks; cache
format and validity; condition ids, vocabularies, numeric transforms, derived features). This
module holds the plan — which files, which test rows — and runs the stages.

Test rows: ``test_path`` when set; else, with ``split_test_from_train``, a deterministic 10 % of
the train file (data-row index mod 1000 < 100 for Criteo and Avazu, a stable hash of (uid,
item_id, timestamp) for Yambda: :mod:`le_ray.data.scan`) — those rows are left out of every train
statistic. No test rows, and no split, when ``data.use_test_set`` is false.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from le_ray.config import config_fingerprint
from le_ray.config.schema import Config, CtrDatasetConfig
from le_ray.data.arrays import EncodedRows
from le_ray.data.cache import CACHE_VERSION, cache_dir, cache_key, cache_note, cache_read, cache_write, row_settings
from le_ray.data.encode import condition_table, device_counts, encode_frames, time_features
from le_ray.data.filters import filter_select, resolve_mode, selection_table
from le_ray.data.scan import (
    PART, SourceFile, checked_scan, keep_expr, materialise, normalise, prepared, resolve_file, scan_file,
    stable_hash, train_stats,
)
from le_ray.data.schema import DataError, DatasetSchema, build_schema

__all__ = ["CtrSource", "SourceFile", "load_ctr", "stable_hash", "scan_file", "time_features", "device_counts",
           "CACHE_VERSION"]


@dataclass(frozen=True)
class CtrSource:
    """Encoded rows of one CTR source plus what is needed to explain them.

    ``train_rows``: the labelled train file after filtering and encoding (not split, balanced or
    standardised); ``test_rows``: the test file / held-out part (``y`` None when unlabelled) or None.
    ``condition_values[j]``: text of condition id j; ``condition_table``: value, id, rows, clicks,
    rate per condition id over ``train_rows``; ``filter_stats``: value, count, clicks, mean, median,
    selected, order per value of the filter column over the train rows. ``source_rows``: data rows
    read from the train file (both parts when split); ``kept_rows``: ``len(train_rows)``.
    ``fingerprint``: hash of the source files' content and every setting that changes the arrays
    (:func:`_fingerprint`); ``files``: each file read, by part (``train``, ``test``): resolved ``path``, ``bytes``
    and ``sha256``, for the manifest.
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
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


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


# ------------------------------------------------------------------------------------------ plan

def _plan(cfg: Config) -> _Plan:
    """Resolve dataset, schema and files (DataError before any data is read)."""
    name = cfg.data.ctr_dataset
    if name not in cfg.ctr.datasets:
        raise DataError(f"data.ctr_dataset: got {name!r}; no ctr.datasets entry of that name")
    ds = cfg.ctr.datasets[name]
    schema = build_schema(name, ds)
    where = f"ctr.datasets.{name}"
    train = resolve_file(ds.train_path, f"{where}.train_path", ds, name, True)
    test, split = None, False
    if cfg.data.use_test_set and ds.test_path is not None:
        test = resolve_file(ds.test_path, f"{where}.test_path", ds, name, ds.test_has_labels)
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


# ---------------------------------------------------------------------------------------- frames

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
    lf, file_schema = _timed(plan, "lines", lambda: checked_scan(plan, plan.train))
    lf = prepared(plan, lf, plan.train, plan.split)
    stats, total = _timed(plan, "stats", lambda: train_stats(plan, lf))
    selected = _timed(plan, "select", lambda: _select(plan, stats, file_schema))
    col = plan.schema.filter_col
    keep = None if selected is None else keep_expr(col, file_schema[col], selected)
    apply_test = plan.ds.filter.apply_to_test and keep is not None
    frames = {"stats": selection_table(stats, selected if selected is not None else stats["value"].to_list())}
    if plan.split:
        both_keep = keep if apply_test or keep is None else (pl.col(PART) | keep)
        both = _timed(plan, "materialise", lambda: materialise(plan, lf, plan.train, both_keep))
        frames["train"], frames["test"] = both.filter(~pl.col(PART)), both.filter(pl.col(PART))
    else:
        frames["train"] = _timed(plan, "materialise", lambda: materialise(plan, lf, plan.train, keep))
        if plan.test is not None:
            tlf, _ = _timed(plan, "lines", lambda: checked_scan(plan, plan.test))
            tlf = prepared(plan, tlf, plan.test, False)
            frames["test"] = _timed(plan, "materialise", lambda: materialise(
                plan, tlf, plan.test, keep if apply_test else None))
    test_src = plan.test or plan.train
    for part, src in (("train", plan.train), ("test", test_src)):
        if part in frames:
            frames[part] = _timed(plan, "normalise", lambda: normalise(plan, frames[part], src))
    return frames, total


def _empty_test(cfg: Config, plan: _Plan) -> None:
    """A test split without rows: a DataError when it is the evaluation split (``evaluation.split`` test), else a
    warning (only its predictions are written). Says whether the file has no data row or the filter / drop_na left
    none (one more count of the file: this path only)."""
    src = plan.test
    if src is None:
        why = f"the held-out part of {str(plan.train.path)!r} (split_test_from_train) has no row of a kept ad"
    else:
        rows = scan_file(src, plan.ds.max_rows, as_text=True).select(pl.len()).collect().item()
        na = " and drop_na drops rows with a missing numeric" if plan.ds.drop_na else ""
        why = (f"file {str(src.path)!r} has no data rows" if rows == 0 else
               f"none of the {rows:,} rows of file {str(src.path)!r} is left: the filter applies to the test file "
               f"({plan.where}.filter.apply_to_test){na}")
    key = src.key if src is not None else f"{plan.where}.split_test_from_train"
    if cfg.evaluation.split == "test":
        raise DataError(f"{key}: {why}; expected test rows to evaluate on (evaluation.split is test)")
    warnings.warn(f"{key}: {why}; the test split is empty, so no test predictions are written", stacklevel=3)


def _cache_key(plan: _Plan, use_test: bool) -> str:
    return cache_key(plan.name, plan.ds, plan.train, plan.test, split=plan.split, use_test=use_test)


def _sources(plan: _Plan) -> dict[str, SourceFile]:
    """The source files by part: ``train``, and ``test`` when a test file is read."""
    return {"train": plan.train, **({"test": plan.test} if plan.test is not None else {})}


def _sha256s(plan: _Plan, cancel: threading.Event | None = None) -> dict[str, str | None]:
    """Each source file's SHA-256 (:meth:`SourceFile.sha256`), by part (None once ``cancel`` is set)."""
    return {part: src.sha256(cancel) for part, src in _sources(plan).items()}


def _built(plan: _Plan) -> tuple[dict[str, pl.DataFrame], int, dict[str, str]]:
    """:func:`_build_frames`, with the sources hashed in a thread meanwhile (hashlib runs without the GIL, so on a
    multi-core host the digest costs no wall time beside the parse; on 2 cores the two share them)."""
    pool, cancel = ThreadPoolExecutor(max_workers=1, thread_name_prefix="le_ray-sha256"), threading.Event()
    try:
        digests = pool.submit(_sha256s, plan, cancel)
        frames, total = _build_frames(plan)
        return frames, total, _timed(plan, "sha256_wait", digests.result)
    finally:
        cancel.set()  # after an error (a DataError, Ctrl-C) the digest stops at its next block
        pool.shutdown(wait=False)


def _frames(plan: _Plan, use_test: bool) -> tuple[dict[str, pl.DataFrame], int, str | None, dict[str, str]]:
    """The filtered frames, from the cache when enabled and sound, else built (and cached); the source rows, the
    cache manifest's path, and the sources' SHA-256 by part (stored in the cache entry, so a hit reads only it)."""
    cache = plan.ds.filter.cache
    if not cache.enabled:
        frames, total, digests = _built(plan)
        return frames, total, None, digests
    directory = cache_dir(cache.dir)
    stem = f"{plan.name}-{_cache_key(plan, use_test)}"
    hit = None if cache.overwrite else _timed(plan, "cache_read", lambda: cache_read(directory, stem, cache.format))
    if hit is not None:
        frames, manifest = hit
        digests = manifest.get("sha256")
        if not isinstance(digests, dict) or set(digests) != set(_sources(plan)):  # an entry from before digests:
            digests = _timed(plan, "sha256", lambda: _sha256s(plan))  # hashed once, then stored in it
            cache_note(directory, stem, {"sha256": digests})
        return frames, int(manifest["source_rows"]), str(directory / f"{stem}.json"), digests
    frames, total, digests = _built(plan)
    path = _timed(plan, "cache_write", lambda: cache_write(directory, stem, cache.format, frames,
                                                           {"source_rows": total, "sha256": digests}))
    return frames, total, str(path), digests


# ------------------------------------------------------------------------------------------ load

def _fingerprint(plan: _Plan, use_test: bool, sources: dict[str, dict[str, Any]]) -> str:
    """The data's fingerprint (part of every trial id; compared by ``le-ray compare-sweeps``): the source files'
    content (``sources``, :meth:`SourceFile.content` by part: SHA-256, size, format; not path or mtime, so a copy
    elsewhere matches and an edit does not) and every setting that changes the rows or their encoding."""
    ds = plan.ds
    return config_fingerprint({"dataset": plan.name, "settings": row_settings(ds), "use_test_set": use_test,
                               "split": plan.split, "sources": sources, "version": CACHE_VERSION,
                               "encode": [ds.categorical_max_values, ds.max_conditions, ds.device_counter_cap,
                                          ds.missing_numeric]})


def load_ctr(cfg: Config) -> CtrSource:
    """Read, filter and encode the active CTR dataset (``data.ctr_dataset``) of ``cfg``.

    Raises :class:`DataError` (file, column, line, value) for a missing/empty file or a directory, a
    missing column, a row with more or fewer fields than the header, a blank line between data rows
    (trailing blank lines are skipped), a non-binary label, an unparsable ``hour`` or numeric, a NaN or
    infinite numeric, or a filter that keeps nothing.
    """
    start = time.perf_counter()
    plan = _plan(cfg)
    use_test = cfg.data.use_test_set
    frames, total, cache_path, digests = _frames(plan, use_test)
    sources = {part: src.content(digests[part]) for part, src in _sources(plan).items()}
    train_df, test_df = frames["train"], frames.get("test")
    if train_df.height == 0:
        raise DataError(f"{plan.where}.filter: no train rows left in {str(plan.train.path)!r} after filtering")
    if test_df is not None and test_df.height == 0:
        _empty_test(cfg, plan)
    test_labelled = plan.test.labelled if plan.test is not None else True
    train_rows, test_rows, enc = _timed(plan, "encode", lambda: encode_frames(plan.schema, plan.ds, train_df,
                                                                              test_df, test_labelled))
    table = condition_table(train_rows, enc.condition_values)
    plan.timings["total"] = time.perf_counter() - start
    return CtrSource(
        train_rows=train_rows, test_rows=test_rows, num_conditions=len(enc.condition_values),
        condition_values=enc.condition_values, numeric_features=enc.numeric_features,
        categorical_features=enc.categorical_features, cat_vocab_sizes=enc.cat_vocab_sizes,
        condition_table=table, filter_stats=frames["stats"], source_rows=total, kept_rows=len(train_rows),
        timings=dict(plan.timings), fingerprint=_fingerprint(plan, use_test, sources), cache_path=cache_path,
        files={part: {"path": str(src.path), "bytes": sources[part]["bytes"], "sha256": sources[part]["sha256"]}
               for part, src in _sources(plan).items()})
