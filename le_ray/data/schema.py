"""Fixed facts about each CTR dataset kind, and the column roles built from its merged config.

The config (``ctr.datasets.<name>`` merged over ``ctr.defaults``) names the columns; this module
holds what does not change with the config: Criteo's raw column names, Avazu's ``hour`` format
(YYMMDDHH) and its device columns, Yambda's ``event_type`` label and hash-split key, and how a
file's format is detected. :func:`build_schema` turns one :class:`CtrDatasetConfig` into a frozen
:class:`DatasetSchema` (who is the label, the condition, the features) and rejects configs that
would leak the label into the features.

Every data problem a user can fix (missing file or column, bad label, bad ``hour``, empty file,
a filter that keeps nothing) is raised as one :class:`DataError` naming the file, the column and
the offending value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from le_ray.config.schema import CtrDatasetConfig
from le_ray.errors import DataError

__all__ = [
    "DataError", "DatasetSchema", "KindFacts", "KIND_FACTS", "CRITEO_RAW_COLUMNS", "AVAZU_HOUR_FORMAT",
    "AVAZU_INT_COLS",
    "YAMBDA_EVENT_COL", "YAMBDA_HASH_COLS", "SPLIT_MODULUS", "SPLIT_TEST_BELOW", "FileFormat",
    "build_schema", "detect_format", "delimiter_hint",
]

FileFormat = Literal["csv", "tsv", "criteo_raw", "parquet"]

#: Column names of the raw Kaggle Criteo ``train.txt`` (tab-separated, no header).
CRITEO_RAW_COLUMNS: tuple[str, ...] = ("label", *(f"I{i}" for i in range(1, 14)),
                                       *(f"C{i}" for i in range(1, 27)))
#: Avazu ``hour`` is YYMMDDHH (14102100 = 2014-10-21 00:00 UTC); parsed as "%y%m%d%H" + "00" minutes.
AVAZU_HOUR_FORMAT = "%y%m%d%H"
#: Yambda ``multi_event`` column that the label is derived from (never an input feature).
YAMBDA_EVENT_COL = "event_type"
#: Yambda rows are split into train/test by a stable hash of these columns.
YAMBDA_HASH_COLS: tuple[str, ...] = ("uid", "item_id", "timestamp")
#: Deterministic test split: ``key mod SPLIT_MODULUS < SPLIT_TEST_BELOW`` → test (10 %).
SPLIT_MODULUS = 1000
SPLIT_TEST_BELOW = 100




@dataclass(frozen=True)
class KindFacts:
    """What is fixed for one dataset kind.

    ``time_col``: YYMMDDHH column that ``derived_time`` expands (None: not supported);
    ``device_cols``: columns whose train frequency ``device_counters`` turns into numeric features;
    ``split``: how a single file is split into train/test (``row_mod``: data-row index mod 1000,
    ``hash``: stable hash of ``hash_cols`` mod 1000); ``raw_columns``: names of a header-less raw file.
    ``int_cols`` / ``float_cols``: columns the kind's text files always write as integers / numbers;
    they are parsed as such while reading (about half the cost of text), everything else as text.
    """

    time_col: str | None
    device_cols: tuple[str, ...]
    split: Literal["row_mod", "hash"]
    hash_cols: tuple[str, ...] = ()
    raw_columns: tuple[str, ...] | None = None
    int_cols: tuple[str, ...] = ()
    float_cols: tuple[str, ...] = ()


#: Avazu columns written as plain integers (``id`` is not among them: it is read as text).
AVAZU_INT_COLS: tuple[str, ...] = ("click", "hour", "C1", "banner_pos", "device_type", "device_conn_type",
                                   *(f"C{i}" for i in range(14, 22)))

KIND_FACTS: dict[str, KindFacts] = {
    "avazu": KindFacts(time_col="hour", device_cols=("device_ip", "device_id"), split="row_mod",
                       int_cols=AVAZU_INT_COLS),
    "criteo": KindFacts(time_col=None, device_cols=(), split="row_mod", raw_columns=CRITEO_RAW_COLUMNS,
                        int_cols=("label",), float_cols=CRITEO_RAW_COLUMNS[1:14]),
    "yambda": KindFacts(time_col=None, device_cols=(), split="hash", hash_cols=YAMBDA_HASH_COLS),
}


@dataclass(frozen=True)
class DatasetSchema:
    """Column roles of one CTR dataset (built by :func:`build_schema`).

    ``label_col`` is the file column the 0/1 label comes from: a binary column when
    ``positive_values`` is None, else label = 1 where the column's text is in ``positive_values``
    (Yambda: ``event_type`` in e.g. ``("like",)``). ``condition_col`` gives the condition ids,
    ``filter_col`` the column the condition filter ranks (usually the same). ``categorical_cols`` /
    ``numeric_cols`` are the raw feature columns; derived ones (hour-of-day, ``wd``, ``wd_hour``,
    device counters, missing indicators) are added by the encoder. ``device_cols`` is empty unless
    ``device_counters`` is on.
    """

    name: str
    label_col: str
    positive_values: tuple[str, ...] | None
    condition_col: str
    filter_col: str
    categorical_cols: tuple[str, ...]
    numeric_cols: tuple[str, ...]
    time_col: str | None
    device_cols: tuple[str, ...]
    device_counter_cap: int
    facts: KindFacts

    def feature_source_cols(self) -> tuple[str, ...]:
        """Every file column the encoder reads besides label/condition/filter, in a fixed order."""
        extra = ((self.time_col,) if self.time_col else ()) + self.device_cols
        seen: list[str] = []
        for col in (*self.categorical_cols, *self.numeric_cols, *extra):
            if col not in seen:
                seen.append(col)
        return tuple(seen)


def _key(name: str, field: str) -> str:
    return f"ctr.datasets.{name}.{field}"


def build_schema(name: str, ds: CtrDatasetConfig) -> DatasetSchema:
    """Column roles of dataset ``name`` (avazu/criteo/yambda) from its merged config.

    Raises :class:`DataError` when the label column is listed as a feature (it would leak the
    label: the old Yambda pipeline fed ``event_type`` to the model), or when ``derived_time`` /
    ``device_counters`` is on for a kind that has no such columns.
    """
    if name not in KIND_FACTS:
        raise DataError(f"ctr.datasets.{name}: unknown dataset kind; expected one of {', '.join(KIND_FACTS)}")
    facts = KIND_FACTS[name]
    positives = tuple(str(v) for v in ds.positive_event_types) or None
    if name == "yambda" and positives is None:
        raise DataError(f"{_key(name, 'positive_event_types')}: got []; expected the event types that count "
                        f"as a click (e.g. [\"like\"]) — the Yambda label is derived from {ds.label_col!r}")
    leaked = [c for c in (*ds.categorical_cols, *ds.numeric_cols) if c == ds.label_col]
    if leaked:
        raise DataError(f"{_key(name, 'categorical_cols')}/numeric_cols: column {leaked[0]!r} is the label "
                        f"source ({_key(name, 'label_col')}); it must not be an input feature")
    if ds.derived_time and facts.time_col is None:
        raise DataError(f"{_key(name, 'derived_time')}: true, but {name} has no YYMMDDHH time column "
                        "(only avazu's 'hour')")
    if ds.device_counters and not facts.device_cols:
        raise DataError(f"{_key(name, 'device_counters')}: true, but {name} has no device columns "
                        "(only avazu's device_ip/device_id)")
    flt_col = ds.filter.col or ds.filter_col or ds.condition_col
    return DatasetSchema(
        name=name, label_col=ds.label_col, positive_values=positives, condition_col=ds.condition_col,
        filter_col=flt_col, categorical_cols=tuple(ds.categorical_cols), numeric_cols=tuple(ds.numeric_cols),
        time_col=facts.time_col if ds.derived_time else None,
        device_cols=facts.device_cols if ds.device_counters else (),
        device_counter_cap=ds.device_counter_cap, facts=facts)


def _first_line(path: Path) -> str:
    with open(path, "rb") as fh:
        return fh.readline(1 << 20).decode("utf-8", errors="replace").rstrip("\r\n")


def detect_format(path: Path, configured: str, name: str) -> FileFormat:
    """The file format of ``path``: ``configured`` unless it is ``auto``.

    ``auto``: ``.parquet``/``.pq`` suffix → parquet; a first line with tabs → ``criteo_raw``
    when its first field is a number (no header, Kaggle ``train.txt``) else ``tsv`` (header);
    otherwise ``csv`` with a header. ``criteo_raw`` is only valid for the criteo kind.
    """
    fmt = configured
    if fmt == "auto":
        if path.suffix.lower() in (".parquet", ".pq"):
            return "parquet"
        line = _first_line(path)
        if "\t" in line:
            first = line.split("\t", 1)[0].strip()
            fmt = "criteo_raw" if first.lstrip("-").replace(".", "", 1).isdigit() or first == "" else "tsv"
        else:
            fmt = "csv"
    if fmt == "criteo_raw" and KIND_FACTS.get(name, KIND_FACTS["avazu"]).raw_columns is None:
        raise DataError(f"{_key(name, 'format')}: file {str(path)!r} looks like a header-less tab-separated "
                        f"file, which only criteo supports; add a header or set format to tsv")
    return fmt  # type: ignore[return-value]


_SEPARATORS = {",": "','", "\t": "tab", ";": "';'", "|": "'|'"}


def delimiter_hint(path: Path, fmt: str) -> str:
    """A hint for a "has no column" message when the header of text file ``path`` (read as ``fmt``: csv or tsv)
    lacks the separator ``fmt`` reads but holds another (``;``, tab, ``|``, ``,``); ``""`` otherwise."""
    if fmt not in ("csv", "tsv"):
        return ""
    line, sep = _first_line(path), "," if fmt == "csv" else "\t"
    other = [ch for ch in _SEPARATORS if ch != sep and ch in line]
    if sep in line or not other:
        return ""
    return (f"; its header (line 1) has no {_SEPARATORS[sep]} but has {_SEPARATORS[other[0]]}, so the file looks "
            f"{_SEPARATORS[other[0]]}-separated: le_ray reads comma-separated CSV files (format csv) or "
            "tab-separated ones with a header (format tsv); convert the file, or set the dataset's format")
