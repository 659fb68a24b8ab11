"""Evaluation metrics for CTR predictions: numpy arrays in, floats or Polars tables out.

Conventions (all public functions)
----------------------------------
* ``p``: predicted probabilities, shape ``[N]``, float; ``y``: labels, shape ``[N]``,
  in [0, 1] (hard 0/1 labels; soft labels are accepted where the formula allows it).
  A label counts as *positive* when ``y >= 0.5``.
* ``conditions``: integer condition ids (ad ids) ``0..C-1``, shape ``[N]``.
* Inputs are validated once, at the public boundary (1-D, equal shapes, finite values,
  integral non-negative condition ids); private helpers assume validated arrays.
* Empty input gives NaN for scalar metrics (and empty / all-empty-bin tables).

Modules
-------
* ``validation``: input checks, the ECE settings spec, the NaN-safe ratio.
* ``pointwise``: logloss, brier, accuracy / precision / recall / F1, ROC-AUC, PR-AUC.
* ``binning``: the bin rule of each ECE backend (custom, adaptive, adaptive_lib, smooth*).
* ``calibration``: per-bin averages, smoothing and the ECE: ``ece``, ``ece_table``,
  ``reliability_curve``, ``ece_small``.
* ``sums``: additive per-condition sufficient statistics (``condition_sums``,
  ``merge_sums``, JSON records) — merging shards or seeds is a sum.
* ``per_condition``: every per-condition table, computed from those sums.
* ``summary``: ``model_summary``, one flat dict per model (``summary_from_sums``: the same from sums).
"""

from le_ray.metrics.calibration import ece, ece_small, ece_table, reliability_curve
from le_ray.metrics.per_condition import (calibration_ratios, le_ratio_by_condition, logratio_calibration,
                                          per_condition_metrics, per_condition_table)
from le_ray.metrics.pointwise import binary_classification_metrics, brier, logloss, pr_auc, roc_auc, sorted_curve_areas
from le_ray.metrics.summary import SUMMARY_KEYS, model_summary, summary_from_sums
from le_ray.metrics.sums import (BinSums, ConditionSums, condition_sums, merge_sums, sums_from_record,
                                 sums_to_record)
from le_ray.metrics.validation import ECE_METHODS

__all__ = [
    "ECE_METHODS",
    "SUMMARY_KEYS",
    "logloss",
    "brier",
    "roc_auc",
    "sorted_curve_areas",
    "pr_auc",
    "binary_classification_metrics",
    "ece",
    "ece_table",
    "reliability_curve",
    "ece_small",
    "per_condition_metrics",
    "calibration_ratios",
    "le_ratio_by_condition",
    "logratio_calibration",
    "model_summary",
    "summary_from_sums",
    "BinSums",
    "ConditionSums",
    "condition_sums",
    "merge_sums",
    "per_condition_table",
    "sums_to_record",
    "sums_from_record",
]
