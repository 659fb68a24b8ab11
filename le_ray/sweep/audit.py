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
``no_train_click``     warning   a condition has no training click
``no_eval_click``      warning   a condition has no click in the evaluation split
``few_eval_clicks``    warning   a condition has fewer than ``repeats.min_eval_clicks`` evaluation clicks
``underpowered``       warning   ``repeats.num_runs`` seeds cannot reach ``per_condition_alpha`` (exact
                                 Wilcoxon, after the per-condition correction)
``single_loss``        warning   only one loss is trained: no comparison is possible
``history_spans_epochs`` warning the LE history capacity ceil(A / p_j) exceeds the condition's train rows
                                 per epoch: the window never evicts within an epoch and carries numerators
                                 of much older models
``le_batch_rate``      warning   LE without history where a condition expects < 1 click per batch
                                 (batch × rate < 1): its per-condition optimum is biased low by construction
``shadowed_set``       warning   a general ``--set training.<key>`` loses to a per-loss / per-source value
=====================  ========  ==========================================================================

Conditions under a click finding are EXCLUDED from the per-condition tests and the verdict (reported
as "too few clicks to test"). An error refuses to start unless ``repeats.allow_unsound`` is true
(``--allow-unsound``). With ``repeats.resample_data`` the data differ per seed: counts are the smallest
over the seeds' data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import polars as pl

from le_ray.metrics.compare import format_table
from le_ray.config import Config, Shadow, TrainingSettings, to_plain
from le_ray.config.load import training_layers
from le_ray.training.cross_batch import history_capacities
from le_ray.data.arrays import PreparedData
from le_ray.data.prepare import le_base_rates
from le_ray.glossary import TESTED_METRICS
from le_ray.registry import LOSSES
from le_ray.stats import min_pairs_for_alpha

__all__ = ["Finding", "Audit", "audit_experiment", "setting_key", "condition_counts_table", "audit_text",
           "refusal"]

ERROR, WARNING = "error", "warning"
CLICK_CODES = ("no_train_click", "no_eval_click", "few_eval_clicks")


@dataclass(frozen=True)
class Finding:
    """One problem of the experiment: ``severity`` error (refuse to start) or warning, a stable ``code``,
    a sentence, the config ``keys`` that change it, and the condition ids it concerns (if any)."""
    severity: str
    code: str
    message: str
    keys: tuple[str, ...]
    conditions: tuple[int, ...] = ()

    def to_record(self) -> dict[str, Any]:
        return {"severity": self.severity, "code": self.code, "message": self.message, "keys": list(self.keys),
                "conditions": list(self.conditions)}


@dataclass(frozen=True)
class Audit:
    """Effective settings per loss, per-condition counts and the findings (see the module docstring)."""
    settings: dict[str, dict[str, Any]]
    conditions: list[dict[str, Any]]
    findings: list[Finding] = field(default_factory=list)

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
                "excluded_conditions": list(self.excluded_conditions)}


def setting_key(cfg: Config, loss: str, dotted: str) -> str:
    """The most specific config key that sets training setting ``dotted`` (e.g. ``batch_size``) for ``loss``."""
    parts = dotted.split(".")
    for prefix, layer in reversed(training_layers(to_plain(cfg.training.by_loss), loss, cfg.source_keys)):
        node: Any = layer
        for part in parts:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return f"{prefix}.{dotted}"
    return f"training.{dotted}"


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
    true = None
    if split is not None and split.p_true is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            true = np.bincount(split.cond, weights=split.p_true, minlength=c) / eval_rows
    return [{"condition": j, "value": data.condition_values[j], "train_rows": int(data.train_condition_counts[j]),
             "train_clicks": int(data.train_condition_positives[j]), "eval_rows": int(eval_rows[j]),
             "eval_clicks": None if eval_clicks is None else int(round(eval_clicks[j])),
             "true_rate": None if true is None or not math.isfinite(true[j]) else float(true[j])}
            for j in range(c)]


def _merge_counts(tables: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Row-wise minimum of the counts over several seeds' tables (the conservative view)."""
    out = [dict(row) for row in tables[0]]
    for table in tables[1:]:
        for row, other in zip(out, table):
            for key in ("train_rows", "train_clicks", "eval_rows", "eval_clicks"):
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
                          "capacity": [int(v) for v in _capacities(cfg, settings, data)]}
    return out


def _le_rates(cfg: Config, settings: TrainingSettings, data: PreparedData) -> np.ndarray:
    return le_base_rates(data, prior=settings.le.base_rate_prior,
                         use_true_rates=cfg.synthetic.use_true_base_rates_for_le)


