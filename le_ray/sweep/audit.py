"""The experiment audit: can this sweep answer its question? Checked before any training.

For each loss the EFFECTIVE settings after every override (epochs, batch size, lr and its decays,
optimiser steps per epoch and in total, the LE history capacity per condition); for each condition
the train / evaluation rows and clicks (and the mean true click probability of synthetic data); and
findings, each ``{"severity", "code", "message", "keys"}`` naming the config key to change:

=====================  ========  ==========================================================================
code                   severity  fires when
=====================  ========  ==========================================================================
``few_steps``          error     a loss takes fewer than ``repeats.min_steps_per_epoch`` optimiser steps per
                                 epoch (batch size ≥ train rows gives one step: the model barely moves)
``no_train_clicks``    error     the training split holds no click at all
``no_train_non_clicks`` error   every training row is a click (a label column that is always 1)
``no_train_click``     warning   a condition has no training click
``no_eval_click``      warning   a condition has no click in the evaluation split (see below for synthetic data)
``few_eval_clicks``    warning   a condition has fewer than ``repeats.min_eval_clicks`` evaluation clicks
``underpowered``       warning   ``repeats.num_runs`` seeds cannot reach ``per_condition_alpha`` (exact
                                 Wilcoxon, after the per-condition correction)
``single_loss``        warning   only one loss is trained: no comparison is possible
``history_spans_epochs`` warning the LE history capacity ceil(A / p_j) exceeds the condition's train rows
                                 per epoch: the window never evicts within an epoch and carries numerators
                                 of much older models
``le_batch_rate``      warning   LE without history where a condition expects < 1 click per batch
                                 (e_j = batch × its share of the train rows × rate < 1): its per-condition
                                 optimum is biased low by construction
``le_history_warmup``  warning   LE with history where a condition expects < 1 click per batch (e_j < 1): the
                                 windows start empty, so early batches without its click weigh its rows by up
                                 to 1 / (expected clicks); such early steps can drive every condition's
                                 predictions towards 0 (README, "Testing LE's claim at scale"); not raised
                                 with ``cross_batch.warm_start`` (the windows start full at the base rates)
``le_warm_start``      warning   LE's history windows start full at the base rates
                                 (``cross_batch.warm_start``), not empty as in the reference: a caveat naming
                                 the variant the results are of
``shadowed_set``       warning   a general ``--set training.<key>`` loses to a per-loss / per-source value (one
                                 finding per ``--set``), or a per-loss ``--set`` of an optimiser key is ignored
                                 under ``training.same_settings_for_all_losses``
``settings_differ``    warning   an optimiser setting (:data:`le_ray.config.schema.OPTIMISER_SETTING_KEYS`)
                                 differs between the compared losses: one finding per setting, naming each
                                 loss's value and where it comes from (default, profile, --set, tuned); the
                                 comparison then mixes the loss's effect with the optimiser's (a value tuned per
                                 loss by ``le-ray tune``: each loss at its own best, the comparison it intends)
``fixed_split``        warning   several seeds share one preparation of the data (``repeats.resample_data``
                                 false): seeds vary only the model, not the split (nor synthetic rows)
``too_slow_here``      error     the sweep's estimated wall time on the device it would run on
                                 (:mod:`le_ray.sweep.runtime_estimate`) exceeds ``repeats.max_estimated_hours``
``single_condition``   warning   the data hold one condition (one ad id in every kept row): LE then normalises
                                 every row by the same base rate, i.e. it is BCE rescaled, and the per-ad tests
                                 have one ad
``blank_condition``    warning   CTR rows with an empty condition value are kept as an ad whose id is ``""``
                                 (counts and the first row's line named)
=====================  ========  ==========================================================================

Settings that leave nothing to measure or do nothing (``unlabelled_evaluation``, ``lr_zero_from_start``,
``no_effect``, ``conditions_merged``, ``ece_min_count_above_rows``, ``per_ad_min_count_above_rows``) have their
rules and table in :mod:`le_ray.sweep.audit_settings`.

Conditions under a click finding are EXCLUDED from the per-condition tests and the verdict (reported
as "too few clicks to test"). On synthetic data with ``evaluation.synthetic_truth`` the per-condition tests
measure predictions against the true click probabilities, so the clicks the evaluation split happened to draw
do not enter them; the two evaluation-click rules then count a condition's EXPECTED evaluation clicks
(``eval_expected_clicks`` = Σ p_true over its evaluation rows), which a seed's draw does not move: a 10-seed
quickstart whose rarest ad expects ~17 clicks no longer loses it from every test when one seed draws 7. An error refuses to start unless ``repeats.allow_unsound`` is true
(``--allow-unsound``). With ``repeats.resample_data`` the data differ per seed: each per-condition count is
the smallest over the seeds' data (column by column, so a row need not add up to one seed's totals), and
the record says over how many preparations (``data_draws``). The record's ``fairness`` lists every differing
optimiser setting as ``{"setting", "losses": {loss: {"value", "key", "source"}}}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from le_ray.config import Config, Shadow, TrainingSettings
from le_ray.config.load import Provenance
from le_ray.config.messages import describe_value, distinct_values
from le_ray.config.resolve import SAME_SETTINGS_KEY, every_loss_set, set_literal
from le_ray.config.schema import OPTIMISER_SETTING_KEYS
from le_ray.training.shapes import input_width, window_capacities
from le_ray.data.arrays import PreparedData
from le_ray.data.prepare import le_base_rates
from le_ray.data.scan import place_in_file
from le_ray.glossary import TESTED_METRICS
from le_ray.registry import LOSSES
from le_ray.stats import min_exact_p, min_pairs_for_alpha
from le_ray.sweep.audit_settings import SETTINGS_SWEEP_ONLY_CODES, settings_findings
from le_ray.sweep.finding import ERROR, WARNING, Finding, setting_key

__all__ = ["Finding", "Audit", "audit_experiment", "one_run_audit", "SWEEP_ONLY_CODES", "setting_key",
           "condition_counts_table", "fairness_record", "batch_for_steps", "expected_clicks_per_batch",
           "batch_one_liner"]

CLICK_CODES = ("no_train_click", "no_eval_click", "few_eval_clicks")


@dataclass(frozen=True)
class Audit:
    """Effective settings per loss, per-condition counts and the findings (see the module docstring)."""
    settings: dict[str, dict[str, Any]]
    conditions: list[dict[str, Any]]
    findings: list[Finding] = field(default_factory=list)
    fairness: list[dict[str, Any]] = field(default_factory=list)
    data_draws: int = 1

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def excluded_conditions(self) -> tuple[int, ...]:
        """Condition ids that the per-condition tests and the verdict leave out (too few clicks to test)."""
        return tuple(sorted({c for f in self.findings if f.code in CLICK_CODES for c in f.conditions}))

    def to_record(self) -> dict[str, Any]:
        return {"settings": self.settings, "conditions": self.conditions,
                "findings": [f.to_record() for f in self.findings],
                "excluded_conditions": list(self.excluded_conditions), "fairness": self.fairness,
                "data_draws": self.data_draws}


def _eval_split(cfg: Config, data: PreparedData):
    split = data.split(cfg.evaluation.split)
    labelled = split is not None and split.has_labels and (cfg.evaluation.split != "test"
                                                           or cfg.evaluation.use_test_labels)
    return split, labelled


def condition_counts_table(cfg: Config, data: PreparedData) -> list[dict[str, Any]]:
    """Per condition: value, train rows/clicks, evaluation rows/clicks (None without labels), true rate."""
    c = data.num_conditions
    split, labelled = _eval_split(cfg, data)
    eval_rows = np.bincount(split.cond, minlength=c) if split is not None else np.zeros(c, np.int64)
    eval_clicks = np.bincount(split.cond, weights=split.y, minlength=c) if labelled else None
    true = expected = None
    if split is not None and split.p_true is not None:
        expected = np.bincount(split.cond, weights=split.p_true, minlength=c)
        with np.errstate(invalid="ignore", divide="ignore"):
            true = expected / eval_rows
    if not (labelled and cfg.evaluation.synthetic_truth):
        expected = None  # the tests then read the realised clicks (no truth, or truth switched off)
    return [{"condition": j, "value": data.condition_values[j], "train_rows": int(data.train_condition_counts[j]),
             "train_clicks": int(data.train_condition_positives[j]), "eval_rows": int(eval_rows[j]),
             "eval_clicks": None if eval_clicks is None else int(round(eval_clicks[j])),
             # 4 significant digits, not 1 decimal: an ad expecting 0.03 clicks must not read as expecting none
             "eval_expected_clicks": None if expected is None else float(f"{float(expected[j]):.4g}"),
             "true_rate": None if true is None or not math.isfinite(true[j]) else float(true[j])}
            for j in range(c)]


def _merge_counts(tables: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Row-wise minimum of the counts over several seeds' tables (the conservative view)."""
    out = [dict(row) for row in tables[0]]
    for table in tables[1:]:
        for row, other in zip(out, table):
            for key in ("train_rows", "train_clicks", "eval_rows", "eval_clicks", "eval_expected_clicks"):
                if row[key] is not None and other[key] is not None:
                    row[key] = min(row[key], other[key])
    return out


