"""``summary.md`` of a sweep, as a document: the verdict first (bottom line on the rarest ads, metric-level results,
ads by absolute rate band, one list of caveats; :mod:`le_ray.report.verdict`), then the rare-ad picture, the
experiment, the audit, the tables of each comparison, the plots and a glossary of every metric shown.

Every per-ad table names its ads by ``ad_id`` (the raw condition value); each table says which CSV holds it in
full. No sentence is written twice (tests check it): the audit's findings appear once, as caveats.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from le_ray.config import Config
from le_ray.config.load import profile_names
from le_ray.glossary import glossary_lines
from le_ray.registry import LOSSES, label
from le_ray.report.sweep_stats import comparison_pairs
from le_ray.report.tables import markdown_table
from le_ray.report.bottom_line import NOISE_CONFIDENCE, bottom_line, bottom_note, ratio_readings, rare_answer
from le_ray.report.wording import exclusion_reason, mean_sd
from le_ray.report.caveats import caveat_lines, ece_small_caveat, non_finite_caveat, setting_differences
from le_ray.report.verdict import (band_edges, Verdict, VerdictInputs, band_sentences, bands_overview,
                                   metric_sentences, pending_headline, rare_headline, verdict_markdown)
from le_ray.sweep.audit_text import SETTING_COLUMNS, conditions_shown, settings_table
from le_ray.version import short_commit

__all__ = ["SummaryContext", "summary_markdown", "build_verdict", "TEST_COLUMNS", "CONDITION_COLUMNS",
           "POOLED_COLUMNS", "table_files", "condition_table", "shown_table", "resume_command", "mixed_runtime_lines",
           "multiplicity_caveat", "noise_bands", "pooled_shown", "verdict_inputs", "reference_words", "ads_table",
           "rare_advice", "MAX_AD_ROWS"]

TEST_COLUMNS = ["metric", "n", "n_nonzero", "baseline_mean", "candidate_mean", "mean_delta", "ci_low", "ci_high",
                "rank_biserial", "p_value", "p_adjusted"]
CONDITION_COLUMNS = ["ad_id", "count", "base_rate", "baseline_gap", "candidate_gap", "delta_mean", "ci_low", "ci_high",
                     "rank_biserial", "n", "p_value", "p_holm", "p_bh", "significant"]
POOLED_COLUMNS = ["ad_id", "count", "base_rate", "true_rate", "pred_mean", "calibration_ratio",
                  "calibration_ratio_true", "logloss", "ece", "ece_true", "le_ratio"]


def condition_table(table: pl.DataFrame, truth: bool) -> pl.DataFrame:
    """A per-ad table of the sweep as shown and written (condition tests, calibration ratio by seed): its pooled
    reference rate is named ``true_rate`` when it is the synthetic truth (Σ p_true / n), as in the pooled per-ad
    tables, and stays ``base_rate`` (Σ y / n, the evaluation click rate) otherwise; so ``base_rate`` means the
    empirical click rate in every table of a report."""
    if not truth or "base_rate" not in table.columns or "true_rate" in table.columns:
        return table
    return table.rename({"base_rate": "true_rate"})


def shown_table(table: pl.DataFrame, columns: list[str], truth: bool) -> pl.DataFrame:
    """``columns`` of ``table`` as shown (:func:`condition_table`; ``base_rate`` shows as ``true_rate`` for truth)."""
    table = condition_table(table, truth)
    names = ["true_rate" if c == "base_rate" and truth else c for c in columns]
    return table.select([c for c in names if c in table.columns])


def noise_bands(truth: bool, resampled: bool) -> bool:
    """Whether the rare-ad picture draws each ad's evaluation-noise band (``noise`` of
    :func:`le_ray.report.plots.plot_calibration_by_rate`): only when the ratios are measured against the evaluation
    clicks (not the synthetic truth, ``truth``) of one split every seed shares (not redrawn per seed, ``resampled``)."""
    return not truth and not resampled


def _noise_caption(truth: bool, resampled: bool) -> str:
    """The rare-ad picture's sentence on the evaluation-noise band: what a band is where it is drawn
    (:func:`noise_bands`), else that none is drawn and why."""
    if noise_bands(truth, resampled):
        return ("A grey band behind an ad, where drawn (one fixed evaluation split, rates measured against clicks), is "
                f"the {NOISE_CONFIDENCE:.0%} Wilson range of a calibrated model's ratio given the ad's evaluation "
                "clicks: a ratio inside "
                "it is within evaluation noise.")
    why = [("the reference is the true click probability of the synthetic rows, free of evaluation noise"
            if truth else ""),
           ("the data are redrawn per seed (repeats.resample_data), so the evaluation split and its clicks differ "
            "per seed" if resampled else "")]
    return f"No evaluation-noise band is drawn: {'; and '.join(w for w in why if w)}."


def pooled_shown(table: pl.DataFrame, truth: bool, tested: set[int] | None, excluded: set[int]) -> pl.DataFrame:
    """A pooled per-ad table as summary.md shows it: :data:`POOLED_COLUMNS`, rows by ``true_rate`` (descending) on
    synthetic data (``truth``; the evaluation click rate ``base_rate`` is noisy at tiny rates and can order ads
    wrongly), and after ``ad_id`` a ``tested`` column: yes (some comparison tested the ad), no (too few clicks) (the
    audit left it out, ``excluded``), or no; no such column when nothing was tested or left out (no ``tested`` and
    no ``excluded``)."""
    if truth and "true_rate" in table.columns:
        table = table.sort(pl.col("true_rate").cast(pl.Float64).fill_nan(None), "condition", descending=[True, False],
                           nulls_last=True)
    columns = [c for c in POOLED_COLUMNS if c in table.columns]
    if (not tested and not excluded) or "condition" not in table.columns:
        return table.select(columns)
    cond = pl.col("condition")
    mark = (pl.when(cond.is_in(sorted(excluded))).then(pl.lit("no (too few clicks)"))
            .when(cond.is_in(sorted(tested or ()))).then(pl.lit("yes")).otherwise(pl.lit("no")).alias("tested"))
    at = columns.index("ad_id") + 1 if "ad_id" in columns else 0
    return table.with_columns(mark).select(columns[:at] + ["tested"] + columns[at:])


def resume_command(root: Path) -> str:
    """The command that resumes the sweep in ``root`` with the config it stores (``le-ray tune`` for a tune's
    folder, which ``tune/config.json`` marks)."""
    import shlex

    command = "tune" if (root / "tune" / "config.json").is_file() else "repeats"
    return f"`le-ray {command} --name {shlex.quote(root.name)} --results-dir {shlex.quote(str(root.parent))}`"


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
    tuning_summary: dict[str, Any] | None = None  # tune/summary.json of `le-ray tune`, when the sweep was tuned


def table_files(key: str | None = None, loss: str | None = None) -> dict[str, str]:
    """File names (under report/tables/) of the CSVs behind the tables of a comparison ``key`` or a ``loss``."""
    if loss is not None:
        return {"pooled": f"per_condition_pooled_{LOSSES[loss].folder}.csv"}
    return {"summary": "summary_by_loss.csv"} if key is None else {
        "metrics": f"metric_tests_{key}.csv", "deltas": f"deltas_by_seed_{key}.csv",
        "conditions": f"condition_tests_{key}.csv"}


def _audit(ctx: SummaryContext) -> dict[str, Any]:
    return ctx.manifest.get("audit") or {"settings": {}, "conditions": [], "findings": [], "excluded_conditions": []}


def _exclusion_why(ctx: SummaryContext) -> str:
    """Why the audit left ads out of testing: fewer than ``repeats.min_eval_clicks`` evaluation clicks when that
    rule (or no evaluation click at all) covers every excluded ad, else the general reason (an ad without a
    training click is left out whatever its evaluation clicks)."""
    audit = _audit(ctx)
    by_clicks = {j for f in audit["findings"] if f["code"] in ("few_eval_clicks", "no_eval_click")
                 for j in f.get("conditions", ())}
    if set(audit["excluded_conditions"]) <= by_clicks:
        return exclusion_reason(max(ctx.cfg.repeats.min_eval_clicks, 1), expected=ctx.tables.truth)  # 0: none
    return exclusion_reason()


def reference_words(truth: bool) -> str:
    """What per-ad gaps and ratios are measured against: the synthetic truth, or the evaluation click rate."""
    return "the true click probability" if truth else "the evaluation click rate"


def _reference(ctx: SummaryContext) -> str:
    return reference_words(ctx.tables.truth)


def rare_advice(cfg: Config) -> str:
    """How to get rare ads into a sweep, as a sentence fragment naming the exact keys."""
    profiles = [f"`{n}`" for n in ("decades", "quickstart") if n in profile_names()]
    synthetic = f"the synthetic {' or '.join(profiles)} profile" if profiles else "synthetic data with rare ads"
    if cfg.data.source == "synthetic":
        return f"lower `synthetic.uniform_log10_means` or run {synthetic}"
    name = cfg.data.ctr_dataset
    sets = f"--set ctr.datasets.{name}.filter.mode=bottom_k --set ctr.datasets.{name}.filter.metric=rate"
    profile = f" --profile {cfg.experiment.active}" if cfg.experiment.active else ""
    clicks = max(cfg.repeats.min_eval_clicks, 1)  # 0 keeps ads without a click, but a rate needs one
    return (f"on a file large enough that its lowest-rate ads keep at least {clicks} evaluation "
            f"click{'s' if clicks != 1 else ''} each, keep those ads with `{sets}` (check first with "
            f"`le-ray prepare{profile} {sets}`: on a small "
            f"file they have too few clicks, and its audit says so), or run {synthetic}")


def _tested(ctx: SummaryContext) -> set[int]:
    """The conditions some comparison's per-ad tests include."""
    return {int(c) for t in ctx.tables.condition_tests.values() if t.height for c in t["condition"].to_list()}


