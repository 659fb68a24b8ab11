"""``python -m le_ray.repeats``: the Ray sweep over (seed × loss) trials, resumable, with a report.

Order of work (nothing is created, and Ray is not started, until the pre-flight has passed):

1. pre-flight: the config (every key), the results location (writable; absolute under
   ``ray job submit``), an existing sweep folder's config (a rerun may not mix configs; see
   :func:`le_ray.sweep.store.check_resume`), the data (files, columns, filter: the whole preparation) and
   the experiment audit (:mod:`le_ray.sweep.audit`; its errors refuse to start unless ``--allow-unsound``);
2. the sweep folder: ``config.resolved.json`` (first run), ``config.history/`` (every run), manifest;
3. Ray (:mod:`le_ray.sweep.driver`): data ``ray.put`` once, one task per pending trial, streamed;
4. the report (:mod:`le_ray.report.sweep`), rebuilt any time with ``le-ray report``.

SIGINT and SIGTERM stop cleanly from the moment the sweep folder exists (while Ray starts too):
``stopped: N of M trials stored; resume with: <command>`` (under ``ray job submit``: ``jobs/submit.sh -- ...``),
exit 130 / 143; once the trials are over, a stop ends the report at once and names ``le-ray report <folder>``.
With no arguments it runs the ``quickstart`` profile on local Ray.

Resume by name: ``--name X`` (with ``--results-dir D`` where needed) and neither ``--profile`` nor ``--config``
resumes the stored sweep ``D/X`` with the config it stores (the latest of ``config.history/``), any ``--set``
applied over it; ``config.history/`` then records the full command that gives that config (the stored one plus
this run's arguments). A refused rerun prints the sweep's stored command line. ``--name X`` with no stored sweep
``D/X`` and neither ``--profile`` nor ``--config`` is refused (it names the closest stored sweep), as is ``--extend``
without a stored sweep or with fewer seeds or losses than it stores.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import re
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence


from le_ray.sweep.runtime_estimate import too_slow_before_preparation
from le_ray.sweep.audit import Audit, audit_experiment
from le_ray.sweep.audit_text import audit_text, refusal
from le_ray.cli.args import (DEFAULT_PROFILE, add_config_arguments, command_parser, config_shadows_provenance,
                             exit_on_user_error)
from le_ray.config import Config, ConfigError, Shadow, merge_layers, resolve_config, shadowed_sets, to_dict
from le_ray.config.load import Provenance, apply_sets, provenance
from le_ray.config.resolve import best_overrides
from le_ray.cli.echo import Echo
from le_ray import IMPORTED_AT
from le_ray.errors import ResultsError, UserError
from le_ray.registry import label, suggest
from le_ray.sweep.store import SweepStore, SweepWriteError, check_resume, environment_manifest, is_ray_job, \
    nearest_writable, plain_folder_name, resolve_results_dir
from le_ray.sweep.driver import (StopFlag, StopRequested, connect_ray, map_on_workers, run_sweep, stop_on_signals,
                                 warm_up_workers)
from le_ray.sweep.folder_lock import hold_folder, probe_folder
from le_ray.sweep.plan import SweepPlan, plan_trials, sweep_seeds

__all__ = ["main", "preflight", "Preflight", "check_folder", "execute", "write_manifest", "resume_command",
           "stopped_message", "DEFAULT_PROFILE", "stored_sweep_root", "stored_command", "effective_argv",
           "parse_arguments", "sweep_config", "PHASES", "wall_line", "no_stored_sweep", "report_only"]

log = logging.getLogger("le_ray.repeats")
_RUN_FLAGS = ("--resume", "--no-resume", "--extend", "--allow-unsound", "--no-report")  # not part of a config


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("repeats")
    add_config_arguments(parser)
    parser.add_argument("--results-dir", help="where sweep folders go (default output.results_dir, or "
                        "$LE_RAY_RESULTS); must be absolute under `ray job submit`")
    parser.add_argument("--name", help="sweep folder name (default: <profile>-<UTC timestamp>)")
    resume = parser.add_mutually_exclusive_group()  # both at once: argparse names the pair and exits 2
    resume.add_argument("--resume", dest="resume", action="store_true", default=None,
                        help="skip trials already stored (default when the sweep folder exists)")
    resume.add_argument("--no-resume", dest="resume", action="store_false",
                        help="refuse to reuse an existing sweep folder")
    parser.add_argument("--extend", action="store_true", help="rerun a sweep folder with more seeds or losses "
                        "(repeats.num_runs, training.loss_mode); every stored trial stays valid")
    parser.add_argument("--allow-unsound", action="store_true", help="start although the experiment audit found "
                        "errors (repeats.allow_unsound); the findings go into summary.md")
    parser.add_argument("--no-report", action="store_true", help="store trials only; build the report later "
                        "with `le-ray report`")
    return parser


@dataclass
class Preflight:
    """Everything checked before Ray starts: where the sweep goes, its plan and its audit."""
    cfg: Config
    results_dir: Path
    name: str
    resuming: bool
    plan: SweepPlan
    audit: Audit
    command: list[str] | None = None  # the arguments config.history records (None: this run's own)
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds of the driver's phases so far
    store: SweepStore | None = None  # the folder's store as read before the run (not yet created): opened by main

    def open_store(self) -> SweepStore:
        """The sweep folder's store, created and proven writable: the one preflight read (so a damaged trial file
        is warned about once), or a new one."""
        plain_folder_name(self.name)
        return (self.store or SweepStore(self.root)).created()

    @property
    def root(self) -> Path:
        return self.results_dir / self.name


def check_folder(args: argparse.Namespace, cfg: Config, root: Path, done: set[str] | None = None) -> bool:
    """Whether ``root`` is an existing sweep to resume (refusals raise ResultsError); creates nothing. ``done``: the
    ids of its stored trials when the caller has read them (else they are read here)."""
    nearest_writable(root)
    if not (root / "config.resolved.json").exists():
        if args.extend:
            raise no_stored_sweep(root.name, root.parent, "--extend adds seeds or losses to a stored sweep; drop it "
                                  f"to start a new sweep named {root.name!r}")
        if root.exists() and any(root.iterdir()) and not (root / "trials").is_dir():
            raise ResultsError(f"{str(root)!r} exists and is not a le_ray sweep folder; choose another --name")
        return False
    if args.resume is False:
        raise ResultsError(f"sweep folder {str(root)!r} exists and --no-resume was given; choose another --name "
                           "or drop --no-resume")
    store = SweepStore(root)
    if (root / "manifest.json").exists():
        try:
            manifest = json.loads((root / "manifest.json").read_text())
            if not isinstance(manifest, dict):
                raise ValueError(f"it holds a JSON {type(manifest).__name__}, not an object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError; no copy exists
            raise ResultsError(f"{str(root / 'manifest.json')!r} cannot be read as a manifest ({exc}): every run of "
                               "the sweep rewrites it from the config and the data, so delete it and rerun the same "
                               "command; the stored trials are kept and not trained again, but the new manifest "
                               "records this run's code and packages, not those that trained them") from None
    try:
        check_resume(root, store.latest_config(), to_dict(cfg), extend=args.extend, holds_every_stored_trial=(
            _plans_every_stored_pair(store.finished_ids() if done is None else done, cfg)))
    except ResultsError as exc:
        raise ResultsError(f"{exc}\nThis sweep was last run with:\n  {stored_command(store)}\nand "
                           f"`le-ray repeats --name {shlex.quote(root.name)} --results-dir {shlex.quote(str(root.parent))}`"
                           " (no --profile / --config) resumes it with the config it stores.") from None
    return True


def stored_sweep_root(args: argparse.Namespace) -> Path | None:
    """The sweep folder that ``--name`` without ``--profile`` / ``--config`` resumes with its stored config."""
    if not getattr(args, "name", None) or args.profile is not None or args.config is not None:
        return None
    root = resolve_results_dir(args.results_dir, merge_layers()["output"]["results_dir"]) / args.name
    return root if (root / "config.resolved.json").is_file() else None


def _latest_argv(store: SweepStore) -> list[str]:
    runs = sorted(store.history_dir.glob("*.json"))
    return list(store.read_json(f"config.history/{runs[-1].name}").get("argv") or []) if runs else []


def stored_command(store: SweepStore) -> str:
    """The command line that resumes ``store``'s sweep as last run (its stored arguments, its folder)."""
    module = "le_ray.tune" if (store.root / "tune" / "config.json").exists() else "le_ray.repeats"
    return resume_command(_latest_argv(store), store.root.parent, store.root.name, module)


