"""The report of a sweep, rebuilt at any time from the stored trial files (no training).

Writes ``trials.parquet``, ``per_condition.parquet`` (metrics and additive sums per trial × condition),
``report/tables/*.csv``, ``report/plots/*.png`` and ``summary.md`` (:mod:`le_ray.report.summary_md`) into
the sweep folder, from the trials of the latest run's plan (``manifest.json``), the config of the latest
run (``config.history``) and the audit stored in the manifest; statistics in
:mod:`le_ray.report.sweep_stats`. Prints the verdict and terminal-wide tables at the end.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from le_ray.sweep import faults
from le_ray.atomic import atomic_write_text, atomic_write_with
from le_ray.metrics.compare import format_table, terminal_width
from le_ray.config import Config, resolve_config
from le_ray.registry import LOSSES, label
from le_ray.report.summary_md import CONDITION_COLUMNS, TEST_COLUMNS, SummaryContext, summary_markdown, verdicts
from le_ray.report.sweep_stats import SweepTables, comparison_pairs, compute_tables
from le_ray.report.tables import write_csv
from le_ray.report.tuning import best_so_far, load_tuning, tuning_markdown
from le_ray.sweep.store import SweepStore, per_condition_frame, trials_frame

__all__ = ["build_report", "comparison_pairs", "SweepTables", "compute_tables", "mean_reliability"]


def mean_reliability(records: list[dict[str, Any]], loss: str) -> dict[str, np.ndarray]:
    """Reliability bins averaged over seeds: mean avg_pred/avg_label/count, min–max band of avg_label."""
    tables = [r["reliability"] for r in records if r["loss"] == loss and r.get("reliability")]
    if not tables:
        return {}

    def stack(key: str) -> np.ndarray:  # [seeds, bins]; empty bins are null in JSON → NaN
        return np.array([[np.nan if v is None else v for v in t[key]] for t in tables], dtype=np.float64)

    avg_label = stack("avg_label")
    with warnings.catch_warnings():  # all-NaN bins (empty in every seed) stay NaN quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"bin": np.asarray(tables[0]["bin"]), "count": np.nanmean(stack("count"), 0),
                "avg_pred": np.nanmean(stack("avg_pred"), 0), "avg_label": np.nanmean(avg_label, 0),
                "avg_label_low": np.nanmin(avg_label, 0), "avg_label_high": np.nanmax(avg_label, 0)}


def _pair_plots(plots, out: Path, dpi: int, tables: SweepTables) -> dict[str, Path]:
    written = {}
    for key, deltas in tables.deltas.items():
        b, c = (label(tables.metric_tests[key][x][0]) for x in ("baseline", "candidate"))
        fig = plots.plot_paired_deltas(deltas, title=f"{c} vs {b}: paired metric deltas by seed (> 0 favours {c})")
        written[f"deltas_{key}"] = plots.save_figure(fig, out / f"deltas_{key}.png", dpi=dpi)
        cond = tables.condition_tests[key]
        if cond.height:
            fig = plots.plot_condition_gaps(cond, title=f"{c} vs {b}: per-condition calibration gap", baseline=b,
                                            candidate=c)
            written[f"condition_gaps_{key}"] = plots.save_figure(fig, out / f"condition_gaps_{key}.png", dpi=dpi)
    return written


def _plots(root: Path, cfg: Config, tables: SweepTables, records: list[dict[str, Any]]) -> dict[str, Path]:
    """Write the sweep's PNGs; returns name → path."""
    from le_ray.report import plots

    out, dpi = root / "report" / "plots", cfg.plots.dpi
    written = _pair_plots(plots, out, dpi, tables)
    if tables.calibration.height:
        names = " vs ".join(label(x) for x in cfg.losses)
        fig = plots.plot_calibration_by_rate(tables.calibration, excluded=tables.calibration.filter(
            pl.col("excluded"))["condition"].unique().to_list(), reference="true click rate" if tables.truth else
            "click rate", title=f"{names}: calibration by base rate, per ad")
        written["calibration_by_rate"] = plots.save_figure(fig, out / "calibration_by_rate.png", dpi=dpi)
    losses = sorted({r["loss"] for r in records}, key=list(LOSSES).index)
    reliab = {label(loss): t for loss in losses if (t := mean_reliability(records, loss))}
    if reliab:
        fig = plots.plot_reliability_diagram(reliab, title="Reliability (mean over seeds; band = min–max)")
        written["reliability"] = plots.save_figure(fig, out / "reliability.png", dpi=dpi)
    curves = {label(loss): [r["curves"] for r in records if r["loss"] == loss] for loss in losses}
    if any(curves.values()):
        fig = plots.plot_curves_band(curves, normalised=True, title="Train and eval normalised entropy by epoch "
                                     "(mean over seeds; band = min–max)")
        written["curves"] = plots.save_figure(fig, out / "loss_curves.png", dpi=dpi)
    return written


