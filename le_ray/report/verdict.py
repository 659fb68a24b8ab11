"""The written verdict of a sweep: plain sentences from the test tables, each with its caveats.

Per comparison (candidate vs baseline, delta > 0 favours the candidate):

1. the metric-level paired tests whose adjusted p-value (``p_adjusted``: the chosen correction over the
   metrics of that comparison) is below alpha, in whose favour, with the mean delta, its bootstrap CI and
   the rank-biserial effect size; the others are named as "no significant difference";
2. the per-condition calibration tests grouped by base-rate band: ``rare`` / ``middle`` / ``common`` are
   the base-rate tertiles of the tested conditions (``numpy.array_split`` of the conditions sorted by
   rate: rarest third first), or explicit ``report.rate_bands = [low, high]`` (rare: rate < low,
   common: rate >= high); a condition is better calibrated for a loss when its adjusted p is below
   alpha and its mean gap is smaller;
3. the conditions the audit left out ("too few clicks to test"), never counted as significant.

Then the caveats: the audit's warnings, the number of seeds and what the per-condition gap is measured
against (the true click probabilities of synthetic data, or the evaluation click rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from le_ray.registry import label

__all__ = ["VerdictInputs", "rate_bands", "metric_sentences", "condition_sentences", "verdict_lines",
           "BAND_NAMES"]

BAND_NAMES = ("rare", "middle", "common")


@dataclass(frozen=True)
class VerdictInputs:
    """What one comparison's verdict reads: its tests, the audit's exclusions and warnings, the settings."""
    baseline: str
    candidate: str
    metric_tests: pl.DataFrame        # metric, higher_is_better, mean_delta, ci_low, ci_high, rank_biserial, p_adjusted
    condition_tests: pl.DataFrame     # condition, value, base_rate, baseline_gap, candidate_gap, p_value, p_<correction>
    excluded: Sequence[dict[str, Any]]  # audit conditions left out: value, train_clicks, eval_clicks
    alpha: float
    correction: str
    seeds: int
    gap_reference: str                # "the true click probability" or "the evaluation click rate"
    bands: tuple[float, float] | None = None


def rate_bands(rates: np.ndarray, bands: tuple[float, float] | None = None) -> np.ndarray:
    """Band index per condition (0 rare, 1 middle, 2 common) from its base rate (see the module docstring)."""
    rates = np.asarray(rates, dtype=np.float64)
    if bands is not None:
        return np.where(rates < bands[0], 0, np.where(rates >= bands[1], 2, 1))
    out = np.empty(rates.size, dtype=np.int64)
    for band, members in enumerate(np.array_split(np.argsort(rates, kind="stable"), 3)):
        out[members] = band
    return out


def _fmt(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.3g}"


def metric_sentences(v: VerdictInputs) -> list[str]:
    """Which metrics differ significantly after the correction, and in whose favour."""
    t = v.metric_tests
    if t.height == 0:
        return [f"No paired metric test: {label(v.candidate)} and {label(v.baseline)} share no complete seed."]
    sig = t.filter(pl.col("p_adjusted") < v.alpha)
    lines = []
    for row in sig.iter_rows(named=True):
        winner = v.candidate if row["mean_delta"] > 0 else v.baseline
        loser = v.baseline if winner == v.candidate else v.candidate
        way = "higher is better" if row["higher_is_better"] else "lower is better"
        lines.append(f"{label(winner)} beats {label(loser)} on {row['metric']} ({way}): mean delta {_fmt(row['mean_delta'])} "
                     f"(95% CI [{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}], favours {label(v.candidate)} when "
                     f"> 0), rank-biserial {_fmt(row['rank_biserial'])}, {v.correction} p = {_fmt(row['p_adjusted'])}.")
    rest = [m for m in t["metric"].to_list() if m not in set(sig["metric"].to_list())]
    if rest:
        lines.append(f"No significant difference ({v.correction}-adjusted p >= {v.alpha}) in: {', '.join(rest)}.")
    return lines


def _band_sentence(name: str, rows: pl.DataFrame, v: VerdictInputs, p_col: str) -> str:
    n = rows.height
    better_c = rows.filter((pl.col(p_col) < v.alpha) & (pl.col("candidate_gap") < pl.col("baseline_gap")))
    better_b = rows.filter((pl.col(p_col) < v.alpha) & (pl.col("candidate_gap") > pl.col("baseline_gap")))
    lo, hi = rows["base_rate"].min(), rows["base_rate"].max()
    parts = []
    for loss, hits in ((v.candidate, better_c), (v.baseline, better_b)):
        if hits.height:
            parts.append(f"{label(loss)} is better calibrated on {hits.height} of {n} ({v.correction} p <= "
                         f"{_fmt(hits[p_col].max())})")
    if not parts:
        parts.append(f"no significant difference on any of {n}")
    rates = _fmt(lo) if lo == hi else f"{_fmt(lo)}–{_fmt(hi)}"
    return f"{name} conditions (base rate {rates}): " + "; ".join(parts) + "."


def condition_sentences(v: VerdictInputs) -> list[str]:
    """Per-condition calibration results by base-rate band, then the conditions left out."""
    t, p_col = v.condition_tests, "p_value" if v.correction == "none" else f"p_{v.correction}"
    lines = []
    if t.height:
        t = t.with_columns(pl.Series("band", rate_bands(t["base_rate"].to_numpy(), v.bands)))
        lines.append(f"Per condition (gap = |mean prediction − {v.gap_reference}|, paired over seeds, "
                     f"{v.correction} over {t.height} conditions):")
        lines += [_band_sentence(name, t.filter(pl.col("band") == band), v, p_col)
                  for band, name in enumerate(BAND_NAMES) if t.filter(pl.col("band") == band).height]
    elif not v.excluded:
        lines.append("No per-condition test was possible.")
    if v.excluded:
        listed = ", ".join(f"{c['value']} ({c['train_clicks']} train / {c['eval_clicks']} eval clicks)"
                           for c in v.excluded)
        lines.append(f"{len(v.excluded)} condition(s) had too few clicks to test and are not in the verdict: {listed}.")
    return lines


def verdict_lines(v: VerdictInputs, caveats: Sequence[str]) -> list[str]:
    """The full verdict of one comparison: heading sentence, metric and condition results, caveats."""
    lines = [f"{label(v.candidate)} vs {label(v.baseline)} over {v.seeds} paired seed(s):"]
    lines += metric_sentences(v) + condition_sentences(v)
    notes = [f"{v.seeds} seeds: the smallest two-sided exact Wilcoxon p is {2 / 2 ** v.seeds:.3g}."] if v.seeds else []
    notes += list(caveats)
    if notes:
        lines.append("Caveats: " + " ".join(notes))
    return lines