def _ads(ctx: SummaryContext) -> pl.DataFrame:
    """:func:`ads_table` of the sweep's calibration table, with the audit's training rates on a fixed split."""
    return ads_table(ctx.tables.calibration, _tested(ctx), ctx.tables.truth,
                     _train_rates(_audit(ctx), ctx.cfg.repeats.resample_data))


def ads_table(calib: pl.DataFrame, tested: set[int], truth: bool, train: dict[int, float] | None = None
              ) -> pl.DataFrame:
    """condition, ad_id, base_rate (pooled reference rate), tested (in ``tested``: some comparison tested it),
    excluded (the audit left it out for too few clicks), no_eval_click (evaluation-rate reference and not one
    evaluation click in any seed: no measured rate) and train_rate (``train``: condition → training rate, else
    null): every ad of ``calib``, the long per-seed table of :func:`le_ray.report.sweep_stats.calibration_long`."""
    if calib.height == 0:
        return pl.DataFrame()
    excluded = [pl.col("excluded").first()] if "excluded" in calib.columns else [pl.lit(False).alias("excluded")]
    clicks = pl.col("ref_sum") if "ref_sum" in calib.columns else pl.col("base_rate")
    no_click = [pl.lit(False) if truth else (clicks.fill_nan(0).fill_null(0) <= 0).all()]
    ads = calib.group_by("condition").agg(pl.col("ad_id").first(), pl.col("base_rate").first(), *excluded,
                                          no_click[0].alias("no_eval_click"))
    return ads.with_columns(pl.col("condition").is_in(sorted(tested)).alias("tested"),
                            pl.col("condition").replace_strict(train or {}, default=None, return_dtype=pl.Float64)
                            .alias("train_rate"))


