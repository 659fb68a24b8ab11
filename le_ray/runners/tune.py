"""``le-ray tune`` (= ``python -m le_ray.tune``): tune every loss with Ray Tune, then test on fresh seeds.

Protocol (written into the report's tuning section):

1. the data are prepared once; the tuning data are the TRAIN split only: ``tune.validation_split`` of the
   train rows (:func:`le_ray.data.prepare.validation_split`) is the validation split the search
   scores on; the evaluation split of the test sweep is never seen by a tuning trial (a CTR file whose every
   seed redraws its split is refused: :mod:`le_ray.runners.tune_data`);
2. for each loss, the same budget: ``tune.num_samples`` samples of ``tune.space.<loss>`` (a loss with no
   space is tested at its configured settings), the same scheduler (ASHA on epochs, grace period
   ``tune.grace_period``, or FIFO), each sample a Ray Tune trial that runs the one ``run_trial`` with a
   per-epoch report of ``tune.metric`` on the validation split (direction from :mod:`le_ray.glossary`);
   tuning seeds are ``project.seed + tune.seed_offset + draw`` and never meet the test seeds;
3. the best sample of every loss becomes that loss's ``by_source`` settings (:func:`search_record`: ranked at
   its last epoch among the samples that trained the most epochs any sample of the loss trained, so an ASHA
   sample stopped early is never compared with full-length ones at another epoch), and a
   ``repeats`` sweep of all losses runs on the test seeds into the same folder, with the usual report
   plus the tuning section.

Resumable: each loss's Tune experiment lives under ``<sweep>/tune/<loss>/`` (restored when interrupted);
a finished search is ``tune/<loss>.json``; the test phase resumes like any sweep. ``tune/config.json`` stores the
run's command once its pre-flight passed, so a stop names ``le-ray tune --name X --results-dir D``, which resumes with
that command (:mod:`le_ray.runners.tune_resume`). ``tune/summary.json`` holds
the protocol, every loss's search and ``budget`` (:func:`tuning_budget`: whether every loss was tuned with the
same budget, and the sentence the report prints). The test sweep's audit names tuned values as ``tuned``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from le_ray import metrics
from le_ray.atomic import atomic_write_json
from le_ray.sweep.audit import audit_experiment
from le_ray.sweep.audit_text import audit_text, refusal
from le_ray.cli.args import add_config_arguments, command_parser, exit_on_user_error
from le_ray.config import Config, TrainingSettings, merge_layers, resolve_config, shadowed_sets, to_dict, to_plain
from le_ray.config.load import merge_with_provenance
from le_ray.config.resolve import best_overrides, tuned_optimiser_keys, with_training_values
from le_ray.data.arrays import PreparedData
from le_ray.data.batches import to_tensors
from le_ray.data.prepare import prepare_data, validation_split
from le_ray.cli.echo import Echo
from le_ray.errors import ConfigError, ResultsError, UserError
from le_ray.glossary import direction
from le_ray.registry import label
from le_ray.report.tuning import is_counted, one_sample_note, search_counts
from le_ray.runners.repeats import Preflight, execute, report_only, stopped_before_start
from le_ray.runners.tune_data import refuse_shared_rows, tuning_data, tuning_seed_range
from le_ray.runners.tune_resume import (TUNE_DIR, check_resume as _check_resume, record_command, resume_line,
                                        stored_tune_arguments)
from le_ray.sweep.folder_lock import hold_folder
from le_ray.sweep.store import (SweepStore, SweepWriteError, config_changes, plain_folder_name, resolve_results_dir,
                                 trial_changes)
from le_ray.sweep.driver import (StopRequested, auto_gpus_per_trial, connect_ray, require_trial_fits,
                                 stop_on_signals)
from le_ray.sweep.plan import plan_trials, sweep_seeds
from le_ray.training.trial import TrialSpec, ece_settings, run_trial

__all__ = ["main", "search_space", "apply_sample", "tuning_seed_range", "best_overrides", "tuning_budget", "TUNE_DIR",
           "search_record"]

log = logging.getLogger("le_ray.tune")


def search_space(cfg: Config, loss: str) -> dict[str, Any]:
    """Ray Tune's param space for ``loss``: each ``tune.space`` entry as a sampler, plus the tuning seed."""
    from ray import tune

    makers = {"loguniform": lambda a: tune.loguniform(*a), "uniform": lambda a: tune.uniform(*a),
              "choice": lambda a: tune.choice(list(a)), "int": lambda a: tune.randint(int(a[0]), int(a[1]) + 1)}
    space = {key: makers[kind](args) for key, spec in (cfg.tune.space.get(loss) or {}).items()
             for kind, args in spec.items()}
    low, high = tuning_seed_range(cfg)
    return {**space, "seed": tune.randint(low, high)}