def _loss_settings(cfg: Config, loss: str, settings: TrainingSettings, data: PreparedData) -> dict[str, Any]:
    rows = len(data.train)
    steps = math.ceil(rows / settings.batch_size) if rows else 0
    out = {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr,
           "lr_decay": settings.lr_decay, "lr_category": settings.lr_category,
           "lr_category_decay": settings.lr_category_decay, "lr_zero_after_epochs": settings.lr_zero_after_epochs,
           "steps_per_epoch": steps, "steps_total": steps * settings.epochs, "train_rows": rows,
           "history": None}
    if LOSSES[loss].supports_history and settings.cross_batch.enabled:
        out["history"] = {"amplification_rate": settings.cross_batch.amplification_rate,
                          "max_window": settings.cross_batch.max_window,
                          "warm_start": settings.cross_batch.warm_start,
                          "capacity": [int(v) for v in _capacities(cfg, settings, data)]}
    return out


def _le_rates(cfg: Config, settings: TrainingSettings, data: PreparedData) -> np.ndarray:
    return le_base_rates(data, prior=settings.le.base_rate_prior,
                         use_true_rates=cfg.synthetic.use_true_base_rates_for_le)


def _capacities(cfg: Config, settings: TrainingSettings, data: PreparedData) -> np.ndarray:
    """The LE history's window capacity per condition (:func:`le_ray.training.shapes.window_capacities`), from the
    rates as a trial holds them: rounded to ``device.dtype`` (a float32 trial builds its history from float32
    rates, and ceil(A / r_j) can move by one where A / r_j sits within float32 rounding of an integer)."""
    rates = _le_rates(cfg, settings, data).astype(np.float32 if cfg.device.dtype == "float32" else np.float64)
    return window_capacities(rates, settings.cross_batch.amplification_rate,
                             settings.cross_batch.max_window)


