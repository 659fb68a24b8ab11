"""The report half of a diagnostic run (``le_ray.runners.run``): per-loss plots/tables, comparison tables, report.md.

Every function takes the run's state (config, data, folders, results) and writes through the
atomic writers; printing goes to stdout, which ``le_ray.runners.run`` tees into ``run_log.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl
import torch

from le_ray import seeds
from le_ray.metrics import compare
from le_ray.sweep.audit import Audit
from le_ray.config import Config, Shadow
from le_ray.data.batches import to_tensors
from le_ray.training.model import build_model, count_parameters
from le_ray.registry import LOSSES
from le_ray.report import plots
from le_ray.atomic import atomic_write_json, atomic_write_text, atomic_write_with
from le_ray.report.tables import format_table, prediction_summary, train_rate_vs_eval_prediction, \
    write_csv
from le_ray.data.arrays import PreparedData
from le_ray.training.trial import TrialResult, evaluation_split

__all__ = ["RunFolders", "RunState", "filter_stats_plot", "distributions_plot", "untrained_model_report", "mid_epoch_hook", "report_loss",
           "comparison", "post_training"]

@dataclass
class RunFolders:
    """Where each loss's files and the run-level comparison files go."""
    root: Path
    source: str
    nn_type: str
    filter_mode: str

    def loss(self, loss: str) -> Path:
        return self.root / LOSSES[loss].folder / self.source / self.nn_type / self.filter_mode

    @property
    def comparison(self) -> Path:
        return self.root / "comparison" / self.source / self.nn_type / self.filter_mode


@dataclass
class RunState:
    """What the steps share: config, data, folders, results per loss, figure paths."""
    cfg: Config
    folders: RunFolders
    data: PreparedData | None = None
    results: dict[str, TrialResult] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    shadows: list[Shadow] = field(default_factory=list)
    audit: Audit | None = None
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)  # pair key → summary, conditions, closer
    config_argv: list[str] = field(default_factory=list)  # the run's --config / --profile / --set words, in order


DEVICE_COUNT_FEATURES = ("device_ip_count", "device_id_count")


def _save(state, fig, folder: Path, name: str) -> Path:
    return plots.save_figure(fig, folder / name, dpi=state.cfg.plots.dpi)


def drawing(state) -> bool:
    """Whether this run draws figures at all: ``plots.enabled`` and ``output.save_plots`` (a figure is only ever
    written, so either switch off means none)."""
    return state.cfg.plots.enabled and state.cfg.output.save_plots


def plots_on(state, flag: str) -> bool:
    """Whether the figure of ``plots.<flag>`` is drawn (:func:`drawing` and the flag)."""
    return drawing(state) and getattr(state.cfg.plots, flag)


def filter_stats_plot(state, stats: pl.DataFrame) -> Path:
    fig = plots.plot_filter_stats(stats, title=f"{state.cfg.source_key} filter statistics "
                                                f"({state.folders.filter_mode}): rows vs click rate")
    return _save(state, fig, state.folders.comparison, "filter_stats.png")


def _sample_size(state) -> int:
    cfg = state.cfg
    return cfg.active_ctr.plot_sample_size if cfg.data.source == "ctr" else cfg.plots.sample_size


def _sample_rows(state) -> np.ndarray:
    """Sorted indices of a seeded sample of the train split (plot_sample_size rows)."""
    n = len(state.data.train)
    rng = np.random.default_rng(state.cfg.project.seed)
    return np.sort(rng.choice(n, size=min(n, max(_sample_size(state), 1)), replace=False))


def distributions_plot(state, name: str, phase: str) -> Path:
    """Per-condition feature histograms from a seeded sample of the train split (no device counters)."""
    data = state.data
    keep = [j for j, f in enumerate(data.numeric_features) if f not in DEVICE_COUNT_FEATURES]
    rows = _sample_rows(state)
    scaled = state.cfg.data.standardize  # the train split holds the standardised values then
    fig = plots.plot_feature_distributions(data.train.x_num[rows][:, keep],
                                           [data.numeric_features[j] for j in keep], data.train.cond[rows],
                                           list(data.condition_values),
                                           title=f"Numeric features per condition ({phase}"
                                                 f"{', standardised' if scaled else ''}, {len(rows)} sampled train "
                                                 "rows)", units="standardised: sd units" if scaled else "input units")
    return _save(state, fig, state.folders.comparison, name)