def apply_sample(settings: TrainingSettings, sample: dict[str, Any]) -> TrainingSettings:
    """``settings`` with each dotted training key of ``sample`` (the seed excluded) replaced."""
    return with_training_values(settings, {key: value.item() if isinstance(value, np.generic) else value
                                           for key, value in sample.items() if key != "seed"})


def _metric_reporter(cfg: Config, data: PreparedData, settings: TrainingSettings):
    """``on_epoch(epoch, model)``: ``tune.metric`` on the validation split, reported to Ray Tune."""
    import torch
    from ray import tune

    from le_ray.training.loop import predict_logits

    split = data.eval
    kw = ece_settings(cfg)

    def on_epoch(epoch: int, model) -> None:
        device = next(model.parameters()).device
        tensors = to_tensors(split, device=device, dtype=next(model.parameters()).dtype)
        p = torch.sigmoid(predict_logits(model, tensors, settings.eval_batch_size, settings.amp).double())
        summary = metrics.model_summary(p.cpu().numpy(), split.y, split.cond, **kw)
        tune.report({cfg.tune.metric: float(summary[cfg.tune.metric]), "epoch": epoch})
    return on_epoch


def _trainable(sample: dict[str, Any], *, data: PreparedData, cfg: Config, loss: str) -> None:
    """One Ray Tune trial: the sample's settings, trained by ``run_trial`` on the tuning data."""
    import ray

    settings = apply_sample(cfg.training_for(loss), sample)
    spec = TrialSpec.make(cfg, loss, int(sample["seed"]), data.fingerprint, settings)
    gpu_ids = list(ray.get_gpu_ids())
    run_trial(data, spec, assigned_gpu_ids=gpu_ids, num_threads=cfg.ray.cpus_per_trial,
              on_epoch=_metric_reporter(cfg, data, settings))


def _inert_stopper():
    """What a pickled :func:`signal_stopper` becomes (Ray Tune stores its run config for a restore): a stopper that
    never stops, since the flag of the process that pickled it means nothing in another."""
    from ray.tune.stopper import NoopStopper

    return NoopStopper()


def signal_stopper(stop):
    """A Ray Tune stopper that ends the whole search once ``stop`` (a :class:`le_ray.sweep.driver.StopFlag`, or None)
    has recorded SIGINT or SIGTERM: the search then stops like the sweep's trials do, through our handler (Tune's
    own SIGINT handler, which would swallow the signal and let the run go on, is kept off)."""
    from ray.tune.stopper import Stopper

    class SignalStopper(Stopper):
        def __call__(self, trial_id, result) -> bool:
            return False

        def stop_all(self) -> bool:
            return stop is not None and stop.signum is not None

        def __reduce__(self):
            return (_inert_stopper, ())
    return SignalStopper()


def _with_stopper(tuner, stop):
    """``tuner`` (restored) with this process's :func:`signal_stopper` in its run config: a restore keeps the stored
    run config, whose stopper was pickled as an inert one, so a stop during a restored search waited for every
    sample to end (then the whole search was dropped). Ray's restore sets its own run-config fields the same way
    (``name``, ``storage_path``); where that private object is absent, a stop waits as before, with a warning."""
    internal = getattr(tuner, "_local_tuner", None)
    run_config = getattr(internal, "_run_config", None)
    if run_config is None or not hasattr(run_config, "stop"):
        log.warning("this Ray Tune keeps no run config to put the stopper in: a stop during this restored search "
                    "takes effect when its samples end")
        return tuner
    run_config.stop = signal_stopper(stop)
    return tuner


