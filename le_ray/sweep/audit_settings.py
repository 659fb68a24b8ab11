"""The audit's rules on settings that leave a sweep with nothing to measure or that do nothing (see the table in
:mod:`le_ray.sweep.audit`): each passed validation, then trained nonsense or was silently ignored.

=============================  ========  ==================================================================
code                           severity  fires when
=============================  ========  ==================================================================
``unlabelled_evaluation``      error     the evaluation split has no labels (a test file without them, or test
                                         labels not used): a sweep compares labelled metrics (sweeps only)
``lr_zero_from_start``         error     ``lr_zero_after_epochs`` 0 with ``lr_category`` null: every parameter's
                                         lr is 0 from the first epoch, so nothing trains
``no_effect``                  warning   a setting the loss never reads: a loss-specific section under another
                                         loss's ``by_loss`` layer (``training.by_loss.bce.focal``), ``amp`` bf16
                                         with ``device.dtype`` float64 (autocast leaves float64 layers alone), or
                                         LE's ``cross_batch.warm_start`` with its history off
``conditions_merged``          warning   the CTR filter keeps more ads than ``max_conditions``: the rest are merged
                                         into one ``__other__`` ad
``ece_min_count_above_rows``   warning   ``evaluation.ece_min_count`` exceeds the evaluation rows: no bin is
                                         counted, so every ECE is 0 by construction
``per_ad_min_count_above_rows`` warning  ``repeats.per_condition_min_count`` exceeds every ad's evaluation rows:
                                         no ad can be tested (sweeps only)
=============================  ========  ==================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from le_ray.config import Config, to_plain
from le_ray.config.load import training_layers
from le_ray.data.filters import resolve_mode
from le_ray.registry import SECTION_READER, label
from le_ray.sweep.finding import ERROR, WARNING, Finding, setting_key

__all__ = ["settings_findings", "SETTINGS_SWEEP_ONLY_CODES"]

#: of this module's codes, those that say nothing about one diagnostic run (which evaluates without labels too)
SETTINGS_SWEEP_ONLY_CODES = ("unlabelled_evaluation", "per_ad_min_count_above_rows")


def settings_findings(cfg: Config, conditions: list[dict[str, Any]], labelled: bool) -> list[Finding]:
    """This module's findings for ``cfg`` trained on data whose per-condition counts are ``conditions`` (the
    audit's rows: ``eval_rows`` per ad) and whose evaluation split is ``labelled`` or not."""
    out = _unread(cfg) + _lr_zero(cfg) + _merged(cfg)
    if not labelled:
        out.append(_unlabelled(cfg))
    rows = [int(c["eval_rows"]) for c in conditions]
    if rows and cfg.evaluation.ece_min_count > sum(rows):
        out.append(Finding(WARNING, "ece_min_count_above_rows", (
            f"evaluation.ece_min_count = {cfg.evaluation.ece_min_count:,} exceeds the {sum(rows):,} evaluation rows: "
            "ECE skips every bin with fewer rows, so every ECE comes out 0 by construction, not because the models "
            "are calibrated"), ("evaluation.ece_min_count",)))
    if rows and cfg.repeats.per_condition_min_count > max(rows):
        out.append(Finding(WARNING, "per_ad_min_count_above_rows", (
            f"repeats.per_condition_min_count = {cfg.repeats.per_condition_min_count:,} exceeds every ad's evaluation "
            f"rows (at most {max(rows):,}): no ad can be tested, so the report cannot answer the per-ad question"),
            ("repeats.per_condition_min_count",)))
    return out


