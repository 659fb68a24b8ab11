"""``python -m le_ray.run``: one diagnostic run — train each configured loss once and look at everything.

Order of the reference pipeline: header (config, seed, device) → data (+ CTR filter table and
plot) → data diagnostics → model and untrained predictions → train each loss (epoch-0 losses,
per-epoch logs, optional mid-epoch evaluation and gradient diagnostics) → evaluation tables →
BCE-vs-LE comparison → per-condition train rate vs eval prediction → test-set inference →
post-training plots and LE numerator/denominator statistics.

Outputs: ``<output.dir>/{bce|le|focal}/{source}/{nn_type}/{filter_mode}/`` per loss (avg.png,
loss.png, preds.png, calibration.png, reliability.png, run_log.txt, metrics.json,
per_condition.csv, ...), ``<output.dir>/comparison/{source}/{nn_type}/{filter_mode}/`` with the
comparison tables, data plots and ``report.md``, and ``<output.dir>/run.json`` (:func:`write_provenance`: the
command, resolved config, data fingerprint, thread count and environment that reproduce the run).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import torch

from le_ray import __version__
from le_ray.sweep.audit import audit_experiment
from le_ray.sweep.audit_text import audit_text
from le_ray.config.load import Provenance
from le_ray.cli.args import (add_config_arguments, command_parser, config_argv, config_shadows_provenance,
                             exit_on_user_error, with_default_profile)
from le_ray.errors import UserError
from le_ray.config import Config, losses_of, to_plain
from le_ray.data.filters import filter_mode_of
from le_ray.data.prepare import prepare_with_source
from le_ray.registry import LOSSES
from le_ray.training.devices import flush_denormals, select_device
from le_ray.report import run_outputs
from le_ray.report.run_markdown import repeats_command, write_logs
from le_ray.report.run_outputs import RunFolders, RunState
from le_ray.atomic import atomic_write_json, atomic_write_text, check_writable
from le_ray.sweep.store import environment_manifest, plain_folder_name
from le_ray.report.tables import condition_stats, feature_stats, format_table, label_stats
from le_ray.training.trial import TrialSpec, run_trial

__all__ = ["main", "run_diagnostic", "RunFolders", "nn_type_of"]

log = logging.getLogger("le_ray.run")


def nn_type_of(cfg: Config) -> str:
    """``default``/``small``/``wide``/``large`` from ``model.name``."""
    return cfg.model.name


class _Tee(io.TextIOBase):
    """Writes to the real stream and keeps a copy for run_log.txt."""

    def __init__(self, stream) -> None:
        self.stream, self.buffer_text = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        return self.buffer_text.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _section(title: str) -> None:
    print(f"\n=== {title} ===")


def _header(state: RunState, args: argparse.Namespace) -> None:
    cfg = state.cfg
    choice = select_device(cfg.device)
    print(f"le_ray {__version__} diagnostic run — {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"profile: {cfg.experiment.active}; config file: {args.config}; overrides: {args.sets or 'none'}")
    print(f"seed: {cfg.project.seed}; device: {choice.reason}; dtype: {choice.dtype}; torch threads: "
          f"{torch.get_num_threads()}")
    print(f"source: {cfg.source_key}; losses: {', '.join(losses_of(cfg.training.loss_mode))}; model: "
          f"{cfg.model.name} {list(cfg.model.hidden_sizes)}; output: {state.folders.root}")


def _prepare(state: RunState, origins=None) -> None:
    _section("data")
    started = time.perf_counter()
    state.data, ctr = prepare_with_source(state.cfg)
    data = state.data
    state.timings["data"] = time.perf_counter() - started
    print(f"prepared {data.source}: train {len(data.train)}, eval {len(data.eval)}, test "
          f"{0 if data.test is None else len(data.test)} rows; {data.num_conditions} conditions; "
          f"{len(data.numeric_features)} numeric, {len(data.categorical_features)} categorical features "
          f"({state.timings['data']:.2f} s)")
    meta = data.meta
    print(f"{meta.source_rows:,} source rows, {meta.kept_rows:,} kept by the filter, {meta.labelled_rows:,} after "
          "balancing; stage timings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in meta.stage_seconds.items()))
    state.audit = audit_experiment(state.cfg, [data], state.shadows, origins, one_run=True)
    print(audit_text(state.audit, max_conditions=state.cfg.evaluation.print_per_condition_top_k or None))
    if state.audit.errors:  # a diagnostic run is for looking, so it trains; its report says the results are unsound
        print(f"the audit found {len(state.audit.errors)} error(s): this run trains anyway, as a diagnostic run does, "
              "and report.md marks its results as unsound (le-ray repeats refuses such a sweep)")
    if ctr is not None:
        if run_outputs.plots_on(state, "ctr_filter_stats"):
            state.figures["filter_stats"] = run_outputs.filter_stats_plot(state, ctr.filter_stats)


def _diagnostics(state: RunState) -> None:
    _section("data diagnostics (before training)")
    data = state.data
    print("numeric features (standardised):")
    print(format_table(feature_stats(data)))
    print("labels:")
    print(format_table(label_stats(data)))
    print("conditions:")
    print(format_table(condition_stats(data), max_rows=state.cfg.evaluation.print_per_condition_top_k or None))
    if run_outputs.plots_on(state, "data_distributions"):
        state.figures["data_distributions"] = run_outputs.distributions_plot(state, "data_distributions.png",
                                                                             "before training")


def _untrained_model(state: RunState) -> None:
    _section("model")
    info = run_outputs.untrained_model_report(state)
    print(info["architecture"])
    print(f"parameters: {info['parameters']}; first-layer width {info['input_width']}")
    print(f"untrained model on one batch of {info['batch_rows']} rows: logits [{info['logit_min']:.4g}, "
          f"{info['logit_max']:.4g}], probabilities [{info['p_min']:.4g}, {info['p_max']:.4g}]")


def _train_losses(state: RunState) -> None:
    cfg, data = state.cfg, state.data
    for loss in losses_of(cfg.training.loss_mode):
        _section(f"training {loss}")
        settings = cfg.training_for(loss)
        print(f"settings: epochs {settings.epochs}, lr {settings.lr}, lr_decay {settings.lr_decay}, batch "
              f"{settings.batch_size}, lr_category {settings.lr_category}, cross_batch "
              f"{settings.cross_batch.enabled} (A={settings.cross_batch.amplification_rate}"
              f"{', warm start' if settings.cross_batch.warm_start else ''}), focal "
              f"α={settings.focal.alpha} γ={settings.focal.gamma}, LE prior {settings.le.base_rate_prior}")
        spec = TrialSpec.make(cfg, loss, cfg.project.seed, data.fingerprint)
        mid_epoch = run_outputs.plots_on(state, "mid_epoch_predictions")
        if mid_epoch and settings.eval_every_n_batches == 0:
            print(f"note: plots.mid_epoch_predictions is true, but {loss} evaluates only at epoch ends "
                  f"(eval_every_n_batches 0), so no mid-epoch prediction plot is drawn; set "
                  f"training.eval_every_n_batches to a number of steps for them")
        on_eval = run_outputs.mid_epoch_hook(state, loss) if mid_epoch else None
        result = run_trial(data, spec, keep_predictions=True, keep_model=True, on_batch_eval=on_eval)
        state.results[loss] = result
        run_outputs.report_loss(state, loss, result)


def run_diagnostic(cfg: Config, args: argparse.Namespace, output_root: Path, shadows=(),
                   origins: Provenance | None = None) -> RunState:
    """Steps 1–13 of the module docstring; returns the state (results, figure paths)."""
    folders = RunFolders(output_root, cfg.source_key, nn_type_of(cfg), filter_mode_of(cfg))
    state = RunState(cfg, folders, shadows=list(shadows), config_argv=config_argv(args))
    _header(state, args)
    _prepare(state, origins)
    _diagnostics(state)
    _untrained_model(state)
    _train_losses(state)
    run_outputs.comparison(state)
    run_outputs.post_training(state)
    if cfg.repeats.enabled:
        print(f"\nrepeats.enabled: run the seed sweep with paired tests as a Ray job ({cfg.repeats.num_runs} seeds): "
              f"{repeats_command(state.config_argv)}")
    return state


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("run")
    add_config_arguments(parser)
    parser.add_argument("--output-dir", help="where run folders go (default output.dir, 'output')")
    parser.add_argument("--name", help="the run's folder name (default <profile>-<UTC time>); an existing one is "
                        "refused unless --overwrite")
    parser.add_argument("--overwrite", action="store_true", help="reuse an existing run folder on purpose")
    return parser


def run_folder(args: argparse.Namespace, cfg: Config) -> Path:
    """``<output dir>/<name>`` (not created here): a new folder per run; an existing one only with ``--overwrite``."""
    name = plain_folder_name(args.name if args.name is not None else
                             f"{cfg.experiment.active or 'default'}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}")
    root = Path(args.output_dir or cfg.output.dir) / name
    if root.exists() and not root.is_dir():
        raise UserError(f"run folder {str(root)!r} is a file; choose another --name")
    if root.exists() and any(root.iterdir()) and not args.overwrite:
        raise UserError(f"run folder {str(root)!r} exists; choose another --name, or pass --overwrite to reuse it")
    return root


def set_aside(root: Path) -> Path | None:
    """With ``--overwrite``: move the run folder ``root`` holds out of the way, to a hidden sibling, so that the new
    run starts empty (no file of the old run left among the new ones). The caller deletes it once the new run is
    written, or puts it back if the new run fails: a failed rerun never loses the run it was to replace.
    Refuses a non-empty folder that is not a run folder (no ``comparison/`` nor loss folder in it)."""
    if not root.is_dir() or not any(root.iterdir()):
        return None
    if not any((root / sub).is_dir() for sub in ("comparison", *(loss.folder for loss in LOSSES.values()))):
        raise UserError(f"--overwrite: {str(root)!r} is not a le_ray run folder (no comparison/ nor loss folder in "
                        "it); refusing to replace it: choose another --name")
    aside = root.with_name(f".{root.name}.replaced-{os.getpid()}")
    root.rename(aside)
    return aside


def _run_logged(cfg: Config, args: argparse.Namespace, root: Path, shadows, origins) -> tuple[RunState, str]:
    """:func:`run_diagnostic` with everything printed and logged kept for run_log.txt; (state, that text)."""
    tee = _Tee(sys.stdout)
    handler = logging.StreamHandler(tee)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("le_ray")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with contextlib.redirect_stdout(tee):
            started = time.perf_counter()
            state = run_diagnostic(cfg, args, root, shadows, origins)
            took = f"\ndone in {time.perf_counter() - started:.1f} s"
            print(f"{took}; report: {state.folders.comparison / 'report.md'}" if cfg.output.save_logs else
                  f"{took}; output.save_logs is false, so no report.md or run_log.txt was written: the tables and "
                  f"figures are in {root}")
    except BaseException as exc:  # a run that fails part-way says so in its folder, beside what it had written
        if root.is_dir() and any(root.iterdir()):
            atomic_write_text(root / "run_log.txt", f"{tee.buffer_text.getvalue()}\nFAILED: {type(exc).__name__}: {exc}\n")
        raise
    finally:
        logger.removeHandler(handler)
    return state, tee.buffer_text.getvalue()


def write_provenance(state: RunState, argv: Sequence[str]) -> Path:
    """``run.json`` in the run folder: what reproduces the run, as a sweep's manifest and ``config.history/`` hold
    it: the command line, the resolved config, the data's fingerprint, torch's CPU thread count (it orders the
    float sums), and le_ray's version and commit, Python, platform and package versions."""
    return atomic_write_json(state.folders.root / "run.json", {
        "command": shlex.join(["python", "-m", "le_ray.run", *argv]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **environment_manifest(),
        "torch_threads": torch.get_num_threads(),
        "data_fingerprint": state.data.fingerprint if state.data is not None else None,
        "data_files": state.data.meta.files if state.data is not None else {},
        "config": to_plain(state.cfg)})


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    flush_denormals()  # before the first parallel op (a trial's set-up comes after the untrained model's look)
    args = with_default_profile(_parser().parse_args(argv))
    cfg, shadows, origins = config_shadows_provenance(args)
    root = run_folder(args, cfg)
    aside = set_aside(root) if args.overwrite else None
    created = not root.exists()
    try:
        check_writable(root, "output folder")
        state, log_text = _run_logged(cfg, args, root, shadows, origins)
        write_logs(state, log_text)
        write_provenance(state, sys.argv[1:] if argv is None else argv)
    except BaseException:
        if aside is not None:  # the new run's partial files go; the run it was to replace comes back
            shutil.rmtree(root, ignore_errors=True)
            aside.rename(root)
            print(f"le-ray: the run did not finish; {str(root)!r} holds the earlier run again, unchanged",
                  file=sys.stderr)
        elif created and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # failed before writing anything (e.g. a data error): no empty folder left behind
        if sys.exc_info()[0] is KeyboardInterrupt:  # Ctrl-C: said above (or nothing to keep); no traceback
            print("le-ray: stopped (SIGINT)", file=sys.stderr)
            return 130
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