def _tuner(cfg: Config, loss: str, data: PreparedData, folder: Path, stop=None):
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    mode = "max" if direction(cfg.tune.metric) else "min"
    epochs = cfg.training_for(loss).epochs
    scheduler = (ASHAScheduler(time_attr="training_iteration", max_t=epochs, grace_period=min(cfg.tune.grace_period,
                                                                                             epochs))
                 if cfg.tune.scheduler == "asha" else FIFOScheduler())
    gpus = cfg.ray.gpus_per_trial  # auto: the sweep's packing by model and data size when the cluster has GPUs
    if gpus is None:
        gpus = auto_gpus_per_trial(cfg.model.hidden_sizes, len(data.train), ray.cluster_resources().get("GPU", 0))
    require_trial_fits(cfg, {"num_cpus": cfg.ray.cpus_per_trial, "num_gpus": gpus})  # else Tune waits forever
    trainable = tune.with_resources(tune.with_parameters(_trainable, data=data, cfg=cfg, loss=loss),
                                    {"cpu": cfg.ray.cpus_per_trial, "gpu": gpus})
    path = folder / loss
    if tune.Tuner.can_restore(str(path)):
        return _with_stopper(tune.Tuner.restore(str(path), trainable, resume_errored=True), stop)
    return tune.Tuner(trainable, param_space=search_space(cfg, loss), tune_config=tune.TuneConfig(
        metric=cfg.tune.metric, mode=mode, num_samples=cfg.tune.num_samples, scheduler=scheduler,
        max_concurrent_trials=cfg.tune.max_concurrent,
        search_alg=BasicVariantGenerator(random_state=cfg.project.seed)),
        run_config=tune.RunConfig(name=loss, storage_path=str(folder), verbose=0, stop=signal_stopper(stop)))


def _sample_rows(grid, metric: str) -> list[dict[str, Any]]:
    """Every sample of a Ray Tune result grid as plain data: settings, seed, metric per epoch, final, error."""
    samples = []
    for result in grid:
        history = result.metrics_dataframe
        values = [] if history is None or metric not in history else history[metric].tolist()
        config = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in (result.config or {}).items()}
        samples.append({"config": {k: v for k, v in config.items() if k != "seed"}, "seed": config.get("seed"),
                        "curve": values, "final": values[-1] if values else None, "epochs": len(values),
                        "error": None if result.error is None else error_line(str(result.error))})
    return samples


_ERROR_LINE = re.compile(r"^\s*(\w+\.)*\w*(Error|Exception|Interrupt)\b.*")


