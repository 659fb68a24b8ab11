"""The report of a sweep, rebuilt at any time from the stored trial files (no training).

Statistics run on complete pairs only (seeds where both losses of a comparison finished):
per-loss summaries, metric-level paired Wilcoxon tests with rank-biserial effect sizes and
bootstrap CIs (delta > 0 favours the candidate: LE vs BCE, focal vs BCE, LE vs focal), and
per-condition calibration tests with Holm and Benjamini–Hochberg adjusted p-values. Writes
``trials.parquet``, ``per_condition.parquet``, ``report/tables/*.csv``, ``report/plots/*.png`` and
``summary.md`` into the sweep folder.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import polars as pl

from le_ray import faults
from le_ray.config import Config, resolve_config
from le_ray.registry import LOSSES, label
from le_ray.atomic import atomic_write_text, atomic_write_with
from le_ray.report.tables import format_table, markdown_table, write_csv
from le_ray.results import SweepStore, per_condition_frame, trials_frame
from le_ray.stats import REPEAT_METRICS, calibration_tests_from_sums, metric_tests, summarize_runs

__all__ = ["build_report", "comparison_pairs", "SweepTables", "compute_tables"]



def comparison_pairs(losses: tuple[str, ...]) -> list[tuple[str, str]]:
    """(baseline, candidate) pairs: LE vs BCE; with focal also focal vs BCE and LE vs focal."""
    pairs = []
    if {"bce", "localized_entropy"} <= set(losses):
        pairs.append(("bce", "localized_entropy"))
    if "focal" in losses:
        pairs += [(b, c) for b, c in (("bce", "focal"), ("focal", "localized_entropy")) if {b, c} <= set(losses)]
    return pairs


@dataclass
class SweepTables:
    """Everything the report shows, as Polars frames keyed by a file-friendly name."""
    summary: pl.DataFrame
    metric_tests: dict[str, pl.DataFrame] = field(default_factory=dict)
    condition_tests: dict[str, pl.DataFrame] = field(default_factory=dict)
    deltas: dict[str, pl.DataFrame] = field(default_factory=dict)


def _pair_key(baseline: str, candidate: str) -> str:
    return f"{label(candidate)}_vs_{label(baseline)}"


def _seed_deltas(trials: pl.DataFrame, baseline: str, candidate: str) -> pl.DataFrame:
    """Long table metric, seed, delta (oriented: > 0 favours the candidate) over complete pairs."""
    metrics = [m for m in REPEAT_METRICS if m in trials.columns]
    b = trials.filter(pl.col("loss") == baseline).select("seed", *metrics)
    c = trials.filter(pl.col("loss") == candidate).select("seed", *metrics)
    joined = b.join(c, on="seed", suffix="__c").sort("seed")
    rows = []
    for m in metrics:
        sign = 1.0 if REPEAT_METRICS[m] else -1.0
        delta = sign * (joined[f"{m}__c"].to_numpy() - joined[m].to_numpy())
        rows.append(pl.DataFrame({"metric": [m] * joined.height, "seed": joined["seed"], "delta": delta}))
    return pl.concat(rows) if rows else pl.DataFrame({"metric": [], "seed": [], "delta": []})


def _condition_sums(per_cond: pl.DataFrame, loss: str, seeds: np.ndarray, conditions: np.ndarray):
    """[S, C] count, Σy, Σp of ``loss`` over sorted ``seeds`` × sorted ``conditions`` (missing rows → 0)."""
    sub = per_cond.filter((pl.col("loss") == loss) & pl.col("seed").is_in(seeds.tolist()))
    i = np.searchsorted(seeds, sub["seed"].to_numpy())
    j = np.searchsorted(conditions, sub["condition"].to_numpy())
    count = sub["count"].to_numpy().astype(np.float64)
    n, sy, sp = (np.zeros((len(seeds), len(conditions))) for _ in range(3))
    n[i, j] = count
    sy[i, j] = np.nan_to_num(sub["base_rate"].to_numpy() * count)
    sp[i, j] = np.nan_to_num(sub["pred_mean"].to_numpy() * count)
    return n, sy, sp


def _condition_tests(cfg: Config, per_cond: pl.DataFrame, baseline: str, candidate: str) -> pl.DataFrame:
    if per_cond.height == 0:
        return pl.DataFrame()
    seeds_b = set(per_cond.filter(pl.col("loss") == baseline)["seed"].to_list())
    seeds_c = set(per_cond.filter(pl.col("loss") == candidate)["seed"].to_list())
    seeds = np.array(sorted(seeds_b & seeds_c))
    if not len(seeds):
        return pl.DataFrame()
    conditions = np.sort(per_cond["condition"].unique().to_numpy())
    n, sy, sb = _condition_sums(per_cond, baseline, seeds, conditions)
    _, _, sc = _condition_sums(per_cond, candidate, seeds, conditions)
    rep = cfg.repeats
    table = calibration_tests_from_sums(n, sy, sb, sc, shared_data=not rep.resample_data, alternative=rep.alternative,
                                        zero_method=rep.zero_method, min_count=rep.per_condition_min_count,
                                        alpha=rep.per_condition_alpha, correction=rep.per_condition_correction,
                                        sort_by=rep.per_condition_sort_by)
    # calibration_tests_from_sums numbers columns 0..C-1; map back to condition ids and values
    ids = pl.DataFrame({"condition": np.arange(len(conditions), dtype=np.int64), "condition_id": conditions})
    values = per_cond.select(pl.col("condition").alias("condition_id"), "value").unique("condition_id") \
        if "value" in per_cond.columns else None
    table = table.join(ids, on="condition", how="left").drop("condition").rename({"condition_id": "condition"})
    if values is not None:
        table = table.join(values.rename({"condition_id": "condition"}), on="condition", how="left")
    return table.select("condition", *[c for c in table.columns if c != "condition"])


def compute_tables(cfg: Config, trials: pl.DataFrame, per_cond: pl.DataFrame) -> SweepTables:
    """Per-loss summary, metric tests, per-condition tests and seed deltas for every comparison pair."""
    rep = cfg.repeats
    tables = SweepTables(summarize_runs(trials) if trials.height else pl.DataFrame())
    present = tuple(trials["loss"].unique().to_list()) if trials.height else ()
    for baseline, candidate in comparison_pairs(cfg.losses):
        if baseline not in present or candidate not in present:
            continue
        key = _pair_key(baseline, candidate)
        tables.metric_tests[key] = metric_tests(trials, baseline=baseline, candidate=candidate,
                                                alternative=rep.alternative, zero_method=rep.zero_method,
                                                bootstrap_samples=rep.bootstrap_samples, seed=cfg.project.seed,
                                                confidence=rep.bootstrap_confidence)
        tables.condition_tests[key] = _condition_tests(cfg, per_cond, baseline, candidate)
        tables.deltas[key] = _seed_deltas(trials, baseline, candidate)
    return tables


def mean_reliability(records: list[dict[str, Any]], loss: str) -> dict[str, np.ndarray]:
    """Reliability bins averaged over seeds: mean avg_pred/avg_label/count, min–max band of avg_label."""
    tables = [r["reliability"] for r in records if r["loss"] == loss and r.get("reliability")]
    if not tables:
        return {}

    def stack(key: str) -> np.ndarray:  # [seeds, bins]; empty bins are null in JSON → NaN
        return np.array([[np.nan if v is None else v for v in t[key]] for t in tables], dtype=np.float64)

    label = stack("avg_label")
    with warnings.catch_warnings():  # all-NaN bins (empty in every seed) stay NaN quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"bin": np.asarray(tables[0]["bin"]), "count": np.nanmean(stack("count"), 0),
                "avg_pred": np.nanmean(stack("avg_pred"), 0), "avg_label": np.nanmean(label, 0),
                "avg_label_low": np.nanmin(label, 0), "avg_label_high": np.nanmax(label, 0)}


def _plots(store_root: Path, cfg: Config, tables: SweepTables, records: list[dict[str, Any]]) -> dict[str, Path]:
    """Write the sweep's PNGs; returns name → path."""
    from le_ray.report import plots

    out, dpi = store_root / "report" / "plots", cfg.plots.dpi
    written: dict[str, Path] = {}
    for key, deltas in tables.deltas.items():
        fig = plots.plot_paired_deltas(deltas, title=f"{key.replace('_', ' ')}: paired metric deltas by seed")
        written[f"deltas_{key}"] = plots.save_figure(fig, out / f"deltas_{key}.png", dpi=dpi)
    for key, cond in tables.condition_tests.items():
        if cond.height:
            tests = tables.metric_tests[key]
            fig = plots.plot_condition_gaps(cond, title=f"{key.replace('_', ' ')}: per-condition |mean p − rate|",
                                            baseline=label(tests["baseline"][0]),
                                            candidate=label(tests["candidate"][0]))
            written[f"condition_gaps_{key}"] = plots.save_figure(fig, out / f"condition_gaps_{key}.png", dpi=dpi)
    losses = sorted({r["loss"] for r in records}, key=list(LOSSES).index)
    reliab = {label(loss): t for loss in losses if (t := mean_reliability(records, loss))}
    if reliab:
        fig = plots.plot_reliability_diagram(reliab, title="Reliability (mean over seeds; band = min–max)")
        written["reliability"] = plots.save_figure(fig, out / "reliability.png", dpi=dpi)
    curves = {label(loss): [r["curves"] for r in records if r["loss"] == loss] for loss in losses}
    if any(curves.values()):
        fig = plots.plot_curves_band(curves, title="Loss curves (mean over seeds; band = min–max)")
        written["curves"] = plots.save_figure(fig, out / "loss_curves.png", dpi=dpi)
    return written


