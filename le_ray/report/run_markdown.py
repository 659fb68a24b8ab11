"""``report.md`` of a diagnostic run (``le-ray run``), as a document: facts, audit, a metric × loss table,
the comparison tables inline, then one section per loss with its figures, then the data figures."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import numpy as np
import polars as pl

from le_ray.atomic import atomic_write_text
from le_ray.glossary import METRICS, STATISTICS, glossary_lines
from le_ray.registry import LOSSES, label
from le_ray.report.tables import markdown_table
from le_ray.report.run_outputs import RunState
from le_ray.version import version_string

__all__ = ["report_markdown", "write_logs", "FIGURE_TITLES"]

#: file name → caption of the figures a run writes.
FIGURE_TITLES = {
    "loss.png": "Loss and normalised entropy by epoch", "preds.png": "Predicted probability per ad (evaluation)",
    "avg.png": "Mean prediction against the train click rate", "calibration.png": "Calibration ratio per ad",
    "reliability.png": "Reliability diagram", "le_stats.png": "LE numerator and denominator per ad",
    "grad_sq.png": "Squared logit gradients per ad (LE / BCE)", "test_preds.png": "Predictions on the test set",
    "comparison_calibration.png": "Calibration ratio per ad, every loss", "data_distributions.png":
    "Numeric features per ad (before training)", "data_distributions_post.png": "Numeric features per ad (after "
    "training)", "filter_stats.png": "Filter statistics: rows vs click rate", "preds_untrained.png":
    "Untrained model: predicted probability per ad",
}


def seconds_text(seconds: float) -> str:
    """``12.3 s``, or ``45 ms`` below a tenth of a second (a tiny run's training read "0.0 s")."""
    return f"{seconds:.1f} s" if seconds >= 0.1 else f"{seconds * 1000:.0f} ms"

def _facts(state: RunState) -> pl.DataFrame:
    cfg, data = state.cfg, state.data
    first = next(iter(state.results.values()), None)
    rows = [("profile", f"`{cfg.experiment.active}`"), ("source", f"{cfg.source_key} (filter {state.folders.filter_mode})"),
            ("model", f"{cfg.model.name}: hidden {list(cfg.model.hidden_sizes)}"), ("seed", str(cfg.project.seed)),
            ("data rows", f"train {len(data.train):,} / eval {len(data.eval):,} / test "
                          f"{0 if data.test is None else len(data.test):,}; {data.num_conditions} ads"),
            ("device", first.device if first else "n/a"), ("le_ray", version_string().removeprefix("le_ray "))]
    return pl.DataFrame(rows, schema=["fact", "value"], orient="row")


def _metrics_wide(state: RunState) -> pl.DataFrame:
    names = list(next((r.metrics for r in state.results.values() if r.metrics), {}))
    cols = {"metric": names}
    cols.update({label(loss): [r.metrics.get(m) for m in names] for loss, r in state.results.items()})
    return pl.DataFrame(cols)


def _figure(state: RunState, path: Path) -> list[str]:
    rel = os.path.relpath(path, state.folders.comparison)
    title = FIGURE_TITLES.get(path.name, path.stem.replace("_", " "))
    return [f"**{title}**", "", f"![{title}]({rel})", ""]


def _compact(table: pl.DataFrame, ad_ids: list[str]) -> pl.DataFrame:
    """The per-ad comparison with readable columns: the ad id (``ad_ids``: condition index → raw value; the
    comparison table keeps only the index), rate, then mean prediction / ratio / logloss per loss."""
    out = {"condition": table["condition"], "ad": [ad_ids[int(j)] for j in table["condition"]],
           "rows": table["count"],
           "click rate": table["base_rate"]}
    for loss in LOSSES:
        if f"calibration_ratio_{loss}" in table.columns:
            short = label(loss)
            out[f"mean p ({short})"] = table[f"pred_mean_{loss}"]
            out[f"ratio ({short})"] = table[f"calibration_ratio_{loss}"]
            out[f"logloss ({short})"] = table[f"logloss_{loss}"]
    return pl.DataFrame(out)


def repeats_command(config_argv: list[str]) -> str:
    """The seed sweep of a run's config, as a command to paste: ``le-ray repeats`` with the run's config words."""
    return shlex.join(["le-ray", "repeats", *config_argv])


def _reading(state: RunState) -> list[str]:
    """What a one-seed run can say, and whether the audit found the experiment unsound as configured."""
    cfg = state.cfg
    lines = ["## How to read this run", "", f"One seed per loss (seed {cfg.project.seed}): a difference between the "
             "losses below may be seed-to-seed noise, and no test is made; the `better in this run` column says only "
             f"which value was better in this one run. `{repeats_command(state.config_argv)}` (this run's config) "
             f"trains {cfg.repeats.num_runs} seeds and tests the differences (paired Wilcoxon tests, per-ad "
             "calibration tests).", ""]
    errors = state.audit.errors if state.audit is not None else []
    if errors:
        codes = ", ".join(dict.fromkeys(f"`{f.code}`" for f in errors))
        lines += [f"**The experiment audit found {len(errors)} error(s)** ({codes}; "
                  "see Audit): as configured, the experiment cannot answer its question. Read the figures and tables "
                  "below as diagnostics of the training, not as results.", ""]
    return lines


def _truth_ratios(state: RunState, per_ad: pl.DataFrame) -> tuple[pl.DataFrame, bool]:
    """``per_ad`` with, per loss, mean prediction / the ad's mean true click probability (synthetic data, where
    every row's probability is known) and ``closest to 1 (truth)``: the loss with the smallest |1 − that ratio|
    (``tie`` within 1e-12). Unchanged, and False, when the data carry no truth."""
    labels, names = [], []
    for loss, result in state.results.items():
        table = result.per_condition()
        if "calibration_ratio_true" in table.columns:
            labels.append(label(loss))
            names.append(f"ratio to truth ({labels[-1]})")
            per_ad = per_ad.join(table.select("condition", pl.col("calibration_ratio_true").alias(names[-1])),
                                 on="condition", how="left")
    if not names:
        return per_ad, False
    gaps = np.abs(1.0 - per_ad.select(names).to_numpy().astype(np.float64).reshape(per_ad.height, len(names)))
    closest = []
    for row in gaps:
        finite = np.isfinite(row)
        best = np.flatnonzero(finite & (row <= np.min(row, where=finite, initial=np.inf) + 1e-12))
        closest.append(None if not finite.any() else "tie" if best.size > 1 else labels[best[0]])
    return per_ad.with_columns(pl.Series("closest to 1 (truth)", closest, dtype=pl.String)), True


def _comparison(state: RunState) -> list[str]:
    lines, per_ad = [], None
    for key, comp in state.comparisons.items():
        if key == "closeness":
            continue
        b, c, closer = label(comp["baseline"]), label(comp["candidate"]), comp["closer"]
        summary = comp["summary"].select("metric", pl.col("baseline").alias(b), pl.col("candidate").alias(c),
                                         pl.col("winner").replace({n: label(n) for n in LOSSES})
                                         .alias("better in this run"),
                                         pl.col("pct_change_label").alias(f"change ({c} vs {b})"))
        lines += [f"## {c} vs {b}", "", f"A positive change favours {c}. {c}'s |mean prediction − click rate| is "
                  f"smaller on {closer['candidate_closer']} of {closer['conditions']} ads (ties {closer['ties']}).", "",
                  markdown_table(summary), ""]
        per_ad = per_ad if per_ad is not None else _compact(comp["conditions"], list(state.data.condition_values))
    if per_ad is not None:
        closest = state.comparisons.get("closeness", {}).get("table")
        if closest is not None:
            per_ad = per_ad.join(closest.select("condition", pl.col("closest").replace({n: label(n) for n in LOSSES})
                                                .alias("closest to 1")), on="condition", how="left")
        per_ad, truth = _truth_ratios(state, per_ad)
        per_ad = per_ad.drop("condition")
        note = (" ratio to truth = mean prediction / the ad's mean true click probability (synthetic data): free of "
                "the noise in the evaluation clicks, which the click rate and ratio carry (a rare ad's few clicks "
                "move them a lot), so read calibration from it." if truth else "")
        lines += ["## Per ad, every loss", "", f"ratio = mean prediction / click rate on the {_split(state)} split "
                  f"(1 = calibrated); `closest to 1` by that ratio.{note} The CSV files have every column.", "",
                  markdown_table(per_ad, max_rows=state.cfg.comparison.top_k or None), ""]
    return lines


def _split(state: RunState) -> str:
    """The split the run's losses were evaluated on (``evaluation``, ``train`` or ``test``; evaluation.split)."""
    splits = {r.evaluation_split for r in state.results.values()} or {state.cfg.evaluation.split}
    return "evaluation" if splits == {"eval"} else "/".join(sorted(splits))


def report_markdown(state: RunState) -> str:
    lines = [f"# Diagnostic run: {state.cfg.source_key} / {state.folders.nn_type} / {state.folders.filter_mode}", "",
             markdown_table(_facts(state)), ""] + _reading(state)
    if state.audit is not None and state.audit.findings:
        lines += ["## Audit", ""] + [f"- **{f.severity}** `{f.code}`: {f.message}" for f in state.audit.findings] + [""]
    if any(r.metrics for r in state.results.values()):
        lines += [f"## Metrics on the {_split(state)} split", "", markdown_table(_metrics_wide(state)), ""]
    lines += _comparison(state)
    for loss, result in state.results.items():
        lines += [f"## {label(loss)}", "", f"Trained in {seconds_text(result.timings['train'])} "
                  f"({result.samples_per_second:,.0f} samples/s) on {result.device}; evaluated on "
                  f"{result.evaluation_split}.", ""]
        for key, path in state.figures.items():
            if key.startswith(f"{loss}:"):
                lines += _figure(state, path)
    shared = [p for k, p in state.figures.items() if ":" not in k]
    if shared:
        lines += ["## Every loss and the data", ""]
        for path in shared:
            lines += _figure(state, path)
    text = "\n".join(lines)
    terms = _terms_used(text)
    return "\n".join([text, "", "## Glossary", "", *glossary_lines(terms)]) if terms else text


def _terms_used(text: str) -> list[str]:
    """The glossary's terms that ``text`` names as words (``ece`` not inside ``ece_small``), in the glossary's order."""
    return [name for name in (*METRICS, *STATISTICS) if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", text)]


def write_logs(state, log_text: str) -> None:
    """run_log.txt in every loss folder and the comparison folder; report.md in the comparison folder."""
    if not state.cfg.output.save_logs:
        return
    for loss in state.results:
        atomic_write_text(state.folders.loss(loss) / "run_log.txt", log_text)
    atomic_write_text(state.folders.comparison / "run_log.txt", log_text)
    atomic_write_text(state.folders.comparison / "report.md", report_markdown(state) + "\n")