def batch_for_steps(train_rows: int, steps: int) -> int:
    """The largest power of two ``b`` with ceil(train_rows / b) >= ``steps`` (b <= train_rows // steps; 1 at least)."""
    return 1 << max(0, (max(1, train_rows // steps)).bit_length() - 1)


def batch_one_liner(cfg: Config, batch: int) -> str:
    """The ``--set`` that gives every loss batch size ``batch``."""
    if cfg.training.same_settings_for_all_losses:
        return f"--set {set_literal('training.batch_size', batch)}"
    return every_loss_set("batch_size", batch)


def _step_findings(cfg: Config, info: dict[str, dict[str, Any]]) -> list[Finding]:
    need = cfg.repeats.min_steps_per_epoch
    out = []
    for loss, s in info.items():
        if s["steps_per_epoch"] < need:
            key = setting_key(cfg, loss, "batch_size")
            batch = batch_for_steps(s["train_rows"], need)
            out.append(Finding(ERROR, "few_steps", (
                f"{LOSSES[loss].label} takes {s['steps_per_epoch']} optimiser step(s) per epoch ({s['train_rows']:,} "
                f"train rows, batch {s['batch_size']:,} from {key}); at least {need} are needed for a model that "
                f"learns: give every loss a batch of {batch:,} with {batch_one_liner(cfg, batch)} (any batch up to "
                f"{s['train_rows'] // need:,} will do), or add data"), (key, "repeats.min_steps_per_epoch")))
    return out


def _click_findings(cfg: Config, conditions: list[dict[str, Any]], one_run: bool = False) -> list[Finding]:
    """Click findings of ``conditions``; each ends on why its ads are left out of the per-condition tests, or, for
    ``one_run`` (a diagnostic run makes no test), on what their few clicks do to the run's per-ad numbers."""
    need, out = cfg.repeats.min_eval_clicks, []
    total = sum(c["train_clicks"] for c in conditions)
    data_keys = ("synthetic.samples_per_condition",) if cfg.data.source == "synthetic" else (
        f"ctr.datasets.{cfg.data.ctr_dataset}.filter", f"ctr.datasets.{cfg.data.ctr_dataset}.train_path")
    rows = sum(c["train_rows"] for c in conditions)
    if total == 0:
        out.append(Finding(ERROR, "no_train_clicks", "the training split holds no click at all: nothing to learn",
                           data_keys))
    elif total >= rows:
        out.append(Finding(ERROR, "no_train_non_clicks", f"every one of the {rows:,} training rows is a click: "
                           "nothing to learn (check the label column)", data_keys))
    truth = any(c.get("eval_expected_clicks") is not None for c in conditions)
    clicks = (lambda c: c["eval_expected_clicks"]) if truth else (lambda c: c["eval_clicks"])
    expected = " expected" if truth else ""
    # with the truth, an ad with evaluation rows always expects some clicks: "none" means no evaluation row
    none = (lambda c: c["eval_rows"] == 0) if truth else (lambda c: clicks(c) == 0)
    rules = (("no_train_click", lambda c: c["train_rows"] > 0 and c["train_clicks"] == 0, "no training click"),
             ("no_eval_click", none, "no evaluation row" if truth else "no evaluation click"),
             ("few_eval_clicks", lambda c: clicks(c) is not None and 0 < clicks(c) < need,
              f"fewer than {need}{expected} evaluation click{'s' if need != 1 else ''}"))
    for code, rule, what in rules:
        hit = [c for c in conditions if c["train_rows"] + c["eval_rows"] > 0 and rule(c)]
        if hit:
            listed = ", ".join(f"{c['value']} ({c['train_clicks']} train / {c['eval_clicks']} eval clicks"
                               + (f", {clicks(c):g} expected" if truth else "") + ")"
                               for c in hit[:8]) + (" ..." if len(hit) > 8 else "")
            out.append(Finding(WARNING, code,
                               f"{len(hit)} condition(s) with {what}: {listed}; "
                               f"{_in_one_run(code) if one_run else _left_out(code, truth)}",
                               ("repeats.min_eval_clicks", *data_keys, "data.train_split"),
                               tuple(c["condition"] for c in hit)))
    return out


def _left_out(code: str, truth: bool) -> str:
    """Why the ads of click finding ``code`` are left out of the per-condition tests and the verdict (``truth``: the
    tests measure against the synthetic truth, which needs no evaluation click)."""
    left = "they are left out of the per-condition tests and the verdict"
    if truth and code == "no_eval_click":
        return f"nothing to evaluate them on, so {left}"
    if truth and code == "few_eval_clicks":
        return (f"{left}, although the per-ad test, against the true click probability, needs no evaluation click: "
                "--set repeats.min_eval_clicks=0 tests them too (what their models learnt rests on the training "
                "clicks listed)")
    return f"too few clicks to test, so {left}"


def _power_findings(cfg: Config, conditions: list[dict[str, Any]], excluded: Iterable[int]) -> list[Finding]:
    rep, out = cfg.repeats, []
    families = {"per-condition tests": max(1, len(conditions) - len(set(excluded))),
                "metric-level tests": len(TESTED_METRICS)}
    needs = {name: min_pairs_for_alpha(rep.per_condition_alpha, m_tests=m, correction=rep.per_condition_correction,
                                       alternative=rep.alternative) for name, m in families.items()}
    short = {name: need for name, need in needs.items() if rep.num_runs < need}
    if short:
        smallest = min_exact_p(rep.num_runs, rep.alternative)
        detail = "; ".join(f"{name} ({rep.per_condition_correction} over {families[name]}) need >= {need} seeds"
                           for name, need in short.items())
        if rep.per_condition_correction == "bh":  # BH passes p_min only when every test of the family has it
            detail += " (bh: only when every test of a family is that small; one alone needs the holm count)"
        out.append(Finding(WARNING, "underpowered", (
            f"{rep.num_runs} seeds: the smallest exact {rep.alternative} Wilcoxon p-value is {smallest:.3g}, so no "
            f"result of a family this large can reach alpha {rep.per_condition_alpha}: {detail} (a smaller family, "
            "e.g. with metrics constant over the seeds left out, needs fewer)"), ("repeats.num_runs",)))
    if len(cfg.losses) < 2:
        out.append(Finding(WARNING, "single_loss", f"only {LOSSES[cfg.losses[0]].label} is trained: no comparison "
                           "and no test will be made", ("training.loss_mode",)))
    return out


def _rows_per_batch(batch_size: int, train_rows: Sequence[int]) -> np.ndarray:
    """B · n_j / Σ_k n_k [C]: the rows of condition j in one shuffled batch of B rows (its share of the train rows;
    0 for every condition when there are none)."""
    rows = np.asarray(train_rows, dtype=np.float64)
    total = rows.sum()
    return batch_size * (rows / total if total > 0 else rows)


def expected_clicks_per_batch(batch_size: int, train_rows: Sequence[int], rates: np.ndarray) -> np.ndarray:
    """e_j [C] = B · (n_j / Σ_k n_k) · r_j: the clicks of condition j in one shuffled batch of B rows, from its train
    rows n_j and LE's base rate r_j (a batch holds each condition's share of the rows)."""
    return _rows_per_batch(batch_size, train_rows) * np.asarray(rates, dtype=np.float64)


def _window_findings(cfg: Config, loss: str, s: dict[str, Any], conditions: list[dict[str, Any]], rows: np.ndarray,
                     clicks: np.ndarray, low: list[int]) -> list[Finding]:
    """``history_spans_epochs`` and ``le_history_warmup`` of a loss that keeps an LE history (``rows`` [C] train
    rows, ``clicks`` [C] expected clicks per batch, ``low``: the conditions with rows and clicks < 1)."""
    cap = np.asarray(s["history"]["capacity"])
    out, window_key = [], setting_key(cfg, loss, "cross_batch.max_window")
    big = [j for j in range(len(rows)) if rows[j] > 0 and cap[j] > rows[j]]
    if big:
        listed = ", ".join(f"{conditions[j]['value']} (capacity {cap[j]:,} > {rows[j]:,} rows per epoch)"
                           for j in big[:6])
        out.append(Finding(WARNING, "history_spans_epochs", (
            f"{LOSSES[loss].label} history windows larger than a condition's train rows per epoch: {listed}; "
            f"the window then never evicts and holds numerators of much older models; lower {window_key}"),
            (window_key, setting_key(cfg, loss, "cross_batch.amplification_rate")), tuple(big)))
    warm = setting_key(cfg, loss, "cross_batch.warm_start")
    if cfg.training_for(loss).cross_batch.warm_start:  # a variant the results must name, and no cold start to warn of
        out.append(Finding(WARNING, "le_warm_start", (
            f"{LOSSES[loss].label}'s history windows start full of entries at each condition's base rate ({warm}="
            f"true), not empty as in the reference LE: its results are those of this variant; each condition's "
            f"first window of real rows replaces the virtual entries"), (warm,)))
    elif low:
        key = setting_key(cfg, loss, "batch_size")
        fill = cap / np.maximum(_rows_per_batch(s["batch_size"], rows), 1e-300)  # steps to a full window
        steps = s["steps_total"]
        listed = "; ".join(f"{conditions[j]['value']} ({clicks[j]:.2g} per batch: "
                           f"{_warmup_steps(clicks[j], fill[j], steps)})"
                           if clicks[j] > 0 else f"{conditions[j]['value']} (0 per batch)"
                           for j in sorted(low, key=lambda j: clicks[j])[:6])
        listed += f"; {len(low) - 6} more" if len(low) > 6 else ""
        out.append(Finding(WARNING, "le_history_warmup", (
            f"{LOSSES[loss].label}: {len(low)} condition(s) expect fewer than 1 click per batch in this run of "
            f"{steps:,} steps: {listed}. The history windows start empty, so until they hold clicks a batch "
            f"without one normalises its condition by a fraction of a click (den_j = rows × −ln(1 − p_j)) and its "
            f"rows weigh up to 1 / (expected clicks) times a BCE row, so the steps before the windows fill can push "
            f"every condition's predictions towards 0; raise {key} so that every batch holds clicks of each "
            f"condition, or start the windows full at the base rates ({warm}=true; not the reference's rule)"),
            (key, setting_key(cfg, loss, "cross_batch.amplification_rate"), warm), tuple(low)))
    return out


def _warmup_steps(clicks: float, fill: float, steps: int) -> str:
    """When a condition's first click (after ~1 / clicks steps, ``clicks`` expected per batch) and its full window
    (after ~``fill`` steps) come, measured against the run's ``steps``: a step count past the run is said to be."""
    first, full = math.ceil(1 / clicks), math.ceil(fill)
    if first > steps:
        return f"first click expected after ~{first:,} steps, beyond this run's {steps:,}"
    if full > steps:
        return f"first click after ~{first:,} steps, window full after ~{full:,}, beyond this run's {steps:,}"
    return f"first click after ~{first:,} steps, window full after ~{full:,}"


def _history_findings(cfg: Config, info: dict[str, dict[str, Any]], conditions: list[dict[str, Any]],
                      data: PreparedData) -> list[Finding]:
    """LE's per-batch normalisation where clicks per batch are rare, with and without its history."""
    out = []
    rows = np.array([c["train_rows"] for c in conditions])
    for loss, s in info.items():
        if not LOSSES[loss].supports_history:
            continue
        clicks = expected_clicks_per_batch(s["batch_size"], rows, _le_rates(cfg, cfg.training_for(loss), data))
        low = [j for j in range(len(rows)) if rows[j] > 0 and clicks[j] < 1]  # fewer than 1 click per batch
        if s["history"] is not None:
            out += _window_findings(cfg, loss, s, conditions, rows, clicks, low)
        elif low:
            key = setting_key(cfg, loss, "batch_size")
            listed = ", ".join(f"{conditions[j]['value']} ({clicks[j]:.2g})" for j in low[:6])
            out.append(Finding(WARNING, "le_batch_rate", (
                f"LE without history, expected clicks per batch < 1 for {listed}: the per-condition optimum is "
                f"then biased low by construction; raise {key} or turn on the history "
                f"({setting_key(cfg, loss, 'cross_batch.enabled')})"),
                (key, setting_key(cfg, loss, "cross_batch.enabled")), tuple(low)))
    return out


def _shadow_findings(shadows: Iterable[Shadow]) -> list[Finding]:
    """One ``shadowed_set`` finding per ``--set`` (its losses together)."""
    groups: dict[tuple[str, str, bool], list[Shadow]] = {}
    for s in shadows:
        groups.setdefault((s.set_key, json.dumps(s.set_value), s.winner_key == SAME_SETTINGS_KEY), []).append(s)
    out = []
    for (set_key, _, ignored), group in groups.items():
        first = group[0]
        keys = tuple(dict.fromkeys([set_key, *(s.winner_key for s in group)]))
        if len(group) == 1:
            out.append(Finding(WARNING, "shadowed_set", first.message, keys))
            continue
        labels = _and([LOSSES[s.loss].label for s in group])
        assignment = set_literal(set_key, first.set_value)
        message = (f"--set {assignment} has no effect on {labels}: {SAME_SETTINGS_KEY} is true, so every loss takes "
                   f"{first.setting} from training.{first.setting} (--set "
                   f"{set_literal(f'training.{first.setting}', first.set_value)})" if ignored else
                   f"--set {assignment} does not apply to {labels}: more specific keys win ("
                   + ", ".join(f"{s.winner_key} = {describe_value(s.winner_value)}" for s in group)
                   + f"); set it for every loss at once with {every_loss_set(first.setting, first.set_value)}")
        out.append(Finding(WARNING, "shadowed_set", message, keys))
    return out


def _and(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"


_SOURCE_WORDS = {"default": "shipped default"}  #: configs/default.json: chosen per loss, not a neutral value


def fairness_record(cfg: Config, provenance: Provenance | None) -> list[dict[str, Any]]:
    """Every optimiser setting whose value differs between ``cfg.losses``: per loss its value, the most specific
    key that sets it and that key's source (:meth:`Provenance.origin`; None when unknown)."""
    out = []
    for key in OPTIMISER_SETTING_KEYS:
        values = {loss: getattr(cfg.training_for(loss), key) for loss in cfg.losses}
        if len({json.dumps(v) for v in values.values()}) < 2:
            continue
        losses = {}
        for loss, value in values.items():
            where = setting_key(cfg, loss, key)
            losses[loss] = {"value": value, "key": where,
                            "source": None if provenance is None else provenance.origin(where)}
        out.append({"setting": key, "losses": losses})
    return out


def _fairness_findings(cfg: Config, fairness: list[dict[str, Any]], info: dict[str, dict[str, Any]]) -> list[Finding]:
    out = []
    for row in fairness:
        key, parts = row["setting"], []
        shown = dict(zip(row["losses"], distinct_values([v["value"] for v in row["losses"].values()])))
        for loss, v in row["losses"].items():
            source = "" if v["source"] is None else f" ({_SOURCE_WORDS.get(v['source'], v['source'])})"
            decayed = (f", {100 * v['value'] ** info[loss]['steps_total']:.3g} % of its start lr after "
                       f"{info[loss]['steps_total']:,} steps" if key == "lr_decay" else "")
            parts.append(f"{LOSSES[loss].label} {shown[loss]}{source}{decayed}")
        keys = tuple(dict.fromkeys(v["key"] for v in row["losses"].values()))
        tuned = [x for x, v in row["losses"].items() if v["source"] == "tuned" and key in cfg.tune.space.get(x, {})]
        if tuned:  # a tune's test sweep: each loss at its own best is the comparison meant
            advice = _tuned_advice(key, tuned, [x for x in row["losses"] if x not in tuned])
            keys += tuple(f"tune.space.{x}.{key}" for x in row["losses"])
        else:  # a common batch: the smallest of theirs, and no larger than gives every loss its minimum steps (the
            # training.* default could bring back a few_steps error said in the same audit)
            one = (_common_batch(cfg, [v["value"] for v in row["losses"].values()], info) if key == "batch_size"
                   else getattr(cfg.training, key))
            advice = (f"so the comparison mixes the effect of the loss with that of its optimiser settings; give every "
                      f"loss one value with {every_loss_set(key, one)} (or every optimiser "
                      f"setting at once: --set {SAME_SETTINGS_KEY}=true trains every loss with the training.* values)")
            keys += (SAME_SETTINGS_KEY,)
        out.append(Finding(WARNING, "settings_differ",
                           f"{key} differs between the compared losses — {'; '.join(parts)} — {advice}", keys))
    return out


def _common_batch(cfg: Config, values: list[int], info: dict[str, dict[str, Any]]) -> int:
    """The batch size to suggest to every compared loss: the smallest of theirs, but at most the largest that gives
    each loss ``repeats.min_steps_per_epoch`` steps on its training rows (what ``few_steps`` asks)."""
    room = [max(1, int(s["train_rows"]) // max(1, cfg.repeats.min_steps_per_epoch)) for s in info.values()
            if s.get("train_rows")]
    return min([*values, *room])


def _tuned_advice(key: str, tuned: list[str], untuned: list[str]) -> str:
    """The advice of a ``settings_differ`` finding of a tune's test sweep whose ``key`` ``le-ray tune`` searched
    (``tune.space.<loss>.<key>``) for the losses ``tuned``: each of them at its own best is the comparison a tune
    intends, so no advice to make them equal; the losses ``untuned`` kept their configured value."""
    if not untuned:
        return (f"because {key} was tuned per loss (tune.space.<loss>.{key}): each loss is tested at its own best "
                f"{key}, which is the intended comparison of tuned losses, so do not make the values equal; the "
                f"results compare each loss with its tuned {key}, not the loss alone")
    names = [LOSSES[x].label for x in tuned], [LOSSES[x].label for x in untuned]
    return (f"{key} was tuned for {_and(names[0])} ({'each ' if len(tuned) > 1 else ''}at its own best) but not "
            f"for {_and(names[1])}, which "
            f"keep{'s' if len(untuned) == 1 else ''} the configured value, so the comparison mixes tuned and untuned "
            f"settings; search {key} for every compared loss too ("
            + ", ".join(f"tune.space.{x}.{key}" for x in untuned) + ") to compare each loss at its own best")


def _split_findings(cfg: Config) -> list[Finding]:
    """``fixed_split``: the seeds share one preparation of the data (``repeats.resample_data`` false)."""
    if cfg.repeats.resample_data or cfg.repeats.num_runs < 2:
        return []
    what = ("the synthetic rows and their train / evaluation split are" if cfg.data.source == "synthetic" else
            "the train / evaluation split is")
    return [Finding(WARNING, "fixed_split", (
        f"the data are prepared once for all {cfg.repeats.num_runs} seeds (repeats.resample_data is false): {what} "
        f"the same in every seed, so seeds vary only the model (initialisation and batch order) and the seed-to-seed "
        f"spread leaves out the variation of the data; --set repeats.resample_data=true redraws them per seed"),
        ("repeats.resample_data",))]


def _condition_value_findings(cfg: Config, data: PreparedData, conditions: list[dict[str, Any]]) -> list[Finding]:
    """``single_condition`` (one ad in the data) and ``blank_condition`` (CTR rows with an empty ad id)."""
    out: list[Finding] = []
    ctr = cfg.data.source == "ctr"
    where = f"ctr.datasets.{cfg.data.ctr_dataset}"
    col = cfg.active_ctr.condition_col if ctr else None
    if data.num_conditions == 1:
        value = data.condition_values[0]
        what = (f"column {col!r} ({where}.condition_col) holds the single value {value!r} in every kept row" if ctr
                else "synthetic.num_conditions is 1")
        fix = (f"choose a condition column with several values or let {where}.filter keep more" if ctr else
               "raise synthetic.num_conditions")
        out.append(Finding(WARNING, "single_condition", (
            f"only one ad: {what}; with one ad LE normalises every row by the same base rate, so it is BCE rescaled, "
            f"and the per-ad tests have a single ad to test; {fix}"),
            (f"{where}.condition_col", f"{where}.filter") if ctr else ("synthetic.num_conditions",), (0,)))
    # Rows with an empty ad id are KEPT (as the ad ""): that is what the pipeline always did, a missing id is a value
    # the filter can select on purpose (filter.ids [""]), and dropping them would silently change the row counts and
    # the split while refusing them would stop files that are fine otherwise. The audit says so, where it is seen.
    if ctr and "" in data.condition_values:
        j = data.condition_values.index("")
        rows = [s.row_id[s.cond == j] for s in (data.train, data.eval)]
        first = min((int(r.min()) for r in rows if r.size), default=None)
        ds = cfg.active_ctr
        place = "" if first is None else (
            f"; the first at {place_in_file(ds.train_path, f'{where}.train_path', ds, cfg.data.ctr_dataset, first)}")
        out.append(Finding(WARNING, "blank_condition", (
            f"{conditions[j]['train_rows']:,} train and {conditions[j]['eval_rows']:,} evaluation rows have an empty "
            f"{col!r} ({where}.condition_col){place}: they are kept as one ad whose ad_id is blank (\"\"); fill in "
            f"their ad id in the file, or keep only named ads with {where}.filter.ids"),
            (f"{where}.condition_col", f"{where}.filter", f"{where}.train_path"), (j,)))
    return out


def _runtime_findings(cfg: Config, info: dict[str, dict[str, Any]], data: PreparedData,
                      stored: Mapping[str, int] | None = None) -> list[Finding]:
    """``too_slow_here``: the estimate of the trials still to train (``stored``: loss → trials a resumed sweep
    holds) on the device at hand against ``repeats.max_estimated_hours``."""
    from le_ray.sweep.runtime_estimate import too_slow

    width = input_width(data.num_numeric, len(data.cat_vocab_sizes), cfg.model.embed_dim, cfg.model.cat_embed_dim)
    reason = too_slow(cfg, train_rows=len(data.train), input_width=width,
                      epochs_by_loss={loss: s["epochs"] for loss, s in info.items()}, stored=stored)
    return [] if reason is None else [Finding(ERROR, "too_slow_here", reason, (
        "repeats.max_estimated_hours", "ray.address", "repeats.num_runs", "repeats.allow_unsound"))]


def audit_experiment(cfg: Config, datasets: Sequence[PreparedData], shadows: Iterable[Shadow] = (),
                     provenance: Provenance | None = None, stored: Mapping[str, int] | None = None,
                     one_run: bool = False) -> Audit:
    """The audit of training ``cfg.losses`` on ``datasets`` (one per data seed; usually one); ``provenance``
    (:func:`le_ray.config.load.provenance`) names where each differing setting comes from; ``stored`` (loss →
    trials a resumed sweep already holds) leaves those out of the runtime estimate; ``one_run``: the audit of one
    diagnostic run (:func:`one_run_audit`, its click findings worded for a run)."""
    data = datasets[0]
    conditions = _merge_counts([condition_counts_table(cfg, d) for d in datasets])
    info = {loss: _loss_settings(cfg, loss, cfg.training_for(loss), data) for loss in cfg.losses}
    for loss, s in info.items():
        if s["history"] is not None:
            for row, cap in zip(conditions, s["history"]["capacity"]):
                row[f"history_capacity_{LOSSES[loss].folder}"] = cap
    findings = _step_findings(cfg, info) + _click_findings(cfg, conditions, one_run)
    excluded = {c for f in findings if f.code in CLICK_CODES for c in f.conditions}
    findings += _power_findings(cfg, conditions, excluded)
    findings += _history_findings(cfg, info, conditions, data) + _shadow_findings(shadows)
    fairness = fairness_record(cfg, provenance)
    findings += _fairness_findings(cfg, fairness, info) + _split_findings(cfg)
    findings += _runtime_findings(cfg, info, data, stored) + _condition_value_findings(cfg, data, conditions)
    findings += settings_findings(cfg, conditions, _eval_split(cfg, data)[1])
    audit = Audit(info, conditions, findings, fairness, len(datasets))
    return one_run_audit(audit) if one_run else audit


#: Findings about a sweep's seeds (how many, whether they share one split) and its estimated wall time: they say
#: nothing about one diagnostic run (``le-ray run``: one seed per loss, no test).
SWEEP_ONLY_CODES = ("underpowered", "fixed_split", "too_slow_here", *SETTINGS_SWEEP_ONLY_CODES)


def one_run_audit(audit: Audit) -> Audit:
    """``audit`` as it applies to one diagnostic run: without the :data:`SWEEP_ONLY_CODES` findings."""
    return replace(audit, findings=[f for f in audit.findings if f.code not in SWEEP_ONLY_CODES])


def _in_one_run(code: str) -> str:
    """What the ads of click finding ``code`` mean for one run's per-ad numbers (in place of :func:`_left_out`)."""
    meaning = {"no_train_click": "their models in this run learn these ads from no click",
               "no_eval_click": "this run's per-ad numbers for them are undefined or rest on no click",
               "few_eval_clicks": "this run's per-ad numbers for them rest on a few clicks and are noisy"}[code]
    return f"{meaning} (a sweep leaves them out of its per-condition tests)"
