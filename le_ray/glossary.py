"""Every metric and statistic a report shows: its direction (which way is better) and its definition.

The one table behind the paired tests' orientation (:data:`le_ray.stats.REPEAT_METRICS`), the metrics
``le-ray tune`` accepts as ``tune.metric`` (with their direction), and the glossary at the end of
``summary.md``. Definitions use p for a predicted probability, y for a 0/1 label, N rows, and j for a
condition (an ad).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Term", "METRICS", "STATISTICS", "TESTED_METRICS", "direction", "glossary_lines"]


@dataclass(frozen=True)
class Term:
    """``higher_is_better``: True / False for a metric with a direction, None for a descriptive quantity."""
    name: str
    higher_is_better: bool | None
    definition: str


METRICS: dict[str, Term] = {t.name: t for t in (
    Term("logloss", False, "mean binary cross-entropy, −(1/N) Σ [y ln p + (1−y) ln(1−p)], in nats (p clipped to "
                           "[1e-12, 1−1e-12])"),
    Term("brier", False, "mean squared error of the probability, (1/N) Σ (p − y)²"),
    Term("accuracy", True, "share of rows where (p ≥ 0.5) equals (y = 1)"),
    Term("ece", False, "expected calibration error: Σ_b (n_b/N)·|mean p_b − mean y_b| over the bins of "
                       "evaluation.ece_method (custom: equal-width; adaptive: equal-mass; smooth: Gaussian-smoothed "
                       "grid)"),
    Term("ece_small", False, "ECE on the rows with p ≤ evaluation.small_prob_max (or the small_prob_quantile "
                             "quantile of p when no row is that small): calibration where rare clicks live"),
    Term("logratio_calib_iw", False, "row-weighted mean over conditions of |ln((mean p_j + 1e-6)/(rate_j + 1e-6))|: "
                                     "how far each ad's mean prediction is from its click rate, in log units"),
    Term("logratio_calib_macro", False, "the same |log ratio| averaged over conditions with equal weight (every ad "
                                        "counts once, rare ones as much as common ones)"),
    Term("roc_auc", True, "area under the ROC curve (ranking quality; 0.5 = random)"),
    Term("pr_auc", True, "average precision (area under the precision–recall curve)"),
    Term("le_ratio", False, "Σ BCE of the model / Σ_j n_j·H(rate_j): the model's cross-entropy relative to predicting "
                            "each condition's own click rate (< 1 = better than the per-ad base rate)"),
    Term("ece_small_threshold", None, "the probability threshold ece_small used"),
)}

#: The metrics the paired Wilcoxon tests run on (those with a direction, except the per-ad baseline ratio).
TESTED_METRICS: dict[str, bool] = {n: t.higher_is_better for n, t in METRICS.items()
                                   if t.higher_is_better is not None and n != "le_ratio"}

STATISTICS: dict[str, Term] = {t.name: t for t in (
    Term("delta", None, "paired difference per seed, oriented so that delta > 0 favours the candidate (baseline − "
                        "candidate for lower-is-better metrics, candidate − baseline otherwise)"),
    Term("rank_biserial", None, "matched-pairs rank-biserial correlation (T+ − T−)/(T+ + T−) of the deltas, in "
                                "[−1, 1]; > 0 favours the candidate"),
    Term("ci_low / ci_high", None, "expanded percentile bootstrap interval of the mean delta "
         "(repeats.bootstrap_confidence; widened for few seeds as in Hesterberg 2015)"),
    Term("p_value / p_holm / p_bh / p_adjusted", None, "two-sided (or repeats.alternative) exact Wilcoxon "
                                                       "signed-rank p; Holm / Benjamini–Hochberg adjusted over the "
                                                       "tests of one comparison"),
    Term("n / n_nonzero / n_candidate_closer", None, "paired seeds; those with a nonzero delta (what the test "
         "ranks); those whose delta favours the candidate (per-ad tests: its gap the smaller)"),
    Term("gap", None, "per condition and seed: |mean prediction − click rate| of the evaluation rows (synthetic "
                      "data: against the mean true click probability of those rows)"),
    Term("calibration_ratio", None, "per condition: mean prediction / click rate (1 = calibrated; synthetic: also "
                                    "against the true rate)"),
    Term("NE", None, "normalised entropy, Σ BCE / (N·H(mean y)): the loss curves' common scale"),
    Term("ad_id", None, "an ad's id: the raw value of its condition column (e.g. C14 = 17753 on Avazu; the condition "
                        "index on synthetic data); `condition` is le_ray's internal index of it"),
    Term("rate band", None, "absolute decade of an ad's rate (< 0.1 %, 0.1–1 %, 1–10 %, ≥ 10 %; or "
                            "report.rate_bands); an ad is rare below 1 %"),
    Term("informative", None, "whether a paired metric test can say anything: false when the metric is identical in "
                              "every seed for either loss, or every paired delta is zero; such a metric is left out of "
                              "the correction family (empty p_adjusted)"),
)}


def direction(metric: str) -> bool:
    """``higher_is_better`` of a metric with a direction; KeyError naming the allowed ones otherwise."""
    term = METRICS.get(metric)
    if term is None or term.higher_is_better is None:
        allowed = [n for n, t in METRICS.items() if t.higher_is_better is not None]
        raise KeyError(f"{metric!r} has no direction; expected one of {', '.join(allowed)}")
    return term.higher_is_better


def glossary_lines(names: list[str] | None = None) -> list[str]:
    """Markdown bullet lines ``- **name** (lower is better): definition`` for ``names`` (default: all)."""
    terms = {**METRICS, **STATISTICS}
    out = []
    for name in names or list(terms):
        t = terms[name]
        way = "" if t.higher_is_better is None else (" (higher is better)" if t.higher_is_better else
                                                     " (lower is better)")
        out.append(f"- **{name}**{way}: {t.definition}")
    return out