def _write_tables(root: Path, tables: SweepTables) -> list[Path]:
    folder = root / "report" / "tables"
    paths = [write_csv(tables.summary, folder / "summary_by_loss.csv")]
    for key in tables.metric_tests:
        paths.append(write_csv(tables.metric_tests[key], folder / f"metric_tests_{key}.csv"))
        paths.append(write_csv(tables.deltas[key], folder / f"deltas_by_seed_{key}.csv"))
        if tables.condition_tests[key].height:
            paths.append(write_csv(tables.condition_tests[key], folder / f"condition_tests_{key}.csv"))
    return paths


def _summary_wide(summary: pl.DataFrame) -> pl.DataFrame:
    """metric × loss table of 'mean ± sd' strings for the summary."""
    if summary.height == 0:
        return summary
    text = summary.with_columns(pl.format("{} ± {}", pl.col("mean").round_sig_figs(5),
                                          pl.col("std").round_sig_figs(2)).alias("value"))
    return text.pivot(on="loss", index="metric", values="value")


_TEST_COLUMNS = ["metric", "n", "baseline_mean", "candidate_mean", "mean_delta", "median_delta", "statistic",
                 "p_value", "rank_biserial", "ci_low", "ci_high"]
_COND_COLUMNS = ["condition", "value", "count", "base_rate", "baseline_gap", "candidate_gap", "delta_mean", "n",
                 "p_value", "p_holm", "p_bh", "significant"]