def untrained_model_report(state) -> dict[str, Any]:
    """Architecture, parameter count, logit/probability ranges of one batch; optional histogram plot."""
    cfg, data = state.cfg, state.data
    with torch.random.fork_rng(devices=[]):  # the run's own torch stream is left as it was
        torch.manual_seed(seeds.torch_seed(cfg.project.seed, "model"))
        model = build_model(cfg.model, num_numeric=data.num_numeric, num_conditions=data.num_conditions,
                            cat_vocab_sizes=data.cat_vocab_sizes).eval()
    sample = _sample_rows(state)
    tensors = to_tensors(data.train.take(sample), device=torch.device("cpu"), dtype=torch.float32)
    with torch.no_grad():
        batch = next(tensors.sequential(min(len(tensors), 4096)))
        logits = model(batch.x_num, batch.x_cat, batch.cond)
        p = torch.sigmoid(logits)
        all_p = torch.sigmoid(torch.cat([model(b.x_num, b.x_cat, b.cond) for b in tensors.sequential(65536)]))
    if plots_on(state, "pretrain_predictions"):
        fig = plots.plot_prediction_histograms(all_p.numpy(), data.train.cond[sample], list(data.condition_values),
                                               title=f"Untrained model: predicted probability per condition "
                                                     f"({len(sample)} sampled train rows)")
        state.figures["preds_untrained"] = _save(state, fig, state.folders.comparison, "preds_untrained.png")
    return {"architecture": str(model), "parameters": count_parameters(model), "input_width": model.input_width,
            "batch_rows": len(batch), "logit_min": float(logits.min()), "logit_max": float(logits.max()),
            "p_min": float(p.min()), "p_max": float(p.max())}


def mid_epoch_hook(state, loss: str) -> Callable[[int, np.ndarray], None]:
    """Prediction histograms of the evaluation split at each mid-epoch evaluation."""
    folder = state.folders.loss(loss)
    _, split, _ = evaluation_split(state.data, state.cfg)

    def on_eval(step: int, p: np.ndarray) -> None:
        fig = plots.plot_prediction_histograms(p, split.cond, list(state.data.condition_values),
                                               title=f"{LOSSES[loss].label}: eval predictions at step {step}")
        _save(state, fig, folder, f"preds_step{step:06d}.png")
    return on_eval


def _print_loss_tables(state, loss: str, result: TrialResult, per_cond: pl.DataFrame) -> None:
    top = state.cfg.evaluation.print_per_condition_top_k or None
    if not result.has_labels:
        print(f"{loss}: evaluation split '{result.evaluation_split}' has no usable labels; label metrics skipped")
        return
    print(f"{loss} summary on {result.evaluation_split} ({state.cfg.evaluation.ece_method} ECE):")
    print(format_table(pl.DataFrame({"metric": list(result.metrics), "value": list(result.metrics.values())})))
    if result.eval_compare:
        print(f"{loss} model's {result.evaluation_split} loss under each loss definition: "
              + ", ".join(f"{k} {v:.6g}" for k, v in result.eval_compare.items()))
    print(f"{loss} per-condition metrics (sorted by base rate):")
    print(format_table(per_cond, max_rows=top, max_width=compare.terminal_width()))
    if result.grad_sq:
        print(f"{loss} squared logit-gradient diagnostics (LE / BCE):")
        print(format_table(pl.DataFrame(result.grad_sq), max_rows=top))


def _eval_rows(state):
    _, split, _ = evaluation_split(state.data, state.cfg)
    return split


