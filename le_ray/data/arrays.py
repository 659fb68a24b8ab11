"""Plain-array containers that cross module and process boundaries (numpy only, no torch).

``EncodedRows`` is what a source (synthetic generator or CTR pipeline) hands to
:mod:`le_ray.data.prepare`; ``PreparedData`` is what every trial trains on. Both pickle cheaply and
travel through Ray's object store once per sweep; arrays there are read-only, so nothing here
mutates them in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from dataclasses import dataclass, field, fields, replace

import numpy as np

__all__ = ["EncodedRows", "Split", "PreparedData", "PreparedMeta", "OTHER_VALUE"]

#: The condition / category value that collects everything outside the kept vocabulary.
OTHER_VALUE = "__other__"


def _take_rows(rows, index: np.ndarray):
    """Same container with every per-row array indexed by ``index`` (int array or boolean mask)."""
    return replace(rows, **{f.name: None if getattr(rows, f.name) is None else getattr(rows, f.name)[index]
                            for f in fields(rows)})


@dataclass(frozen=True)
class EncodedRows:
    """Encoded rows of one source file, before splitting and standardisation.

    Shapes (n rows, F numeric features, K categorical columns):
    ``x_num`` float32 [n, F] (raw units), ``x_cat`` int32 [n, K] (ids in [0, vocab_k)),
    ``cond`` int32 [n] (ids in [0, num_conditions)), ``y`` float32 [n] in {0, 1} or None when the
    file has no labels, ``row_id`` int64 [n] (row number in the source file, 0-based, header
    excluded), ``p_true`` float64 [n] true click probability (synthetic only).
    """

    x_num: np.ndarray
    x_cat: np.ndarray
    cond: np.ndarray
    y: np.ndarray | None
    row_id: np.ndarray
    p_true: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.cond)
        for name in ("x_num", "x_cat", "row_id", "y", "p_true"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"EncodedRows.{name}: {len(arr)} rows, expected {n} (len(cond))")

    def __len__(self) -> int:
        return len(self.cond)

    def take(self, index: np.ndarray) -> "EncodedRows":
        """Rows at ``index`` (int array or boolean mask), same order."""
        return _take_rows(self, index)


@dataclass(frozen=True)
class Split:
    """One split ready for training or evaluation; shapes as in :class:`EncodedRows`.

    ``x_num`` is standardised with the train statistics; ``w`` float32 [n] are per-sample weights
    (all ones unless the deprecated synthetic reweighting is on, and only on the train split).
    """

    x_num: np.ndarray
    x_cat: np.ndarray
    cond: np.ndarray
    y: np.ndarray | None
    w: np.ndarray
    row_id: np.ndarray
    p_true: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.cond)

    @property
    def has_labels(self) -> bool:
        return self.y is not None

    @classmethod
    def from_rows(cls, rows: EncodedRows, x_num: np.ndarray, w: np.ndarray | None = None) -> "Split":
        weights = np.ones(len(rows), dtype=np.float32) if w is None else w.astype(np.float32, copy=False)
        return cls(x_num, rows.x_cat, rows.cond, rows.y, weights, rows.row_id, rows.p_true)

    def take(self, index: np.ndarray) -> "Split":
        """Rows at ``index`` (int array or boolean mask), same order."""
        return _take_rows(self, index)

    def without_labels(self) -> "Split":
        return replace(self, y=None)


@dataclass(frozen=True)
class PreparedMeta:
    """Small typed facts about a preparation (never a copy of the data).

    ``source_rows``: rows read from the source file(s) (or generated, test hold-out included);
    ``kept_rows``: labelled rows after the condition filter; ``labelled_rows``: after per-condition
    balancing (what the train/eval split divides); ``seed``: the data seed; ``prepare_seconds``: wall
    time of the whole preparation; ``stage_seconds``: the source's own stages (CTR: stats, select,
    materialise, encode, cache...; synthetic: generate); ``files``: the CTR source files read, by part
    (``train``, ``test``): resolved ``path``, ``bytes`` and ``sha256`` (empty for synthetic data).
    """

    source_rows: int
    kept_rows: int
    labelled_rows: int
    seed: int
    prepare_seconds: float
    stage_seconds: Mapping[str, float]
    files: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedData:
    """Everything a trial needs from the data, as plain arrays plus metadata.

    ``condition_values[j]`` is the source value (as text) of condition id j
    (``"__other__"`` for the catch-all bucket); ``train_condition_counts`` / ``train_condition_positives``
    int64 [C] and ``train_condition_rates`` float64 [C] are over the train split;
    ``true_base_rates`` float64 [C] is the mean true probability per condition of the train split
    (synthetic only). ``fingerprint`` identifies the data (source file + settings, or generator
    settings + seed) for trial ids and caches; ``meta`` the small facts of :class:`PreparedMeta`.
    """

    source: str
    train: Split
    eval: Split
    test: Split | None
    num_conditions: int
    condition_values: tuple[str, ...]
    numeric_features: tuple[str, ...]
    categorical_features: tuple[str, ...]
    cat_vocab_sizes: tuple[int, ...]
    numeric_mean: np.ndarray
    numeric_std: np.ndarray
    train_condition_counts: np.ndarray
    train_condition_positives: np.ndarray
    train_condition_rates: np.ndarray
    true_base_rates: np.ndarray | None
    fingerprint: str
    meta: PreparedMeta

    def split(self, name: str) -> Split | None:
        """The split called ``train``, ``eval`` or ``test``."""
        if name not in ("train", "eval", "test"):
            raise ValueError(f"unknown split {name!r}; expected train, eval or test")
        return getattr(self, name)

    @property
    def num_numeric(self) -> int:
        return int(self.train.x_num.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes of every array the preparation holds (splits and per-condition statistics)."""
        arrays = [getattr(split, f.name) for split in (self.train, self.eval, self.test) if split is not None
                  for f in fields(split)]
        arrays += [self.numeric_mean, self.numeric_std, self.train_condition_counts, self.train_condition_positives,
                   self.train_condition_rates, self.true_base_rates]
        return int(sum(a.nbytes for a in arrays if isinstance(a, np.ndarray)))
