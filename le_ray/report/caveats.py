"""The caveats of a verdict, one plain sentence each: every audit finding, the power of the paired seeds stored,
the fixed split, what per-ad gaps are measured against, missing trials, unequal tuning, ``ece_small``'s mixed rules,
and the training settings that differ between two compared losses (:func:`setting_differences`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import polars as pl

from le_ray.config.messages import distinct_values
from le_ray.registry import label
from le_ray.report.verdict import seeds_word, span
from le_ray.report.wording import pval
from le_ray.stats import min_exact_p

__all__ = ["caveat_lines", "ece_small_caveat", "non_finite_caveat", "setting_differences", "COMPARED_SETTINGS",
           "FIXED_SPLIT_CODES"]

#: training settings compared between the two losses of a comparison (the LE history is part of the LE method)
COMPARED_SETTINGS = ("epochs", "batch_size", "lr", "lr_decay", "lr_category", "lr_category_decay",
                     "lr_zero_after_epochs")

FIXED_SPLIT_CODES = ("fixed_split",)  #: audit finding codes that already state the fixed split


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _finding_line(f: dict[str, Any]) -> str:
    keys = f" Keys: {', '.join(f'`{k}`' for k in f['keys'])}." if f.get("keys") else ""
    kind = f["severity"] if f.get("severity") in ("warning", "error") else "note"
    message = re.sub(r"\b(fewer than 1 (?:expected )?evaluation click)s\b", r"\1", f["message"])  # one click
    return f"Audit {kind} `{f['code']}`: {_sentence(message)}{keys}"


def _power_line(paired: dict[str, int], planned: int, alternative: str, alpha: float | None) -> str | None:
    """The smallest exact p of the paired seeds actually stored (comparison title → paired seeds), saying
    "k of N seeds stored" when fewer than the ``planned`` N are paired; None when no comparison has a pair."""
    groups: dict[int, list[str]] = {}
    for name, n in paired.items():
        if n >= 1:
            groups.setdefault(int(n), []).append(name)
    if not groups:
        return None

    def stored(n: int) -> list[str]:
        return [f"{n} of {planned} seeds stored"] if planned and n < planned else []

    if len(groups) == 1:
        n = next(iter(groups))
        head = (f"With {seeds_word(n)}{''.join(f' ({x})' for x in stored(n))} the smallest exact {alternative} "
                f"Wilcoxon p is {pval(min_exact_p(n, alternative))}")
    else:
        parts = [f"{pval(min_exact_p(n, alternative))} with {seeds_word(n)} "
                 f"({'; '.join([', '.join(names), *stored(n)])})" for n, names in sorted(groups.items(), reverse=True)]
        head = f"The smallest exact {alternative} Wilcoxon p is " + " and ".join(parts)
    if alpha is not None and min_exact_p(min(groups), alternative) >= alpha:
        return (f"{head}: no test of {seeds_word(min(groups))} can reach alpha {alpha:g}, so those tests are "
                "untestable, not negative; store more seeds.")
    return (f"{head}: only a difference of the same sign in nearly every seed can be significant; more seeds "
            "(--extend --set repeats.num_runs=N on the stored sweep) let smaller differences show.")


def caveat_lines(findings: Sequence[dict[str, Any]], *, seeds: int | dict[str, int], alternative: str,
                 resampled: bool, truth: bool, missing: int = 0, tuning: dict[str, Any] | None = None,
                 planned: int | None = None, alpha: float | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The report's caveats, one finding per line: every audit finding (as stored in the manifest: errors and
    warnings, and notes of any other severity), the power of the paired seeds actually stored (``seeds``: one
    count, or comparison title → count; :func:`_power_line`; left out when the audit already warned
    ``underpowered`` and every comparison has all ``planned`` seeds), the fixed split when the data are not
    redrawn per seed (unless an audit finding of a :data:`FIXED_SPLIT_CODES` code states it), what the per-ad gaps
    are measured against, missing trials, the tuning budget, then ``extra`` (e.g. :func:`ece_small_caveat`).
    ``planned``: the configured seeds (default: ``seeds``)."""
    order = {"error": 0, "warning": 1}
    warned = sorted(findings, key=lambda f: order.get(f.get("severity"), 2))
    codes = {f["code"] for f in warned}
    out = [_finding_line(f) for f in warned]
    paired = seeds if isinstance(seeds, dict) else {"": seeds}
    planned = planned if planned is not None else max(paired.values(), default=0)
    if "underpowered" not in codes or any(n < planned for n in paired.values()):
        if line := _power_line(paired, planned, alternative, alpha):
            out.append(line)
    if not resampled and not codes & set(FIXED_SPLIT_CODES):
        out.append(f"One train/evaluation split serves all {planned} seeds (repeats.resample_data is false): the "
                   "seeds vary only the model's initialisation and batch order, so the intervals and tests describe "
                   "this one sample of rows, not another draw of the data: a significant per-ad result holds for these "
                   "evaluation rows, and does not account for the noise of an ad's evaluation rate or a shift between "
                   "its training and evaluation rates (set repeats.resample_data=true to redraw the split per seed).")
    out.append("Per-ad gaps and ratios are measured against the true click probability of the synthetic rows, free "
               "of label noise." if truth else "Per-ad gaps and ratios are measured against each ad's evaluation "
               "click rate, itself noisy: an ad with few evaluation clicks has an uncertain rate, and its ratio "
               "scatters for that reason too.")
    if missing:
        out.append(f"{missing} planned trial(s) are missing: the tests use complete pairs of seeds only.")
    if tuning:
        out.append(_tuning_caveat(tuning))
    return out + list(extra)