def error_line(text: str) -> str:
    """The line of a Ray Tune trial's error text that names the exception (``NonFiniteLossError: ...``: the last
    such line, the cause, where Ray chains several), else its last line; at most 500 characters. The text opens with
    a traceback, whose first 500 characters named no error."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if line.strip()]
    named = [line for line in lines if _ERROR_LINE.match(line) and not line.startswith("ray::")]
    return (named[-1] if named else lines[-1] if lines else "")[:500]


def search_record(cfg: Config, loss: str, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """One loss's search: its samples and the best one, by the metric at each sample's last epoch. A sample counts
    when it ended without error at a finite metric. Under ASHA the best is ranked among the counted samples that
    trained the most epochs any counted sample trained (``ranked_epochs``): ASHA stops a sample at a rung when it
    ranks low there, and ranking its value at that rung beside full-length samples' last epoch would compare two
    budgets. Under FIFO every sample trains its own epochs (a searched ``epochs`` included): every counted sample
    is ranked (``ranked_epochs`` None)."""
    better = max if direction(cfg.tune.metric) else min
    counted = [s for s in samples if is_counted(s)]
    rung = max((s["epochs"] for s in counted), default=0) if cfg.tune.scheduler == "asha" else None
    ranked = [s for s in counted if rung is None or s["epochs"] == rung]
    best = better(ranked, key=lambda s: s["final"]) if ranked else None
    return {"loss": loss, "metric": cfg.tune.metric, "mode": "max" if direction(cfg.tune.metric) else "min",
            "space": to_plain(cfg.tune.space.get(loss) or {}), "samples": samples, "ranked_epochs": rung,
            "best": best, "best_flat": best is not None and _flat(best["curve"])}


def _flat(curve: list[float]) -> bool:
    """A validation curve that never moved over two or more epochs: the mark of a model that diverged to a
    constant prediction (e.g. an lr far too large), which a search can still rank best."""
    return len(curve) >= 2 and max(curve) - min(curve) <= 1e-9 * max(1.0, abs(curve[0]))


def run_search(cfg: Config, loss: str, data: PreparedData, folder: Path, echo, stop=None) -> dict[str, Any]:
    """The search of one loss (or its stored result when it finished before). A stop signal during it (``stop``)
    ends the search, drops its Ray Tune folder and raises :class:`StopRequested` before its record is written, so a
    resume searches that loss again."""
    done = folder / f"{loss}.json"
    if done.exists():
        echo(f"tuning {label(loss)}: already finished ({done})")
        return json.loads(done.read_text())
    if not cfg.tune.space.get(loss):
        record = {"loss": loss, "metric": cfg.tune.metric, "space": {}, "samples": [], "best": None}
    else:
        started = time.perf_counter()
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # Ray Tune reads it in fit(): SIGINT stays ours (stopper)
        grid = _tuner(cfg, loss, data, folder, stop).fit()
        if stop is not None:
            stop.install()  # in case the search put a handler of its own on a stop signal
            if stop.signum is not None:  # its samples ended as "terminated", which a restore would keep as final:
                shutil.rmtree(folder / loss, ignore_errors=True)  # the resume searches this loss again, whole
            stop.check()
        if grid.num_terminated + grid.num_errors < cfg.tune.num_samples:  # Ray Tune ended early, without our signal
            raise UserError(f"the Ray Tune search of {label(loss)} ended with {grid.num_terminated + grid.num_errors} "
                            f"of {cfg.tune.num_samples} samples finished (not stopped by le_ray); rerun the same "
                            "command to resume it (its Ray Tune state is kept)")
        record = search_record(cfg, loss, _sample_rows(grid, cfg.tune.metric))
        record["seconds"] = time.perf_counter() - started
        best = record["best"]
        if best is None:  # nothing to test with: testing the untuned settings would pass them off as tuned
            shutil.rmtree(folder / loss, ignore_errors=True)  # a resume searches this loss again
            raise UserError(_no_sample_finished(cfg, loss, record))
        echo(f"tuning {label(loss)}: {len(record['samples'])} samples in {record['seconds']:.0f} s; best "
             f"{cfg.tune.metric} {best['final']:.5g} with {best['config']}")
        if record["best_flat"]:
            echo(f"WARNING tuning {label(loss)}: {_flat_words(record)}")
    atomic_write_json(done, record)
    return record


def _flat_words(record: dict[str, Any]) -> str:
    best = record["best"]
    return (f"the best sample's validation {record['metric']} stayed at {best['final']:.5g} over its "
            f"{len(best['curve'])} epochs, as a model that diverged to a constant prediction does; its settings "
            f"({best['config']}) are tested as {label(record['loss'])}'s best: check the search space")


def _no_sample_finished(cfg: Config, loss: str, record: dict[str, Any]) -> str:
    """Why a search gave no best sample: every sample failed or reported no finite metric (the first error)."""
    errors = [s["error"] for s in record["samples"] if s.get("error")]
    first = errors[0].strip().splitlines()[-1] if errors else f"no finite {cfg.tune.metric} was reported"
    return (f"tuning {label(loss)}: none of its {len(record['samples'])} samples finished ({len(errors)} failed; "
            f"first: {first}); nothing was tested, and nothing is stored for this search: fix the cause and rerun "
            "the same command to search it again")


def _shared_draws(cfg: Config, losses: list[str]) -> str:
    """What the searches' common random seed means: a key searched with the same distribution by several losses can
    take the same values in each (the first key drawn always does), so those losses were tried at the same points;
    and when the losses search different numbers of keys, the same samples cover each space unequally."""
    spaces = {loss: to_plain(cfg.tune.space[loss]) for loss in losses if cfg.tune.space.get(loss)}
    alike = sorted({k for a in spaces for k, spec in spaces[a].items()
                    if any(b != a and spaces[b].get(k) == spec for b in spaces)})
    said = ""
    if alike:
        said += (f" Every search draws from the same random seed (project.seed {cfg.project.seed}): "
                 f"{', '.join(alike)}, searched alike by several losses, can take the same values in each (the first "
                 "key drawn always does), so those losses were tried at the same points, not independently.")
    sizes = {loss: len(space) for loss, space in spaces.items()}
    if len(set(sizes.values())) > 1:
        said += (" The searches cover spaces of different sizes with the same samples (keys searched: "
                 + ", ".join(f"{label(loss)} {n}" for loss, n in sizes.items())
                 + "): a loss searching more keys tries each less densely.")
    return said


def _budget_sentence(cfg: Config, epochs: dict[str, int | str], counts: dict[str, dict[str, int]],
                     unsearched: list[str], same: bool, validation_rows: int, records: list[dict[str, Any]]) -> str:
    scheduler = (f"ASHA, grace period {cfg.tune.grace_period} epoch(s)" if cfg.tune.scheduler == "asha" else "FIFO")
    common = f"scored by {cfg.tune.metric} on the same {validation_rows:,} validation rows ({scheduler})"
    failed = ", ".join(f"{label(loss)} {c['failed']} of {c['samples']}" for loss, c in counts.items() if c["failed"])
    samples = _samples(cfg.tune.num_samples)
    if same:
        sentence = (f"Each loss was tuned with the same budget: {samples} of up to {next(iter(epochs.values()))} "
                    f"epochs, {common}.")
    else:
        per_loss = ", ".join(f"{label(loss)} {'up to ' if isinstance(epochs[loss], int) else ''}{epochs[loss]}"
                             for loss in counts)
        sentence = (f"The losses were NOT tuned with the same budget: {samples} per searched loss, epochs per "
                    f"sample {per_loss or 'none'}" + (f"; not searched (configured settings): {', '.join(unsearched)}"
                                                      if unsearched else "")
                    + (f"; samples that failed or ended without a finite {cfg.tune.metric}: {failed}" if failed else "")
                    + f", {common}.")
    sentence += _shared_draws(cfg, [loss for loss in cfg.losses if loss in counts])
    note = one_sample_note(cfg.tune.num_samples)
    sentence += f" Note: {note[0].upper()}{note[1:]}." if note else ""
    flat = [r for r in records if r.get("best_flat")]
    sentence += "".join(f" WARNING: for {label(r['loss'])}, {_flat_words(r)}." for r in flat)
    if cfg.tune.scheduler == "asha" and any(c["stopped"] for c in counts.values()):
        trained = ", ".join(f"{label(loss)} {c['epochs_trained']}" for loss, c in counts.items())
        ranked = ", ".join(f"{label(loss)} {c['ranked']} at {c['ranked_epochs']}" for loss, c in counts.items())
        sentence += (f" ASHA stopped low-ranked samples early (epochs trained in all: {trained}); each loss's best was "
                     f"ranked among its samples that trained the most epochs ({ranked} epochs). Which samples ASHA "
                     "stops depends on the order samples report in, so a rerun can stop others and pick another best.")
    return sentence


def _samples(n: int) -> str:
    return f"{n} sample{'' if n == 1 else 's'}"


def _epochs_budget(cfg: Config, loss: str) -> int | str:
    """The epochs a sample of ``loss`` trains: its configured epochs, or its searched distribution (FIFO), in words
    (``1–6 (searched)``, ``one of 2, 4 (searched)``)."""
    spec = (cfg.tune.space.get(loss) or {}).get("epochs")
    if spec is None:
        return cfg.training_for(loss).epochs
    kind, args = next(iter(spec.items()))
    drawn = f"one of {', '.join(map(str, args))}" if kind == "choice" else f"{args[0]:g}–{args[1]:g}"
    return f"{drawn} (searched)"


def tuning_budget(cfg: Config, validation_rows: int, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The budget each loss's search got: samples, the most epochs a sample trains (ASHA may stop it sooner),
    scheduler, metric, validation rows, and per searched loss what it spent (:func:`search_counts`); ``same`` when
    every compared loss was searched with equal numbers and none lost a sample to a failure, and ``sentence``: what
    the report says of it."""
    epochs = {loss: _epochs_budget(cfg, loss) for loss in cfg.losses}
    counts = {r["loss"]: search_counts(r) for r in records if r.get("samples")}
    unsearched = [label(loss) for loss in cfg.losses if loss not in counts]
    same = len(set(epochs.values())) == 1 and not unsearched and all(
        c["samples"] == cfg.tune.num_samples and not c["failed"] for c in counts.values())
    return {"num_samples": cfg.tune.num_samples, "epochs": epochs, "searched": list(counts), "metric": cfg.tune.metric,
            "scheduler": cfg.tune.scheduler, "grace_period": cfg.tune.grace_period,
            "validation_rows": validation_rows, "same": same, "counts": counts,
            "sentence": _budget_sentence(cfg, epochs, counts, unsearched, same, validation_rows, records)}


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("tune")
    add_config_arguments(parser)
    parser.add_argument("--results-dir", help="where sweep folders go (default output.results_dir, or $LE_RAY_RESULTS)")
    parser.add_argument("--name", help="sweep folder name (default: <profile>-tune-<UTC time>); reuse it to resume")
    parser.add_argument("--allow-unsound", action="store_true", help="test although the experiment audit found errors")
    parser.add_argument("--no-report", action="store_true", help="store trials only")
    parser.set_defaults(resume=None, extend=False)
    return parser


