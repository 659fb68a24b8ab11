"""The experiment audit (:mod:`le_ray.sweep.audit`) as text: the console's audit, the effective-settings table
summary.md shows, and the refusal of a sweep the audit stops."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from le_ray.metrics.compare import format_table
from le_ray.registry import label
from le_ray.sweep.audit import Audit

__all__ = ["audit_text", "refusal", "SETTING_COLUMNS", "history_cell", "settings_table", "conditions_shown"]


SETTING_COLUMNS = ("epochs", "batch_size", "lr", "lr_decay", "lr_category", "lr_category_decay", "steps_per_epoch",
                   "steps_total")
"""The settings columns of the effective-settings table, in order (between ``loss`` and ``history``)."""


def history_cell(history: dict[str, Any] | None, *, brief: bool = False) -> str:
    """The ``history`` cell of the effective-settings table for a loss's stored ``history`` record: ``off``
    without one, else ``A=64, max 1,000,000`` (amplification rate and window cap; the audit text) or, ``brief``,
    ``A = 64`` (the rate alone; summary.md), each followed by ``, warm start`` when the windows start full."""
    if history is None:
        return "off"
    warm = ", warm start" if history.get("warm_start") else ""  # absent in audits stored before the key
    if brief:
        return f"A = {history['amplification_rate']:g}{warm}"
    return f"A={history['amplification_rate']:g}, max {history['max_window']:,}{warm}"


def settings_table(settings: dict[str, dict[str, Any]], *, columns: Sequence[str] = SETTING_COLUMNS,
                   brief_history: bool = False) -> pl.DataFrame:
    """The effective training settings per loss as a table, one row per loss of ``settings`` (:attr:`Audit.settings`
    or the manifest's ``audit.settings``): ``loss`` (its label), the ``columns`` (null where a stored record lacks
    one) and ``history`` (:func:`history_cell`); no column at all when ``settings`` is empty."""
    return pl.DataFrame([{"loss": label(loss), **{k: s.get(k) for k in columns},
                          "history": history_cell(s.get("history"), brief=brief_history)}
                         for loss, s in settings.items()], infer_schema_length=None)


def audit_text(audit: Audit, *, max_conditions: int | None = 50) -> str:
    """The audit as text: effective settings per loss, per-condition counts, then the findings."""
    settings = settings_table(audit.settings)
    lines = ["experiment audit — effective training settings per loss:", format_table(settings), "",
             _conditions_heading(audit.data_draws),
             format_table(conditions_shown(audit.conditions), max_rows=max_conditions), ""]
    if not audit.findings:
        lines.append("audit: no finding; the experiment can answer its question.")
    for f in audit.findings:
        lines.append(f"{f.severity.upper()} [{f.code}] {f.message} (keys: {', '.join(f.keys)})")
    return "\n".join(lines)


def conditions_shown(conditions: list[dict[str, Any]]) -> pl.DataFrame:
    """The audit's per-ad counts as printed: ``ad_id`` first, the true rate named for its split (the evaluation
    rows' mean true click probability), and without the columns no ad has a value in (the truth's, on CTR data)."""
    table = pl.DataFrame(conditions, infer_schema_length=None).drop("condition", strict=False)
    table = table.rename({"value": "ad_id", "true_rate": "eval_true_rate"}, strict=False)
    return table.select([c for c in table.columns if table[c].null_count() < table.height or c == "ad_id"])


def _conditions_heading(draws: int) -> str:
    if draws == 1:
        return "per ad: train / evaluation rows and clicks:"
    return (f"per ad: train / evaluation rows and clicks, each the SMALLEST over the {draws} seeds' data draws, "
            "column by column (so a row need not add up to any one seed's totals):")


def refusal(audit: Audit) -> str:
    """Why the sweep does not start: the audit's errors and the way past them."""
    errors = "\n".join(f"  - [{f.code}] {f.message}" for f in audit.errors)
    return (f"the experiment audit found {len(audit.errors)} error(s); nothing was trained:\n{errors}\n"
            "fix the keys named above, or run anyway with --allow-unsound (repeats.allow_unsound: true); the "
            "warnings then go into summary.md")
