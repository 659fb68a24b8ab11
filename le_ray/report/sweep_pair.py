"""Two stored sweeps compared arm against arm (``le-ray compare-sweeps``): one loss of a baseline sweep against one
loss (by default the same) of a candidate sweep, e.g. LE with its history windows starting empty (the reference)
against LE started full (``training.cross_batch.warm_start``), each a sweep of its own.

The arms are paired by seed, and a pair is only a pair when both trials saw the same data: every paired seed must
have the same data fingerprint in both manifests (the same draw of the same rows; a sweep on a fixed split has one
for all its seeds) and the same ad ids, else the comparison is refused before any statistic. The statistics are a
sweep report's, unchanged (:func:`le_ray.report.sweep_stats.paired_tables`: paired Wilcoxon tests per metric with
bootstrap CIs and the correction over the informative metrics; per-ad tests of the gap |mean prediction −
reference| over the ads neither sweep's audit left out), with the baseline sweep's ``repeats.*`` settings; the
verdict is the report's bottom line, metric and rate-band sentences (:mod:`le_ray.report.bottom_line`,
:mod:`le_ray.report.verdict`) with each arm named ``<loss> (<sweep folder>)``. What differs between the two arms'
settings (the loss's training settings, the model, the evaluation, the device precision) is listed as the first
caveat: a difference between the arms may come from any of them (from that one when only one differs and both
sweeps ran on the same code, packages and devices). Without a tested ad below 1 % the verdict's headline says, as a
sweep's does, that the data cannot answer the rare-ad question.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from le_ray.atomic import atomic_write_text
from le_ray.config import Config, resolve_config, to_plain
from le_ray.errors import UserError
from le_ray.registry import LOSSES, SECTION_READER, canonical_loss, label
from le_ray.report.bottom_line import bottom_line, bottom_note, ratio_readings
from le_ray.report.summary_md import (CONDITION_COLUMNS, MAX_AD_ROWS, TEST_COLUMNS, ads_table, condition_table,
                                      multiplicity_caveat, rare_advice, reference_words, resume_command, shown_table,
                                      verdict_inputs)
from le_ray.report.sweep_stats import (calibration_long, non_finite_values, paired_tables, unmeasured, uses_truth,
                                      values_of)
from le_ray.report.tables import markdown_table, write_csv
from le_ray.report.caveats import caveat_lines, non_finite_caveat
from le_ray.version import short_commit
from le_ray.report.wording import excluded_ads
from le_ray.report.verdict import (Verdict, VerdictInputs, band_sentences, metric_sentences, rare_headline,
                                   verdict_markdown)
from le_ray.sweep.plan import SHARED
from le_ray.sweep.store import SweepStore, per_condition_frame, trials_frame
from le_ray.training.spec import DISPLAY_ONLY_EVALUATION

__all__ = ["Arm", "load_arm", "default_loss", "SweepPair", "compare_arms", "write_pair"]

BASELINE, CANDIDATE = "baseline", "candidate"  #: the arms' keys in the frames (their ``loss`` column)


@dataclass(frozen=True)
class Arm:
    """One loss of one stored sweep: its folder, config (the latest run's), manifest and that loss's stored trials
    (their ``loss`` relabelled to the arm's key, ``baseline`` or ``candidate``)."""
    root: Path
    cfg: Config
    loss: str
    manifest: dict[str, Any]
    records: list[dict[str, Any]]
    name: str

    def fingerprint(self, seed: int) -> str | None:
        """The data fingerprint seed ``seed`` trained on (the shared one on a fixed split), None when not stored."""
        prints = self.manifest.get("data_fingerprints") or {}
        return prints.get(str(seed), prints.get(str(SHARED)))  # the manifest's keys are the plan's, as text

    @property
    def seeds(self) -> set[int]:
        return {int(r["seed"]) for r in self.records}


def _sweep_losses(root: Path) -> tuple[SweepStore, Config, dict[str, Any]]:
    store = SweepStore(root)
    if not (root / "manifest.json").is_file():
        raise UserError(f"{str(root)!r} is not a le_ray sweep folder (no manifest.json); expected a folder written by "
                        "le-ray repeats, e.g. results/<sweep>")
    return store, resolve_config(store.latest_config()), store.read_json("manifest.json")


def default_loss(baseline: str | Path, candidate: str | Path) -> str:
    """The loss to compare when none is named: LE when both sweeps train it, else the one loss both train."""
    theirs = _sweep_losses(Path(candidate).resolve())[1].losses
    shared = [x for x in _sweep_losses(Path(baseline).resolve())[1].losses if x in theirs]
    if "localized_entropy" in shared or len(shared) == 1:
        return "localized_entropy" if "localized_entropy" in shared else shared[0]
    named = ", ".join(label(x) for x in shared) or "none"
    raise UserError(f"the two sweeps train {'no loss in common' if not shared else 'several losses'} ({named}): name "
                    "the loss to compare with --loss (and --candidate-loss when the candidate's differs)")


def load_arm(folder: str | Path, loss: str, key: str, option: str = "--loss") -> Arm:
    """The arm ``key`` (``baseline`` / ``candidate``): loss ``loss`` of the sweep in ``folder``. UserError when the
    folder is no sweep, the sweep does not train that loss, or none of its trials is stored."""
    root = Path(folder).resolve()
    store, cfg, manifest = _sweep_losses(root)
    loss = canonical_loss(loss, option)
    if loss not in cfg.losses:
        raise UserError(f"{option} {label(loss)}: the sweep {str(root)!r} trains {', '.join(map(label, cfg.losses))}, "
                        f"not {label(loss)}")
    ids = [t["trial_id"] for t in manifest.get("trials", []) if t["loss"] == loss]
    records = [{**r, "loss": key} for r in store.load_trials(ids)]
    if not records:
        raise UserError(f"the sweep {str(root)!r} has no stored {label(loss)} trial yet ({len(ids)} planned): resume "
                        f"it first with {resume_command(root)}")
    return Arm(root, cfg, loss, manifest, records, f"{label(loss)} ({root.name})")


def _same_data(base: Arm, cand: Arm, seeds: list[int]) -> None:
    """UserError unless both arms trained each paired seed on the same data and name the ads alike."""
    ads = [arm.manifest.get("data", {}).get("condition_values") for arm in (base, cand)]
    if ads[0] != ads[1]:
        raise UserError(f"the two sweeps' ads differ ({len(ads[0] or [])} vs {len(ads[1] or [])} ad ids, first "
                        f"differences: {_first_differences(ads[0] or [], ads[1] or [])}): a paired comparison needs "
                        "the same data")
    # a manifest without fingerprints (stored before they were) leaves the check to _same_evaluation
    differ = [s for s in seeds if None not in (base.fingerprint(s), cand.fingerprint(s))
              and base.fingerprint(s) != cand.fingerprint(s)]
    if differ:
        raise UserError(f"the two sweeps trained seed{'s' if len(differ) > 1 else ''} "
                        f"{', '.join(map(str, differ[:5]))}{' ...' if len(differ) > 5 else ''} on different data "
                        f"(data fingerprint {base.fingerprint(differ[0])} for {base.name}, "
                        f"{cand.fingerprint(differ[0])} for {cand.name}): a paired comparison needs each seed's "
                        "data to be the same in both (same data settings, same project.seed and seed stride, same "
                        "repeats.resample_data)")


def _same_evaluation(per_cond: pl.DataFrame) -> None:
    """UserError unless both arms evaluated each paired seed on the same rows, as far as the stored per-ad sums show
    (rows, clicks and, for synthetic data, Σ true click probability per seed and ad): the check that needs no
    fingerprint, e.g. for sweeps stored before manifests recorded them."""
    if per_cond.height == 0:  # no per-ad sums stored: nothing to compare row for row (and no per-ad test)
        return
    keys = [c for c in ("n", "sum_y", "sum_t") if c in per_cond.columns]
    arms = [per_cond.filter(pl.col("loss") == key).select("seed", "condition", *keys) for key in (BASELINE, CANDIDATE)]
    joined = arms[0].join(arms[1], on=["seed", "condition"], how="full", suffix="__c", coalesce=True)
    differ = pl.lit(False)
    for k in keys:  # equal within float rounding of the stored sums (missing on one side: not equal)
        a, b = pl.col(k).cast(pl.Float64), pl.col(f"{k}__c").cast(pl.Float64)
        differ = differ | ((a - b).abs() > 1e-9 * (1.0 + a.abs())).fill_null(True)
    bad = joined.filter(differ)
    if bad.height:
        row = bad.row(0, named=True)
        raise UserError(f"the two sweeps evaluated seed {row['seed']} on different rows (ad {row['condition']}: "
                        + ", ".join(f"{k} {_shown(row[k])} vs {_shown(row[k + '__c'])}" for k in keys)
                        + "): a paired comparison needs each seed's data to be the same in both")


def _shown(value: float | None) -> str:
    return "none stored" if value is None else f"{value:.6g}"


def _first_differences(a: list, b: list) -> str:
    pairs = [f"{x!r} vs {y!r}" for x, y in zip(a, b) if x != y][:3]
    return ", ".join(pairs) or "one list is longer"


def _flat(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}.{key}").items()}
    return {prefix: value}


def _arm_settings(arm: Arm, readers: set[str]) -> dict[str, Any]:
    """The arm's settings that can change its trials' results, flat: its loss's training settings (a loss-specific
    section only when one of the compared losses reads it), the model, the evaluation, the device's precision."""
    training = {k: v for k, v in to_plain(arm.cfg.training_for(arm.loss)).items()
                if k not in SECTION_READER or SECTION_READER[k] in readers}
    evaluation = {k: v for k, v in to_plain(arm.cfg.evaluation).items() if k not in DISPLAY_ONLY_EVALUATION}
    return {**_flat(training, "training"), **_flat(to_plain(arm.cfg.model), "model"),
            **_flat(evaluation, "evaluation"), "device.dtype": arm.cfg.device.dtype,
            "device.matmul_precision": arm.cfg.device.matmul_precision}


def setting_changes(base: Arm, cand: Arm) -> list[str]:
    """``key: baseline value → candidate value`` for every setting of :func:`_arm_settings` that differs, the loss
    first when it does."""
    readers = {base.loss, cand.loss}
    a, b = _arm_settings(base, readers), _arm_settings(cand, readers)
    out = [f"loss: {label(base.loss)} → {label(cand.loss)}"] if base.loss != cand.loss else []
    return out + [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


@dataclass
class SweepPair:
    """The comparison of two arms: its tables (frames keyed like a sweep report's), verdict and settings changes."""
    base: Arm
    cand: Arm
    metric_tests: pl.DataFrame
    condition_tests: pl.DataFrame
    deltas: pl.DataFrame
    calibration: pl.DataFrame
    truth: bool
    changes: list[str]
    verdict: Verdict


def _frames(base: Arm, cand: Arm, seeds: list[int]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both arms' trials of the paired ``seeds`` and their per-ad rows, ``loss`` = the arm's key."""
    records = [r for r in base.records + cand.records if int(r["seed"]) in seeds]
    return trials_frame(records), per_condition_frame(records, base.manifest.get("data", {}).get("condition_values"))


def compare_arms(base: Arm, cand: Arm) -> SweepPair:
    """The paired comparison of ``cand`` against ``base`` (module docstring); UserError when they share no seed or
    their data differ."""
    if base.root == cand.root and base.loss == cand.loss:
        raise UserError(f"both arms are {base.name}: name two sweeps, or two losses with --candidate-loss")
    seeds = sorted(base.seeds & cand.seeds)
    if not seeds:
        raise UserError(f"{base.name} and {cand.name} share no stored seed (seeds {sorted(base.seeds)[:10]} vs "
                        f"{sorted(cand.seeds)[:10]}): pair them by running both with the same project.seed, "
                        "repeats.seed_stride and repeats.num_runs")
    if base.name == cand.name:  # two sweeps of one name under different results folders
        base, cand = (replace(arm, name=f"{label(arm.loss)} ({arm.root.parent.name}/{arm.root.name})")
                      for arm in (base, cand))
    _same_data(base, cand, seeds)
    trials, per_cond = _frames(base, cand, seeds)
    _same_evaluation(per_cond)
    cfg = base.cfg
    excluded = set((base.manifest.get("audit") or {}).get("excluded_conditions", [])) | set(
        (cand.manifest.get("audit") or {}).get("excluded_conditions", []))
    truth = uses_truth(cfg, per_cond)
    tests, conditions, deltas = paired_tables(cfg, trials, per_cond, BASELINE, CANDIDATE,
                                              excluded | unmeasured(per_cond, truth), values_of(per_cond))
    calibration = calibration_long(per_cond, truth, excluded)
    changes = setting_changes(base, cand)
    v = verdict_inputs(cfg, BASELINE, CANDIDATE, tests, conditions, calibration, truth,
                       names={BASELINE: base.name, CANDIDATE: cand.name})
    extra = (_unpaired_line(base, cand) + _excluded_line(calibration, excluded)
             + non_finite_caveat(non_finite_values(trials, per_cond, {BASELINE: base.name, CANDIDATE: cand.name})))
    tested = {int(c) for c in v.condition_tests["condition"].to_list()} if v.condition_tests.height else set()
    return SweepPair(base, cand, tests, conditions, deltas, calibration, truth, changes,
                     _verdict(v, base, cand, changes, len(seeds), truth, extra, ads_table(calibration, tested, truth)))


def _unpaired_line(base: Arm, cand: Arm) -> list[str]:
    """The seeds stored in one arm only, left out of every test."""
    only = [(arm.name, sorted(arm.seeds - other.seeds)) for arm, other in ((base, cand), (cand, base))]
    said = [f"{', '.join(map(str, seeds))} only in {name}" for name, seeds in only if seeds]
    return [f"Seeds stored in one arm only are left out of every test (seeds {'; '.join(said)})."] if said else []


def _excluded_line(calibration: pl.DataFrame, excluded: set[int]) -> list[str]:
    """The ads either sweep's audit left out of the per-ad tests (too few clicks), named with their rates."""
    if not excluded or calibration.height == 0:
        return []
    ads = calibration.filter(pl.col("condition").is_in(sorted(excluded))).group_by("condition").agg(
        pl.col("ad_id").first(), pl.col("base_rate").first()).sort("base_rate")
    if ads.height == 0:
        return []
    return [f"Either sweep's audit left {excluded_ads(ads['ad_id'].to_list(), ads['base_rate'].to_list())} out of "
            "the per-ad tests (too few evaluation clicks to test)."]


#: audit codes about comparing the losses within one sweep, which say nothing of one loss compared across two
WITHIN_SWEEP_CODES = ("settings_differ", "single_loss")


def _about_the_arms(f: dict[str, Any], losses: set[str]) -> bool:
    """Whether an audit finding concerns the compared arms: not a within-sweep code, nor a finding that opens with
    another loss's label ("BCE takes 1 step ...")."""
    others = [label(x) for x in LOSSES if x not in losses]
    message = str(f.get("message", ""))
    return f.get("code") not in WITHIN_SWEEP_CODES and not any(message.startswith((f"{o} ", f"{o}:")) for o in others)


def _findings(base: Arm, cand: Arm) -> list[dict[str, Any]]:
    """Both sweeps' audit findings about the compared arms (:func:`_about_the_arms`) for the caveats, each said once
    with the arms it holds for."""
    said: dict[tuple[str, str, str], list[str]] = {}
    stored: dict[tuple[str, str, str], dict[str, Any]] = {}
    for arm in (base, cand):
        for f in (f for f in (arm.manifest.get("audit") or {}).get("findings", [])
                  if _about_the_arms(f, {base.loss, cand.loss})):
            key = (f.get("severity", ""), f.get("code", ""), f.get("message", ""))
            said.setdefault(key, []).append(arm.name)
            stored.setdefault(key, f)
    return [{**stored[key], "message": f"({' and '.join(names) if len(names) == 1 else 'both sweeps'}) "
             f"{stored[key]['message']}"} for key, names in said.items()]


def _verdict(v: VerdictInputs, base: Arm, cand: Arm, changes: list[str], seeds: int, truth: bool,
             extra: list[str], ads: pl.DataFrame) -> Verdict:
    """The comparison's verdict: the rare-ad headline (``ads``: :func:`ads_table`), bottom line, readings, metric and
    band sentences, then the caveats (the settings that differ first, both sweeps' audit findings, then ``extra``)."""
    rep = base.cfg.repeats
    verdict = Verdict(bottom=[bottom_line(v)], readings=ratio_readings([v]))
    verdict.headline = rare_headline(ads, reference_words(truth).removeprefix("the "), rare_advice(base.cfg))
    if v.condition_tests.height:
        verdict.note = bottom_note(v.reference, rep.per_condition_correction)
    title = f"{cand.name} vs {base.name} over {seeds} paired seed{'s' if seeds != 1 else ''}"
    verdict.comparisons.append((title, metric_sentences(v) + band_sentences(v)))
    verdict.caveats = [_changes_caveat(base, cand, changes), *_stats_settings_caveat(base, cand)]
    verdict.caveats += caveat_lines(_findings(base, cand), seeds={title: seeds}, alternative=rep.alternative,
                                    resampled=rep.resample_data, truth=truth,
                                    planned=max(len(base.seeds), len(cand.seeds)), alpha=rep.per_condition_alpha)
    verdict.caveats += [*extra, multiplicity_caveat(rep.per_condition_correction, 1)]
    return verdict


def _changes_caveat(base: Arm, cand: Arm, changes: list[str]) -> str:
    """The settings the arms differ in (baseline → candidate) and what a difference between them can be read as;
    the sweeps' code, packages and trial devices (:func:`run_differences`) named when they differ too."""
    other = run_differences(base, cand)
    also = (f" The sweeps also ran on different code, packages or devices ({'; '.join(other)}), which can move the "
            "numbers as well." if other else "")
    if not changes:
        return (f"{cand.name} and {base.name} trained with the same settings (loss, training, model, evaluation, "
                "device precision): any difference between them is run-to-run noise (e.g. the order of floating-point "
                f"sums on another device), not an effect of a setting.{also}")
    one = f"The two arms differ in one setting (baseline → candidate): {changes[0]}"
    if len(changes) == 1 and not other:
        return (f"{one}, and ran on the same code, packages and devices, so a significant difference between the arms "
                "is that setting's effect, on these seeds and data.")
    if len(changes) == 1:
        return (f"{one}.{also} A difference between the arms may come from either; to measure the setting's effect, "
                "rerun both arms on one version.")
    return (f"The two arms differ in {len(changes)} settings (baseline → candidate): {'; '.join(changes)}. A difference "
            f"between the arms may come from any of them; to measure one setting's effect, change only that one.{also}")


def run_differences(base: Arm, cand: Arm) -> list[str]:
    """What else differs between the two sweeps' runs (baseline → candidate): the le_ray commit and package versions
    of their manifests (the latest run of each), and the devices, float32 matmul precisions and torch thread counts
    their paired trials ran with (each orders or rounds the float sums; a record from before ``torch_threads`` was
    stored counts as "not recorded")."""
    bm, cm = base.manifest, cand.manifest
    out = []
    if bm.get("git_commit") != cm.get("git_commit"):
        out.append(f"le_ray commit {short_commit(bm.get('git_commit'))} → {short_commit(cm.get('git_commit'))}")
    bp, cp = bm.get("packages") or {}, cm.get("packages") or {}
    out += [f"{k} {bp.get(k)} → {cp.get(k)}" for k in sorted(set(bp) | set(cp)) if bp.get(k) != cp.get(k)]
    for key, words in (("device", "devices"), ("matmul_precision", "float32 matmul precisions"),
                       ("torch_threads", "torch threads")):
        seen = [sorted({"not recorded" if r.get(key) is None else str(r[key]) for r in arm.records})
                for arm in (base, cand)]
        if seen[0] != seen[1]:
            out.append(f"{words} {', '.join(seen[0])} → {', '.join(seen[1])}")
    return out


def _stats_settings_caveat(base: Arm, cand: Arm) -> list[str]:
    """The statistics use the baseline sweep's repeats.* settings; said when the candidate's differ."""
    keys = ("alternative", "zero_method", "per_condition_alpha", "per_condition_correction", "bootstrap_samples",
            "bootstrap_confidence", "per_condition_min_count")
    differ = [k for k in keys if getattr(base.cfg.repeats, k) != getattr(cand.cfg.repeats, k)]
    if not differ:
        return []
    return [f"The statistics use the baseline sweep's repeats settings; the candidate sweep sets "
            f"{', '.join(f'repeats.{k} {getattr(cand.cfg.repeats, k)!r}' for k in differ)} differently."]


def pair_markdown(pair: SweepPair) -> str:
    """The comparison's summary.md: the verdict, then the metric and per-ad tables (all columns in ``tables/``)."""
    b, c, rep = pair.base, pair.cand, pair.base.cfg.repeats
    lines = [f"# le_ray comparison of two sweeps: {c.name} vs {b.name}", "",
             f"Baseline: {b.name}, `{b.root}`. Candidate: {c.name}, `{c.root}`. Paired by seed on the same data; "
             f"**delta > 0 favours {c.name}**.", "", "## Verdict", "", *verdict_markdown(pair.verdict),
             "## Paired tests per metric", "",
             f"Paired Wilcoxon signed-rank over seeds ({rep.alternative}); p_adjusted: {rep.per_condition_correction} "
             f"over the informative metrics; CI: {rep.bootstrap_confidence:.0%} bootstrap of the mean delta "
             "(all columns: `tables/metric_tests.csv`).", "",
             markdown_table(pair.metric_tests.select([x for x in TEST_COLUMNS if x in pair.metric_tests.columns])), ""]
    if pair.condition_tests.height:
        lines += ["## Per-ad calibration tests", "",
                  f"gap = |mean prediction − {'true click probability' if pair.truth else 'evaluation click rate'}| "
                  f"per ad and seed; delta_mean = {b.name}'s gap − {c.name}'s (> 0 favours {c.name}), with its "
                  f"{rep.bootstrap_confidence:.0%} bootstrap interval (unadjusted); all columns: "
                  "`tables/condition_tests.csv`.", "",
                  markdown_table(shown_table(pair.condition_tests, CONDITION_COLUMNS, pair.truth),
                                 max_rows=rep.per_condition_top_k or MAX_AD_ROWS, csv="tables/condition_tests.csv"), ""]
    return "\n".join(lines)


def write_pair(pair: SweepPair, out: Path) -> Path:
    """summary.md and tables/*.csv of the comparison under ``out``, each written atomically, after removing those of
    an earlier comparison written there (a table this one lacks must not stay beside it); returns summary.md."""
    for old in [out / "summary.md", *sorted((out / "tables").glob("*.csv"))]:
        old.unlink(missing_ok=True)
    tables, names = out / "tables", {BASELINE: pair.base.name, CANDIDATE: pair.cand.name}
    write_csv(pair.metric_tests.with_columns(pl.col("baseline", "candidate").replace_strict(names)),
              tables / "metric_tests.csv")
    write_csv(pair.deltas, tables / "deltas.csv")
    if pair.condition_tests.height:
        write_csv(condition_table(pair.condition_tests, pair.truth), tables / "condition_tests.csv")
    if pair.calibration.height:
        calibration = pair.calibration.with_columns(pl.col("loss").replace_strict(names).alias("arm")).drop("loss")
        write_csv(condition_table(calibration.select("arm", *calibration.columns[:-1]), pair.truth),
                  tables / "calibration_ratio_by_seed.csv")
    return atomic_write_text(out / "summary.md", pair_markdown(pair) + "\n")
