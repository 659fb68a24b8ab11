"""``summary.md`` of a sweep, as a document: verdict first, then the rare-ad picture, the experiment, the audit,
the tables of each comparison, the plots and a glossary of every metric shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from le_ray.config import Config
from le_ray.glossary import glossary_lines
from le_ray.registry import label
from le_ray.report.tables import markdown_table
from le_ray.report.verdict import VerdictInputs, verdict_lines

__all__ = ["SummaryContext", "summary_markdown", "verdicts", "TEST_COLUMNS", "CONDITION_COLUMNS"]

TEST_COLUMNS = ["metric", "n", "baseline_mean", "candidate_mean", "mean_delta", "ci_low", "ci_high", "rank_biserial",
                "p_value", "p_adjusted"]
CONDITION_COLUMNS = ["value", "count", "base_rate", "baseline_gap", "candidate_gap", "delta_mean", "n", "p_value",
                     "p_holm", "p_bh", "significant"]
POOLED_COLUMNS = ["value", "count", "base_rate", "true_rate", "pred_mean", "calibration_ratio",
                  "calibration_ratio_true", "logloss", "ece", "ece_true", "le_ratio"]


@dataclass
class SummaryContext:
    """What the document is written from (all plain data; no training, no file reads)."""
    cfg: Config
    root: Path
    manifest: dict[str, Any]
    tables: Any  # le_ray.report.sweep_stats.SweepTables
    status: dict[str, Any]
    plots: dict[str, Path]
    tuning: list[str]


def _audit(ctx: SummaryContext) -> dict[str, Any]:
    return ctx.manifest.get("audit") or {"settings": {}, "conditions": [], "findings": [], "excluded_conditions": []}


def _caveats(ctx: SummaryContext) -> list[str]:
    findings = [f for f in _audit(ctx)["findings"] if f["severity"] in ("warning", "error")]
    out = [f"The audit {f['severity']}s: {f['message']}" for f in findings]
    if ctx.status["missing"]:
        out.append(f"{len(ctx.status['missing'])} planned trial(s) missing; tests use complete pairs only.")
    return out


def verdicts(ctx: SummaryContext) -> list[str]:
    """The verdict of every comparison, as plain text lines (also printed at the end of a sweep)."""
    rep, tables = ctx.cfg.repeats, ctx.tables
    excluded_ids = set(_audit(ctx).get("excluded_conditions", []))
    excluded = [c for c in _audit(ctx)["conditions"] if c["condition"] in excluded_ids]
    reference = "the true click probability" if tables.truth else "the evaluation click rate"
    bands = tuple(ctx.cfg.report.rate_bands) if ctx.cfg.report.rate_bands else None
    lines: list[str] = []
    for key, tests in tables.metric_tests.items():
        baseline, candidate = tests["baseline"][0], tests["candidate"][0]
        inputs = VerdictInputs(baseline, candidate, tests, tables.condition_tests.get(key, pl.DataFrame()), excluded,
                               rep.per_condition_alpha, rep.per_condition_correction, int(tests["n"].max() or 0),
                               reference, bands)
        lines += verdict_lines(inputs, _caveats(ctx)) + [""]
    if not tables.metric_tests:
        lines += ["No comparison: fewer than two losses have stored trials.", *_caveats(ctx), ""]
    return lines


def _facts(ctx: SummaryContext) -> pl.DataFrame:
    cfg, m, data, status = ctx.cfg, ctx.manifest, ctx.manifest.get("data", {}), ctx.status
    packages = m.get("packages") or {}
    rows = [("profile", f"`{cfg.experiment.active}`"), ("source", cfg.source_key),
            ("losses", ", ".join(label(x) for x in cfg.losses)),
            ("seeds", f"{cfg.repeats.num_runs} (project.seed {cfg.project.seed}, stride {cfg.repeats.seed_stride}"
                      f"{', data redrawn per seed' if cfg.repeats.resample_data else ''})"),
            ("trials", f"{status['stored']} of {status['planned']} stored, {len(status['failed'])} failed"
                       + (f"; {status['other']} other trial file(s) in the folder (not used)" if status["other"] else "")),
            ("data rows", f"train {data.get('train_rows', 0):,} / eval {data.get('eval_rows', 0):,} / test "
                          f"{data.get('test_rows', 0):,}; {data.get('num_conditions')} conditions"),
            ("le_ray", f"{m.get('le_ray_version')} (commit {str(m.get('git_commit'))[:12]})"),
            ("packages", ", ".join(f"{k} {v}" for k, v in packages.items() if k in ("torch", "ray", "numpy", "polars",
                                                                                  "scipy")))]
    return pl.DataFrame(rows, schema=["fact", "value"], orient="row")


def _audit_section(ctx: SummaryContext) -> list[str]:
    audit = _audit(ctx)
    settings = pl.DataFrame([{"loss": label(loss), **{k: s[k] for k in ("epochs", "batch_size", "lr", "lr_decay",
                                                                       "steps_per_epoch", "steps_total")},
                              "history": "off" if s["history"] is None else
                              f"A = {s['history']['amplification_rate']:g}"}
                             for loss, s in audit["settings"].items()], infer_schema_length=None)
    conditions = pl.DataFrame(audit["conditions"], infer_schema_length=None)
    lines = ["## Experiment audit", "", "Effective training settings (after every override):", "",
             markdown_table(settings), "", "Rows and clicks per condition:", "",
             markdown_table(conditions.drop("condition") if conditions.width else conditions), ""]
    lines += [f"- **{f['severity']}** `{f['code']}`: {f['message']} (keys: {', '.join(f['keys'])})"
              for f in audit["findings"]] or ["No finding: the experiment can answer its question."]
    return lines + [""]


def _image(ctx: SummaryContext, name: str, alt: str) -> list[str]:
    return [f"![{alt}]({ctx.plots[name].relative_to(ctx.root)})", ""] if name in ctx.plots else []


def _pair_sections(ctx: SummaryContext) -> list[str]:
    rep, tables, lines = ctx.cfg.repeats, ctx.tables, []
    reference = "true click probability" if tables.truth else "evaluation click rate"
    for key, tests in tables.metric_tests.items():
        b, c = label(tests["baseline"][0]), label(tests["candidate"][0])
        lines += [f"## {c} vs {b}", "",
                  f"Paired Wilcoxon signed-rank over seeds ({rep.alternative}); **delta > 0 favours {c}**; p_adjusted: "
                  f"{rep.per_condition_correction} over the {tests.height} metrics; CI: "
                  f"{rep.bootstrap_confidence:.0%} bootstrap of the mean delta.", "",
                  markdown_table(tests.select([x for x in TEST_COLUMNS if x in tests.columns])), ""]
        cond = tables.condition_tests.get(key, pl.DataFrame())
        if cond.height:
            lines += [f"### Per-condition calibration ({c} vs {b})", "",
                      f"gap = |mean prediction − {reference}| per condition and seed; "
                      f"{int(cond['significant'].sum())} of {cond.height} conditions significant at alpha "
                      f"{rep.per_condition_alpha} after the {rep.per_condition_correction} correction.", "",
                      markdown_table(cond.select([x for x in CONDITION_COLUMNS if x in cond.columns]),
                                     max_rows=rep.per_condition_top_k), ""]
        lines += _image(ctx, f"deltas_{key}", f"paired deltas {c} vs {b}")
        lines += _image(ctx, f"condition_gaps_{key}", f"per-condition gaps {c} vs {b}")
    return lines


def _pooled_section(ctx: SummaryContext) -> list[str]:
    lines = ["## Per condition, pooled over seeds", "", "Each table is computed from the seeds' summed statistics "
             "(exact for every additive column; for the adaptive ECE backends the bins are merged by index).", ""]
    for loss, table in ctx.tables.pooled.items():
        if table.height:
            lines += [f"### {label(loss)}", "", markdown_table(table.select([c for c in POOLED_COLUMNS
                                                                            if c in table.columns])), ""]
    return lines


def _summary_wide(summary: pl.DataFrame) -> pl.DataFrame:
    """metric × loss table of 'mean ± sd' strings."""
    if summary.height == 0:
        return summary
    text = summary.with_columns(pl.format("{} ± {}", pl.col("mean").round_sig_figs(5),
                                          pl.col("std").round_sig_figs(2)).alias("value"),
                                pl.col("loss").map_elements(label, return_dtype=pl.String))
    return text.pivot(on="loss", index="metric", values="value")


def summary_markdown(ctx: SummaryContext) -> str:
    """The whole document."""
    lines = [f"# le_ray sweep `{ctx.root.name}`", "", "## Verdict", ""]
    for line in verdicts(ctx):  # headings bold, each result a bullet (Markdown would merge plain lines)
        lines += ["", f"**{line}**", ""] if line.endswith(":") else [f"- {line}" if line else ""]
    if "calibration_by_rate" in ctx.plots:
        lines += ["## Calibration by base rate (the rare-ad picture)", "",
                  "Per ad: mean prediction / its rate (1 = calibrated), median over seeds with the min–max bar; "
                  "hollow markers had too few clicks to test.", ""] + _image(ctx, "calibration_by_rate", "calibration "
                                                                             "by base rate")
    lines += ["## Experiment", "", markdown_table(_facts(ctx)), ""]
    if ctx.status["missing"]:
        lines += ["**Missing trials** (statistics use complete pairs only):", ""]
        lines += [f"- {m['loss']} seed {m['seed']} (`{m['trial_id']}`)"
                  + (f" — FAILED: {m['error']}" if m.get("error") else "") for m in ctx.status["missing"]] + [""]
    lines += _audit_section(ctx) + ctx.tuning
    lines += ["## Per-loss summary (mean ± sd over seeds)", "", markdown_table(_summary_wide(ctx.tables.summary)), ""]
    lines += _pair_sections(ctx) + _pooled_section(ctx)
    for name, title in (("reliability", "Reliability diagrams"), ("curves", "Loss curves (normalised entropy)")):
        if name in ctx.plots:
            lines += [f"## {title}", ""] + _image(ctx, name, title.lower())
    return "\n".join(lines + ["## Glossary", "", *glossary_lines(), ""])
