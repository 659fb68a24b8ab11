"""Resuming ``le-ray tune`` (:mod:`le_ray.runners.tune`): the command a tune folder stores, ``--name X`` alone, the
refusal of a rerun with another config, and the resume line a stopped tune prints.

A tune folder stores the full command of its latest run in ``tune/config.json`` (with the untuned config) from the
moment its pre-flight passed, so ``le-ray tune --name X`` resumes it with that command (:func:`stored_tune_arguments`)
and a stopped tune names that short form (:func:`resume_line`).
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Sequence

from le_ray.atomic import atomic_write_json
from le_ray.config import Config, merge_layers, to_dict
from le_ray.errors import ResultsError
from le_ray.runners.repeats import effective_argv, no_stored_sweep
from le_ray.sweep.store import SweepStore, config_changes, nearest_writable, resolve_results_dir, trial_changes

__all__ = ["TUNE_DIR", "check_resume", "stored_tune_arguments", "record_command", "resume_line"]

TUNE_DIR = "tune"

#: tune.* keys that change no stored result (how many samples run at once)
_TUNE_RUN_KEYS = ("tune.max_concurrent",)

#: flags of ``le-ray tune`` that are no part of its config: a resume by name does not take them from the stored command
#: (:func:`le_ray.runners.repeats.effective_argv`), so the resume line repeats those this run was given
_RUN_FLAGS = ("--allow-unsound", "--no-report")


def check_resume(root: Path, cfg: Config) -> None:
    """A tune folder belongs to one (untuned) config: refuse a rerun whose trial-relevant keys differ (its stored
    searches and test trials answered that config; `le-ray tune` has no --extend)."""
    nearest_writable(root)
    stored = root / TUNE_DIR / "config.json"
    results = [p for p in (root / TUNE_DIR).glob("*.json") if p.name != "config.json"] + \
        list((root / "trials").glob("*.json"))
    if stored.exists() and results:  # a folder with nothing searched or trained yet takes the new config
        new = to_dict(cfg)
        every = config_changes(SweepStore(root).read_json(f"{TUNE_DIR}/config.json")["config"], new)
        relevant = trial_changes(every, new)
        changes = [c for c in every if c in relevant or _changes_results(c, cfg)]
        if changes:
            lines = "\n".join(f"  - {c}" for c in changes)
            raise ResultsError(f"tune folder {str(root)!r} holds searches and trials of another config (stored -> "
                               f"now):\n{lines}\nnothing was run and nothing was changed; resume it with its stored "
                               f"config (`le-ray tune --name {root.name}` alone), or start a new tune (--name <new "
                               "name>)")


def _changes_results(change, cfg: Config) -> bool:
    """Whether a changed ``tune.*`` key changes what the stored searches answered: not a run key, and not the space
    of a loss this config does not compare."""
    key = change.key
    if not key.startswith("tune.") or key.startswith(_TUNE_RUN_KEYS):
        return False
    parts = key.split(".")
    return not (parts[1] == "space" and len(parts) > 2 and parts[2] not in cfg.losses)


def stored_tune_arguments(args: argparse.Namespace, argv: list[str],
                          parser: argparse.ArgumentParser) -> tuple[argparse.Namespace, list[str]]:
    """``--name X`` without ``--profile`` / ``--config``: the stored tune X's command with this run's arguments after
    it (a resume with the config it stores), parsed by ``parser``, and that full command (what the folder then
    stores, so a later ``--name X`` resumes the same way); a name with no stored tune is refused. Else ``args`` and
    ``argv``."""
    if not args.name or args.profile is not None or args.config is not None:
        return args, argv
    results_dir = resolve_results_dir(args.results_dir, merge_layers()["output"]["results_dir"])
    stored = results_dir / args.name / TUNE_DIR / "config.json"
    if not stored.is_file():
        if (results_dir / args.name / "config.resolved.json").is_file():
            raise ResultsError(f"{str(results_dir / args.name)!r} is a sweep of `le-ray repeats`, not a tune (it has "
                               f"no {TUNE_DIR}/ folder): resume it with `le-ray repeats --name {args.name}`, or give "
                               "--profile to start a tune under a new name")
        raise no_stored_sweep(args.name, results_dir, "--name without --profile / --config resumes a stored tune; "
                                                      "give --profile (e.g. quickstart_tune) to start one")
    full = effective_argv(json.loads(stored.read_text()).get("argv") or [], argv)
    return parser.parse_args(full), full


def record_command(root: Path, cfg: Config, argv: Sequence[str]) -> None:
    """``<root>/tune/config.json``: the (untuned) config and the full command of this run, written once the
    pre-flight has passed and before anything can stop the run, so that ``le-ray tune --name <root name>`` resumes
    it however early it stops."""
    atomic_write_json(root / TUNE_DIR / "config.json", {"config": to_dict(cfg), "argv": list(argv)})


def resume_line(argv: Sequence[str], results_dir: Path, name: str) -> str:
    """``le-ray tune --name X --results-dir D`` (and the run flags of ``argv``, e.g. ``--allow-unsound``): the
    command that resumes the tune stored in ``D/X`` with the command it stores (:func:`record_command`)."""
    flags = [flag for flag in _RUN_FLAGS if flag in argv]
    return shlex.join(["le-ray", "tune", "--name", name, "--results-dir", str(results_dir), *flags])