def verdict_inputs(cfg: Config, baseline: str, candidate: str, tests: pl.DataFrame, conditions: pl.DataFrame,
                   calibration: pl.DataFrame, truth: bool, **more: Any) -> VerdictInputs:
    """One comparison's :class:`VerdictInputs` from its tables (``calibration``: the long per-seed ratio table of
    :func:`le_ray.report.sweep_stats.calibration_long`), with ``cfg.repeats``'s statistics settings; ``more``: its
    optional fields (setting differences, training rates, warm-up ads, display names)."""
    rep = cfg.repeats
    extra = [c for c in ("n", "ref_sum", "sum_p") if c in calibration.columns]
    ratios = calibration.select("loss", "seed", "condition", "ratio", *extra) if calibration.height else \
        pl.DataFrame({"loss": [], "seed": [], "condition": [], "ratio": []})
    return VerdictInputs(baseline, candidate, tests, conditions, ratios, rep.per_condition_alpha,
                         rep.per_condition_correction, int(tests["n"].max() or 0) if tests.height else 0,
                         reference_words(truth), band_edges(cfg), alternative=rep.alternative,
                         confidence=rep.bootstrap_confidence, zero_method=rep.zero_method,
                         fixed_split=not rep.resample_data, **more)


def _inputs(ctx: SummaryContext, key: str, tests: pl.DataFrame) -> VerdictInputs:
    baseline, candidate, audit = tests["baseline"][0], tests["candidate"][0], _audit(ctx)
    return verdict_inputs(ctx.cfg, baseline, candidate, tests, ctx.tables.condition_tests.get(key, pl.DataFrame()),
                          ctx.tables.calibration, ctx.tables.truth,
                          differences=setting_differences(audit["settings"], baseline, candidate, audit.get("fairness")),
                          train_rates=_train_rates(audit, ctx.cfg.repeats.resample_data),
                          warmup_ads=frozenset(c for f in audit.get("findings", [])
                                               if f.get("code") == "le_history_warmup" for c in f.get("conditions", [])))


