"""The report of a sweep, rebuilt at any time from the stored trial files (no training).

Writes ``trials.parquet``, ``per_condition.parquet`` (metrics and additive sums per trial × condition),
``report/tables/*.csv``, ``report/plots/*.png`` and ``summary.md`` (:mod:`le_ray.report.summary_md`) into
the sweep folder, from the trials of the latest run's plan (``manifest.json``), the config of the latest
run (``config.history``) and the audit stored in the manifest; statistics in
:mod:`le_ray.report.sweep_stats`. Every per-ad CSV carries ``condition`` and ``ad_id`` (the raw condition value);
``base_rate`` is always the evaluation click rate Σy / n, and the per-ad tests and calibration ratios measured
against the synthetic truth name their pooled rate Σ p_true / n ``true_rate``, as the pooled per-ad tables do.
Prints headed, terminal-wide tables (naming the CSV that holds every column) and then the verdict, its bottom
line first.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from le_ray.sweep import faults
from le_ray.atomic import atomic_write_text, atomic_write_with
from le_ray.metrics.compare import format_table, terminal_width
from le_ray.config import Config, resolve_config
from le_ray.errors import ResultsError
from le_ray.registry import LOSSES, label
from le_ray.report.summary_md import (CONDITION_COLUMNS, TEST_COLUMNS, SummaryContext, build_verdict,
                                      condition_table, noise_bands, resume_command, shown_table, summary_markdown,
                                      table_files, verdict_inputs)
from le_ray.report.verdict import band_edges, untestable_conditions, verdict_text
from le_ray.report.sweep_stats import SweepTables, comparison_pairs, compute_tables
from le_ray.report.tables import write_csv
from le_ray.report.tuning import best_so_far, load_tuning, ranked_finals, tuning_markdown
from le_ray.sweep.store import SweepStore, per_condition_frame, trials_frame

__all__ = ["build_report", "render_here", "comparison_pairs", "SweepTables", "compute_tables", "mean_reliability",
           "console_table", "CALIBRATION_CSV"]

CALIBRATION_CSV = "calibration_ratio_by_seed.csv"  #: per loss, seed and ad: the calibration ratio of the bottom line


def _finite_stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column mean, min and max of ``a`` [S, B] over its finite entries; NaN where a column has none (no warning)."""
    ok = np.isfinite(a)
    n = ok.sum(axis=0)
    mean = np.divide(np.where(ok, a, 0.0).sum(axis=0), n, out=np.full(a.shape[1], np.nan), where=n > 0)
    low = np.where(n > 0, np.where(ok, a, np.inf).min(axis=0), np.nan)
    high = np.where(n > 0, np.where(ok, a, -np.inf).max(axis=0), np.nan)
    return mean, low, high


def mean_reliability(records: list[dict[str, Any]], loss: str) -> dict[str, np.ndarray]:
    """Reliability bins averaged over seeds: mean avg_pred/avg_label/count, min–max band of avg_label; a bin
    empty in every seed stays NaN."""
    tables = [r["reliability"] for r in records if r["loss"] == loss and r.get("reliability")]
    if not tables:
        return {}

    def stack(key: str) -> np.ndarray:  # [seeds, bins]; empty bins are null in JSON → NaN
        return np.array([[np.nan if v is None else v for v in t[key]] for t in tables], dtype=np.float64)

    label_mean, label_low, label_high = _finite_stats(stack("avg_label"))
    return {"bin": np.asarray(tables[0]["bin"]), "count": _finite_stats(stack("count"))[0],
            "avg_pred": _finite_stats(stack("avg_pred"))[0], "avg_label": label_mean,
            "avg_label_low": label_low, "avg_label_high": label_high}