def _test_preflight(args, cfg: Config, records: list[dict[str, Any]], results_dir: Path, name: str, echo,
                    prepared: PreparedData, refuse: bool = True, store: SweepStore | None = None) -> Preflight:
    """The test sweep's config (best settings set explicitly), plan and audit (refused on an audit error unless
    ``refuse`` is false or the run allows an unsound experiment). ``prepared``: ``prepare_data(cfg)``, which the
    tuned settings do not change; the plan uses it unless the data are redrawn per seed. ``store``: the run's
    store of the folder (one per run, so a damaged trial file is warned about once), else a new one."""
    data, origins = merge_with_provenance(args.config, profile=args.profile, sets=args.sets,
                                          tuned=best_overrides(cfg, records))  # the best settings applied last
    test_cfg = resolve_config(data)
    plan = plan_trials(test_cfg, data=prepared)
    store = store if store is not None else SweepStore(results_dir / name)
    plan.done = store.finished_ids()  # none in a new folder; not trained again
    shadows = shadowed_sets(data, args.sets, test_cfg.source_keys, test_cfg.losses)
    audit = audit_experiment(test_cfg, plan.datasets, shadows, origins, stored=plan.stored_by_loss)
    echo(audit_text(audit, max_conditions=test_cfg.evaluation.print_per_condition_top_k or None))
    if refuse and audit.errors and not (args.allow_unsound or test_cfg.repeats.allow_unsound):
        raise UserError(refusal(audit))
    resuming = (results_dir / name / "config.resolved.json").exists()
    return Preflight(test_cfg, results_dir, name, resuming, plan, audit, store=store)