def multiplicity_caveat(correction: str, comparisons: int) -> str:
    """What the corrections cover: each runs within one family (a comparison's informative metrics, or its tested
    ads), none across the 2 · ``comparisons`` families; BH bounds the false discovery rate, not any false positive."""
    families = f"the {2 * comparisons} families ({comparisons} comparison(s) × metrics and ads)"
    if correction == "none":
        return (f"No correction is applied (repeats.per_condition_correction is none): each p stands alone across "
                f"{families}, so some may fall below alpha by chance.")
    what = ("bounds the false discovery rate within one family, not the chance of any false positive"
            if correction == "bh" else "bounds the chance of any false positive within one family")
    return (f"Each {correction} correction {what} (a comparison's informative metrics, or its tested ads); nothing "
            f"corrects across {families}, so the chance of at least one false positive somewhere in this report is "
            "higher than alpha.")


def _train_rates(audit: dict[str, Any], resampled: bool) -> dict[int, float]:
    """condition → training click rate, from the audit's counts when the sweep used one data draw (a fixed split:
    the rate every seed trained on); empty otherwise (an audit stored before ``data_draws``: by ``resampled``)."""
    if audit.get("data_draws", 2 if resampled else 1) != 1:
        return {}
    return {int(c["condition"]): c["train_clicks"] / c["train_rows"] for c in audit.get("conditions") or []
            if c.get("train_rows") and c.get("train_clicks") is not None}


def _pairing(ctx: SummaryContext) -> tuple[dict[str, tuple[int, int]], dict[tuple[str, str], int]]:
    """loss → (stored, planned) trials, and (baseline, candidate) → seeds stored for both, of every comparison the
    config plans (from the status's per-loss record of the latest run's plan)."""
    by_loss = ctx.status.get("by_loss", {})
    trials = {loss: (len(by_loss[loss]["stored"]), by_loss[loss]["planned"]) for loss in ctx.cfg.losses
              if loss in by_loss}
    seeds = {loss: set(by_loss.get(loss, {}).get("stored", [])) for loss in ctx.cfg.losses}
    return trials, {(b, c): len(seeds[b] & seeds[c]) for b, c in comparison_pairs(ctx.cfg.losses)}