def _pair_jobs(plots, dpi: int, tables: SweepTables, cfg: Config) -> dict[str, tuple[str, Any]]:
    """name → (file name, FigureJob) of each comparison's paired deltas and per-ad calibration gaps (each ad marked
    untestable where the verdict calls it so)."""
    jobs = {}
    for key, deltas in tables.deltas.items():
        b, c = (label(tables.metric_tests[key][x][0]) for x in ("baseline", "candidate"))
        title = f"{c} vs {b}: paired metric deltas by seed (delta > 0 favours {c})"  # the plot adds no 2nd note
        jobs[f"deltas_{key}"] = (f"deltas_{key}.png",
                                 plots.FigureJob(plots.plot_paired_deltas, (deltas,), {"title": title}, dpi))
        cond = tables.condition_tests[key]
        if cond.height:
            tests = tables.metric_tests[key]
            v = verdict_inputs(cfg, tests["baseline"][0], tests["candidate"][0], tests, cond, tables.calibration,
                               tables.truth)
            cond = cond.with_columns(untestable_conditions(v))
            jobs[f"condition_gaps_{key}"] = (f"condition_gaps_{key}.png", plots.FigureJob(
                plots.plot_condition_gaps, (cond,), {"title": f"{c} vs {b}: per-ad calibration gap (points: ad ids)",
                                                      "baseline": b, "candidate": c}, dpi))
    return jobs


