"""``python -m le_ray.repeats``: the Ray sweep over (seed × loss) trials, resumable, with a report.

Order of work (nothing is created, and Ray is not started, until the pre-flight has passed):

1. pre-flight: the config (every key), the results location (writable; absolute under
   ``ray job submit``), an existing sweep folder's config (a rerun may not mix configs; see
   :func:`le_ray.sweep.store.check_resume`), the data (files, columns, filter: the whole preparation) and
   the experiment audit (:mod:`le_ray.sweep.audit`; its errors refuse to start unless ``--allow-unsound``);
2. the sweep folder: ``config.resolved.json`` (first run), ``config.history/`` (every run), manifest;
3. Ray (:mod:`le_ray.sweep.driver`): data ``ray.put`` once, one task per pending trial, streamed;
4. the report (:mod:`le_ray.report.sweep`), rebuilt any time with ``le-ray report``.

SIGINT and SIGTERM stop cleanly: ``stopped: N of M trials stored; resume with: <command>``, exit 130 / 143.
With no arguments it runs the ``quickstart`` profile on local Ray.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from le_ray.sweep.audit import Audit, audit_experiment, audit_text, refusal
from le_ray.cli.args import add_config_arguments, command_parser, config_and_shadows, exit_on_user_error
from le_ray.config import Config, to_dict
from le_ray.cli.echo import Echo
from le_ray.errors import ResultsError, UserError
from le_ray.registry import label
from le_ray.sweep.store import SweepStore, check_resume, environment_manifest, is_ray_job, nearest_writable, \
    resolve_results_dir
from le_ray.sweep.driver import StopFlag, StopRequested, connect_ray, run_sweep, stop_on_signals, warm_up_workers
from le_ray.sweep.plan import SweepPlan, plan_trials, sweep_seeds

__all__ = ["main", "preflight", "Preflight", "check_folder", "execute", "write_manifest", "resume_command",
           "stopped_message", "DEFAULT_PROFILE"]

log = logging.getLogger("le_ray.repeats")
DEFAULT_PROFILE = "quickstart"


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("repeats")
    add_config_arguments(parser)
    parser.add_argument("--results-dir", help="where sweep folders go (default output.results_dir, or "
                        "$LE_RAY_RESULTS); must be absolute under `ray job submit`")
    parser.add_argument("--name", help="sweep folder name (default: <profile>-<UTC timestamp>)")
    parser.add_argument("--resume", dest="resume", action="store_true", default=None,
                        help="skip trials already stored (default when the sweep folder exists)")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
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

    @property
    def root(self) -> Path:
        return self.results_dir / self.name


def check_folder(args: argparse.Namespace, cfg: Config, root: Path) -> bool:
    """Whether ``root`` is an existing sweep to resume (refusals raise ResultsError); creates nothing."""
    nearest_writable(root)
    if not (root / "config.resolved.json").exists():
        if root.exists() and any(root.iterdir()) and not (root / "trials").is_dir():
            raise ResultsError(f"{str(root)!r} exists and is not a le_ray sweep folder; choose another --name")
        return False
    if args.resume is False:
        raise ResultsError(f"sweep folder {str(root)!r} exists and --no-resume was given; choose another --name "
                           "or drop --no-resume")
    store = SweepStore(root)
    store.read_json("manifest.json") if (root / "manifest.json").exists() else None  # unreadable → error
    check_resume(root, store.latest_config(), to_dict(cfg), extend=args.extend)
    return True


def preflight(args: argparse.Namespace, echo) -> Preflight:
    """Step 1 of the module docstring; raises a UserError (nothing created, no Ray) when a check fails."""
    cfg, shadows = config_and_shadows(args)
    results_dir = resolve_results_dir(args.results_dir, cfg.output.results_dir)
    name = args.name or f"{cfg.experiment.active or 'default'}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    if not name or "/" in name or name in (".", ".."):
        raise ResultsError(f"--name {name!r}: expected a plain folder name")
    resuming = check_folder(args, cfg, results_dir / name)
    started = time.perf_counter()
    plan = plan_trials(cfg)
    echo(f"data prepared in {time.perf_counter() - started:.1f} s ({len(plan.data_by_seed)} preparation(s))")
    audit = audit_experiment(cfg, plan.datasets, shadows)
    echo(audit_text(audit, max_conditions=cfg.evaluation.print_per_condition_top_k or None))
    if audit.errors and not (args.allow_unsound or cfg.repeats.allow_unsound):
        raise UserError(refusal(audit))
    return Preflight(cfg, results_dir, name, resuming, plan, audit)


def write_manifest(store: SweepStore, cfg: Config, plan: SweepPlan, audit: Audit, cluster_resources: dict) -> None:
    """manifest.json of this run: environment, cluster, data, audit and the planned trials."""
    data = plan.datasets[0]
    store.write_json("manifest.json", {
        **environment_manifest(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ray_job": is_ray_job(), "cluster_resources": cluster_resources,
        "data_fingerprints": {str(s): d.fingerprint for s, d in plan.data_by_seed.items()},
        "data": {"source": data.source, "train_rows": len(data.train), "eval_rows": len(data.eval),
                 "test_rows": 0 if data.test is None else len(data.test), "num_conditions": data.num_conditions,
                 "condition_values": list(data.condition_values), "source_rows": data.meta.source_rows,
                 "kept_rows": data.meta.kept_rows, "labelled_rows": data.meta.labelled_rows,
                 "prepare_seconds": data.meta.prepare_seconds},
        "audit": audit.to_record(),
        "trials": [{"trial_id": s.trial_id, "loss": s.loss, "seed": s.seed} for s in plan.specs]})


def resume_command(argv: Sequence[str], results_dir: Path, name: str, module: str = "le_ray.repeats") -> str:
    """The exact command that resumes this sweep: the same arguments, with its folder spelled out."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--name", "--results-dir"):
            skip = True
            continue
        if arg.startswith(("--name=", "--results-dir=")) or arg in ("--no-resume",):
            continue
        out.append(arg)
    return shlex.join(["python", "-m", module, *out, "--results-dir", str(results_dir), "--name", name])