def build_verdict(ctx: SummaryContext) -> Verdict:
    """The verdict of the whole report (every comparison; one caveat list). When no two losses share a stored
    seed, the headline says that no comparison is possible yet instead of judging the data's rare ads."""
    rep, verdict = ctx.cfg.repeats, Verdict()
    trials, paired = _pairing(ctx)
    unpaired = [pair for pair, n in paired.items() if n == 0]
    compared = len(paired) - len(unpaired)
    inputs = []
    for key, tests in ctx.tables.metric_tests.items():
        v = _inputs(ctx, key, tests)
        inputs.append(v)
        verdict.bottom.append(bottom_line(v))
        title = f"{label(v.candidate)} vs {label(v.baseline)} over {v.seeds} paired seed{'s' if v.seeds != 1 else ''}"
        verdict.comparisons.append((title, metric_sentences(v) + band_sentences(v)))
    verdict.readings = ratio_readings(inputs)
    if not paired:
        verdict.bottom.append(("No comparison", ["Fewer than two losses are configured, so nothing is compared."]))
    if any(t.height for t in ctx.tables.condition_tests.values()):
        verdict.note = bottom_note(_reference(ctx), rep.per_condition_correction)
    ads, reference = _ads(ctx), _reference(ctx).removeprefix("the ")
    failures = [str(m["error"]).splitlines()[0][:200] for m in ctx.status.get("failed", [])]
    verdict.headline = pending_headline(trials, unpaired, compared, resume_command(ctx.root), failures)
    why = _exclusion_why(ctx)
    if compared:
        verdict.headline += rare_headline(ads, reference, rare_advice(ctx.cfg)) or rare_answer(inputs, ads, why)
    untested = ("no usable pair of seeds" if compared else "no two losses share a stored seed yet" if paired
                else "fewer than two losses are configured")
    verdict.bands = bands_overview(ads, band_edges(ctx.cfg), untested, why)
    verdict.bands_title = f"Ads by absolute rate band ({reference} of each ad)"
    verdict.caveats = caveat_lines(_audit(ctx)["findings"], seeds={
        f"{label(c)} vs {label(b)}": n for (b, c), n in paired.items()}, alternative=rep.alternative,
        resampled=rep.resample_data, truth=ctx.tables.truth, missing=len(ctx.status["missing"]),
        tuning=ctx.tuning_summary, planned=rep.num_runs, alpha=rep.per_condition_alpha,
        extra=[c for c in (ece_small_caveat(getattr(ctx.tables, "ece_small_thresholds", pl.DataFrame()),
                                            ctx.cfg.evaluation.small_prob_max,
                                            ctx.cfg.evaluation.small_prob_quantile),) if c])
    if compared:
        verdict.caveats.append(multiplicity_caveat(rep.per_condition_correction, compared))
    verdict.caveats += mixed_runtime_lines(ctx.status.get("ran_on", {})) + _earlier_runs_line(ctx.manifest)
    verdict.caveats += non_finite_caveat(getattr(ctx.tables, "non_finite", []))
    return verdict


def mixed_runtime_lines(ran_on: dict[str, dict[str, int]]) -> list[str]:
    """A caveat when the stored trials ran on more than one device kind, float32 matmul precision or CPU thread
    count (a sweep resumed on other hardware, or with another ``device.matmul_precision`` or
    ``ray.cpus_per_trial``): their numbers differ by float rounding (TF32 vs FP32 changed a training loss by ~6e-5
    relative on one H200; 1 vs 2 CPU threads an LE logloss by ~4e-9 after 5 epochs here), far below the
    seed-to-seed spread, but the seeds of one comparison then did not all run alike."""
    words = {"device": "device kinds", "matmul_precision": "float32 matmul precisions",
             "torch_threads": "CPU thread counts"}
    mixed = [f"{words[key]} " + ", ".join(f"{name} ({n})" for name, n in sorted(counts.items()))
             for key, counts in ran_on.items() if key in words and len(counts) > 1]
    if not mixed:
        return []
    return [f"The stored trials ran on more than one setting: {'; '.join(mixed)} trials. Their numbers differ by "
            "float rounding, far below the seed-to-seed spread, but not every seed of a comparison ran alike."]


def _version_words(run: dict[str, Any]) -> str:
    """``0.1.0 (commit 0123456789ab)`` of a manifest or one of its earlier runs."""
    return f"{run.get('le_ray_version')} (commit {short_commit(run.get('git_commit'))})"


def _earlier_runs_line(manifest: dict[str, Any]) -> list[str]:
    """A caveat when earlier runs of the sweep trained with other code or packages (manifest ``earlier_runs``)."""
    earlier = manifest.get("earlier_runs") or []
    if not earlier:
        return []
    said = "; ".join(f"{e.get('created')}: le_ray {_version_words(e)}" for e in earlier)
    return [f"The sweep was resumed with other code or packages than an earlier run of it ({said}; the facts table "
            "gives the latest), so its trials may come from more than one version: a change that alters training "
            "would mix into the comparisons."]