def _unlabelled(cfg: Config) -> Finding:
    """``unlabelled_evaluation``: why the evaluation split has no labels, and what labels it."""
    test_labels_on = cfg.evaluation.split == "test" and cfg.evaluation.use_test_labels
    if test_labels_on and cfg.data.source != "synthetic":  # asked for, but the test file holds none
        ds = cfg.active_ctr
        why = (f"evaluation.use_test_labels is true, but the test file ({ds.test_path}) has no label column "
               f"{ds.label_col!r} (an unlabelled test file, e.g. Kaggle's); evaluate on the eval split, or give a "
               "test file with labels")
        keys = ("evaluation.split", f"ctr.datasets.{cfg.data.ctr_dataset}.test_path")
    else:
        why = ("evaluate on the eval split, or on a labelled test file with evaluation.use_test_labels=true"
               if not test_labels_on else "evaluate on the eval split")
        keys = ("evaluation.split", "evaluation.use_test_labels")
    return Finding(ERROR, "unlabelled_evaluation", f"the evaluation split ({cfg.evaluation.split}) has no labels, "
                   f"so no metric can be compared across seeds: {why}", keys)


def _unread(cfg: Config) -> list[Finding]:
    """``no_effect``: loss-specific sections under another loss's layers, and bf16 autocast on float64."""
    by_loss, out = to_plain(cfg.training.by_loss), []
    for loss in cfg.losses:
        for prefix, layer in training_layers(by_loss, loss, cfg.source_keys):
            for section in (s for s in SECTION_READER if isinstance(layer, Mapping) and s in layer):
                reader = SECTION_READER[section]
                if reader != loss:
                    out.append(Finding(WARNING, "no_effect", (
                        f"{prefix}.{section} is set, but {label(loss)} does not read the {section} section (only "
                        f"{label(reader)} does): it changes nothing; remove it, or set it under "
                        f"training.by_loss.{reader}"), (f"{prefix}.{section}",)))
        history = cfg.training_for(loss).cross_batch
        if loss == SECTION_READER["cross_batch"] and history.warm_start and not history.enabled:
            out.append(Finding(WARNING, "no_effect", (
                f"{label(loss)}: cross_batch.warm_start is true but its history is off (cross_batch.enabled false): "
                "there is no window to start full"), (setting_key(cfg, loss, "cross_batch.warm_start"),
                                                      setting_key(cfg, loss, "cross_batch.enabled"))))
        if cfg.training_for(loss).amp == "bf16" and cfg.device.dtype == "float64":
            out.append(Finding(WARNING, "no_effect", (
                f"{label(loss)} trains with amp bf16 but device.dtype is float64: autocast leaves float64 layers "
                "alone, so it trains in float64; set device.dtype float32 for bf16, or amp off"),
                (setting_key(cfg, loss, "amp"), "device.dtype")))
    return out


def _lr_zero(cfg: Config) -> list[Finding]:
    """``lr_zero_from_start``: a loss whose every lr is 0 from its first epoch."""
    out = []
    for loss in cfg.losses:
        s = cfg.training_for(loss)
        if s.lr_zero_after_epochs == 0 and s.lr_category is None:
            out.append(Finding(ERROR, "lr_zero_from_start", (
                f"{label(loss)}: lr_zero_after_epochs is 0 and lr_category is null, so its one parameter group's lr "
                "is 0 from the first epoch and nothing trains; give lr_zero_after_epochs >= 1, or an lr_category "
                "for the condition embedding to go on training"),
                (setting_key(cfg, loss, "lr_zero_after_epochs"), setting_key(cfg, loss, "lr_category"))))
    return out


def _merged(cfg: Config) -> list[Finding]:
    """``conditions_merged``: a CTR filter that keeps more ads than the encoder keeps apart."""
    if cfg.data.source != "ctr":
        return []
    ds, where = cfg.active_ctr, f"ctr.datasets.{cfg.data.ctr_dataset}"
    flt = ds.filter
    kept = {"top_k": flt.k, "bottom_k": flt.k, "ids": len(flt.ids or ()),
            "top_count_rate_mix": flt.high_k + flt.middle_k + flt.low_k}.get(resolve_mode(flt) or "")
    if not kept or kept <= ds.max_conditions:
        return []
    return [Finding(WARNING, "conditions_merged", (
        f"the filter keeps {kept:,} ads but {where}.max_conditions is {ds.max_conditions:,}: the "
        f"{kept - ds.max_conditions:,} least frequent are merged into one ad '__other__', which the per-ad tests "
        "treat as one ad; raise max_conditions or keep fewer ads"), (f"{where}.max_conditions", f"{where}.filter"))]