def execute(pre: Preflight, store: SweepStore, args: argparse.Namespace, echo, stop: StopFlag | None = None) -> int:
    """Steps 3-4 of the module docstring for a passed pre-flight, Ray connected; 0 when every trial succeeded."""
    import ray

    cfg, plan = pre.cfg, pre.plan
    warm_up_workers(cfg, len(plan.pending))
    write_manifest(store, cfg, plan, pre.audit, ray.cluster_resources())
    if pre.resuming:
        echo(f"resuming: {len(plan.specs) - len(plan.pending)} of {len(plan.specs)} trials already stored")
    progress = run_sweep(cfg, store, plan, echo=echo, stop=stop)
    if stop is not None:
        stop.check()
    echo.close()
    if args.no_report:
        echo(f"trials stored in {store.root}; build the report with: le-ray report {store.root}")
    else:
        from le_ray.report.sweep import build_report

        echo(f"report: {build_report(store.root, echo=echo)}")
    return 0 if progress.failed == 0 else 1


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.profile is None and args.config is None:
        args.profile = DEFAULT_PROFILE
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    echo = Echo()
    pre = preflight(args, echo)
    cfg = pre.cfg
    echo(f"le_ray repeats: profile {cfg.experiment.active}, source {cfg.source_key}, losses "
         f"{', '.join(label(x) for x in cfg.losses)}, {len(sweep_seeds(cfg))} seeds -> {pre.root}")
    store = SweepStore.open(pre.results_dir, pre.name)
    store.clean_temporary_files()
    store.record_run(to_dict(cfg), argv)
    pre.plan.done = store.finished_ids()
    context = connect_ray(cfg)  # before our stop handlers: ray.init installs its own (aborting) SIGTERM handler
    if getattr(context, "dashboard_url", None):
        echo(f"Ray dashboard: http://{context.dashboard_url}")
    try:
        with stop_on_signals() as stop:
            return execute(pre, store, args, echo, stop)
    except StopRequested as stop:
        echo.close()
        print(stopped_message(stop, pre, store, resume_command(argv, pre.results_dir, pre.name)), flush=True)
        return stop.exit_code


def stopped_message(stop: StopRequested, pre: Preflight, store: SweepStore, command: str) -> str:
    """``stopped (SIGTERM): N of M trials stored in <folder>; resume with: <command>``."""
    stored = len({s.trial_id for s in pre.plan.specs} & store.finished_ids())
    return (f"\nstopped ({stop}): {stored} of {len(pre.plan.specs)} trials stored in {store.root}; resume with: "
            f"{command}")


if __name__ == "__main__":
    sys.exit(main())