def against_truth(table: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    """A per-condition table as the calibration figures draw it, and the reference in words: against the true click
    probability where the synthetic truth is stored (free of the evaluation clicks' noise: what report.md reads
    calibration from; an ad without an evaluation click still has a ratio), else against the evaluation click rate."""
    if "calibration_ratio_true" in table.columns and table["calibration_ratio_true"].cast(pl.Float64).is_finite().any():
        return table.with_columns(pl.col("true_rate").alias("base_rate"),
                                  pl.col("calibration_ratio_true").alias("calibration_ratio")), "true click probability"
    return table, "evaluation click rate"


def comparison_figure_table(tables: dict[str, pl.DataFrame], baseline: str,
                            candidate: str) -> tuple[pl.DataFrame, str]:
    """The comparison figure's table: :func:`compare.compare_conditions` of every loss's per-condition table as
    :func:`against_truth` draws it (each ``calibration_ratio_<loss>`` and ``base_rate`` against the true click
    probability where the data hold it), every trained loss's ratio joined in, and the reference in words."""
    drawn = {loss: against_truth(t)[0] for loss, t in tables.items()}
    wide = compare.compare_conditions(drawn, baseline=baseline, candidate=candidate)
    for loss, table in drawn.items():  # every trained loss's ratio, not just the first pair's
        if f"calibration_ratio_{loss}" not in wide.columns:
            wide = wide.join(table.select("condition", pl.col("calibration_ratio").alias(f"calibration_ratio_{loss}")),
                             on="condition", how="left")
    return wide, against_truth(next(iter(tables.values())))[1]


def _loss_plots(state, loss: str, result: TrialResult, per_cond: pl.DataFrame, folder: Path) -> None:
    label, data = LOSSES[loss].label, state.data
    split = _eval_rows(state)
    figs = {"loss.png": plots.plot_loss_curves(result.curves, title=f"{label}: train and eval loss"),
            "preds.png": plots.plot_prediction_histograms(result.eval_predictions, split.cond,
                                                          list(data.condition_values),
                                                          title=f"{label}: {result.evaluation_split} predictions")}
    rates = train_rate_vs_eval_prediction(data, split.cond, result.eval_predictions)
    observed = np.full(data.num_conditions, np.nan)  # eval click rate per condition, when labelled
    if per_cond.height:
        observed[per_cond["condition"].to_numpy()] = per_cond["base_rate"].to_numpy()
    figs["avg.png"] = plots.plot_avg_vs_train_rate(list(data.condition_values), rates["train_rate"].to_numpy(),
                                                   rates["eval_pred_mean"].to_numpy(), observed,
                                                   title=f"{label}: eval mean prediction vs train click rate")
    if per_cond.height:
        against, words = against_truth(per_cond)
        figs["calibration.png"] = plots.plot_calibration_ratio(
            {label: against}, title=f"{label}: calibration ratio per condition (vs the {words})", reference=words)
        if state.cfg.plots.reliability:
            figs["reliability.png"] = plots.plot_reliability_diagram({label: result.reliability},
                                                                     title=f"{label}: reliability diagram")
    if result.le_stats and plots_on(state, "le_stats"):
        figs["le_stats.png"] = plots.plot_le_stats(_le_stats_table(state, result), title=(
            f"{label}: LE numerator and denominator per condition (numerator / denominator < 1: beats a constant "
            "prediction of the ad's base rate)"))
    if result.grad_sq:
        figs["grad_sq.png"] = plots.plot_grad_sq(result.grad_sq)
    for name, fig in figs.items():
        state.figures[f"{loss}:{name}"] = _save(state, fig, folder, name)
    write_csv(rates, folder / "train_rate_vs_eval_prediction.csv")
    print(f"{loss}: per-condition train click rate vs {result.evaluation_split} mean prediction:")
    print(format_table(rates, max_rows=state.cfg.evaluation.print_per_condition_top_k or None,
                       max_width=compare.terminal_width()))


def _named(state, table: pl.DataFrame, column: str = "value") -> pl.DataFrame:
    """``table`` with the source value of each condition id joined in as ``column``."""
    names = pl.DataFrame({"condition": np.arange(state.data.num_conditions), column: list(state.data.condition_values)})
    return table.join(names.with_columns(pl.col("condition").cast(table.schema["condition"])), on="condition",
                      how="left")


def _le_stats_table(state, result: TrialResult) -> pl.DataFrame:
    return _named(state, pl.DataFrame(result.le_stats).filter(pl.col("count") > 0), "name")


def _test_predictions(state, loss: str, result: TrialResult, folder: Path) -> None:
    """Step 9: predictions on the test set (no label metrics), saved as Parquet."""
    test = state.data.test
    if result.test_predictions is None or test is None:
        return
    p = result.test_predictions
    names = state.data.condition_values
    frame = pl.DataFrame({"row_id": test.row_id, "condition": test.cond.astype(np.int64),
                          "condition_value": pl.Series(list(names)).gather(test.cond), "p": p})
    atomic_write_with(folder / "test_predictions.parquet", lambda tmp: frame.write_parquet(tmp))
    print(f"{loss}: test-set predictions ({len(p)} rows, labels not used):")
    print(format_table(prediction_summary(p, test.cond, names), max_rows=state.cfg.evaluation.print_per_condition_top_k
                       or None))
    if drawing(state):
        fig = plots.plot_prediction_histograms(p, test.cond, list(names), title=f"{LOSSES[loss].label}: test predictions")
        state.figures[f"{loss}:test_preds.png"] = _save(state, fig, folder, "test_preds.png")


def report_loss(state, loss: str, result: TrialResult) -> None:
    """Print the loss's evaluation and write its folder (plots, metrics.json, per_condition.csv, ...)."""
    folder = state.folders.loss(loss)
    per_cond = result.per_condition()
    if per_cond.height:
        per_cond = _named(state, per_cond)
    _print_loss_tables(state, loss, result, per_cond)
    if drawing(state):
        _loss_plots(state, loss, result, per_cond, folder)
    write_csv(per_cond, folder / "per_condition.csv")
    if result.le_stats:
        write_csv(_le_stats_table(state, result), folder / "le_stats.csv")
    if result.grad_sq:
        write_csv(pl.DataFrame(result.grad_sq), folder / "grad_sq.csv")
    atomic_write_json(folder / "metrics.json", {k: v for k, v in result.to_record().items()
                                                if k not in ("condition_sums", "reliability", "le_stats", "grad_sq")})
    _test_predictions(state, loss, result, folder)


def _comparison_pairs(state) -> list[tuple[str, str]]:
    from le_ray.report.sweep import comparison_pairs
    return [p for p in comparison_pairs(tuple(state.results)) if all(state.results[x].condition_sums for x in p)]


def comparison(state) -> None:
    """Step 7: BCE-vs-LE (and focal) per-condition tables, summary and closeness counts."""
    pairs = _comparison_pairs(state)
    if not pairs or not state.cfg.comparison.enabled:
        return
    print("\n=== comparison ===")
    folder, cfg = state.folders.comparison, state.cfg
    tables = {loss: _named(state, r.per_condition()) for loss, r in state.results.items() if r.condition_sums}
    summaries = {loss: r.metrics for loss, r in state.results.items() if r.metrics}
    closeness = compare.calibration_closeness(tables)
    write_csv(closeness, folder / "calibration_closeness.csv")
    width = compare.terminal_width()
    texts = [f"|1 - calibration ratio| per loss (calibration_closeness.csv has every ad):\n"
             f"{format_table(closeness, max_rows=cfg.comparison.top_k or None, max_width=width)}"]
    state.comparisons["closeness"] = {"table": closeness}
    for baseline, candidate in pairs:
        key = f"{LOSSES[candidate].folder}_vs_{LOSSES[baseline].folder}"
        table = compare.compare_conditions(tables, baseline=baseline, candidate=candidate, sort_by=cfg.comparison.sort_by)
        summary = compare.compare_summary(summaries, baseline=baseline, candidate=candidate)
        closer = compare.count_closer_conditions(tables, baseline=baseline, candidate=candidate)
        write_csv(table, folder / f"conditions_{key}.csv")
        write_csv(summary, folder / f"summary_{key}.csv")
        state.comparisons[key] = {"baseline": baseline, "candidate": candidate, "summary": summary,
                                  "conditions": table, "closer": closer}
        texts.append(f"{key} per condition (sorted by {cfg.comparison.sort_by}):\n"
                     f"{format_table(table, max_rows=cfg.comparison.top_k or None, max_width=width)}\n\n{key} summary (positive "
                     f"pct_change favours {LOSSES[candidate].label}):\n{format_table(summary)}\n"
                     f"conditions where {LOSSES[candidate].label}'s |pred_mean - base_rate| is smaller: "
                     f"{closer['candidate_closer']} of {closer['conditions']} (ties {closer['ties']})")
    text = "\n\n".join(texts)
    print(text)
    atomic_write_text(folder / "comparison.txt", text + "\n")
    if drawing(state):
        wide, words = comparison_figure_table(tables, *pairs[0])
        state.figures["comparison"] = _save(state, plots.plot_comparison_calibration(
            wide, title=f"Calibration ratio per condition by loss (vs the {words})", reference=words), folder,
            "comparison_calibration.png")
        series = {LOSSES[k].label: against_truth(t)[0] for k, t in tables.items()}
        state.figures["calibration_all"] = _save(state, plots.plot_calibration_ratio(
            series, title=f"Calibration ratio per condition (vs the {words})", reference=words), folder,
            "calibration.png")
        rel = {LOSSES[k].label: r.reliability for k, r in state.results.items() if r.reliability}
        if cfg.plots.reliability:
            state.figures["reliability_all"] = _save(state, plots.plot_reliability_diagram(rel), folder,
                                                     "reliability.png")


def post_training(state) -> None:
    """Step 10: re-plot the data distributions when ``plots.post_training_data``."""
    if plots_on(state, "post_training_data"):
        state.figures["data_distributions_post"] = distributions_plot(state, "data_distributions_post.png",
                                                                      "after training")