def effective_argv(stored_argv: Sequence[str], argv: Sequence[str]) -> list[str]:
    """The stored command's config arguments followed by this run's: the full command of the config it resolves to,
    with an earlier ``--set`` of a key dropped where a later one sets the same key (it would be replaced anyway)."""
    return _last_set_per_key([*_without_folder_args(stored_argv, _RUN_FLAGS), *argv])


def _last_set_per_key(argv: list[str]) -> list[str]:
    """``argv`` without each ``--set KEY=...`` (either spelling) that a later ``--set`` of the same KEY replaces."""
    sets = [(i, arg.split("=", 1)[1] if arg.startswith("--set=") else argv[i + 1]) for i, arg in enumerate(argv)
            if (arg == "--set" and i + 1 < len(argv)) or arg.startswith("--set=")]
    keys = [value.partition("=")[0].strip() for _, value in sets]
    dropped = {i for n, (i, _) in enumerate(sets) if keys[n] in keys[n + 1:]}
    return [arg for i, arg in enumerate(argv)
            if i not in dropped and not (i - 1 in dropped and argv[i - 1] == "--set")]


def _stored_config(args: argparse.Namespace, root: Path) -> tuple[Config, list[Shadow], Provenance, list[str]]:
    """The stored sweep's latest config with this run's ``--set`` over it, its shadows, provenance and command."""
    store = SweepStore(root)
    data = store.latest_config()
    origins = Provenance((("stored sweep config", copy.deepcopy(data)),) + tuple(apply_sets(data, args.sets)))
    cfg = resolve_config(data)
    this = getattr(args, "argv", None) or ["--name", args.name, *[a for s in args.sets for a in ("--set", s)]]
    command = effective_argv(_latest_argv(store), this)
    try:  # where each value came from, replayed from the stored command (labels only)
        replay = _parser().parse_args(command)
        origins = provenance(replay.config, profile=replay.profile or cfg.experiment.active, sets=replay.sets,
                             tuned=_tuned_sets(store, cfg))
    except (ConfigError, SystemExit):
        pass
    return cfg, shadowed_sets(data, args.sets, cfg.source_keys, cfg.losses), origins, command