def _capacities(cfg: Config, settings: TrainingSettings, data: PreparedData) -> np.ndarray:
    """The LE history's window capacity per condition (:func:`le_ray.training.cross_batch.history_capacities`)."""
    return np.asarray(history_capacities(_le_rates(cfg, settings, data), settings.cross_batch.amplification_rate,
                                         settings.cross_batch.max_window))


def _step_findings(cfg: Config, info: dict[str, dict[str, Any]]) -> list[Finding]:
    need = cfg.repeats.min_steps_per_epoch
    out = []
    for loss, s in info.items():
        if s["steps_per_epoch"] < need:
            key = setting_key(cfg, loss, "batch_size")
            out.append(Finding(ERROR, "few_steps", (
                f"{LOSSES[loss].label} takes {s['steps_per_epoch']} optimiser step(s) per epoch ({s['train_rows']:,} "
                f"train rows, batch {s['batch_size']:,}); at least {need} are needed for a model that learns: lower "
                f"{key} (below {max(1, s['train_rows'] // need):,}) or add data"), (key, "repeats.min_steps_per_epoch")))
    return out


def _click_findings(cfg: Config, conditions: list[dict[str, Any]]) -> list[Finding]:
    need, out = cfg.repeats.min_eval_clicks, []
    total = sum(c["train_clicks"] for c in conditions)
    data_keys = ("synthetic.samples_per_condition",) if cfg.data.source == "synthetic" else (
        f"ctr.datasets.{cfg.data.ctr_dataset}.filter", f"ctr.datasets.{cfg.data.ctr_dataset}.train_path")
    if total == 0:
        out.append(Finding(ERROR, "no_train_clicks", "the training split holds no click at all: nothing to learn",
                           data_keys))
    rules = (("no_train_click", lambda c: c["train_rows"] > 0 and c["train_clicks"] == 0, "no training click"),
             ("no_eval_click", lambda c: c["eval_clicks"] == 0, "no evaluation click"),
             ("few_eval_clicks", lambda c: c["eval_clicks"] is not None and 0 < c["eval_clicks"] < need,
              f"fewer than {need} evaluation clicks"))
    for code, rule, what in rules:
        hit = [c for c in conditions if c["train_rows"] + c["eval_rows"] > 0 and rule(c)]
        if hit:
            listed = ", ".join(f"{c['value']} ({c['train_clicks']} train / {c['eval_clicks']} eval clicks)"
                               for c in hit[:8]) + (" ..." if len(hit) > 8 else "")
            out.append(Finding(WARNING, code, f"{len(hit)} condition(s) with {what}: {listed}; too few clicks to "
                               "test, so they are left out of the per-condition tests and the verdict",
                               ("repeats.min_eval_clicks", *data_keys, "data.train_split"),
                               tuple(c["condition"] for c in hit)))
    return out


def _power_findings(cfg: Config, conditions: list[dict[str, Any]], excluded: Iterable[int]) -> list[Finding]:
    rep, out = cfg.repeats, []
    families = {"per-condition tests": max(1, len(conditions) - len(set(excluded))),
                "metric-level tests": len(TESTED_METRICS)}
    needs = {name: min_pairs_for_alpha(rep.per_condition_alpha, m_tests=m, correction=rep.per_condition_correction,
                                       alternative=rep.alternative) for name, m in families.items()}
    short = {name: need for name, need in needs.items() if rep.num_runs < need}
    if short:
        smallest = (2.0 if rep.alternative == "two-sided" else 1.0) / 2 ** rep.num_runs
        detail = "; ".join(f"{name} ({rep.per_condition_correction} over {families[name]}) need >= {need} seeds"
                           for name, need in short.items())
        out.append(Finding(WARNING, "underpowered", (
            f"{rep.num_runs} seeds: the smallest exact {rep.alternative} Wilcoxon p-value is {smallest:.3g}, so no "
            f"result can reach alpha {rep.per_condition_alpha}: {detail}"), ("repeats.num_runs",)))
    if len(cfg.losses) < 2:
        out.append(Finding(WARNING, "single_loss", f"only {LOSSES[cfg.losses[0]].label} is trained: no comparison "
                           "and no test will be made", ("training.loss_mode",)))
    return out