def _tuning(root: Path, cfg: Config) -> list[str]:
    summary = load_tuning(root)
    if summary is None:
        return []
    from le_ray.glossary import direction
    from le_ray.report import plots

    higher = direction(summary["metric"])
    finals = {r["loss"]: [s["final"] for s in r["samples"]] for r in summary["losses"]}
    curves = {loss: best_so_far(values, higher) for loss, values in finals.items()}
    path = plots.save_figure(plots.plot_tuning_curves(curves, finals, metric=summary["metric"]),
                             root / "report" / "plots" / "tuning_curves.png", dpi=cfg.plots.dpi)
    return tuning_markdown(summary, path, root)


def _write_tables(root: Path, tables: SweepTables) -> None:
    folder = root / "report" / "tables"
    write_csv(tables.summary, folder / "summary_by_loss.csv")
    for key in tables.metric_tests:
        write_csv(tables.metric_tests[key], folder / f"metric_tests_{key}.csv")
        write_csv(tables.deltas[key], folder / f"deltas_by_seed_{key}.csv")
        if tables.condition_tests[key].height:
            write_csv(tables.condition_tests[key], folder / f"condition_tests_{key}.csv")
    for loss, table in tables.pooled.items():
        if table.height:
            write_csv(table, folder / f"per_condition_pooled_{LOSSES[loss].folder}.csv")


def _status(store: SweepStore, manifest: dict, records: list[dict]) -> dict[str, Any]:
    planned = manifest.get("trials", [])
    stored = {r["trial_id"] for r in records}
    failures = store.failures()
    missing = [{**t, "error": failures.get(t["trial_id"], {}).get("error")} for t in planned
               if t["trial_id"] not in stored]
    other = len(store.finished_ids() - {t["trial_id"] for t in planned})
    return {"planned": len(planned), "stored": len(stored), "missing": missing, "other": other,
            "failed": [m for m in missing if m["error"]]}


def build_report(sweep_dir: str | Path, *, echo: Callable[..., None] = print) -> Path:
    """Rebuild every table, plot and ``summary.md`` of a sweep from its stored trials."""
    store = SweepStore(Path(sweep_dir).resolve())
    cfg = resolve_config(store.latest_config())
    manifest = store.read_json("manifest.json")
    records = store.load_trials([t["trial_id"] for t in manifest.get("trials", [])])
    trials = trials_frame(records)
    per_cond = per_condition_frame(records, manifest.get("data", {}).get("condition_values"))
    atomic_write_with(store.root / "trials.parquet", lambda tmp: trials.write_parquet(tmp))
    atomic_write_with(store.root / "per_condition.parquet", lambda tmp: per_cond.write_parquet(tmp))
    excluded = set((manifest.get("audit") or {}).get("excluded_conditions", []))
    tables = compute_tables(cfg, trials, per_cond, records, excluded)
    _write_tables(store.root, tables)
    faults.report_pause()
    written = _plots(store.root, cfg, tables, records) if records else {}
    ctx = SummaryContext(cfg, store.root, manifest, tables, _status(store, manifest, records), written,
                         _tuning(store.root, cfg))
    path = atomic_write_text(store.root / "summary.md", summary_markdown(ctx) + "\n")
    _echo_tables(ctx, echo)
    return path


def _echo_tables(ctx: SummaryContext, echo) -> None:
    width, tables, status = terminal_width(), ctx.tables, ctx.status
    echo(f"\n== per-loss summary ({status['stored']}/{status['planned']} trials) ==")
    echo(format_table(tables.summary, max_width=width))
    for key, tests in tables.metric_tests.items():
        echo(f"\n== {key.replace('_', ' ')}: paired Wilcoxon (delta > 0 favours the first) ==")
        echo(format_table(tests.select([c for c in TEST_COLUMNS if c in tests.columns]), max_width=width))
        cond = tables.condition_tests.get(key)
        if cond is not None and cond.height:
            echo(format_table(cond.select([c for c in CONDITION_COLUMNS if c in cond.columns]), max_width=width,
                              max_rows=ctx.cfg.repeats.per_condition_top_k or None))
    echo("\n== verdict ==")
    for line in verdicts(ctx):
        echo(line)