def _pair_sections(cfg: Config, tables: SweepTables, plots_written: dict[str, Path], root: Path) -> list[str]:
    rep, lines = cfg.repeats, []
    for key, tests in tables.metric_tests.items():
        baseline, candidate = tests["baseline"][0], tests["candidate"][0]
        lines += [f"## {label(candidate)} vs {label(baseline)}", "",
                  f"Paired Wilcoxon signed-rank over seeds ({rep.alternative}, zero_method {rep.zero_method}); "
                  f"**delta > 0 favours {label(candidate)}**. Effect size: matched-pairs rank-biserial; "
                  f"CI: {rep.bootstrap_confidence:.0%} percentile bootstrap of the mean delta "
                  f"({rep.bootstrap_samples} resamples).", "",
                  markdown_table(tests.select([c for c in _TEST_COLUMNS if c in tests.columns])), ""]
        cond = tables.condition_tests.get(key, pl.DataFrame())
        if cond.height:
            sig = int(cond["significant"].sum())
            lines += [f"### Per-condition calibration ({label(candidate)} vs {label(baseline)})", "",
                      f"gap = |mean prediction − eval click rate| per condition and seed; {sig} of {cond.height} "
                      f"conditions significant at alpha {rep.per_condition_alpha} after "
                      f"{rep.per_condition_correction} correction (Holm and BH adjusted p-values both shown).", "",
                      markdown_table(cond.select([c for c in _COND_COLUMNS if c in cond.columns]),
                                     max_rows=rep.per_condition_top_k), ""]
        for name in (f"deltas_{key}", f"condition_gaps_{key}"):
            if name in plots_written:
                lines += [f"![{name}]({plots_written[name].relative_to(root)})", ""]
    return lines


