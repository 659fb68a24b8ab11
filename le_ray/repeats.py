"""``python -m le_ray.repeats``: the Ray sweep over (seed × loss) trials, resumable, with a report.

Driver: resolve config → prepare data once (per seed with ``repeats.resample_data``) → ``ray.put``
the arrays once → one Ray task per pending trial (``num_gpus = ray.gpus_per_trial``,
``num_cpus = ray.cpus_per_trial``, ``max_retries``) → stream results with ``ray.wait`` → write
each atomically to the results store → statistics and report when all are in.

Connecting: ``ray.address`` from the config, else ``"auto"`` when ``RAY_ADDRESS`` is set (as under
``ray job submit``), else a local instance. The same command is a workstation run and a job
entrypoint. With no arguments it runs the ``quickstart`` profile.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from le_ray.cli_args import add_config_arguments, config_from_args, exit_on_user_error
from le_ray.config import Config, losses_of, to_dict
from le_ray.data.arrays import PreparedData
from le_ray.data.prepare import prepare_data
from le_ray.atomic import to_jsonable
from le_ray.results import SweepStore, environment_manifest, is_ray_job, resolve_results_dir
from le_ray.stats import min_pairs_for_alpha
from le_ray.trial import TrialSpec

__all__ = ["main", "plan_trials", "run_sweep", "sweep_seeds", "SweepPlan", "connect_ray", "warm_up_workers"]

log = logging.getLogger("le_ray.repeats")
DEFAULT_PROFILE = "quickstart"


def sweep_seeds(cfg: Config) -> list[int]:
    """``project.seed + seed_stride · k`` for k < ``repeats.num_runs``."""
    return [cfg.project.seed + cfg.repeats.seed_stride * k for k in range(cfg.repeats.num_runs)]


@dataclass
class SweepPlan:
    """Every trial of the sweep, the data each one uses, and what is already stored."""
    specs: list[TrialSpec]
    data_by_seed: dict[int, PreparedData]
    done: set[str] = field(default_factory=set)

    @property
    def pending(self) -> list[TrialSpec]:
        """Trials still to run, longest expected first (fewer idle slots at the end of a sweep)."""
        todo = [s for s in self.specs if s.trial_id not in self.done]
        return sorted(todo, key=_expected_cost, reverse=True)  # stable: seed order within equal cost

    def data_for(self, spec: TrialSpec) -> PreparedData:
        return _for_seed(self.data_by_seed, spec.seed)


def _for_seed(by_seed: dict[int, Any], seed: int) -> Any:
    """The entry of ``seed`` when data are resampled per seed, else the shared one (key -1)."""
    return by_seed[seed] if seed in by_seed else by_seed[-1]


def _expected_cost(spec: TrialSpec) -> float:
    """Relative cost of a trial: epochs × (1 + per-step overhead), LE history a little dearer.

    Only the order matters (longest-processing-time-first scheduling); rows are the same for
    every trial of a sweep, smaller batches mean more optimiser steps.
    """
    settings = spec.settings
    steps_weight = 1.0 + 2048.0 / settings.batch_size
    history = 1.1 if spec.loss == "localized_entropy" and settings.cross_batch.enabled else 1.0
    return settings.epochs * steps_weight * history


def plan_trials(cfg: Config, *, data: PreparedData | None = None) -> SweepPlan:
    """Prepare data (once, or once per seed when ``repeats.resample_data``) and list the trial specs.

    Every loss sees the same seeds and, per seed, the same data (paired across losses).
    """
    seeds, losses = sweep_seeds(cfg), losses_of(cfg.training.loss_mode)
    if cfg.repeats.resample_data:
        data_by_seed = {s: prepare_data(cfg, seed=s) for s in seeds}
    else:
        data_by_seed = {-1: data if data is not None else prepare_data(cfg)}
    settings = cfg.training_by_loss  # resolved once for the whole sweep
    specs = [TrialSpec.make(cfg, loss, seed, _for_seed(data_by_seed, seed).fingerprint, settings[loss])
             for seed in seeds for loss in losses]
    return SweepPlan(specs, data_by_seed)


def warn_if_underpowered(cfg: Config, num_conditions: int) -> str | None:
    """A warning when ``num_runs`` seeds cannot reach ``per_condition_alpha`` at all."""
    rep = cfg.repeats
    m = max(1, num_conditions) if rep.per_condition_correction != "none" else 1
    need_metric = min_pairs_for_alpha(rep.per_condition_alpha, m_tests=1, alternative=rep.alternative)
    need_cond = min_pairs_for_alpha(rep.per_condition_alpha, m_tests=m, correction=rep.per_condition_correction,
                                    alternative=rep.alternative)
    if rep.num_runs >= need_cond:
        return None
    smallest = (2.0 if rep.alternative == "two-sided" else 1.0) / 2 ** rep.num_runs
    return (f"repeats.num_runs={rep.num_runs}: the smallest exact {rep.alternative} Wilcoxon p-value with "
            f"{rep.num_runs} pairs is {smallest:.4g}; metric-level tests need >= {need_metric} seeds to reach "
            f"p < {rep.per_condition_alpha}, and per-condition tests with a {rep.per_condition_correction} correction "
            f"over {m} conditions need >= {need_cond}")


def connect_ray(cfg: Config):
    """``ray.init`` per the module docstring; returns the context (``dashboard_url`` may be empty)."""
    import ray

    if ray.is_initialized():
        return None
    address = cfg.ray.address or ("auto" if os.environ.get("RAY_ADDRESS") else None)
    kwargs: dict[str, Any] = {"namespace": cfg.ray.namespace, "log_to_driver": True}
    if address is None:  # a new local instance, never a stray cluster that happens to run on this machine
        kwargs.update(address="local", num_cpus=cfg.ray.num_cpus, num_gpus=cfg.ray.num_gpus,
                      dashboard_host=cfg.ray.dashboard_host, include_dashboard=cfg.ray.include_dashboard)
    else:
        kwargs["address"] = address
    return ray.init(**kwargs)


# --------------------------------------------------------------------------- the Ray task

def _fault_hook(spec: TrialSpec, fault: dict[str, str]):
    """Test-only faults, set by the driver's environment (never by configs).

    ``LE_RAY_TEST_FAULT_EXIT=<loss>:<seed>`` with ``LE_RAY_TEST_FAULT_DIR``: the worker process of
    that trial dies (``os._exit``) after its first optimiser step, once (a marker file records it).
    ``LE_RAY_TEST_FAULT_RAISE=<loss>:<seed>``: that trial raises on every attempt.
    ``LE_RAY_TEST_FAULT_SLEEP=<seconds>``: every trial sleeps first (to make concurrency observable).
    """
    if fault.get("LE_RAY_TEST_FAULT_SLEEP"):
        time.sleep(float(fault["LE_RAY_TEST_FAULT_SLEEP"]))
    key = f"{spec.loss}:{spec.seed}"
    if fault.get("LE_RAY_TEST_FAULT_RAISE") == key:
        raise RuntimeError(f"test fault: trial {key} always fails")
    if fault.get("LE_RAY_TEST_FAULT_EXIT") != key:
        return None
    marker = Path(fault["LE_RAY_TEST_FAULT_DIR"]) / f"exited-{spec.trial_id}"

    def on_step(epoch: int, step: int) -> None:
        if step == 1 and not marker.exists():
            marker.write_text("killed once\n")
            os._exit(1)
    return on_step


def trial_task(data: PreparedData, spec: TrialSpec, cpus: int, fault: dict[str, str]) -> dict[str, Any]:
    """Body of the Ray task: train on the GPU Ray assigned (or CPU) and return the JSON record."""
    import ray

    from le_ray.trial import run_trial

    logging.getLogger("le_ray").setLevel(os.environ.get("LE_RAY_TRIAL_LOG_LEVEL", "WARNING"))
    started_at = time.time()
    gpu_ids = list(ray.get_gpu_ids())
    result = run_trial(data, spec, assigned_gpu_ids=gpu_ids, num_threads=cpus, on_step=_fault_hook(spec, fault))
    record = result.to_record()
    context = ray.get_runtime_context()
    record.update(gpu_ids=[str(g) for g in gpu_ids], node=context.get_node_id(), host=result.node,
                  worker_pid=os.getpid(), started_at=started_at, finished_at=time.time())
    return to_jsonable(record)


def _import_trial_modules() -> int:
    """Warm-up task body: import the trial code and touch its lazy initialisations once.

    Importing torch, scikit-learn, scipy and polars and running their first calls costs a new
    worker several seconds; doing it here keeps that off the first real trial.
    """
    import numpy as np
    import torch

    from le_ray import metrics

    rng = np.random.default_rng(0)
    p, y = rng.random(64), (rng.random(64) < 0.5).astype(float)
    metrics.model_summary(p, y, rng.integers(0, 2, 64))
    layer = torch.nn.Linear(4, 1)
    torch.optim.Adam(layer.parameters()).zero_grad()
    layer(torch.randn(8, 4)).sum().backward()
    return os.getpid()


def warm_up_workers(cfg: Config, num_trials: int) -> list:
    """Start one worker per trial slot and import the trial code there, without waiting.

    Submitted right after ``ray.init`` so worker start-up (seconds: a Python process plus torch)
    overlaps the driver's data preparation instead of delaying the first trials.
    """
    import ray

    cpus = ray.cluster_resources().get("CPU", 1.0)
    slots = max(1, min(num_trials, int(cpus // max(cfg.ray.cpus_per_trial, 1))))
    task = ray.remote(_import_trial_modules).options(**_resources(cfg))
    return [task.remote() for _ in range(slots)]


# --------------------------------------------------------------------------- streaming driver

@dataclass
class SweepProgress:
    """Counts and timing for the live progress line."""
    total: int
    already_done: int
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    data_refs: dict = field(default_factory=dict)

    def line(self, running: int) -> str:
        finished = self.done + self.failed
        elapsed = time.perf_counter() - self.started
        remaining = self.total - self.already_done - finished
        eta = elapsed / finished * remaining if finished else float("nan")
        eta_text = "?" if math.isnan(eta) else f"{eta:.0f}s"
        return (f"trials {self.already_done + self.done}/{self.total} done, {running} queued or running, "
                f"{self.failed} failed"
                f" | elapsed {elapsed:.0f}s, ETA {eta_text}")


def _trial_log_line(record: dict[str, Any], progress: SweepProgress) -> str:
    m = record.get("metrics", {})
    keys = [k for k in ("logloss", "ece", "roc_auc", "logratio_calib_iw") if m.get(k) is not None]
    shown = ", ".join(f"{k} {m[k]:.5g}" for k in keys)
    return (f"[{progress.already_done + progress.done}/{progress.total}] seed {record['seed']} {record['loss']}: "
            f"{shown} ({record['timings']['total']:.1f} s, {record['device'].split(' ')[0]}, "
            f"node {str(record.get('node'))[:8]})")


def _resources(cfg: Config) -> dict[str, Any]:
    import ray

    gpus = cfg.ray.gpus_per_trial
    if gpus is None:  # auto: one GPU per trial when the cluster has GPUs
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {"num_cpus": cfg.ray.cpus_per_trial, "num_gpus": gpus, "max_retries": cfg.ray.max_retries,
            "retry_exceptions": cfg.ray.retry_exceptions}


def _submit(cfg: Config, plan: SweepPlan, fault: dict[str, str], refs: dict) -> dict[Any, TrialSpec]:
    """``ray.put`` each data object once (into ``refs``), then one task per pending trial."""
    import ray

    refs.update({seed: ray.put(data) for seed, data in plan.data_by_seed.items()})
    remote = ray.remote(trial_task).options(**_resources(cfg))
    futures = {}
    for spec in plan.pending:
        futures[remote.remote(_for_seed(refs, spec.seed), spec, cfg.ray.cpus_per_trial, fault)] = spec
    return futures


def _collect(store: SweepStore, futures: dict[Any, TrialSpec], progress: SweepProgress, echo) -> None:
    """Stream finished trials to the store as they complete (``ray.wait``, one at a time)."""
    import ray

    last_line = 0.0
    while futures:
        ready, _ = ray.wait(list(futures), num_returns=1, timeout=2.0)
        for ref in ready:
            spec = futures.pop(ref)
            try:
                record = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a failed trial must not stop the sweep
                progress.failed += 1
                store.write_failure(spec.trial_id, {"loss": spec.loss, "seed": spec.seed, "error": repr(exc),
                                                    "traceback": "".join(traceback.format_exception(exc))})
                echo(f"trial seed {spec.seed} {spec.loss} FAILED after retries: {str(exc).splitlines()[0][:200]}")
                continue
            store.write_trial(record)
            progress.done += 1
            echo(_trial_log_line(record, progress))
        if time.perf_counter() - last_line > 10 or ready:
            echo(progress.line(len(futures)), live=True)
            last_line = time.perf_counter()


def run_sweep(cfg: Config, store: SweepStore, plan: SweepPlan, *, echo=None) -> SweepProgress:
    """Run every pending trial on Ray; Ctrl-C cancels what is outstanding (finished files stay)."""
    import ray

    echo = echo or _Echo()
    fault = {k: v for k, v in os.environ.items() if k.startswith("LE_RAY_TEST_FAULT")}
    progress = SweepProgress(total=len(plan.specs), already_done=len(plan.specs) - len(plan.pending))
    futures = _submit(cfg, plan, fault, progress.data_refs)
    try:
        _collect(store, futures, progress, echo)
    except KeyboardInterrupt:
        for ref in futures:
            ray.cancel(ref, force=True)
        echo(f"interrupted: cancelled {len(futures)} outstanding trial(s); finished trials are stored in {store.root}")
        raise
    return progress


class _Echo:
    """Log lines plus one live progress line (rich) on a terminal; plain lines otherwise.

    Under ``ray job submit`` or with output redirected, the progress line is printed as a log
    line at most every 10 s so job logs stay readable.
    """

    def __init__(self, stream=None) -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)
        self.live = None
        self.last_plain_progress = 0.0

    def __call__(self, text: str, live: bool = False) -> None:
        if not self.console.is_terminal:
            if live and time.monotonic() - self.last_plain_progress < 10:
                return
            self.last_plain_progress = time.monotonic() if live else self.last_plain_progress
            self.console.print(text, markup=False)
            return
        if live:
            from rich.text import Text

            self._live().update(Text(text))
        else:
            (self.live.console if self.live else self.console).print(text, markup=False)

    def _live(self):
        if self.live is None:
            from rich.live import Live
            from rich.text import Text

            self.live = Live(Text(""), console=self.console, refresh_per_second=4, transient=True)
            self.live.start()
        return self.live

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


# --------------------------------------------------------------------------- entry point

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m le_ray.repeats", description=(
        "Repeat every (seed x loss) trial as a Ray task and report paired statistics. "
        f"Without --profile/--config the '{DEFAULT_PROFILE}' profile runs on local Ray."))
    add_config_arguments(parser)
    parser.add_argument("--results-dir", help="where sweep folders go (default output.results_dir, or "
                        "$LE_RAY_RESULTS); must be absolute under `ray job submit`")
    parser.add_argument("--name", help="sweep folder name (default: <profile>-<UTC timestamp>)")
    parser.add_argument("--resume", dest="resume", action="store_true", default=None,
                        help="skip trials already stored (default when the sweep folder exists)")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="refuse to reuse an existing sweep folder")
    parser.add_argument("--no-report", action="store_true", help="store trials only; build the report later "
                        "with `le-ray report`")
    return parser


def _open_store(args: argparse.Namespace, cfg: Config) -> SweepStore:
    results_dir = resolve_results_dir(args.results_dir, cfg.output.results_dir)
    name = args.name or f"{cfg.experiment.active or 'default'}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    exists = (results_dir / name / "config.resolved.json").exists()
    if exists and args.resume is False:
        from le_ray.results import ResultsError
        raise ResultsError(f"sweep folder {str(results_dir / name)!r} exists and --no-resume was given; "
                           "choose another --name or drop --no-resume")
    return SweepStore.open(results_dir, name)


def _write_manifest(store: SweepStore, cfg: Config, plan: SweepPlan) -> None:
    import ray

    data = next(iter(plan.data_by_seed.values()))
    store.write_json("config.resolved.json", to_dict(cfg))
    store.write_json("manifest.json", {
        **environment_manifest(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ray_job": is_ray_job(), "cluster_resources": ray.cluster_resources(),
        "data_fingerprints": {str(s): d.fingerprint for s, d in plan.data_by_seed.items()},
        "data": {"source": data.source, "train_rows": len(data.train), "eval_rows": len(data.eval),
                 "test_rows": 0 if data.test is None else len(data.test), "num_conditions": data.num_conditions,
                 "condition_values": list(data.condition_values)},
        "trials": [{"trial_id": s.trial_id, "loss": s.loss, "seed": s.seed} for s in plan.specs]})


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.profile is None and args.config is None:
        args.profile = DEFAULT_PROFILE
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = config_from_args(args)
    store = _open_store(args, cfg)  # refuses unusable folders before any work
    echo = _Echo()
    echo(f"le_ray repeats: profile {cfg.experiment.active}, source {cfg.source_key}, losses "
         f"{', '.join(losses_of(cfg.training.loss_mode))}, {cfg.repeats.num_runs} seeds -> {store.root}")
    context = connect_ray(cfg)
    url = getattr(context, "dashboard_url", None) if context is not None else None
    if url:
        echo(f"Ray dashboard: http://{url}")
    warm_up_workers(cfg, len(sweep_seeds(cfg)) * len(losses_of(cfg.training.loss_mode)))
    plan = plan_trials(cfg)  # data preparation overlaps the workers' start-up
    plan.done = store.finished_ids()
    warning = warn_if_underpowered(cfg, next(iter(plan.data_by_seed.values())).num_conditions)
    if warning:
        echo(f"WARNING: {warning}")
    _write_manifest(store, cfg, plan)
    if plan.done & {s.trial_id for s in plan.specs}:
        echo(f"resuming: {len(plan.specs) - len(plan.pending)} of {len(plan.specs)} trials already stored")
    try:
        progress = run_sweep(cfg, store, plan, echo=echo)
    except KeyboardInterrupt:
        return 130
    finally:
        echo.close()
    if args.no_report:
        echo(f"trials stored in {store.root}; build the report with: le-ray report {store.root}")
        return 0 if progress.failed == 0 else 1
    from le_ray.report.sweep import build_report

    summary = build_report(store.root, echo=echo)
    echo(f"report: {summary}")
    return 0 if progress.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
