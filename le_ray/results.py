"""The results store of a sweep: ``<results_dir>/<name>/`` with one atomic JSON file per trial.

Layout::

    config.resolved.json     the resolved config of the latest (re)run
    manifest.json            versions, git commit, data fingerprint, cluster resources, planned trials
    trials/<trial_id>.json   one finished trial (written atomically as it arrives)
    failures/<trial_id>.json a trial that failed after its retries (traceback); retried on resume
    trials.parquet           one row per trial: seed, loss, every metric, seconds, node, device
    per_condition.parquet    one row per trial × condition

Resume: a trial whose file exists is not run again; a crashed driver rerun with the same name
finishes only what is missing. Only complete trial files exist (temp + rename), so a kill at any
moment never leaves a trial file that a resume would wrongly trust.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from le_ray import __version__
from le_ray.atomic import atomic_write_json, check_writable
from le_ray.errors import ResultsError

__all__ = ["SweepStore", "ResultsError", "is_ray_job", "resolve_results_dir", "environment_manifest"]

_PACKAGES = ("torch", "ray", "numpy", "polars", "pandas", "scipy", "scikit-learn", "matplotlib", "pyarrow")




def is_ray_job() -> bool:
    """True inside the entrypoint of ``ray job submit`` (the job supervisor sets this variable)."""
    return "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ


def resolve_results_dir(cli_value: str | None, config_value: str) -> Path:
    """``--results-dir`` ← ``LE_RAY_RESULTS`` ← ``output.results_dir``; absolute under ray job submit.

    A Ray job's driver runs inside an unpacked copy of the working dir that is deleted with the
    job, so a relative folder there would vanish with the results.
    """
    raw = cli_value or os.environ.get("LE_RAY_RESULTS") or config_value
    path = Path(raw).expanduser()
    if is_ray_job() and not path.is_absolute():
        raise ResultsError(
            f"results dir {raw!r} is relative, but this driver runs under `ray job submit` inside a temporary copy "
            "of the working dir that is deleted when the job ends; pass an absolute --results-dir (or set "
            "LE_RAY_RESULTS) on storage the head node can write, e.g. --results-dir /mnt/shared/le_ray_results")
    return path.resolve()


def _git_commit() -> str | None:
    """HEAD of the checkout le_ray runs from, or ``$LE_RAY_GIT_COMMIT`` (set by jobs/submit.sh)."""
    if os.environ.get("LE_RAY_GIT_COMMIT"):
        return os.environ["LE_RAY_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment_manifest() -> dict[str, Any]:
    """le_ray version, git commit, Python and package versions, host."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"le_ray_version": __version__, "git_commit": _git_commit(), "python": sys.version.split()[0],
            "platform": platform.platform(), "host": platform.node(), "packages": versions}


@dataclass
class SweepStore:
    """Read/write access to one sweep folder."""

    root: Path

    @classmethod
    def open(cls, results_dir: Path, name: str) -> "SweepStore":
        """Create (or reopen) ``results_dir/name`` after proving it is writable."""
        if not name or "/" in name or name in (".", ".."):
            raise ResultsError(f"--name {name!r}: expected a plain folder name")
        root = check_writable(Path(results_dir) / name, "results folder")
        for sub in ("trials", "failures"):
            check_writable(root / sub, "results folder")
        return cls(root)

    @property
    def trials_dir(self) -> Path:
        return self.root / "trials"

    def trial_path(self, trial_id: str) -> Path:
        return self.trials_dir / f"{trial_id}.json"

    def finished_ids(self) -> set[str]:
        return {p.stem for p in self.trials_dir.glob("*.json")}

    def write_trial(self, record: dict[str, Any]) -> Path:
        (self.root / "failures" / f"{record['trial_id']}.json").unlink(missing_ok=True)
        return atomic_write_json(self.trial_path(record["trial_id"]), record)

    def write_failure(self, trial_id: str, info: dict[str, Any]) -> Path:
        return atomic_write_json(self.root / "failures" / f"{trial_id}.json", {"trial_id": trial_id, **info,
                                                                                "time": time.time()})

    def failures(self) -> dict[str, dict]:
        return {p.stem: json.loads(p.read_text()) for p in sorted((self.root / "failures").glob("*.json"))}

    def load_trials(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Stored trial records (all, or those in ``ids`` that exist), sorted by loss then seed."""
        paths = ([self.trial_path(i) for i in ids] if ids is not None else list(self.trials_dir.glob("*.json")))
        records = [json.loads(p.read_text()) for p in paths if p.exists()]
        return sorted(records, key=lambda r: (r["loss"], r["seed"]))

    def write_json(self, name: str, data: Any) -> Path:
        return atomic_write_json(self.root / name, data)

    def read_json(self, name: str) -> Any:
        path = self.root / name
        if not path.exists():
            raise ResultsError(f"{str(path)!r}: missing; is {str(self.root)!r} a le_ray sweep folder?")
        return json.loads(path.read_text())


def trials_frame(records: list[dict[str, Any]]) -> pl.DataFrame:
    """One row per trial: ids, seed, loss, every metric, seconds, node, device, throughput."""
    rows = []
    for r in records:
        row = {"trial_id": r["trial_id"], "seed": r["seed"], "loss": r["loss"], "status": r["status"]}
        row.update({k: (float("nan") if v is None else float(v)) for k, v in r["metrics"].items()})
        row.update({f"seconds_{k}": float(v) for k, v in r["timings"].items()})
        row.update(node=r["node"], device=r["device"], samples_per_second=r["samples_per_second"])
        rows.append(row)
    return pl.DataFrame(rows) if rows else pl.DataFrame({"trial_id": [], "seed": [], "loss": []})


def per_condition_frame(records: list[dict[str, Any]], condition_values: list[str] | None = None) -> pl.DataFrame:
    """One row per trial × condition, with the condition's source value when known."""
    frames = []
    for r in records:
        table = r.get("per_condition") or {}
        if not table:
            continue
        frame = pl.DataFrame(table).with_columns(pl.lit(r["trial_id"]).alias("trial_id"),
                                                 pl.lit(r["seed"]).alias("seed"), pl.lit(r["loss"]).alias("loss"))
        frames.append(frame)
    if not frames:
        return pl.DataFrame()
    out = pl.concat(frames, how="diagonal_relaxed")
    if condition_values is not None and "condition" in out.columns:
        names = pl.DataFrame({"condition": list(range(len(condition_values))), "value": list(condition_values)})
        out = out.join(names.with_columns(pl.col("condition").cast(out.schema["condition"])), on="condition", how="left")
    return out