def _refuse_before_search(args: argparse.Namespace, cfg: Config, results_dir: Path, name: str, echo,
                          data: PreparedData, store: SweepStore) -> None:
    """The test sweep's audit on the configured (untuned) settings, and the tuning split's optimiser steps, before
    any search: an audit error that no searched key can change, or a tuning split too small to train on, refuses
    the tune now rather than after every search has run. Nothing when every search is stored: the test sweep's
    own pre-flight, on the tuned settings, then decides (a rerun that only reports is not refused for time)."""
    if all((results_dir / name / TUNE_DIR / f"{loss}.json").is_file() for loss in cfg.losses):
        return
    pre = _test_preflight(args, cfg, [], results_dir, name, _silent, data, refuse=False,  # printed after tuning
                          store=store)
    for finding in (f for f in pre.audit.warnings if not _may_change(f, cfg)):  # e.g. a shadowed --set
        echo(f"before the searches, on the configured settings: WARNING [{finding.code}] {finding.message}")
    if args.allow_unsound or cfg.repeats.allow_unsound:
        return
    fixed = [f for f in pre.audit.errors if not _may_change(f, cfg)]
    problems = [f"[{f.code}] {f.message}" for f in fixed] + _tuning_step_problems(cfg, data)
    if problems:
        raise UserError("tune refused before any search, nothing was trained:\n"
                        + "\n".join(f"  - {p}" for p in problems)
                        + "\n(--allow-unsound searches and tests anyway)")


def _may_change(finding, cfg: Config) -> bool:
    """Whether a search may change an audit error: a ``few_steps`` of a loss that searches its batch size (the
    finding names the loss), else a key of the finding that a search may change (:func:`_searched`)."""
    if finding.code == "few_steps":
        loss = next((x for x in cfg.losses if finding.message.startswith(f"{label(x)} ")), None)
        return loss is not None and "batch_size" in (cfg.tune.space.get(loss) or {})
    return any(_searched(key, cfg) for key in finding.keys)


def _searched(key: str, cfg: Config) -> bool:
    """Whether a search may change config ``key``: ``training.by_loss.<loss>[.by_source.<source>].<k>`` when that
    loss searches ``k``; ``training.<k>`` when every compared loss searches ``k``."""
    parts = key.split(".")
    if parts[:2] == ["training", "by_loss"] and len(parts) > 3:
        loss, rest = parts[2], parts[5:] if parts[3] == "by_source" else parts[3:]
        return ".".join(rest) in (cfg.tune.space.get(loss) or {})
    return parts[0] == "training" and all(".".join(parts[1:]) in (cfg.tune.space.get(x) or {}) for x in cfg.losses)