def _ad_id_meaning(cfg: Config) -> str:
    if cfg.data.source == "synthetic":
        return "the synthetic condition index"
    return f"the value of column `{cfg.active_ctr.condition_col}`"


def _facts(ctx: SummaryContext) -> pl.DataFrame:
    cfg, m, data, status = ctx.cfg, ctx.manifest, ctx.manifest.get("data", {}), ctx.status
    packages = m.get("packages") or {}
    split = "data redrawn per seed" if cfg.repeats.resample_data else "one train/eval split for every seed"
    rows = [("profile", f"`{cfg.experiment.active}`"), ("source", cfg.source_key),
            ("losses", ", ".join(label(x) for x in cfg.losses)),
            ("seeds", f"{cfg.repeats.num_runs} (project.seed {cfg.project.seed}, stride {cfg.repeats.seed_stride}; "
                      f"{split})"),
            ("trials", f"{status['stored']} of {status['planned']} stored, {len(status['failed'])} failed"
                       + (f"; {status['other']} other trial file(s) in the folder (not used)" if status["other"] else "")),
            ("data rows", f"train {data.get('train_rows', 0):,} / eval {data.get('eval_rows', 0):,} / test "
                          f"{data.get('test_rows', 0):,}; {data.get('num_conditions')} ads"),
            ("ad_id", _ad_id_meaning(cfg)),
            ("le_ray", _version_words(m) + "".join(f"; earlier run {e.get('created')}: {_version_words(e)}"
                                                   for e in m.get("earlier_runs") or [])),
            ("packages", ", ".join(f"{k} {v}" for k, v in packages.items() if k in ("torch", "ray", "numpy", "polars",
                                                                                  "scipy")))]
    return pl.DataFrame(rows, schema=["fact", "value"], orient="row")


SETTINGS_SHOWN = tuple(k for k in SETTING_COLUMNS if k != "lr_category_decay")
"""The settings columns summary.md's effective-settings table shows: the audit's, less ``lr_category_decay``."""


def _settings_table(audit: dict[str, Any]) -> pl.DataFrame:
    """summary.md's effective-settings table: :func:`le_ray.sweep.audit.settings_table` of the stored audit with
    :data:`SETTINGS_SHOWN` and the brief history cell (``A = 64``)."""
    return settings_table(audit["settings"], columns=SETTINGS_SHOWN, brief_history=True)


#: summary.md shows at most this many rows of a per-ad table when ``repeats.per_condition_top_k`` is 0 (the CSV and
#: the manifest hold every ad; a 20,000-ad sweep's summary.md was 82,000 lines)
MAX_AD_ROWS = 500


def _ad_rows(ctx: SummaryContext) -> int:
    """Rows of a per-ad table in summary.md: ``repeats.per_condition_top_k``, or :data:`MAX_AD_ROWS` for 0."""
    return ctx.cfg.repeats.per_condition_top_k or MAX_AD_ROWS


def _audit_section(ctx: SummaryContext) -> list[str]:
    audit = _audit(ctx)
    conditions = conditions_shown(audit["conditions"])  # as the console's audit prints them
    draws = audit.get("data_draws", 2 if ctx.cfg.repeats.resample_data else 1)
    counts = (f"Rows and clicks per ad, each the smallest over the {draws} seeds' data draws, column by column (so "
              "a row need not add up to any one seed's totals):" if draws > 1 else
              "Rows and clicks per ad (one preparation of the data for every seed):")
    findings = audit["findings"]
    lines = ["## Experiment audit", "", "Effective training settings (after every override):", "",
             markdown_table(_settings_table(audit)), "", counts, "",
             markdown_table(conditions, max_rows=_ad_rows(ctx), rest_in="`manifest.json` (audit.conditions)"), ""]
    codes = ", ".join(f"`{f['code']}`" for f in findings)
    lines.append(f"The audit's {len(findings)} finding(s) ({codes}) are listed once, under Caveats in the verdict."
                 if findings else "The audit found nothing to warn about.")
    return lines + [""]


def _image(ctx: SummaryContext, name: str, alt: str) -> list[str]:
    return [f"![{alt}]({ctx.plots[name].relative_to(ctx.root)})", ""] if name in ctx.plots else []