def _tuned_sets(store: SweepStore, cfg: Config) -> list[str]:
    """A tune's test sweep (``tune/summary.json``): its best settings as ``--set`` strings, for the provenance to
    label ``tuned``; none for a plain sweep. The tune's stored command does not carry them: they were chosen after
    it ran (and a later run cannot change them: they are trial keys, which check_resume holds fixed)."""
    if not (store.root / "tune" / "summary.json").is_file():
        return []
    try:
        return best_overrides(cfg, store.read_json("tune/summary.json").get("losses") or [])
    except (ResultsError, AttributeError, KeyError, TypeError):  # a damaged summary: the labels fall back
        return []


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """The parsed command line: ``--profile quickstart`` when neither a profile, a config file nor a stored sweep
    (``--name``) says which config to run; ``argv`` kept for config.history."""
    args = _parser().parse_args(list(argv))
    args.argv = list(argv)
    if args.extend and not args.name:
        raise ResultsError("--extend adds seeds or losses to a stored sweep: give its --name (and --results-dir "
                           "where it is not the default)")
    if args.profile is None and args.config is None and stored_sweep_root(args) is None:
        if args.name:  # a typo or a forgotten --results-dir must not train the default profile
            results_dir = resolve_results_dir(args.results_dir, merge_layers()["output"]["results_dir"])
            raise no_stored_sweep(args.name, results_dir, "--name without --profile / --config resumes a stored "
                                  f"sweep (is --results-dir right?); give --profile or --config to start a new sweep "
                                  f"named {args.name!r}")
        args.profile = DEFAULT_PROFILE
    return args