def _tuning_step_problems(cfg: Config, data: PreparedData) -> list[str]:
    """A searched loss whose tuning trials would take fewer than ``repeats.min_steps_per_epoch`` optimiser steps per
    epoch on the train rows left after ``tune.validation_split``."""
    rows = len(validation_split(data, cfg.tune.validation_split, cfg.project.seed).train)
    need, out = cfg.repeats.min_steps_per_epoch, []
    for loss in (x for x in cfg.losses if cfg.tune.space.get(x) and "batch_size" not in cfg.tune.space[x]):
        batch = cfg.training_for(loss).batch_size  # a searched batch size is the search's to judge
        steps = math.ceil(rows / batch)  # the last partial batch trains too, as in the audit's count
        if steps < need:
            out.append(f"tuning {label(loss)}: {rows:,} tuning train rows (tune.validation_split "
                       f"{cfg.tune.validation_split:g} of {len(data.train):,}) give {steps} step(s) of batch "
                       f"{batch:,} per epoch; at least {need} (repeats.min_steps_per_epoch) are needed: "
                       + (f"lower the batch size to at most {rows // need:,}" if math.ceil(len(data.train) / batch)
                          < need else f"lower tune.validation_split, or the batch size to at most {rows // need:,}"))
    return out


def _tune_and_test(args, argv: list[str], cfg: Config, root: Path, echo, stop, data: PreparedData,
                   store: SweepStore) -> int:
    folder = root / TUNE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tuning = tuning_data(cfg, data, echo)
    records, started = [], time.perf_counter()
    for loss in cfg.losses:
        records.append(run_search(cfg, loss, tuning, folder, echo, stop))
        stop.check()
    searched = time.perf_counter() - started
    atomic_write_json(folder / "summary.json", {"metric": cfg.tune.metric, "scheduler": cfg.tune.scheduler,
                                                "num_samples": cfg.tune.num_samples,
                                                "validation_split": cfg.tune.validation_split,
                                                "validation_rows": len(tuning.eval), "train_rows": len(tuning.train),
                                                "seed_range": list(tuning_seed_range(cfg)),
                                                "test_seeds": sweep_seeds(cfg), "losses": records,
                                                "budget": tuning_budget(cfg, len(tuning.eval), records)})
    pre = _test_preflight(args, cfg, records, root.parent, root.name, echo, data, store=store)
    pre.seconds["tuning"] = searched
    store = _test_store(pre, root, argv)
    return execute(pre, store, args, echo, stop)


def _refuse_changed_test_sweep(pre: Preflight, root: Path) -> None:
    """Refuse when the test sweep stored in ``root`` is not the one ``pre`` tests: a test sweep continued by
    `le-ray repeats` (e.g. ``--extend`` to more seeds) is refused rather than silently cut back to the tune's."""
    stored = root / "config.resolved.json"
    if stored.is_file():
        new = to_dict(pre.cfg)
        changes = trial_changes(config_changes(json.loads(stored.read_text()), new), new)
        if changes:
            lines = "\n".join(f"  - {c}" for c in changes)
            raise ResultsError(f"the test sweep in {str(root)!r} was changed after the tune (stored -> this tune's):\n"
                               f"{lines}\nnothing was run and nothing was changed; continue it with `le-ray repeats "
                               f"--name {root.name}` (it resumes the stored test sweep)")


def _test_store(pre: Preflight, root: Path, argv: list[str]) -> SweepStore:
    """The test sweep's store, once its stored config (if any) is the one ``pre`` tests
    (:func:`_refuse_changed_test_sweep`); this run recorded in it, its stored trials marked done."""
    _refuse_changed_test_sweep(pre, root)
    store = pre.open_store()
    store.clean_temporary_files()
    store.record_run(to_dict(pre.cfg), argv)
    pre.plan.done = store.finished_ids()
    return store


