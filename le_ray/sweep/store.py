"""The results store of a sweep: ``<results_dir>/<name>/`` with one atomic JSON file per trial.

Layout::

    config.resolved.json     the resolved config the sweep was created with (never overwritten)
    config.history/NNN.json  the resolved config, command line and time of every (re)run, oldest first
    manifest.json            versions, git commit, data fingerprint, cluster resources, the audit and the
                             trials planned by the latest run
    trials/<trial_id>.json   one finished trial (written atomically as it arrives)
    failures/<trial_id>.json a trial that failed after its retries (traceback); retried on resume
    trials.parquet           one row per trial: seed, loss, every metric, seconds, node, device
    per_condition.parquet    one row per trial × condition (with the ad id: the raw condition value)

Resume: a trial whose file holds its complete record (:data:`RECORD_KEYS`) is not run again (a file that cannot be
read as one is pending, with a warning naming it, and replaced when the trial is stored); a crashed driver rerun with
the same name finishes only what is missing. A folder belongs to one config: a rerun whose trial-relevant keys
(:data:`TRIAL_KEYS`) differ is refused, naming each key old → new; ``--extend`` allows only changes that
add trials (:data:`EXTEND_KEYS`: more seeds, more losses; fewer of either is refused) and keep every stored
trial valid. Other keys
(Ray, output, report and statistics settings) may change freely; each run is kept in config.history. Only complete trial files exist (temp + rename), so a kill at any
moment never leaves a trial file that a resume would wrongly trust. A write never recreates a removed sweep folder,
and a failed one raises :class:`SweepWriteError` naming the folder and the reason.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import polars as pl

from le_ray import __version__, metrics
from le_ray.version import git_commit
from le_ray.atomic import atomic_write_json, check_writable
from le_ray.errors import ResultsError, UserError
from le_ray.config.resolve import overridden_for_every_loss, with_added_keys
from le_ray.registry import losses_of
from le_ray.training.spec import DISPLAY_ONLY_EVALUATION

__all__ = ["SweepStore", "ResultsError", "is_ray_job", "resolve_results_dir", "environment_manifest", "TRIAL_KEYS",
           "EXTEND_KEYS", "ConfigChange", "config_changes", "trial_changes", "plain_folder_name", "check_resume", "nearest_writable",
           "trials_frame", "SweepWriteError", "RECORD_KEYS",
           "per_condition_frame", "pooled_per_condition", "ad_ids", "with_ad_id"]

#: Config keys (dotted prefixes) that change what a trial computes or which data it sees.
TRIAL_KEYS = ("project.seed", "data.", "synthetic.", "ctr.", "model.", "training.", "evaluation.", "device.dtype",
              "device.deterministic", "repeats.seed_stride", "repeats.resample_data")
#: Trial-relevant keys whose change only adds (or drops) whole trials: every stored trial stays valid.
EXTEND_KEYS = ("repeats.num_runs", "training.loss_mode")
#: Keys under TRIAL_KEYS that change no trial's numbers (display only; their trial ids ignore them too).
_NOT_TRIAL = tuple(f"evaluation.{key}" for key in DISPLAY_ONLY_EVALUATION)

log = logging.getLogger("le_ray.sweep")
_PACKAGES = ("torch", "ray", "numpy", "polars", "pandas", "scipy", "scikit-learn", "matplotlib", "pyarrow")


def _number(value: Any) -> bool:
    """A JSON number or null (to_jsonable stores NaN and inf as null)."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _numbers(value: Any) -> bool:
    """A JSON object of numbers (or nulls)."""
    return isinstance(value, dict) and all(_number(v) for v in value.values())


#: What a stored trial record must hold, key → check of its value: what every reader indexes unconditionally
#: (load_trials sorts by loss and seed; trials_frame reads metrics and timings as numbers, node, device and
#: samples_per_second). A file without one of them is damaged: it counts as not stored (:meth:`SweepStore.read_trial`).
RECORD_KEYS: dict[str, Callable[[Any], bool]] = {
    "loss": lambda v: isinstance(v, str) and bool(v), "seed": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "metrics": _numbers, "timings": _numbers, "node": lambda v: True, "device": lambda v: isinstance(v, str),
    "samples_per_second": _number}