def no_stored_sweep(name: str, results_dir: Path, advice: str) -> ResultsError:
    """``no stored sweep 'X' under '<results dir>'; <advice>; did you mean "Y"?``, Y the closest name of a stored
    sweep there (no suggestion when none is close)."""
    stored = [p.name for p in results_dir.iterdir() if (p / "config.resolved.json").is_file()] \
        if results_dir.is_dir() else []
    return ResultsError(f"no stored sweep {name!r} under {str(results_dir)!r}; {advice}{suggest(name, sorted(stored))}")


def sweep_config(args: argparse.Namespace) -> tuple[Config, list[Shadow], Provenance, list[str] | None]:
    """The config a sweep of ``args`` runs (a stored sweep's, or the arguments'), its shadowed ``--set`` keys, its
    provenance and, when resuming a stored sweep by name, the full command config.history records."""
    root = stored_sweep_root(args)
    if root is not None:
        return _stored_config(args, root)
    return (*config_shadows_provenance(args), None)


def preflight(args: argparse.Namespace, echo) -> Preflight:
    """Step 1 of the module docstring; raises a UserError (nothing created, no Ray) when a check fails."""
    cfg, shadows, origins, command = sweep_config(args)
    results_dir = resolve_results_dir(args.results_dir, cfg.output.results_dir)
    name = plain_folder_name(args.name if args.name is not None else
                             f"{cfg.experiment.active or 'default'}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    store = SweepStore(results_dir / name)
    done = store.finished_ids()  # read once: none in a new folder
    resuming = check_folder(args, cfg, results_dir / name, done)
    if resuming:
        probe_folder(results_dir / name)  # a driver already running it: refused before the data are prepared
    if command is not None:  # said once the folder's checks passed: a refused rerun is not announced as a resume
        echo(f"resuming sweep {args.name} with the config it stores (profile {cfg.experiment.active}); its command: "
             f"le-ray repeats {shlex.join(command)}")
    done = done if resuming else set()
    _refuse_if_too_slow_before_preparation(args, cfg, stored_by_loss(done, cfg))
    started = time.perf_counter()
    plan = plan_trials(cfg)
    prepared = time.perf_counter() - started
    echo(f"data prepared in {prepared:.1f} s ({len(plan.data_by_seed)} preparation(s))")
    plan.done = done
    audit = audit_experiment(cfg, plan.datasets, shadows, origins, stored=plan.stored_by_loss)
    echo(audit_text(audit, max_conditions=cfg.evaluation.print_per_condition_top_k or None))
    if audit.errors and not (args.allow_unsound or cfg.repeats.allow_unsound):
        raise UserError(refusal(audit))
    if args.allow_unsound and not cfg.repeats.allow_unsound:
        cfg, command = _unsound_recorded(cfg, command if command is not None else args.argv)
    return Preflight(cfg, results_dir, name, resuming, plan, audit, command, {"data": prepared}, store)


def stopped_before_start(what: str = "sweep") -> str:
    """What a Ctrl-C before the ``what``'s folder exists leaves (the data cache may hold finished, atomic entries)."""
    return f"\nstopped (SIGINT) before the {what} started: no {what} file was written, nothing was trained"


def _unsound_recorded(cfg: Config, command: list[str]) -> tuple[Config, list[str]]:
    """``cfg`` with ``repeats.allow_unsound`` true, and ``command`` with ``--allow-unsound`` written as
    ``--set repeats.allow_unsound=true``: what config.history records for a sweep started anyway, so that a resume
    by name (which takes the stored config, and the flag is no config key) starts it again, and its stored command
    replays to its stored config."""
    data = to_dict(cfg)
    data["repeats"]["allow_unsound"] = True
    flagless = [a for a in command if a != "--allow-unsound"]
    return resolve_config(data), [*flagless, "--set", "repeats.allow_unsound=true"]


#: The driver's phases in the order they run, as ``wall_line`` names them.
PHASES = {"data": "data", "ray": "Ray start", "tuning": "tuning searches", "trials": "trials", "report": "report"}


def wall_line(seconds: Mapping[str, float], total: float) -> str:
    """``wall 42.5 s: data 1.3 s, Ray start 4.0 s, trials 7.1 s, report 5.0 s, the rest 25.1 s (...)``: where a
    sweep's wall time went. ``seconds``: phase → wall seconds (PHASES keys); ``total``: seconds since the process
    imported le_ray (:data:`le_ray.IMPORTED_AT`; the interpreter's own start-up, tens of ms, comes before it), so the
    rest is imports, config, the audit and the manifest (workers start within "trials")."""
    parts = [f"{PHASES[k]} {seconds[k]:.1f} s" for k in PHASES if k in seconds]
    rest = max(total - sum(seconds[k] for k in PHASES if k in seconds), 0.0)
    return (f"wall {total:.1f} s: {', '.join(parts)}, the rest {rest:.1f} s (imports, config, audit and "
            "manifest)")


_TRIAL_ID = re.compile(r"^(?P<loss>[a-z_]+)-s(?P<seed>-?\d+)-[0-9a-f]+$")  #: le_ray.training.spec.trial_id's form


def _loss_seed_pairs(done: set[str]) -> tuple[set[tuple[str, int]], bool]:
    """The (loss, seed) of each stored trial id in ``done``, and whether every id had the trial id's form."""
    matches = [_TRIAL_ID.match(trial_id) for trial_id in done]
    return {(m["loss"], int(m["seed"])) for m in matches if m}, all(matches)


def superseded_line(plan: SweepPlan, root: Path) -> str | None:
    """Why trials a resume trains again have a stored trial of the same (loss, seed) under another id (the id
    hashes the data's fingerprint and the trial's settings; the files stay, unused, and the report counts them),
    or None. The one change known to do this to a whole stored sweep: since 2026-12-06 a CTR file is known by the
    SHA-256 of its bytes, not by its path and mtime."""
    stored_pairs = _loss_seed_pairs(plan.done - {s.trial_id for s in plan.specs})[0]
    again = [s for s in plan.pending if (s.loss, s.seed) in stored_pairs]
    if not again:
        return None
    return (f"{len(again)} of the trials to train have a stored trial of the same loss and seed under another id: "
            "its data fingerprint or a setting its id hashes differs (since 2026-12-06 le_ray knows a CTR file by the "
            "SHA-256 of its bytes, not by its path and mtime, so a CTR sweep stored before then trains again); those "
            f"files stay in {str(root / 'trials')!r}, unused")


def _plans_every_stored_pair(done: set[str], cfg: Config) -> bool:
    """Whether ``cfg`` plans every (loss, seed) of the stored trial ids ``done``."""
    pairs, readable = _loss_seed_pairs(done)
    seeds = set(sweep_seeds(cfg))
    return readable and all(loss in cfg.losses and seed in seeds for loss, seed in pairs)


def stored_by_loss(done: set[str], cfg: Config) -> dict[str, int]:
    """loss → how many of ``cfg``'s (loss, seed) pairs the stored trial ids ``done`` hold, read from the ids alone,
    before the data are prepared: an upper bound of the trials a resume skips (an id whose data fingerprint no
    longer matches is counted too), so the check before preparation only lets through what the audit after it
    then counts by exact trial id (:attr:`SweepPlan.stored_by_loss`)."""
    seeds = set(sweep_seeds(cfg))
    return dict(Counter(loss for loss, seed in _loss_seed_pairs(done)[0] if loss in cfg.losses and seed in seeds))


def _refuse_if_too_slow_before_preparation(args: argparse.Namespace, cfg: Config, stored: Mapping[str, int]) -> None:
    """The audit's ``too_slow_here`` check from the config alone, for synthetic data, so that a sweep sized for a
    GPU cluster (the ``decades`` profile: 10⁸ rows) is refused on a CPU before its rows are generated; ``stored``
    (loss → trials a resumed sweep holds) are left out: a rerun that only reports is never refused for time."""
    if args.allow_unsound or cfg.repeats.allow_unsound:
        return
    reason = too_slow_before_preparation(cfg, stored)
    if reason is not None:
        raise UserError(f"the experiment audit refuses to start (error too_slow_here, checked before preparing the "
                        f"data): {reason}")


#: the manifest's keys that say which code and packages trained the trials
ENVIRONMENT_KEYS = ("created", "le_ray_version", "git_commit", "python", "platform", "host", "packages")


def _environment(previous: Mapping | None, trained: bool) -> dict:
    """The manifest's environment: this run's when it trains (with ``earlier_runs``: each earlier run's whose code
    or packages differ, so a sweep resumed after an upgrade says that two versions trained its trials), the
    previous manifest's when it only reports (a report-only rerun trains nothing, so it must not replace the
    provenance of the trials)."""
    now = {**environment_manifest(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if not previous:
        return now
    if not trained:
        return {**{k: previous[k] for k in ENVIRONMENT_KEYS if k in previous},
                **({"earlier_runs": previous["earlier_runs"]} if previous.get("earlier_runs") else {}),
                "reported": now["created"]}
    earlier = list(previous.get("earlier_runs") or [])
    packages = {k: v for k, v in (previous.get("packages") or {}).items() if k in now["packages"]}
    if packages != {k: v for k, v in now["packages"].items() if k in packages} or any(
            previous.get(k) != now[k] for k in ("le_ray_version", "git_commit")):  # a package listed later: no change
        earlier.append({k: previous.get(k) for k in ENVIRONMENT_KEYS})
    return {**now, **({"earlier_runs": earlier} if earlier else {})}


def write_manifest(store: SweepStore, cfg: Config, plan: SweepPlan, audit: Audit, cluster_resources: dict | None,
                   trained: bool = True) -> None:
    """manifest.json of this run: environment (:func:`_environment`; ``trained`` false: a report-only rerun),
    cluster (``cluster_resources`` None: the previous manifest's, that of the run that trained), data, audit and
    the planned trials."""
    data = plan.datasets[0]
    previous = store.read_json("manifest.json") if (store.root / "manifest.json").is_file() else None
    if cluster_resources is None:
        cluster_resources = (previous or {}).get("cluster_resources", {})
    store.write_json("manifest.json", {
        **_environment(previous, trained), "ray_job": is_ray_job(), "cluster_resources": cluster_resources,
        "data_fingerprints": {str(s): d.fingerprint for s, d in plan.data_by_seed.items()},
        "data": {"source": data.source, "train_rows": len(data.train), "eval_rows": len(data.eval),
                 "test_rows": 0 if data.test is None else len(data.test), "num_conditions": data.num_conditions,
                 "condition_values": list(data.condition_values), "source_rows": data.meta.source_rows,
                 "kept_rows": data.meta.kept_rows, "labelled_rows": data.meta.labelled_rows,
                 "prepare_seconds": data.meta.prepare_seconds,
                 "files": data.meta.files},
        "audit": audit.to_record(),
        "trials": [{"trial_id": s.trial_id, "loss": s.loss, "seed": s.seed} for s in plan.specs]})


def resume_command(argv: Sequence[str], results_dir: Path, name: str, module: str = "le_ray.repeats") -> str:
    """The exact command that resumes this sweep: the same arguments, with its folder spelled out; under
    ``ray job submit`` a sweep resubmits as a job (``jobs/submit.sh -- <arguments>``, which runs le_ray.repeats)."""
    out = [*_without_folder_args(argv, ("--no-resume",)), "--results-dir", str(results_dir), "--name", name]
    if is_ray_job() and module == "le_ray.repeats":
        return shlex.join(["jobs/submit.sh", "--", *out])
    return shlex.join(["python", "-m", module, *out])


def _without_folder_args(argv: Sequence[str], drop: Sequence[str]) -> list[str]:
    """``argv`` without ``--name`` / ``--results-dir`` (with their values, in either spelling) and the flags in
    ``drop``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--name", "--results-dir"):
            skip = True
        elif not (arg.startswith(("--name=", "--results-dir=")) or arg in drop):
            out.append(arg)
    return out


def execute(pre: Preflight, store: SweepStore, args: argparse.Namespace, echo, stop: StopFlag | None = None) -> int:
    """Steps 3-4 of the module docstring for a passed pre-flight, Ray connected; 0 when every trial succeeded."""
    import ray

    cfg, plan = pre.cfg, pre.plan
    warm_up_workers(cfg, len(plan.pending), plan.train_rows)
    write_manifest(store, cfg, plan, pre.audit, ray.cluster_resources())
    if pre.resuming:
        echo(f"resuming: {len(plan.specs) - len(plan.pending)} of {len(plan.specs)} trials already stored")
        superseded = superseded_line(plan, store.root)
        if superseded:
            echo(superseded)
    started = time.perf_counter()
    progress = run_sweep(cfg, store, plan, echo=echo, stop=stop)
    pre.seconds["trials"] = time.perf_counter() - started
    if stop is not None:
        stop.check()
    echo.close()
    if progress.failed:
        echo(f"{progress.failed} trial(s) failed after their retries (tracebacks in {store.root / 'failures'}); the "
             f"same command retries them and trains nothing else: "
             f"{resume_command(args.argv, pre.results_dir, pre.name)}")
    _report_and_wall(pre, store, args, echo, stop or StopFlag(), f"trials stored in {store.root}; ")
    return 0 if progress.failed == 0 else 1


def _report_and_wall(pre: Preflight, store: SweepStore, args: argparse.Namespace, echo, stop: StopFlag,
                     no_report: str) -> None:
    """Step 4 (or, with ``--no-report``, ``no_report`` and the command that builds it), then the wall line."""
    if args.no_report:
        echo(f"{no_report}build the report with: le-ray report {shlex.quote(str(store.root))}")
    else:
        _report(pre, store, echo, stop)
    echo(wall_line(pre.seconds, time.time() - IMPORTED_AT))


def _report(pre: Preflight, store: SweepStore, echo, stop: StopFlag) -> None:
    """Step 4. A stop signal ends it at once (every report file is written atomically; a figure task under way
    ends first), and :func:`stopped_message` says how to rebuild it."""
    from le_ray.report.plots import render_png
    from le_ray.report.sweep import build_report

    def render(jobs: list) -> list[bytes]:  # the figures are drawn in parallel on the now idle workers
        with stop.deferred():  # Ray calls: the signal handler must not raise inside them
            return map_on_workers(render_png, jobs)

    started = time.perf_counter()
    with stop.raising(f"the trials are stored; the report is cut short, `le-ray report "
                      f"{shlex.quote(str(store.root))}` builds it"):
        echo(f"report: {build_report(store.root, echo=echo, render=render)}")
    pre.seconds["report"] = time.perf_counter() - started


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    echo = Echo()
    try:
        pre = preflight(args, echo)
    except KeyboardInterrupt:  # Ctrl-C while the data are prepared (the longest step on a large CSV)
        print(stopped_before_start(), flush=True)
        return 130
    cfg = pre.cfg
    echo(f"le_ray repeats: profile {cfg.experiment.active}, source {cfg.source_key}, losses "
         f"{', '.join(label(x) for x in cfg.losses)}, {len(sweep_seeds(cfg))} seeds -> {pre.root}")
    store = pre.open_store()
    with hold_folder(store.root), stop_on_signals() as stop:  # one driver per folder; a stop keeps what is stored
        try:
            return _run(pre, store, args, echo, stop)
        except StopRequested as stopped:
            echo.close()
            print(stopped_message(stopped, pre, store, resume_command(argv, pre.results_dir, pre.name)), flush=True)
            return stopped.exit_code
        except SweepWriteError as failed:  # a folder turned read-only, a full disk: stopped like a signal
            echo.close()
            print(f"le-ray: {failed.with_resume(resume_command(argv, pre.results_dir, pre.name))}", file=sys.stderr,
                  flush=True)
            return 2


def _run(pre: Preflight, store: SweepStore, args: argparse.Namespace, echo, stop: StopFlag) -> int:
    """Steps 2-4 of the module docstring in the sweep folder ``store``, ``stop`` checked before each."""
    store.clean_temporary_files()
    store.record_run(to_dict(pre.cfg), pre.command if pre.command is not None else args.argv)
    pre.plan.done = store.finished_ids()
    stop.check()
    if not pre.plan.pending and (store.root / "manifest.json").exists():  # every trial stored: no Ray to start
        return report_only(pre, store, args, echo, stop)
    doing, stop.doing = stop.doing, "once Ray has started; no trial will run"
    started = time.perf_counter()
    context = connect_ray(pre.cfg, stop)  # a stop while Ray starts is only recorded; checked below
    pre.seconds["ray"] = time.perf_counter() - started
    stop.check()
    stop.doing = doing
    if getattr(context, "dashboard_url", None):
        echo(f"Ray dashboard: http://{context.dashboard_url}")
    return execute(pre, store, args, echo, stop)


def report_only(pre: Preflight, store: SweepStore, args: argparse.Namespace, echo, stop: StopFlag) -> int:
    """A rerun whose every planned trial is stored: the report (its figures drawn here), without starting Ray. The
    manifest takes this run's audit (a changed display key such as repeats.min_eval_clicks changes what the report
    excludes), keeping the cluster resources of the run that trained."""
    echo(f"every one of the {len(pre.plan.specs)} trials is stored in {store.root}; nothing to train")
    write_manifest(store, pre.cfg, pre.plan, pre.audit, None, trained=False)
    pre.seconds["trials"] = 0.0
    _report_and_wall(pre, store, args, echo, stop, "")
    return 0


def stopped_message(stop: StopRequested, pre: Preflight, store: SweepStore, command: str) -> str:
    """``stopped (SIGTERM): N of M trials stored in <folder>; resume with: <command>``; once the trials are over
    (a stop in the report), how to build the report instead (and to resume, when a trial failed)."""
    stored = len({s.trial_id for s in pre.plan.specs} & store.finished_ids())
    where = f"{stored} of {len(pre.plan.specs)} trials stored in {store.root}"
    if "trials" not in pre.seconds:  # the trials phase has not ended
        return f"\nstopped ({stop}): {where}; resume with: {command}"
    missing = "" if stored == len(pre.plan.specs) else f"; run the missing trials with: {command}"
    return (f"\nstopped ({stop}) after the trials: {where}; build the report with: "
            f"le-ray report {shlex.quote(str(store.root))}{missing}")


if __name__ == "__main__":
    sys.exit(main())