def _condition_lines(ctx: SummaryContext, key: str, b: str, c: str) -> list[str]:
    rep, cond = ctx.cfg.repeats, ctx.tables.condition_tests.get(key, pl.DataFrame())
    if cond.height == 0:
        return []
    csv = table_files(key)["conditions"]
    rows = "summed over the seeds' draws" if rep.resample_data else "the one split every seed shares"
    rate = ("true_rate = the ad's pooled true click probability (base_rate, in the pooled tables below, is its "
            "evaluation click rate)" if ctx.tables.truth else "base_rate = the ad's pooled evaluation click rate")
    return [f"### Per-ad calibration ({c} vs {b})", "",
            f"{c} vs {b}: gap = |mean prediction − {_reference(ctx).removeprefix('the ')}| per ad and seed; {rate}; "
            f"count = the ad's evaluation rows ({rows}); delta_mean = {b}'s gap − {c}'s, mean over the paired seeds "
            f"(> 0 favours {c}), ci_low / ci_high its {rep.bootstrap_confidence:.0%} bootstrap interval (unadjusted); "
            f"rank_biserial > 0: the ranks of the seeds' differences favour {c} (the direction a significant test "
            "reads); n = paired seeds; "
            f"{int(cond['significant'].sum())} of {cond.height} ads significant at alpha {rep.per_condition_alpha} "
            f"after the {rep.per_condition_correction} correction (all columns: `report/tables/{csv}`).", "",
            markdown_table(shown_table(cond, CONDITION_COLUMNS, ctx.tables.truth), max_rows=_ad_rows(ctx),
                           csv=csv), ""]


def _pair_sections(ctx: SummaryContext) -> list[str]:
    rep, tables, lines = ctx.cfg.repeats, ctx.tables, []
    for key, tests in tables.metric_tests.items():
        b, c = label(tests["baseline"][0]), label(tests["candidate"][0])
        family = int(tests["informative"].sum()) if "informative" in tests.columns else tests.height
        lines += [f"## {c} vs {b}", "",
                  f"Paired Wilcoxon signed-rank over seeds ({rep.alternative}; n = paired seeds, n_nonzero = those "
                  f"with a nonzero delta{', the only ones the test ranks' if rep.zero_method == 'wilcox' else ''}); "
                  f"**delta > 0 favours {c}**; p_adjusted: "
                  f"{rep.per_condition_correction} over the {family} informative metrics of {c} vs {b}; CI: "
                  f"{rep.bootstrap_confidence:.0%} bootstrap of the mean delta (all columns: "
                  f"`report/tables/{table_files(key)['metrics']}`).", "",
                  markdown_table(tests.select([x for x in TEST_COLUMNS if x in tests.columns])), ""]
        lines += _condition_lines(ctx, key, b, c)
        lines += _image(ctx, f"deltas_{key}", f"paired deltas {c} vs {b}")
        lines += _image(ctx, f"condition_gaps_{key}", f"per-ad gaps {c} vs {b}")
    return lines


def _pooled_section(ctx: SummaryContext) -> list[str]:
    truth, tested = ctx.tables.truth, _tested(ctx)
    excluded = {int(c) for c in _audit(ctx).get("excluded_conditions") or ()}
    order = ("rows by true_rate, the ad's true click probability (base_rate, its evaluation click rate, is noisy at "
             "tiny rates)" if truth else "")
    marks = ("tested = whether the per-ad tests include the ad; \"no (too few clicks)\": the audit left it out, so "
             "its ratios are no tested result" if tested or excluded else "")
    extra = "; ".join(x for x in (order, marks) if x)
    lines = ["## Per ad, pooled over seeds", "", "Each table is computed from the seeds' summed statistics "
             "(exact for every additive column; for the adaptive ECE backends the bins are merged by index): count = "
             "evaluation rows summed over the seeds; calibration_ratio = Σ predictions / Σ clicks over the seeds, a "
             "pooled ratio, not the verdict's median over seeds" + (f"; {extra}." if extra else ".")
             + _pooled_seeds_note(ctx), ""]
    for loss, table in ctx.tables.pooled.items():
        if table.height:
            csv = table_files(loss=loss)["pooled"]
            lines += [f"### {label(loss)}", "", f"All columns: `report/tables/{csv}`.", "",
                      markdown_table(pooled_shown(table, truth, tested, excluded), max_rows=_ad_rows(ctx), csv=csv),
                      ""]
    return lines