def _history_findings(cfg: Config, info: dict[str, dict[str, Any]], conditions: list[dict[str, Any]],
                      data: PreparedData) -> list[Finding]:
    out = []
    for loss, s in info.items():
        settings = cfg.training_for(loss)
        if s["history"] is not None:
            cap = np.asarray(s["history"]["capacity"])
            rows = np.array([c["train_rows"] for c in conditions])
            big = [j for j in range(len(rows)) if rows[j] > 0 and cap[j] > rows[j]]
            if big:
                key = setting_key(cfg, loss, "cross_batch.max_window")
                listed = ", ".join(f"{conditions[j]['value']} (capacity {cap[j]:,} > {rows[j]:,} rows per epoch)"
                                   for j in big[:6])
                out.append(Finding(WARNING, "history_spans_epochs", (
                    f"{LOSSES[loss].label} history windows larger than a condition's train rows per epoch: {listed}; "
                    f"the window then never evicts and holds numerators of much older models; lower {key}"),
                    (key, setting_key(cfg, loss, "cross_batch.amplification_rate")), tuple(big)))
        elif loss == "localized_entropy":
            rates = _le_rates(cfg, settings, data)
            low = [j for j in range(len(rates)) if conditions[j]["train_rows"] > 0
                   and settings.batch_size * rates[j] < 1]
            if low:
                key = setting_key(cfg, loss, "batch_size")
                listed = ", ".join(f"{conditions[j]['value']} ({settings.batch_size * rates[j]:.2f})" for j in low[:6])
                out.append(Finding(WARNING, "le_batch_rate", (
                    f"LE without history, expected clicks per batch < 1 for {listed}: the per-condition optimum is "
                    f"then biased low by construction; raise {key} or turn on the history "
                    f"({setting_key(cfg, loss, 'cross_batch.enabled')})"),
                    (key, setting_key(cfg, loss, "cross_batch.enabled")), tuple(low)))
    return out


def _shadow_findings(shadows: Iterable[Shadow]) -> list[Finding]:
    return [Finding(WARNING, "shadowed_set", s.message, (s.set_key, s.winner_key)) for s in shadows]


def audit_experiment(cfg: Config, datasets: Sequence[PreparedData], shadows: Iterable[Shadow] = ()) -> Audit:
    """The audit of training ``cfg.losses`` on ``datasets`` (one per data seed; usually one)."""
    data = datasets[0]
    conditions = _merge_counts([condition_counts_table(cfg, d) for d in datasets])
    info = {loss: _loss_settings(cfg, loss, cfg.training_for(loss), data) for loss in cfg.losses}
    for loss, s in info.items():
        if s["history"] is not None:
            for row, cap in zip(conditions, s["history"]["capacity"]):
                row[f"history_capacity_{LOSSES[loss].folder}"] = cap
    findings = _step_findings(cfg, info) + _click_findings(cfg, conditions)
    excluded = {c for f in findings if f.code in CLICK_CODES for c in f.conditions}
    findings += _power_findings(cfg, conditions, excluded)
    findings += _history_findings(cfg, info, conditions, data) + _shadow_findings(shadows)
    return Audit(info, conditions, findings)


_SETTING_COLUMNS = ("epochs", "batch_size", "lr", "lr_decay", "lr_category", "lr_category_decay", "steps_per_epoch",
                    "steps_total")


def audit_text(audit: Audit, *, max_conditions: int | None = 50) -> str:
    """The audit as text: effective settings per loss, per-condition counts, then the findings."""
    settings = pl.DataFrame([{"loss": LOSSES[loss].label, **{k: s[k] for k in _SETTING_COLUMNS},
                              "history": "off" if s["history"] is None else
                              f"A={s['history']['amplification_rate']:g}, max {s['history']['max_window']:,}"}
                             for loss, s in audit.settings.items()], infer_schema_length=None)
    conditions = pl.DataFrame(audit.conditions, infer_schema_length=None)
    lines = ["experiment audit — effective training settings per loss:", format_table(settings), "",
             "per condition (train / evaluation rows and clicks):",
             format_table(conditions.drop("condition"), max_rows=max_conditions), ""]
    if not audit.findings:
        lines.append("audit: no finding; the experiment can answer its question.")
    for f in audit.findings:
        lines.append(f"{f.severity.upper()} [{f.code}] {f.message} (keys: {', '.join(f.keys)})")
    return "\n".join(lines)


def refusal(audit: Audit) -> str:
    """Why the sweep does not start: the audit's errors and the way past them."""
    errors = "\n".join(f"  - [{f.code}] {f.message}" for f in audit.errors)
    return (f"the experiment audit found {len(audit.errors)} error(s); nothing was trained:\n{errors}\n"
            "fix the keys named above, or run anyway with --allow-unsound (repeats.allow_unsound: true); the "
            "warnings then go into summary.md")