def _summary_markdown(cfg: Config, manifest: dict, tables: SweepTables, status: dict, plots_written: dict[str, Path],
                      root: Path) -> str:
    lines = [f"# le_ray sweep `{root.name}`", "",
             f"- profile: `{cfg.experiment.active}`; source: `{cfg.source_key}`; losses: "
             f"{', '.join(label(x) for x in cfg.losses)}",
             f"- trials: {status['stored']} of {status['planned']} stored; {len(status['failed'])} failed; "
             f"seeds: {cfg.repeats.num_runs} (project.seed {cfg.project.seed}, stride {cfg.repeats.seed_stride})",
             f"- data: {manifest.get('data', {})}",
             f"- le_ray {manifest.get('le_ray_version')} (commit {manifest.get('git_commit')}), "
             f"packages {manifest.get('packages')}", ""]
    if status["missing"]:
        lines += ["**Missing trials** (statistics use complete pairs only):", ""]
        lines += [f"- {m['loss']} seed {m['seed']} (`{m['trial_id']}`){' — FAILED: ' + m['error'] if m.get('error') else ''}"
                  for m in status["missing"]] + [""]
    lines += ["## Per-loss summary (mean ± sd over seeds)", "", markdown_table(_summary_wide(tables.summary)), ""]
    lines += _pair_sections(cfg, tables, plots_written, root)
    for name, title in (("reliability", "Reliability diagrams"), ("curves", "Loss curves")):
        if name in plots_written:
            lines += [f"## {title}", "", f"![{name}]({plots_written[name].relative_to(root)})", ""]
    return "\n".join(lines)


def _status(store: SweepStore, manifest: dict, records: list[dict]) -> dict[str, Any]:
    planned = manifest.get("trials", [])
    stored = {r["trial_id"] for r in records}
    failures = store.failures()
    missing = [{**t, "error": failures.get(t["trial_id"], {}).get("error")} for t in planned
               if t["trial_id"] not in stored]
    return {"planned": len(planned), "stored": len(stored), "missing": missing,
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
    tables = compute_tables(cfg, trials, per_cond)
    _write_tables(store.root, tables)
    faults.report_pause()
    written = _plots(store.root, cfg, tables, records) if records else {}
    status = _status(store, manifest, records)
    text = _summary_markdown(cfg, manifest, tables, status, written, store.root)
    path = atomic_write_text(store.root / "summary.md", text + "\n")
    _echo_tables(cfg, tables, status, echo)
    return path


def _echo_tables(cfg: Config, tables: SweepTables, status: dict, echo) -> None:
    echo(f"\n== per-loss summary ({status['stored']}/{status['planned']} trials) ==")
    echo(format_table(tables.summary))
    for key, tests in tables.metric_tests.items():
        echo(f"\n== {key.replace('_', ' ')}: paired Wilcoxon (delta > 0 favours the first) ==")
        echo(format_table(tests.select([c for c in _TEST_COLUMNS if c in tests.columns])))
        cond = tables.condition_tests.get(key)
        if cond is not None and cond.height:
            top = cfg.repeats.per_condition_top_k
            echo(f"-- per-condition calibration: {int(cond['significant'].sum())}/{cond.height} significant "
                 f"({cfg.repeats.per_condition_correction}) --")
            echo(format_table(cond.select([c for c in _COND_COLUMNS if c in cond.columns]),
                              max_rows=top if top > 0 else None))
    if status["missing"]:
        echo(f"\nmissing trials: {[(m['loss'], m['seed']) for m in status['missing']]}")