def _pooled_seeds_note(ctx: SummaryContext) -> str:
    """When the losses' stored seeds differ (a failed or missing trial): each pooled table sums its own seeds."""
    stored = {loss: set(entry.get("stored") or []) for loss, entry in (ctx.status.get("by_loss") or {}).items()
              if loss in ctx.tables.pooled}
    if len({frozenset(x) for x in stored.values()}) <= 1:
        return ""
    every = set().union(*stored.values())
    said = "; ".join(f"{label(loss)} {len(seeds)}" + (f" (without seed{'s' if len(every - seeds) > 1 else ''} "
                                                       f"{', '.join(map(str, sorted(every - seeds)))})"
                                                       if every - seeds else "")
                     for loss, seeds in stored.items())
    return (f" The losses' tables pool different seeds ({said}), so one ad's rows differ across them by those seeds' "
            "data and runs too; the comparisons above use complete pairs of seeds only.")


def _summary_wide(summary: pl.DataFrame) -> pl.DataFrame:
    """metric × loss table of 'mean ± sd' strings."""
    if summary.height == 0:
        return summary
    values = [mean_sd(m, s) for m, s in zip(summary["mean"].to_list(), summary["std"].to_list())]
    text = summary.with_columns(pl.Series("value", values, dtype=pl.String),
                                pl.col("loss").map_elements(label, return_dtype=pl.String))
    return text.pivot(on="loss", index="metric", values="value")


def summary_markdown(ctx: SummaryContext, verdict: Verdict | None = None) -> str:
    """The whole document (``verdict``: :func:`build_verdict` of ``ctx``, computed when not given)."""
    lines = [f"# le_ray sweep `{ctx.root.name}`", "", "## Verdict", ""]
    lines += verdict_markdown(verdict or build_verdict(ctx))
    if "calibration_by_rate" in ctx.plots:
        lines += ["## Calibration by base rate (the rare-ad picture)", "",
                  "Per ad: mean prediction / its rate (1 = calibrated), median over seeds with the min–max bar; "
                  "the losses' points of one ad are drawn side by side around its rate (x up to ×0.92–×1.08), not at "
                  "different rates; hollow markers had too few clicks to test. "
                  + _noise_caption(ctx.tables.truth, ctx.cfg.repeats.resample_data), ""]
        lines += _image(ctx, "calibration_by_rate", "calibration by base rate")
    lines += ["## Experiment", "", markdown_table(_facts(ctx)), ""]
    if ctx.status["missing"]:
        lines += ["**Missing trials** (statistics use complete pairs only):", ""]
        lines += [f"- {m['loss']} seed {m['seed']} (`{m['trial_id']}`)"
                  + (f" — FAILED: {m['error']}" if m.get("error") else "") for m in ctx.status["missing"]] + [""]
    lines += _audit_section(ctx) + ctx.tuning
    lines += ["## Per-loss summary (mean ± sd over seeds)", "", markdown_table(_summary_wide(ctx.tables.summary)), ""]
    lines += _pair_sections(ctx) + _pooled_section(ctx)
    captions = {"reliability": "Every ad's evaluation rows pooled into equal-mass bins of the prediction: each bin's "
                               "observed click rate (not the true probability) against its mean prediction, the "
                               "mean over seeds with its min–max band.",
                "curves": "Normalised entropy (Σ w·BCE / (W·H(p̄)), H(p̄) the entropy of the split's click rate; 1 = "
                          "predicting the base rate) per epoch: one scale for every loss. The train value of an epoch averages its "
                          "batches as the model changed; the eval value is the model at the epoch's end."}
    for name, title in (("reliability", "Reliability diagrams"), ("curves", "Loss curves (normalised entropy)")):
        if name in ctx.plots:
            lines += [f"## {title}", "", captions[name], ""] + _image(ctx, name, title.lower())
    return "\n".join(lines + ["## Glossary", "", *glossary_lines(), ""])