#: Keys a record may lack (or hold null), but that readers index as JSON objects when present.
_OPTIONAL_OBJECTS = ("condition_sums", "reliability", "curves")


class SweepWriteError(ResultsError):
    """A write into a sweep folder failed: the folder (or a file system under it) refused it, or the sweep folder
    was removed while the sweep ran (``removed``). The message names the folder and the OS's reason."""

    def __init__(self, message: str, *, removed: bool = False) -> None:
        super().__init__(message)
        self.removed = removed

    def with_resume(self, command: str) -> str:
        """The message and, unless the sweep folder is gone (nothing to resume), ``; resume with: <command>``."""
        return str(self) if self.removed else f"{self}; resume with: {command}"


def is_ray_job() -> bool:
    """True inside the entrypoint of ``ray job submit`` (the job supervisor sets this variable)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def resolve_results_dir(cli_value: str | None, config_value: str) -> Path:
    """``--results-dir`` ← ``LE_RAY_RESULTS`` ← ``output.results_dir``; absolute under ray job submit.

    A Ray job's driver runs inside an unpacked copy of the working dir that is deleted with the
    job, so a relative folder there would vanish with the results. A path that is not valid UTF-8 (bytes the file
    system's encoding could not decode) is refused naming where it came from, before anything is created: Ray and
    the report cannot spell it.
    """
    raw = cli_value or os.environ.get("LE_RAY_RESULTS") or config_value
    source = ("--results-dir" if cli_value else "LE_RAY_RESULTS" if os.environ.get("LE_RAY_RESULTS")
              else "output.results_dir")
    path = Path(raw).expanduser()
    if is_ray_job() and not path.is_absolute():
        raise ResultsError(
            f"results dir {raw!r} is relative, but this driver runs under `ray job submit` inside a temporary copy "
            "of the working dir that is deleted when the job ends; pass an absolute --results-dir (or set "
            "LE_RAY_RESULTS) on storage the head node can write, e.g. --results-dir /mnt/shared/le_ray_results")
    resolved = path.resolve()
    for shown in (raw, str(resolved)):  # the resolved path adds the working folder to a relative one
        if not _is_utf8(shown):
            raise ResultsError(f"{source} {shown!r}: the results folder's path is not valid UTF-8 (it holds bytes "
                               "that are no UTF-8 text), which Ray and the report cannot use; choose another folder")
    return resolved


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8: False for a name holding undecodable bytes (surrogate escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def nearest_writable(path: Path) -> Path:
    """``path``'s nearest existing ancestor, proved writable without creating anything (pre-flight); the refusal
    says whether ``path`` exists but is not writable or cannot be created."""
    target = probe = Path(path).resolve()
    while not probe.exists():
        probe = probe.parent
    if probe == target and probe.is_dir() and not os.access(probe, os.W_OK | os.X_OK):
        raise ResultsError(f"results folder {str(path)!r} exists but is not writable")
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ResultsError(f"results folder {str(path)!r} cannot be created: {str(probe)!r} is "
                           f"{'not a folder' if not probe.is_dir() else 'not writable'}")
    return probe


@dataclass(frozen=True)
class ConfigChange:
    """One dotted key whose value differs between a sweep folder's config and the new run's."""
    key: str
    old: Any
    new: Any

    @property
    def trial_relevant(self) -> bool:
        return self.key.startswith(TRIAL_KEYS + EXTEND_KEYS) and not self.key.startswith(_NOT_TRIAL)

    @property
    def extends(self) -> bool:
        return self.key.startswith(EXTEND_KEYS)

    def __str__(self) -> str:
        return f"{self.key}: {json.dumps(self.old)} -> {json.dumps(self.new)}"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[ConfigChange]:
    """Every leaf key whose value differs between two resolved configs (plain JSON data); ``old`` stored without a
    key added since (:data:`le_ray.config.resolve.ADDED_KEYS`) is compared as if it held the key's value."""
    a, b = _flatten(with_added_keys(old)), _flatten(new)
    return [ConfigChange(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _drops_trials(change: ConfigChange) -> bool:
    """Whether an :data:`EXTEND_KEYS` change leaves stored trials out: fewer seeds, or a stored loss not trained."""
    if change.key == "repeats.num_runs":
        return isinstance(change.old, int) and isinstance(change.new, int) and change.new < change.old
    try:
        return bool(set(losses_of(change.old)) - set(losses_of(change.new)))
    except (UserError, TypeError):  # a value the config would not accept: not an extension either
        return True


def _unread_by_source(key: str, config: dict[str, Any]) -> bool:
    """True for a dotted key that trials on ``config``'s data source never read: another source's data section
    (``synthetic.*`` under CTR data; ``ctr.*`` under synthetic data, or another dataset's ``ctr.datasets.<name>``) and
    another source's per-loss values (``training.by_loss.<loss>.by_source.<other>``). Trial ids hash the settings
    resolved for the active source and the data's fingerprint, so such a change leaves every stored trial valid.
    A change of the source itself is a ``data.*`` key, read by every trial."""
    data, parts = config.get("data", {}), key.split(".")
    synthetic = data.get("source") == "synthetic"
    if parts[0] == "synthetic":
        return not synthetic
    if parts[0] == "ctr":
        return synthetic or (len(parts) > 2 and parts[1] == "datasets" and parts[2] != data.get("ctr_dataset"))
    if parts[:2] == ["training", "by_loss"] and len(parts) > 4 and parts[3] == "by_source":
        return parts[4] not in (("synthetic",) if synthetic else (data.get("ctr_dataset"), "ctr"))
    return False


MAX_NAME_BYTES = 200  #: a folder name's limit here (most file systems allow 255 bytes; files go inside it)


def plain_folder_name(name: str, flag: str = "--name") -> str:
    """``name`` when it is a plain folder name a shell command can repeat: not empty, no ``/``, not ``.`` or ``..``,
    not starting with ``-`` (the printed resume command would read it as an option), no control character (a
    newline), valid UTF-8 (no undecodable bytes), at most :data:`MAX_NAME_BYTES` bytes; else a ResultsError naming
    the rule."""
    why = ("it is empty" if not name else "it contains /" if "/" in name else "it is . or .." if name in (".", "..")
           else "it starts with - (a command would read it as an option)" if name.startswith("-")
           else "it contains a control character (a newline or tab)" if any(ord(c) < 32 or ord(c) == 127 for c in name)
           else "it is not valid UTF-8 (it holds bytes that are no UTF-8 text)" if not _is_utf8(name)
           else f"it is {len(name.encode())} bytes long, over {MAX_NAME_BYTES}"
           if len(name.encode()) > MAX_NAME_BYTES else None)
    if why:
        raise ResultsError(f"{flag} {name!r}: expected a plain folder name, but {why}")
    return name


def trial_changes(changes: list[ConfigChange], new: dict[str, Any]) -> list[ConfigChange]:
    """The ``changes`` (:func:`config_changes`) that change a trial of config ``new``: trial-relevant keys, except
    another data source's values, which ``new`` never reads, and a general ``training.<key>`` that a per-loss key
    overrides for every loss ``new`` trains (trial ids hash the settings each loss resolves, so they keep)."""
    return [c for c in changes if c.trial_relevant and not _unread_by_source(c.key, new)
            and not overridden_for_every_loss(new, c.key)]


def check_resume(folder: Path, old: dict[str, Any], new: dict[str, Any], *, extend: bool,
                 holds_every_stored_trial: bool = False) -> list[ConfigChange]:
    """Refuse (ResultsError) a rerun of ``folder`` whose trial-relevant config differs, or an ``--extend`` that drops
    seeds or losses instead of adding them; returns the changes. ``holds_every_stored_trial``: the new config plans
    every (loss, seed) the folder stores, so fewer seeds or losses leave no stored trial out (an ``--extend`` stopped
    before its first new trial can be run back at the size it extended; more still need ``--extend``)."""
    changes = config_changes(old, new)
    relevant = trial_changes(changes, new)
    back = holds_every_stored_trial and not extend  # fewer seeds or losses, none of them stored: nothing is lost
    blocking = [c for c in relevant if not ((extend and c.extends) or (back and c.extends and _drops_trials(c)))]
    shrinking = [c for c in relevant if extend and c.extends and _drops_trials(c)]
    if shrinking and not blocking:
        lines = "\n".join(f"  - {c}" for c in shrinking)
        raise ResultsError(
            f"--extend only adds seeds or losses to sweep folder {str(folder)!r}, but (stored -> now):\n{lines}\n"
            "would leave stored trials out of its report; nothing was run and nothing was changed. Keep "
            "repeats.num_runs at least the stored value and training.loss_mode training every stored loss, or start "
            "a new sweep (--name <new name>).")
    if blocking:
        lines = "\n".join(f"  - {c}" for c in blocking)
        raise ResultsError(
            f"sweep folder {str(folder)!r} holds trials of another config; these trial-relevant keys differ "
            f"(stored -> now):\n{lines}\nnothing was run and nothing was changed. Either start a new sweep "
            f"(--name <new name>), or, when the change only adds trials (more seeds: repeats.num_runs, more "
            f"losses: training.loss_mode), rerun with --extend.")
    return changes


def environment_manifest() -> dict[str, Any]:
    """le_ray version, git commit, Python and package versions, host."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"le_ray_version": __version__, "git_commit": git_commit(), "python": sys.version.split()[0],
            "platform": platform.platform(), "host": platform.node(), "packages": versions}


@dataclass
class SweepStore:
    """Read/write access to one sweep folder."""

    root: Path
    _warned: set = field(default_factory=set, init=False, repr=False, compare=False)  # trial files warned about

    @classmethod
    def open(cls, results_dir: Path, name: str) -> "SweepStore":
        """Create (or reopen) ``results_dir/name`` after proving it is writable."""
        plain_folder_name(name)
        return cls(Path(results_dir) / name).created()

    def created(self) -> "SweepStore":
        """This store, its folder (and ``trials``, ``failures``) created if needed and proven writable. The same
        object, so a trial file it already warned about (while the folder was only read) is not warned about
        again."""
        check_writable(self.root, "results folder")
        for sub in ("trials", "failures"):
            check_writable(self.root / sub, "results folder")
        return self

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    def trial_path(self, trial_id: str) -> Path:
        return self.trials_dir / f"{trial_id}.json"

    def finished_ids(self, excluding: Iterable[str] = ()) -> set[str]:
        """Ids of the stored trials, but those in ``excluding`` (whose files are then not read): the trial files that
        read as complete records (:meth:`read_trial`). A file that does not (edited, or damaged outside le_ray)
        counts as not stored: a resume retrains the trial and replaces the file atomically."""
        skip = set(excluding)
        return {p.stem for p in self.trials_dir.glob("*.json") if p.stem not in skip and self.read_trial(p) is not None}

    def read_trial(self, path: Path) -> dict[str, Any] | None:
        """The trial record in ``path``, or None with a warning naming the file (once per store) when it is not a
        complete JSON record of that trial (``trial_id`` = the file's name, every :data:`RECORD_KEYS` key)."""
        try:
            record = json.loads(path.read_text())
            problem = _record_problem(record, path.stem)
            if problem is None:
                return record
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problem = f"cannot be read as JSON ({exc})"
        if path not in self._warned:
            self._warned.add(path)
            log.warning("trial file %r %s; the trial counts as not stored (a resume of the sweep retrains it and "
                        "replaces the file)", str(path), problem)
        return None

    def write_trial(self, record: dict[str, Any]) -> Path:
        """Store a finished trial's record (clearing a failure record of it); :class:`SweepWriteError` when it
        cannot be written."""
        trial_id = record["trial_id"]
        failure = self.root / "failures" / f"{trial_id}.json"
        try:
            failure.unlink(missing_ok=True)
        except OSError as exc:
            raise self._write_error(exc, f"trial {trial_id} (its old failure record cannot be removed)",
                                    failure.parent) from exc
        return self._write(f"trials/{trial_id}.json", record, f"trial {trial_id}")

    def write_failure(self, trial_id: str, info: dict[str, Any]) -> Path:
        """Store the failure record of a trial that failed after its retries (:class:`SweepWriteError` as in
        :meth:`write_trial`)."""
        return self._write(f"failures/{trial_id}.json", {"trial_id": trial_id, **info, "time": time.time()},
                           f"the failure record of trial {trial_id}")

    def _write(self, relative: str, data: Any, what: str) -> Path:
        """``data`` as JSON in ``root/relative``, atomically, its folders inside the sweep folder made as needed but
        never the sweep folder itself: a write after it was removed, or one the file system refuses, raises
        :class:`SweepWriteError` naming ``what``, the folder and the reason (never the temp file)."""
        target = self.root / relative
        if not self.root.is_dir():
            raise self._write_error(FileNotFoundError(), what, target.parent)
        try:
            folder = self.root
            for part in Path(relative).parent.parts:  # one level at a time: a removed sweep folder stays removed
                folder = folder / part
                folder.mkdir(exist_ok=True)
            return atomic_write_json(target, data, make_parents=False)
        except OSError as exc:
            raise self._write_error(exc, what, target.parent) from exc

    def _write_error(self, exc: OSError, what: str, folder: Path) -> SweepWriteError:
        """The :class:`SweepWriteError` of a failed write of ``what`` into ``folder``."""
        if not self.root.is_dir():
            return SweepWriteError(f"cannot write {what}: the sweep folder {str(self.root)!r} was removed while the "
                                   "sweep ran (it is not recreated without its config)", removed=True)
        return SweepWriteError(f"cannot write {what} into {str(folder)!r}: {exc.strerror or exc}")

    def failures(self) -> dict[str, dict]:
        """trial id → its failure record (``error``: the exception's repr, ``traceback``, ...). A damaged failure file
        still marks its trial as failed, with an ``error`` that says the file could not be read (and a warning)."""
        out = {}
        for path in sorted((self.root / "failures").glob("*.json")):
            try:
                out[path.stem] = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                log.warning("failure file %r cannot be read as JSON (%s); its trial counts as failed", str(path), exc)
                out[path.stem] = {"trial_id": path.stem, "error": f"failed; its failure file cannot be read ({exc})"}
        return out

    def load_trials(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Stored trial records (all, or those in ``ids`` that exist), sorted by loss then seed."""
        paths = ([self.trial_path(i) for i in ids] if ids is not None else list(self.trials_dir.glob("*.json")))
        # An unreadable file is skipped with a warning naming it (read_trial), not an error: the report then counts
        # the trial as missing, exactly like a trial that failed (summary.md lists it, the statistics use complete
        # pairs), so one damaged file neither hides the rest of the sweep's results nor passes unnoticed, and the
        # warning says that a resume retrains it.
        records = [r for r in (self.read_trial(p) for p in paths if p.exists()) if r is not None]
        return sorted(records, key=lambda r: (r["loss"], r["seed"]))

    def write_json(self, name: str, data: Any) -> Path:
        """Write ``data`` as JSON to ``root/name`` atomically (:class:`SweepWriteError` as in :meth:`write_trial`)."""
        return self._write(name, data, name)

    def read_json(self, name: str) -> Any:
        path = self.root / name
        if not self.root.is_dir():
            raise ResultsError(f"sweep folder {str(self.root)!r}: " + ("not a folder" if self.root.exists()
                                                                        else "no such folder"))
        if not path.exists():
            raise ResultsError(f"{str(path)!r}: missing; is {str(self.root)!r} a le_ray sweep folder?")
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsError(f"{str(path)!r} cannot be read as JSON ({exc}); the sweep folder is damaged: "
                               "restore the file or start a new sweep with --name") from None

    @property
    def history_dir(self) -> Path:
        return self.root / "config.history"

    def record_run(self, config: dict[str, Any], argv: list[str]) -> Path:
        """Keep this run's resolved config and command line in config.history (config.resolved.json: first run only)."""
        if not (self.root / "config.resolved.json").exists():
            self.write_json("config.resolved.json", config)
        number = len(list(self.history_dir.glob("*.json")))
        return self.write_json(f"config.history/{number:03d}.json", {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": argv, "config": config})

    def latest_config(self) -> dict[str, Any]:
        """The config of the latest run (config.history), else config.resolved.json."""
        runs = sorted(self.history_dir.glob("*.json"))
        return self.read_json(f"config.history/{runs[-1].name}")["config"] if runs else \
            self.read_json("config.resolved.json")

    def clean_temporary_files(self) -> int:
        """Remove ``.tmp-*`` leftovers of writes a kill interrupted (no reader trusts them); returns how many."""
        leftovers = [p for p in self.root.rglob(".tmp-*") if p.is_file()]
        for p in leftovers:
            p.unlink(missing_ok=True)
        return len(leftovers)


def _record_problem(record: Any, trial_id: str) -> str | None:
    """Why ``record`` is not a complete record of trial ``trial_id`` (None when it is): what the warning of
    :meth:`SweepStore.read_trial` says after the file's name."""
    if not isinstance(record, dict) or record.get("trial_id") != trial_id:
        return "is not the record of that trial"
    bad = [key for key, ok in RECORD_KEYS.items() if key not in record or not ok(record[key])]
    bad += [key for key in _OPTIONAL_OBJECTS if not isinstance(record.get(key) or {}, dict)]
    if bad:
        return f"is not a complete trial record (missing or malformed: {', '.join(bad)})"
    return None


def trials_frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    """One row per trial: ids, seed, loss, every metric, seconds, node, device, throughput."""
    rows = []
    for r in records:
        row = {"trial_id": r["trial_id"], "seed": r["seed"], "loss": r["loss"]}
        row.update({k: (float("nan") if v is None else float(v)) for k, v in r["metrics"].items()})
        row.update({f"seconds_{k}": (float("nan") if v is None else float(v)) for k, v in r["timings"].items()})
        row.update(node=r["node"], device=r["device"], samples_per_second=r["samples_per_second"])
        rows.append(row)
    return pl.DataFrame(rows) if rows else pl.DataFrame({"trial_id": [], "seed": [], "loss": []})


def _sums_columns(sums: metrics.ConditionSums) -> pl.DataFrame:
    """The raw additive sums of the conditions present (n > 0): condition, n, sum_y, sum_p, sum_t."""
    present = np.flatnonzero(sums.n)
    cols = {"condition": present.astype(np.int64), "n": sums.n[present], "sum_y": sums.sum_y[present],
            "sum_p": sums.sum_p[present]}
    if sums.sum_t is not None:
        cols["sum_t"] = sums.sum_t[present]
    return pl.DataFrame(cols)


def ad_ids(conditions, condition_values: list[str] | tuple[str, ...] | None) -> list[str]:
    """The ad id of each condition index: its raw source value (e.g. the C14 value ``"17753"``), or the index as
    text when the values are unknown (synthetic data's values are their indices)."""
    values = list(condition_values or [])
    return [values[int(j)] if 0 <= int(j) < len(values) else str(int(j)) for j in conditions]


def with_ad_id(table: pl.DataFrame, condition_values) -> pl.DataFrame:
    """``table`` with an ``ad_id`` column right after ``condition``."""
    ids = pl.Series("ad_id", ad_ids(table["condition"].to_list(), condition_values), dtype=pl.String)
    out = table.with_columns(ids)
    return out.select("condition", "ad_id", *[c for c in out.columns if c not in ("condition", "ad_id")])


def per_condition_frame(records: list[dict[str, Any]], condition_values: list[str] | None = None) -> pl.DataFrame:
    """One row per trial × condition: the metrics computed from the trial's sums, the sums themselves and the
    ad id (:func:`ad_ids`)."""
    frames = []
    for r in records:
        if not r.get("condition_sums"):
            continue
        sums = metrics.sums_from_record(r["condition_sums"])
        frame = metrics.per_condition_table(sums).join(_sums_columns(sums), on="condition", how="left")
        frames.append(frame.with_columns(pl.lit(r["trial_id"]).alias("trial_id"), pl.lit(r["seed"]).alias("seed"),
                                         pl.lit(r["loss"]).alias("loss")))
    if not frames:
        return pl.DataFrame()
    return with_ad_id(pl.concat(frames, how="diagonal_relaxed"), condition_values)


def pooled_per_condition(records: list[dict[str, Any]], loss: str,
                         condition_values: list[str] | None = None) -> pl.DataFrame:
    """Per-condition metrics of ``loss`` pooled over its seeds: the table of the summed sums (see
    :func:`le_ray.metrics.merge_sums`; exact for every additive column and the grid-backend ECE), with the ad id."""
    parts = [metrics.sums_from_record(r["condition_sums"]) for r in records
             if r["loss"] == loss and r.get("condition_sums")]
    if not parts:
        return pl.DataFrame()
    return with_ad_id(metrics.per_condition_table(metrics.merge_sums(parts)), condition_values)