def _finished_tune(args, argv: list[str], cfg: Config, root: Path, echo,
                   data: PreparedData, store: SweepStore) -> tuple[Preflight, SweepStore] | None:
    """When every search is stored and every test trial too: the test sweep's pre-flight and store (its report can
    be built without Ray; its audit printed here). None otherwise, with nothing printed or recorded: the run goes
    on through :func:`_tune_and_test`, which does both."""
    paths = [root / TUNE_DIR / f"{loss}.json" for loss in cfg.losses]
    if not (root / "config.resolved.json").is_file() or not all(p.is_file() for p in paths):
        return None
    pre = _test_preflight(args, cfg, [json.loads(p.read_text()) for p in paths], root.parent, root.name, _silent, data,
                          store=store)
    _refuse_changed_test_sweep(pre, root)
    if pre.plan.pending:  # _test_preflight read the stored trials into pre.plan.done
        return None
    echo(audit_text(pre.audit, max_conditions=pre.cfg.evaluation.print_per_condition_top_k or None))
    return pre, _test_store(pre, root, argv)


def _silent(*_: Any) -> None:
    """An echo that prints nothing (a pre-flight whose audit is printed elsewhere, or not at all)."""


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args, argv = stored_tune_arguments(args, argv, _parser())
    cfg = resolve_config(merge_layers(args.config, profile=args.profile, sets=args.sets))
    tuning_seed_range(cfg)
    refuse_shared_rows(cfg)
    if not any(cfg.tune.space.get(loss) for loss in cfg.losses):
        raise ConfigError(f"tune.space: no search space for any compared loss ({', '.join(cfg.losses)}), so there is "
                          "nothing to tune; give one (e.g. --set 'tune.space.bce.lr={\"loguniform\": [0.0005, 0.02]}') "
                          "or start from --profile quickstart_tune; `le-ray repeats` tests configured settings")
    if tuned_optimiser_keys(cfg):
        raise ConfigError(tuned_optimiser_keys(cfg))
    results_dir = resolve_results_dir(args.results_dir, cfg.output.results_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    name = plain_folder_name(args.name if args.name is not None else
                             f"{cfg.experiment.active or 'default'}-tune-{stamp}")
    _check_resume(results_dir / name, cfg)
    echo = Echo()
    echo(f"le_ray tune: profile {cfg.experiment.active}, losses {', '.join(label(x) for x in cfg.losses)}, "
         f"{_samples(cfg.tune.num_samples)} each, metric {cfg.tune.metric} -> {results_dir / name}")
    note = one_sample_note(cfg.tune.num_samples)
    if note:  # allowed (e.g. a smoke test), but it tunes nothing: say so first
        echo(f"note: {note}; raise tune.num_samples to compare settings")
    try:
        data = prepare_data(cfg)  # once: the pre-search audit, the tuning split and the test sweep's plan share it
    except KeyboardInterrupt:  # Ctrl-C while the data are prepared: one line, as in le-ray repeats
        print(stopped_before_start("tune"), flush=True)
        return 130
    store = SweepStore(results_dir / name)  # this run's one store: each damaged trial file warned about once
    _refuse_before_search(args, cfg, results_dir, name, echo, data, store)
    with hold_folder(store.created().root, "le-ray tune"):  # one driver per folder
        return _record_and_run(args, argv, cfg, results_dir, name, echo, data, store)


def _record_and_run(args, argv: list[str], cfg: Config, results_dir: Path, name: str, echo, data: PreparedData,
                    store: SweepStore) -> int:
    """The tune from its recorded command on, in its held folder: searches, the test sweep and its report, or the
    stop and resume line."""
    record_command(results_dir / name, cfg, argv)  # so that `le-ray tune --name <name>` resumes a stop from here on
    try:
        with stop_on_signals() as stop:  # from before Ray starts: a stop while it starts is one like any other
            finished = _finished_tune(args, argv, cfg, results_dir / name, echo, data, store)
            if finished is not None:  # every search and test trial stored: the report, without Ray
                return report_only(*finished, args, echo, stop)
            context = connect_ray(cfg, stop)
            stop.check()
            if getattr(context, "dashboard_url", None):  # Ray's own line is off for a new local instance
                echo(f"Ray dashboard: http://{context.dashboard_url}")
            return _tune_and_test(args, argv, cfg, results_dir / name, echo, stop, data, store)
    except StopRequested as stop:
        echo.close()
        print(f"\nstopped ({stop}); resume with: {resume_line(argv, results_dir, name)}", flush=True)
        return stop.exit_code
    except SweepWriteError as failed:  # a folder turned read-only, a full disk: stopped like a signal
        echo.close()
        print(f"le-ray: {failed.with_resume(resume_line(argv, results_dir, name))}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