def _figure_jobs(cfg: Config, tables: SweepTables, records: list[dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    """name → (file name, FigureJob) of every PNG of the sweep: plain data, drawable in any process."""
    from le_ray.report import plots

    dpi = cfg.plots.dpi
    jobs = _pair_jobs(plots, dpi, tables, cfg)
    if tables.calibration.height:
        names = " vs ".join(label(x) for x in cfg.losses)
        excluded = tables.calibration.filter(pl.col("excluded"))["condition"].unique().to_list()
        jobs["calibration_by_rate"] = ("calibration_by_rate.png", plots.FigureJob(
            plots.plot_calibration_by_rate, (tables.calibration,),
            {"excluded": excluded, "reference": "true click rate" if tables.truth else "click rate",
             "title": f"{names}: calibration by {'true click rate' if tables.truth else 'click rate'}, per ad "
                      "(labels: ad ids)", "edges": band_edges(cfg),
             "noise": noise_bands(tables.truth, cfg.repeats.resample_data)}, dpi))  # the verdict's noise range
    losses = sorted({r["loss"] for r in records}, key=list(LOSSES).index)
    reliab = {label(loss): t for loss in losses if (t := mean_reliability(records, loss))}
    if reliab:
        jobs["reliability"] = ("reliability.png", plots.FigureJob(
            plots.plot_reliability_diagram, (reliab,), {"title": "Reliability (mean over seeds; band = min–max)"},
            dpi))
    curves = {label(loss): [r["curves"] for r in records if r["loss"] == loss and r.get("curves")] for loss in losses}
    if any(curves.values()):
        jobs["curves"] = ("loss_curves.png", plots.FigureJob(
            plots.plot_curves_band, (curves,), {"normalised": True, "title": "Train and eval normalised entropy by "
                                                "epoch (mean over seeds; band = min–max)"}, dpi))
    return jobs


def render_here(jobs: list) -> list[bytes]:
    """Draw each figure job in this process, in order (``le-ray report``; the default of :func:`build_report`)."""
    from le_ray.report.plots import render_png

    return [render_png(job) for job in jobs]


def _plots(root: Path, cfg: Config, tables: SweepTables, records: list[dict[str, Any]],
           render: Callable[[list], list[bytes]]) -> dict[str, Path]:
    """Draw the sweep's PNGs through ``render`` (jobs → PNG bytes, in order) and write them; returns name → path."""
    from le_ray.report.plots import write_png

    jobs = _figure_jobs(cfg, tables, records)
    pngs = render([job for _, job in jobs.values()])
    out = root / "report" / "plots"
    return {name: write_png(out / filename, png) for (name, (filename, _)), png in zip(jobs.items(), pngs)}


def _tuning(root: Path, cfg: Config) -> tuple[list[str], dict[str, Any] | None]:
    """The tuning section's lines (and its plot) and ``tune/summary.json``; ([], None) for an untuned sweep."""
    summary = load_tuning(root)
    if summary is None:
        return [], None
    from le_ray.glossary import direction
    from le_ray.report import plots

    higher = direction(summary["metric"])
    finals = {r["loss"]: ranked_finals(r) for r in summary["losses"]}
    curves = {loss: best_so_far(values, higher) for loss, values in finals.items()}
    path = plots.save_figure(plots.plot_tuning_curves(curves, finals, metric=summary["metric"]),
                             root / "report" / "plots" / "tuning_curves.png", dpi=cfg.plots.dpi)
    return tuning_markdown(summary, path, root), summary


def _write_tables(root: Path, tables: SweepTables) -> None:
    """Every CSV of the report; the per-ad condition tests and calibration ratios name their pooled reference
    rate ``true_rate`` when it is the synthetic truth (:func:`le_ray.report.summary_md.condition_table`)."""
    folder = root / "report" / "tables"
    write_csv(tables.summary, folder / table_files()["summary"])
    for key in tables.metric_tests:
        names = table_files(key)
        write_csv(tables.metric_tests[key], folder / names["metrics"])
        write_csv(tables.deltas[key], folder / names["deltas"])
        if tables.condition_tests[key].height:
            write_csv(condition_table(tables.condition_tests[key], tables.truth), folder / names["conditions"])
    for loss, table in tables.pooled.items():
        if table.height:
            write_csv(table, folder / table_files(loss=loss)["pooled"])
    if tables.calibration.height:
        write_csv(condition_table(tables.calibration, tables.truth), folder / CALIBRATION_CSV)


def _status(store: SweepStore, manifest: dict, records: list[dict]) -> dict[str, Any]:
    """Planned, stored, missing, failed and other trials; ``by_loss``: loss → {planned: trials of the plan,
    stored: the seeds of its stored trials} (which comparisons have paired seeds yet)."""
    planned = manifest.get("trials", [])
    stored = {r["trial_id"] for r in records}
    failures = store.failures()
    missing = [{**t, "error": failures.get(t["trial_id"], {}).get("error")} for t in planned
               if t["trial_id"] not in stored]
    other = len(store.finished_ids(excluding=(t["trial_id"] for t in planned)))  # the planned ones are read already
    by_loss: dict[str, dict[str, Any]] = {}
    for t in planned:
        entry = by_loss.setdefault(t["loss"], {"planned": 0, "stored": []})
        entry["planned"] += 1
        if t["trial_id"] in stored:
            entry["stored"].append(t["seed"])
    return {"planned": len(planned), "stored": len(stored), "missing": missing, "other": other,
            "failed": [m for m in missing if m["error"]], "by_loss": by_loss, "ran_on": _ran_on(records)}


def _ran_on(records: list[dict]) -> dict[str, dict[str, int]]:
    """How many stored trials ran on each device kind (``cpu``, ``cuda``, ...), at each float32 matmul precision
    (``highest`` FP32, ``high`` TF32) and, of those on a CPU, with each torch thread count (it orders the float sums;
    records from before ``torch_threads`` was stored are left out): a sweep resumed elsewhere, or with another
    ``ray.cpus_per_trial``, can mix them, which the trial ids do not see."""
    kind = [str(r.get("device") or "unknown").split(" ")[0].split(":")[0] for r in records]
    precisions = Counter(str(r.get("matmul_precision") or "unknown") for r in records)
    threads = Counter(str(r["torch_threads"]) for r, k in zip(records, kind)
                      if k == "cpu" and r.get("torch_threads") is not None)
    return {"device": dict(Counter(kind)), "matmul_precision": dict(precisions), "torch_threads": dict(threads)}


def build_report(sweep_dir: str | Path, *, echo: Callable[..., None] = print,
                 render: Callable[[list], list[bytes]] = render_here) -> Path:
    """Rebuild every table, plot and ``summary.md`` of a sweep from its stored trials.

    ``render``: draws the figure jobs (plain data, :class:`le_ray.report.plots.FigureJob`) into PNG bytes, in
    order; by default here, one after the other (the sweep driver hands them to its idle Ray workers)."""
    store = SweepStore(Path(sweep_dir).resolve())
    cfg = resolve_config(store.latest_config())
    if not (store.root / "manifest.json").exists():  # stopped while Ray started: no trial was planned yet
        raise ResultsError(f"the sweep {str(store.root)!r} stopped before its first trial (it has no manifest.json "
                           f"yet), so there is nothing to report; resume it with {resume_command(store.root)}")
    manifest = store.read_json("manifest.json")
    # the tables below replace the old ones first: a report cut short (a stop, a crash) must not leave the old
    # verdict beside them, so summary.md exists only once it is the verdict of the files around it
    (store.root / "summary.md").unlink(missing_ok=True)
    records = store.load_trials([t["trial_id"] for t in manifest.get("trials", [])])
    trials = trials_frame(records)
    per_cond = per_condition_frame(records, manifest.get("data", {}).get("condition_values"))
    atomic_write_with(store.root / "trials.parquet", lambda tmp: trials.write_parquet(tmp))
    atomic_write_with(store.root / "per_condition.parquet", lambda tmp: per_cond.write_parquet(tmp))
    excluded = set((manifest.get("audit") or {}).get("excluded_conditions", []))
    tables = compute_tables(cfg, trials, per_cond, records, excluded)
    _write_tables(store.root, tables)
    faults.report_pause()
    drawing = records and cfg.plots.enabled and cfg.output.save_plots  # the documented switches, as in `le-ray run`
    written = _plots(store.root, cfg, tables, records, render) if drawing else {}
    tuning_lines, tuning_summary = _tuning(store.root, cfg)
    ctx = SummaryContext(cfg, store.root, manifest, tables, _status(store, manifest, records), written,
                         tuning_lines, tuning_summary)
    verdict = build_verdict(ctx)
    path = atomic_write_text(store.root / "summary.md", summary_markdown(ctx, verdict) + "\n")
    _echo_tables(ctx, echo)
    for line in ["", "== verdict (bottom line first; the same text opens summary.md) ==",
                 *verdict_text(verdict, terminal_width())]:
        echo(line)
    return path


def console_table(df: pl.DataFrame, csv: str, *, width: int, max_rows: int | None = None) -> str:
    """``df`` as fixed-width text for a terminal ``width`` wide; when columns are cut, the note names ``csv``
    (the file under report/tables/ that holds them all)."""
    return format_table(df, max_width=width, max_rows=max_rows, csv=f"report/tables/{csv}")


def _echo_tables(ctx: SummaryContext, echo) -> None:
    width, tables, status = terminal_width(), ctx.tables, ctx.status
    echo(f"\n== per-loss summary over seeds, {status['stored']}/{status['planned']} trials "
         f"(report/tables/{table_files()['summary']}) ==")
    echo(console_table(tables.summary, table_files()["summary"], width=width))
    for key, tests in tables.metric_tests.items():
        names, pair = table_files(key), key.replace("_", " ")
        first = label(tests["candidate"][0])
        echo(f"\n== {pair}: paired Wilcoxon per metric, delta > 0 favours {first} (report/tables/{names['metrics']}) ==")
        echo(console_table(tests.select([c for c in TEST_COLUMNS if c in tests.columns]), names["metrics"],
                           width=width))
        cond = tables.condition_tests.get(key)
        if cond is not None and cond.height:
            echo(f"\n== {pair}: per-ad calibration tests, ad_id = raw condition value "
                 f"(report/tables/{names['conditions']}) ==")
            echo(console_table(shown_table(cond, CONDITION_COLUMNS, tables.truth), names["conditions"],
                               width=width, max_rows=ctx.cfg.repeats.per_condition_top_k
                               or ctx.cfg.evaluation.print_per_condition_top_k or None))  # the CSV holds every ad
