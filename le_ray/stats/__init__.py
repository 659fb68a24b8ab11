"""Paired statistics over repeated runs (seeds): Wilcoxon signed-rank tests, effect sizes,
bootstrap intervals, multiple-testing corrections and per-condition calibration tests.

Orientation (every function here)
---------------------------------
For a metric where lower is better, ``delta = baseline − candidate``; where higher is
better, ``delta = candidate − baseline``.  So **delta > 0 favours the candidate** (LE by
default) and the one-sided alternative ``"greater"`` always means "the candidate is
better", ``"less"`` "the candidate is worse" (the earlier system oriented both one-sided options towards "LE is
better", so its ``"less"`` was its ``"greater"``).

The test is ``scipy.stats.wilcoxon(delta, zero_method=zero_method, alternative=alternative)``,
i.e. scipy's paired call with ``x − y = delta`` (``wilcoxon(baseline, candidate)`` for a
lower-is-better metric, ``wilcoxon(candidate, baseline)`` for a higher-is-better one) and
the user's alternative passed through unchanged.  scipy's default ``method="auto"`` is
used (exact for ≤ 50 pairs without ties/zeros, a deterministic permutation test for ≤ 13
pairs with ties/zeros, else the normal approximation).  The reported ``statistic`` is
scipy's: min(T+, T−) for two-sided, T+ (sum of ranks of positive deltas) for one-sided.

The package: :mod:`~le_ray.stats.choices` (options and constants), :mod:`~le_ray.stats.paired` (one metric over
seeds), :mod:`~le_ray.stats.corrections` (multiple testing), :mod:`~le_ray.stats.per_condition` (per-ad
calibration tests).  Everything public is importable from ``le_ray.stats``.
"""

from le_ray.stats.choices import (ALTERNATIVES, CORRECTIONS, HIGHER_IS_BETTER, LOWER_IS_BETTER, REPEAT_METRICS,
                                  ZERO_METHODS)
from le_ray.stats.corrections import (adjust_p, bh_adjust, holm_adjust, min_exact_p, min_pairs_for_alpha,
                                      min_wins_for_p, smallest_holm_p)
from le_ray.stats.paired import (bootstrap_mean_ci, bootstrap_mean_cis, expanded_levels, is_constant, median_range,
                                 metric_tests, paired_deltas, paired_wilcoxon, rank_biserial, summarize_runs)
from le_ray.stats.per_condition import calibration_tests_from_sums, per_condition_calibration_tests

from le_ray.metrics.validation import _check_array, _check_conditions

__all__ = [
    "LOWER_IS_BETTER",
    "HIGHER_IS_BETTER",
    "REPEAT_METRICS",
    "ALTERNATIVES",
    "ZERO_METHODS",
    "CORRECTIONS",
    "median_range",
    "paired_deltas",
    "paired_wilcoxon",
    "rank_biserial",
    "bootstrap_mean_ci",
    "bootstrap_mean_cis",
    "expanded_levels",
    "summarize_runs",
    "metric_tests",
    "holm_adjust",
    "bh_adjust",
    "adjust_p",
    "is_constant",
    "per_condition_calibration_tests",
    "calibration_tests_from_sums",
    "min_pairs_for_alpha",
    "min_exact_p",
    "min_wins_for_p",
    "smallest_holm_p",
]