def ece_small_caveat(thresholds: pl.DataFrame, max_prob: float, quantile: float) -> str | None:
    """When ``ece_small`` mixed its two definitions across the trials: some trials had a prediction ≤ ``max_prob``
    and took the rows below it, others took their model's ``quantile`` of p. The per-seed values then cover rows
    chosen by different rules, and the paired tests compare them anyway. ``thresholds``: loss, seed,
    ece_small_threshold."""
    if thresholds.height == 0:
        return None
    t = thresholds["ece_small_threshold"].cast(pl.Float64)
    fixed = (t - max_prob).abs() <= 1e-12 * max_prob
    own = thresholds.filter(t.is_finite() & ~fixed)
    if own.height == 0 or not fixed.any():
        return None
    by_loss = ", ".join(f"{label(loss)} {n}" for loss, n in sorted(own.group_by("loss").len().iter_rows()))
    values = own["ece_small_threshold"]
    return (f"ece_small mixed its two rules across the trials: {int(fixed.sum())} of {thresholds.height} had a "
            f"prediction <= {max_prob:g} and took the rows below it, {own.height} ({by_loss}) had none and took their "
            f"model's {quantile:.0%} quantile of p (threshold{span(values.min(), values.max())}); its per-seed "
            "values then cover rows chosen by different rules, so its paired tests compare unlike quantities.")


def _tuning_caveat(tuning: dict[str, Any]) -> str:
    """Whether `le-ray tune` gave every loss the same budget (``tune/summary.json``: its ``budget`` when stored,
    else which losses had a search space)."""
    budget = tuning.get("budget") or {}
    records = tuning.get("losses", [])
    searched = budget.get("searched", [r["loss"] for r in records if r.get("space")])
    unsearched = [r["loss"] for r in records if r["loss"] not in searched]
    epochs = budget.get("epochs") or {}
    same = budget.get("same", not unsearched)
    what = f"{tuning['num_samples']} samples each, {tuning['scheduler']} scheduler, validation {tuning['metric']}"
    if same:
        return (f"Every loss was tuned by `le-ray tune` with the same budget ({what}): the settings compared here are "
                "each loss's best, not a shared default.")
    parts = [f"searched: {', '.join(label(x) for x in searched) or 'none'} ({what})"]
    if unsearched:
        parts.append(f"not searched, trained as configured: {', '.join(label(x) for x in unsearched)}")
    if len(set(epochs.values())) > 1:
        parts.append("epochs per sample " + ", ".join(f"{label(x)} {epochs[x]}" for x in searched if x in epochs))
    failed = [f"{label(x)} {c['failed']} of {c['samples']}" for x, c in (budget.get("counts") or {}).items() if c["failed"]]
    parts += [f"samples failed: {', '.join(failed)}"] if failed else []
    return f"Unequal tuning by `le-ray tune` ({'; '.join(parts)}): the comparison may favour the losses searched more."


def _pair(b: Any, c: Any) -> tuple[str, str]:
    """The baseline's and the candidate's value, floats as short as keeps them apart (:func:`distinct_values`)."""
    shown_b, shown_c = distinct_values([b, c])
    return (shown_b if isinstance(b, float) else str(b)), (shown_c if isinstance(c, float) else str(c))


def _from(entry: dict[str, Any]) -> str:
    """`` (shipped default)``, `` (--set)``, ...: where a setting's value came from (configs/default.json's per-loss
    values are choices, so "default" alone would read as neutral)."""
    source = entry.get("source")
    return f" ({'shipped default' if source == 'default' else source})" if source else ""


def setting_differences(settings: dict[str, dict[str, Any]], baseline: str, candidate: str,
                        fairness: Sequence[dict[str, Any]] | None = None) -> tuple[str, ...]:
    """The training settings whose effective values differ between the two losses, e.g. ``"lr_decay 0.9995 for LE
    (profile) vs 0.9999 for BCE (default)"``: from the audit's ``fairness`` rows (``{"setting", "losses": {loss:
    {"value", "key", "source"}}}``, with where each value comes from) when the record has them, else from its
    effective ``settings`` (:data:`COMPARED_SETTINGS`; the LE history is part of the LE method, not compared)."""
    if fairness is not None:
        out = []
        for row in fairness:
            b, c = row["losses"].get(baseline), row["losses"].get(candidate)
            if b is not None and c is not None and b["value"] != c["value"]:
                shown_b, shown_c = _pair(b["value"], c["value"])
                out.append(f"{row['setting']} {shown_c} for {label(candidate)}{_from(c)} vs "
                           f"{shown_b} for {label(baseline)}{_from(b)}")
        return tuple(out)
    b, c = settings.get(baseline) or {}, settings.get(candidate) or {}
    shown = {k: _pair(b[k], c[k]) for k in COMPARED_SETTINGS if k in b and k in c and b[k] != c[k]}
    return tuple(f"{k} {c_text} for {label(candidate)} vs {b_text} for {label(baseline)}"
                 for k, (b_text, c_text) in shown.items())


def non_finite_caveat(values: Sequence[str]) -> list[str]:
    """The caveat naming stored values that are not finite (:func:`le_ray.report.sweep_stats.non_finite_values`:
    ``LE seed 43: logloss, ad 3's predictions`` per trial), or none."""
    if not values:
        return []
    return [f"Some stored values are not finite (null, NaN or infinite): {'; '.join(values)}. Each test leaves that "
            "seed's pair out, so those tests rest on fewer seeds than the others (a metric undefined on that seed's "
            "data, e.g. an AUC without a click, or a diverged or damaged trial: see its file)."]
