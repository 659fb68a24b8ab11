"""The statistics of a sweep report, from stored trial records (no training).

Statistics run on complete pairs only (seeds where both losses of a comparison finished):

* per-loss summaries over seeds;
* metric-level paired Wilcoxon tests with rank-biserial effect sizes and bootstrap CIs (delta > 0 favours
  the candidate: LE vs BCE, focal vs BCE, LE vs focal) and ``p_adjusted``: ``repeats.per_condition_correction``
  over the informative metrics of one comparison (a metric constant over the seeds for either loss, or with
  every paired delta zero, measures nothing: its p_adjusted is NaN and it does not count in the family);
* per-condition calibration tests from the trials' additive sums (n, Σp, and Σy, or Σ p_true for synthetic
  data when ``evaluation.synthetic_truth``: the gap is then measured against the true click probability,
  free of label noise), over the conditions the audit did not exclude;
* per-condition metrics of each loss pooled over seeds (the table of the summed sums);
* the long calibration table behind the rare-ad picture (ratio per seed, loss and condition).

Every per-ad table carries ``condition`` (the internal index) and ``ad_id`` (the raw condition value).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from le_ray.config import Config
from le_ray.registry import label
from le_ray.sweep.store import pooled_per_condition, with_ad_id
from le_ray.stats import REPEAT_METRICS, adjust_p, calibration_tests_from_sums, metric_tests, summarize_runs

__all__ = ["SweepTables", "compute_tables", "paired_tables", "calibration_long", "comparison_pairs", "pair_key",
           "uses_truth", "values_of", "unmeasured", "non_finite_values"]


def comparison_pairs(losses: tuple[str, ...]) -> list[tuple[str, str]]:
    """(baseline, candidate) pairs: LE vs BCE; with focal also focal vs BCE and LE vs focal."""
    pairs = []
    if {"bce", "localized_entropy"} <= set(losses):
        pairs.append(("bce", "localized_entropy"))
    if "focal" in losses:
        pairs += [(b, c) for b, c in (("bce", "focal"), ("focal", "localized_entropy")) if {b, c} <= set(losses)]
    return pairs


def pair_key(baseline: str, candidate: str) -> str:
    return f"{label(candidate)}_vs_{label(baseline)}"


@dataclass
class SweepTables:
    """Everything the report shows, as Polars frames keyed by a file-friendly name."""
    summary: pl.DataFrame
    metric_tests: dict[str, pl.DataFrame] = field(default_factory=dict)
    condition_tests: dict[str, pl.DataFrame] = field(default_factory=dict)
    deltas: dict[str, pl.DataFrame] = field(default_factory=dict)
    pooled: dict[str, pl.DataFrame] = field(default_factory=dict)
    calibration: pl.DataFrame = field(default_factory=pl.DataFrame)
    truth: bool = False
    ece_small_thresholds: pl.DataFrame = field(default_factory=pl.DataFrame)  # loss, seed, ece_small_threshold
    non_finite: list[str] = field(default_factory=list)  # "LE seed 43: logloss, ad 3's predictions" per trial


def uses_truth(cfg: Config, per_cond: pl.DataFrame) -> bool:
    """Whether gaps are measured against the true click probabilities (synthetic data with truth sums)."""
    return (cfg.evaluation.synthetic_truth and "sum_t" in per_cond.columns
            and per_cond["sum_t"].null_count() < per_cond.height)


def _seed_deltas(trials: pl.DataFrame, baseline: str, candidate: str) -> pl.DataFrame:
    """Long table metric, seed, delta (oriented: > 0 favours the candidate) over complete pairs."""
    names = [m for m in REPEAT_METRICS if m in trials.columns]
    b = trials.filter(pl.col("loss") == baseline).select("seed", *names)
    c = trials.filter(pl.col("loss") == candidate).select("seed", *names)
    joined = b.join(c, on="seed", suffix="__c").sort("seed")
    rows = [pl.DataFrame({"metric": [m] * joined.height, "seed": joined["seed"],
                          "delta": (1.0 if REPEAT_METRICS[m] else -1.0) * (joined[f"{m}__c"].to_numpy()
                                                                           - joined[m].to_numpy())})
            for m in names]
    return pl.concat(rows) if rows else pl.DataFrame({"metric": [], "seed": [], "delta": []})


def _seed_matrix(per_cond: pl.DataFrame, loss: str, seeds: np.ndarray, conditions: np.ndarray,
                 column: str) -> np.ndarray:
    """[S, C] of additive column ``column`` of ``loss`` over sorted seeds × sorted conditions (an ad absent from a
    seed's record → 0 rows and sums; a null or non-finite stored value → NaN, so that seed is no usable pair)."""
    sub = per_cond.filter((pl.col("loss") == loss) & pl.col("seed").is_in(seeds.tolist()))
    out = np.zeros((len(seeds), len(conditions)))
    out[np.searchsorted(seeds, sub["seed"].to_numpy()), np.searchsorted(conditions, sub["condition"].to_numpy())] = \
        sub[column].cast(pl.Float64).to_numpy()  # a non-finite sum stays NaN: its seed's pair is left out, never 0
    return out


def _bootstrap(cfg: Config) -> dict[str, Any]:
    """The bootstrap every interval of the report uses, per metric and per ad (``repeats.bootstrap_*``)."""
    rep = cfg.repeats
    return {"bootstrap_samples": rep.bootstrap_samples, "seed": cfg.project.seed, "confidence": rep.bootstrap_confidence}


def _condition_tests(cfg: Config, per_cond: pl.DataFrame, baseline: str, candidate: str,
                     excluded: set[int], values: list[str] | None) -> pl.DataFrame:
    if per_cond.height == 0:  # no trial holds per-ad sums (e.g. an unlabelled evaluation): no per-ad test
        return pl.DataFrame()
    tested = per_cond.filter(~pl.col("condition").is_in(sorted(excluded))) if excluded else per_cond
    seeds = np.array(sorted(set(tested.filter(pl.col("loss") == baseline)["seed"].to_list())
                            & set(tested.filter(pl.col("loss") == candidate)["seed"].to_list())))
    if tested.height == 0 or not len(seeds):
        return pl.DataFrame()
    conditions = np.sort(tested["condition"].unique().to_numpy())
    reference = "sum_t" if uses_truth(cfg, per_cond) else "sum_y"
    n, ref = (_seed_matrix(tested, baseline, seeds, conditions, c) for c in ("n", reference))
    sb, sc = (_seed_matrix(tested, loss, seeds, conditions, "sum_p") for loss in (baseline, candidate))
    rep = cfg.repeats
    table = calibration_tests_from_sums(n, ref, sb, sc, shared_data=not rep.resample_data, alternative=rep.alternative,
                                        zero_method=rep.zero_method, min_count=rep.per_condition_min_count,
                                        alpha=rep.per_condition_alpha, correction=rep.per_condition_correction,
                                        sort_by=rep.per_condition_sort_by, **_bootstrap(cfg))
    ids = pl.DataFrame({"condition": np.arange(len(conditions), dtype=np.int64), "condition_id": conditions})
    table = table.join(ids, on="condition", how="left").drop("condition").rename({"condition_id": "condition"})
    return with_ad_id(table, values)


def values_of(per_cond: pl.DataFrame) -> list[str] | None:
    """Ad id by condition index, from the per-condition frame's (condition, ad_id) pairs (None without them)."""
    if per_cond.height == 0 or "ad_id" not in per_cond.columns:
        return None
    pairs = dict(per_cond.select("condition", "ad_id").unique("condition").iter_rows())
    return [pairs.get(j, str(j)) for j in range(int(max(pairs)) + 1)]


def _without_mixed_ece_small(tests: pl.DataFrame, trials: pl.DataFrame, losses: tuple[str, str],
                             max_prob: float) -> pl.DataFrame:
    """``tests`` with ece_small left out of the correction family (``informative`` false, the reason in
    ``left_out``) when the two losses' trials mixed its two rules: rows below ``max_prob`` in some trials, each
    model's quantile in others. Its paired deltas then compare values over rows chosen by different rules."""
    if "ece_small_threshold" not in trials.columns or "ece_small" not in tests["metric"].to_list():
        return tests
    t = trials.filter(pl.col("loss").is_in(list(losses)))["ece_small_threshold"].cast(pl.Float64)
    fixed = ((t - max_prob).abs() <= 1e-12 * max_prob).fill_null(False)
    if not (fixed.any() and (t.is_finite().fill_null(False) & ~fixed).any()):
        return tests
    is_it = pl.col("metric") == "ece_small"
    informative = pl.col("informative") if "informative" in tests.columns else pl.lit(True)
    return tests.with_columns((informative & ~is_it).alias("informative"),
                              pl.when(is_it).then(pl.lit("its trials mixed the two rules that pick its rows; see the "
                                                         "caveats")).otherwise(None).alias("left_out"))


def _with_adjusted(tests: pl.DataFrame, correction: str) -> pl.DataFrame:
    """``p_adjusted``: the correction over the informative metrics of one comparison (others NaN, not counted)."""
    adjusted = adjust_p(tests["p_value"].to_numpy(), correction, include=tests["informative"].to_numpy())
    return tests.with_columns(pl.Series("p_adjusted", adjusted))


def calibration_long(per_cond: pl.DataFrame, truth: bool, excluded: set[int]) -> pl.DataFrame:
    """loss, seed, condition, ad_id, base_rate (pooled rate of the condition), ratio, n, sum_p and ref_sum (Σ
    reference: clicks, or Σ p_true) per seed, excluded."""
    if per_cond.height == 0:
        return pl.DataFrame()
    ref, ratio = ("true_rate", "calibration_ratio_true") if truth else ("base_rate", "calibration_ratio")
    pooled_rate = per_cond.group_by("condition").agg(
        (pl.col("sum_t" if truth else "sum_y").sum() / pl.col("n").sum()).alias("pooled_rate"))
    sums = [pl.col(c) for c in ("n", "sum_p") if c in per_cond.columns]
    if ("sum_t" if truth else "sum_y") in per_cond.columns:
        sums.append(pl.col("sum_t" if truth else "sum_y").alias("ref_sum"))
    cols = ["loss", "seed", "condition", *(["ad_id"] if "ad_id" in per_cond.columns else []), ratio]
    out = per_cond.select(*cols, *sums).rename({ratio: "ratio"}).join(pooled_rate, on="condition", how="left")
    return out.rename({"pooled_rate": "base_rate"}).with_columns(
        pl.col("condition").is_in(sorted(excluded)).alias("excluded"), pl.lit(ref).alias("reference"))


def unmeasured(per_cond: pl.DataFrame, truth: bool) -> set[int]:
    """The ads whose reference rate is not measured: measured against the evaluation click rate (not the synthetic
    truth) and without one evaluation click in any stored trial. The report calls them untested (no rate, so in
    no band); their per-ad test, a gap against a rate of 0, would only say which loss predicts lower, so they are
    left out of it even when the audit kept them (e.g. a manifest without an audit, or repeats.min_eval_clicks 0)."""
    if truth or per_cond.height == 0 or "sum_y" not in per_cond.columns:
        return set()
    clicks = per_cond.group_by("condition").agg(pl.col("sum_y").cast(pl.Float64).fill_nan(0).fill_null(0).max())
    return set(clicks.filter(pl.col("sum_y") <= 0)["condition"].to_list())


def paired_tables(cfg: Config, trials: pl.DataFrame, per_cond: pl.DataFrame, baseline: str, candidate: str,
                  excluded: set[int], values: list[str] | None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """One comparison's (metric tests with ``p_adjusted``, per-ad tests, per-seed deltas) of the rows whose ``loss``
    is ``baseline`` or ``candidate``, with the statistics settings of ``cfg.repeats`` (module docstring)."""
    rep = cfg.repeats
    tests = metric_tests(trials, baseline=baseline, candidate=candidate, alternative=rep.alternative,
                         zero_method=rep.zero_method, **_bootstrap(cfg))
    tests = _without_mixed_ece_small(tests, trials, (baseline, candidate), cfg.evaluation.small_prob_max)
    return (_with_adjusted(tests, rep.per_condition_correction),
            _condition_tests(cfg, per_cond, baseline, candidate, excluded, values),
            _seed_deltas(trials, baseline, candidate))


def compute_tables(cfg: Config, trials: pl.DataFrame, per_cond: pl.DataFrame, records: list[dict[str, Any]],
                   excluded: set[int] = frozenset()) -> SweepTables:
    """Every table of the report (see the module docstring)."""
    truth = uses_truth(cfg, per_cond) if per_cond.height else False
    tables = SweepTables(summarize_runs(trials) if trials.height else pl.DataFrame(), truth=truth)
    present = set(trials["loss"].unique().to_list()) if trials.height else set()
    values = values_of(per_cond)  # ad id by condition index, once for every table
    for loss in [x for x in cfg.losses if x in present]:
        tables.pooled[loss] = pooled_per_condition(records, loss, values)
    untested = set(excluded) | unmeasured(per_cond, truth)
    for baseline, candidate in comparison_pairs(cfg.losses):
        if {baseline, candidate} <= present:
            key = pair_key(baseline, candidate)
            tables.metric_tests[key], tables.condition_tests[key], tables.deltas[key] = paired_tables(
                cfg, trials, per_cond, baseline, candidate, untested, values)
    tables.calibration = calibration_long(per_cond, truth, set(excluded))
    if "ece_small_threshold" in trials.columns:
        tables.ece_small_thresholds = trials.select("loss", "seed", "ece_small_threshold")
    tables.non_finite = non_finite_values(trials, per_cond)
    return tables


def non_finite_values(trials: pl.DataFrame, per_cond: pl.DataFrame,
                      names: dict[str, str] | None = None) -> list[str]:
    """Per trial with a stored value that is null, NaN or infinite (a damaged or edited trial file, or a metric
    undefined on its data, e.g. an AUC with one class): ``LE seed 43: logloss, roc_auc, ad 3's predictions``. The
    tests leave each such seed's pair out of that metric's or that ad's test. ``names``: display names of the
    ``loss`` values that are no loss (two sweeps' arms), else the loss's label."""
    out: dict[tuple[str, int], list[str]] = {}
    for m in (x for x in REPEAT_METRICS if x in trials.columns):
        bad = trials.filter(~pl.col(m).cast(pl.Float64).is_finite().fill_null(False))
        for loss, seed in bad.select("loss", "seed").iter_rows():
            out.setdefault((loss, seed), []).append(m)
    sums = {"n": "rows", "sum_y": "clicks", "sum_t": "true click probabilities", "sum_p": "predictions"}
    for column, what in ((c, w) for c, w in sums.items() if c in per_cond.columns and "ad_id" in per_cond.columns):
        values = pl.col(column).cast(pl.Float64)
        bad = per_cond.filter(values.is_not_null() & ~values.is_finite()) if column == "sum_t" else \
            per_cond.filter(~values.is_finite().fill_null(False))  # sum_t is null on CTR data, by design
        for loss, seed, ad in bad.select("loss", "seed", "ad_id").iter_rows():
            out.setdefault((loss, seed), []).append(f"ad {ad}'s {what}")
    shown = (names or {}).get
    return [f"{shown(loss) or label(loss)} seed {seed}: {', '.join(what)}" for (loss, seed), what in sorted(out.items())]
