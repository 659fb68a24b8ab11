"""The verdict's bottom line: one paragraph per comparison (candidate vs baseline) on its rarest tested ads.

For the rarest tested ads (those of the lowest non-empty rate band, at most :data:`MAX_BOTTOM_ADS`): each loss's
calibration ratio r = mean prediction / reference rate (the true click probability of synthetic data, else the
evaluation click rate), as the median over the paired seeds with its min–max over those seeds; its direction
(r > 1 over-predicts by 100·(r − 1) %, r < 1 under-predicts by 100·(1 − r) %), said to be in the median when the
seed range spans 1; which loss is closer to 1 in |ln r| of the medians and by how much (about equally close when
the two differ by less than :data:`CLOSER_TOLERANCE`); and the per-ad paired Wilcoxon test on the gap
|mean prediction − reference| with its adjusted p, stated with direction and size whether significant or not
(NaN p, or too few paired seeds: untestable, never "significant" nor "not significant").

Two readings keep a ratio from being taken for more than it shows (:func:`ratio_readings`, said once per report
after the bottom lines):

* **Evaluation noise** (reference = the evaluation click rate, one split for every seed): the rate r̂ = k / n of an
  ad with k clicks in n evaluation rows is itself a draw. A calibrated model predicts the true rate r; the 95 %
  Wilson interval [L, U] of r̂ covers the rates the data do not rule out, so such a model's ratio r / r̂ may be
  anything in [L / r̂, U / r̂]. A ratio inside that range is no evidence of miscalibration, and when both losses'
  ratios lie inside it, which is closer to 1 may turn on r̂ (both divide by it). The ad's training rate over r̂
  is what a model that learned the training rate shows.
* **A shift over all ads**: Σ predictions / Σ reference over every ad and paired seed (the frequent ads dominate
  it). A loss whose overall ratio lies outside [1 / (1 + :data:`SHIFT_TOLERANCE`), 1 + :data:`SHIFT_TOLERANCE`]
  may have every ad's ratio moved that way, so being nearer 1 on one ad may come from that shift rather than from
  its calibration on rare ads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import binomtest

from le_ray.registry import label
from le_ray.report.verdict import (MAX_BOTTOM_ADS, RARE_BELOW, Family, VerdictInputs, band_labels, family,
                                   is_untestable, pairs_words, percent, ranked_pairs, rate_bands, why_untestable)
from le_ray.stats import median_range

__all__ = ["ratio_stats", "noise_range", "overall_ratio", "bottom_line", "ratio_readings", "rare_answer",
           "bottom_note", "CLOSER_TOLERANCE", "SHIFT_TOLERANCE", "NOISE_CONFIDENCE"]

CLOSER_TOLERANCE = 0.01  #: |ln r| differences below this (about 1 % of the ratio) are "about equally close to 1"
SHIFT_TOLERANCE = 0.1  #: an overall ratio further than 10 % from 1 is a shift of every ad's ratio
NOISE_CONFIDENCE = 0.95  #: of the Wilson interval of an ad's evaluation rate


def ratio_stats(ratios: pl.DataFrame, loss: str, condition: int, seeds: Sequence[int]) -> tuple[float, float, float]:
    """(median, min, max) over ``seeds`` of the finite, positive calibration ratios of ``loss`` on ``condition``
    (NaN when there is none)."""
    rows = ratios.filter((pl.col("loss") == loss) & (pl.col("condition") == condition)
                         & pl.col("seed").is_in(list(seeds)))
    return median_range(rows["ratio"].cast(pl.Float64).to_numpy() if rows.height else np.zeros(0))


def noise_range(clicks: float, rows: float) -> tuple[float, float] | None:
    """[L / r̂, U / r̂]: the ratios a calibrated model can show on an ad with ``clicks`` evaluation clicks in
    ``rows`` rows, [L, U] the Wilson interval (:data:`NOISE_CONFIDENCE`) of r̂ = clicks / rows (clicks rounded to a
    count). None without a click or a row."""
    if not (math.isfinite(clicks) and math.isfinite(rows)):
        return None
    k, n = int(round(clicks)), int(round(rows))
    if n < 1 or k < 1:
        return None
    ci = binomtest(min(k, n), n).proportion_ci(confidence_level=NOISE_CONFIDENCE, method="wilson")
    rate = min(k, n) / n
    return ci.low / rate, ci.high / rate


def overall_ratio(ratios: pl.DataFrame, loss: str, seeds: Sequence[int]) -> float:
    """Σ predictions / Σ reference of ``loss`` over every ad and the given seeds (NaN without the sums)."""
    if not {"sum_p", "ref_sum"} <= set(ratios.columns):
        return math.nan
    rows = ratios.filter((pl.col("loss") == loss) & pl.col("seed").is_in(list(seeds)))
    total = float(rows["ref_sum"].sum() or 0.0)
    return float(rows["sum_p"].sum()) / total if total > 0 else math.nan


def _direction(name: str, stats: tuple[float, float, float], noise: tuple[float, float] | None) -> str:
    mid, lo, hi = stats
    if not np.isfinite(mid):
        return f"{name} has no finite ratio"
    way = "over-predicts it" if mid > 1 else "under-predicts it"
    size = abs(mid - 1.0)
    what = f"{way} by {percent(size)}" if percent(size) != "0 %" else "is calibrated on it"
    spans = lo < 1 < hi and percent(size) != "0 %"
    inside = ", the median inside the evaluation noise" if noise and noise[0] <= mid <= noise[1] else ""
    return (f"{name} {what}{' in the median' if spans else ''} (ratio {mid:.3g}, seed range {lo:.3g}–{hi:.3g}"
            f"{' spans 1' if spans else ''}{inside})")


def _closer(v: VerdictInputs, b: float, c: float, noise: tuple[float, float] | None = None) -> str:
    """Which median ratio is closer to 1 in |ln r|; when both lie inside the evaluation noise, that the ranking
    rests on the ad's evaluation rate: both divide by the same r̂, and another r̂ in its interval can reverse it."""
    if not (np.isfinite(b) and np.isfinite(c)):
        return "which loss is closer to 1 cannot be said"
    lb, lc = abs(math.log(b)), abs(math.log(c))
    if abs(lb - lc) < CLOSER_TOLERANCE:
        return (f"{label(v.candidate)} and {label(v.baseline)} are about equally close to 1 (|ln ratio| {lc:.2g} vs "
                f"{lb:.2g})")
    (win, w), (lose, l) = sorted(((v.candidate, lc), (v.baseline, lb)), key=lambda t: t[1])
    said = f"{label(win)}'s median is closer to 1 by {l - w:.2g} in |ln ratio| ({w:.3g} vs {l:.3g})"
    if noise and all(noise[0] <= x <= noise[1] for x in (b, c)):
        said += (", but both lie inside the evaluation noise, where a true rate elsewhere in its interval could "
                 "reverse that order")
    return said


def _noise_sentence(v: VerdictInputs, row: dict[str, Any], seeds: Sequence[int],
                    noise: tuple[float, float] | None) -> str | None:
    """How far the ad's evaluation rate alone moves a calibrated model's ratio, and its training rate beside it."""
    if noise is None:
        return None
    clicks, rows = _eval_counts(v.ratios, row["condition"], seeds)
    sentence = (f"Ad {row['ad_id']}'s evaluation rate rests on {clicks:.3g} clicks in {rows:,.0f} rows: the true rates "
                f"those clicks leave plausible ({NOISE_CONFIDENCE:.0%} Wilson interval) would give a calibrated model "
                f"a ratio of {noise[0]:.2f}–{noise[1]:.2f}, so a ratio inside that range is no evidence of "
                "miscalibration")
    train = v.train_rates.get(row["condition"])
    if train is not None and np.isfinite(train) and row["base_rate"] > 0:
        sentence += (f"; its training rate is {percent(train)}, {train / row['base_rate']:.2f}× the evaluation rate "
                     "(the ratio of a model that learned the training rate)")
    return sentence + "."


def _eval_counts(ratios: pl.DataFrame, condition: int, seeds: Sequence[int]) -> tuple[float, float]:
    """Median over ``seeds`` of the ad's evaluation clicks and rows (NaN without the ``n`` / ``ref_sum`` columns)."""
    if not {"n", "ref_sum"} <= set(ratios.columns):
        return math.nan, math.nan
    rows = ratios.filter((pl.col("condition") == condition) & pl.col("seed").is_in(list(seeds))).unique("seed")
    if rows.height == 0:
        return math.nan, math.nan
    return float(rows["ref_sum"].median()), float(rows["n"].median())


def _shifts(v: VerdictInputs, seeds: Sequence[int]) -> list[str]:
    """The losses of ``v`` whose predictions are shifted over all ads (overall ratio beyond SHIFT_TOLERANCE)."""
    shifted = []
    for loss in (v.candidate, v.baseline):
        r = overall_ratio(v.ratios, loss, seeds)
        if np.isfinite(r) and r > 0 and abs(math.log(r)) > math.log1p(SHIFT_TOLERANCE):
            shifted.append(f"{label(loss)} predicts {r:.2f}× the {v.reference.removeprefix('the ')} "
                           f"({'over' if r > 1 else 'under'}-predicts overall)")
    return shifted


def ratio_readings(inputs: Sequence[VerdictInputs]) -> list[str]:
    """What keeps the bottom lines' ratios from being read for more than they show, once per report: each rarest
    ad's evaluation noise (and training rate), then the losses shifted over all ads (see the module docstring)."""
    noise, shifted = [], []
    for v in inputs:
        seeds = _paired_seeds(v.ratios, v.baseline, v.candidate)
        for row in _rarest(v).iter_rows(named=True):
            noise.append(_noise_sentence(v, row, seeds, _noise(v, row, seeds)))
        shifted += _shifts(v, seeds)
    readings = list(dict.fromkeys(s for s in noise + _warmups(inputs) if s))
    shifted = list(dict.fromkeys(shifted))
    if shifted:
        readings.append(f"Summed over all ads (a figure the frequent ads dominate), {'; '.join(shifted)}: a shift of "
                        "that size may also move a rare ad's ratio, so being nearer 1 on a rare ad may come from it "
                        "rather than from calibration on rare ads.")
    return readings


def rare_answer(inputs: Sequence[VerdictInputs]) -> list[str]:
    """The rare-ad question answered in one line, when some tested ad's rate is below RARE_BELOW: for each comparison
    with LE, the rare ads on which a loss is significantly closer to the ad's rate (with the largest adjusted p), or
    that none is (with the smallest), or that the tests are untestable. Nothing without a tested rare ad."""
    parts, rare_ids = [], []
    for v in inputs:
        if "localized_entropy" not in (v.baseline, v.candidate) or v.condition_tests.height == 0:
            continue
        rare = v.condition_tests.filter(pl.col("base_rate") < RARE_BELOW).sort("base_rate")
        if rare.height == 0:
            continue
        rare_ids += rare["ad_id"].to_list()
        parts.append(_rare_result(v, rare))
    if not parts:
        return []
    ads = list(dict.fromkeys(rare_ids))
    return [f"Does LE calibrate rare ads better? On the {len(ads)} tested ad{'s' if len(ads) > 1 else ''} below "
            f"{percent(RARE_BELOW)} (ad{'s' if len(ads) > 1 else ''} {', '.join(ads)}): {'; '.join(parts)}."]


def _rare_result(v: VerdictInputs, rare: pl.DataFrame) -> str:
    """One comparison's per-ad tests on its rare ads, in words (see :func:`rare_answer`); a comparison whose losses
    trained with different settings says so (its bottom line names them)."""
    c, b = label(v.candidate), label(v.baseline)
    return _rare_words(v, rare, c, b) + (" (trained with different settings: see its caveat)" if v.differences else "")


def _rare_words(v: VerdictInputs, rare: pl.DataFrame, c: str, b: str) -> str:
    p_col = "p_value" if v.correction == "none" else f"p_{v.correction}"
    fam, p = family(v, v.condition_tests, p_col), rare[p_col].cast(pl.Float64).fill_nan(None)
    won = [(c if r["candidate_gap"] < r["baseline_gap"] else b, r["ad_id"], r[p_col])
           for r in rare.filter(p.is_not_null() & (p < v.alpha)).iter_rows(named=True)]
    if won:
        return f"{c} vs {b}, " + ", ".join(f"{w} closer to the ad's rate on ad {ad} ({v.correction} p = {q:.2g})"
                                           for w, ad, q in won)
    ranked = ranked_pairs(v, rare)["_ranked"].to_list()
    if p.is_null().all() or all(is_untestable(v, int(k), fam) for k in ranked):
        return f"{c} vs {b}, untestable with these seeds"
    return f"{c} vs {b}, no significant difference ({v.correction} p ≥ {p.min():.2g})"


def _warmups(inputs: Sequence[VerdictInputs]) -> list[str]:
    """For each rarest ad of a comparison with LE that the audit's ``le_history_warmup`` warning names: that LE's
    ratio on it may carry the warm-up of its history window (fewer than one expected click per batch)."""
    out = []
    for v in inputs:
        if "localized_entropy" in (v.baseline, v.candidate):
            out += [f"Ad {row['ad_id']} is one the audit's le_history_warmup warning names (fewer than one expected "
                    "click per batch): LE's history window for it starts nearly empty, so LE's ratio on it may show "
                    "that warm-up as much as the loss; the warning's larger batch size tests which."
                    for row in _rarest(v).iter_rows(named=True) if row["condition"] in v.warmup_ads]
    return out


def _noise(v: VerdictInputs, row: dict[str, Any], seeds: Sequence[int]) -> tuple[float, float] | None:
    """The ratio range a calibrated model can show on the ad: evaluation-rate reference on a fixed split only (with
    the data redrawn per seed the ratio is a median over draws, which one draw's interval would overstate)."""
    if v.reference != "the evaluation click rate" or not v.fixed_split:
        return None
    return noise_range(*_eval_counts(v.ratios, row["condition"], seeds))


def _test_sentence(v: VerdictInputs, row: dict[str, Any], p_col: str, m: Family) -> str:
    """The per-ad test in words: gaps, adjusted p and its reading (untestable when p is NaN or cannot reach
    alpha with ``n`` seeds in a family of ``m``)."""
    gb, gc, p, n = row["baseline_gap"], row["candidate_gap"], row[p_col], int(row.get("n") or v.seeds)
    ranked = int(row["n_nonzero"]) if v.zero_method == "wilcox" and row.get("n_nonzero") is not None else n
    head = f"Per-ad test over {pairs_words(n, ranked)}"
    if not (np.isfinite(gb) and np.isfinite(gc)):
        return f"{head}: no usable pair, so it is untestable."
    if gb == gc:
        gaps = f"{label(v.candidate)} and {label(v.baseline)} have the same mean gap ({gb:.2g})"
    else:
        (win, wg), (lose, lg) = sorted(((v.candidate, gc), (v.baseline, gb)), key=lambda t: t[1])
        share = f", {percent((lg - wg) / row['base_rate'])} of the ad's rate" if row["base_rate"] > 0 else ""
        gaps = (f"{label(win)}'s mean gap is smaller than {label(lose)}'s by {lg - wg:.2g} in probability "
                f"({wg:.2g} vs {lg:.2g}{share})")
    if p is None or not np.isfinite(p):
        return f"{head}: {gaps}; the test is untestable with these seeds."
    if is_untestable(v, ranked, m):
        return (f"{head}: {gaps}; {v.correction} p = {p:.2g}, but untestable with {pairs_words(n, ranked)} "
                f"({why_untestable(v, ranked, m)}): p >= alpha by construction, which says nothing either way.")
    verdict = "significant" if p < v.alpha else "not significant"
    return f"{head}: {gaps}, {v.correction} p = {p:.2g}: {verdict} at alpha {v.alpha:g} with these seeds."


def _rarest(v: VerdictInputs) -> pl.DataFrame:
    """The tested ads of the lowest non-empty band, rarest first: at most MAX_BOTTOM_ADS, or only the rarest
    when it is not rare (the data cannot answer the rare-ad question; one ad shows the direction)."""
    if v.condition_tests.height == 0:  # no ad tested (e.g. no paired seed: a frame without columns)
        return v.condition_tests
    t = v.condition_tests.filter(pl.col("base_rate").is_finite()).sort("base_rate")
    if t.height == 0:
        return t
    band = rate_bands(t["base_rate"].to_numpy(), v.edges)
    keep = MAX_BOTTOM_ADS if t["base_rate"][0] < RARE_BELOW else 1
    return t.filter(pl.Series(band == band[0])).head(keep)


def bottom_line(v: VerdictInputs) -> tuple[str, list[str]]:
    """The comparison's bottom line: (title, sentences) on its rarest tested ads (see the module docstring)."""
    c, b = label(v.candidate), label(v.baseline)
    rarest = _rarest(v)
    if rarest.height == 0:
        why = "no seed is stored for both losses yet" if v.seeds < 1 else "too few clicks, or no complete pair of seeds"
        return f"{c} vs {b}", [f"{c} vs {b}: no ad could be tested ({why})."]
    band = band_labels(v.edges)[int(rate_bands([rarest["base_rate"][0]], v.edges)[0])]
    title = f"{c} vs {b}, rarest tested ad{'s' if rarest.height > 1 else ''} ({band})"
    seeds = _paired_seeds(v.ratios, v.baseline, v.candidate)
    p_col = "p_value" if v.correction == "none" else f"p_{v.correction}"
    sentences = []
    for row in rarest.iter_rows(named=True):
        noise = _noise(v, row, seeds)
        rb, rc = (ratio_stats(v.ratios, loss, row["condition"], seeds) for loss in (v.baseline, v.candidate))
        sentences.append(f"Ad {row['ad_id']} ({v.reference.removeprefix('the ')} {percent(row['base_rate'])}): "
                         f"{_direction(c, rc, noise)}; {_direction(b, rb, noise)}; {_closer(v, rb[0], rc[0], noise)}.")
        sentences.append(_test_sentence(v, row, p_col, family(v, v.condition_tests, p_col)))
    if v.differences:
        sentences.append(f"Caveat for {c} vs {b}: the two trained with different settings "
                         f"({'; '.join(v.differences)}), so a difference may come from the settings rather than "
                         "the loss.")
    return title, sentences


def _paired_seeds(ratios: pl.DataFrame, baseline: str, candidate: str) -> list[int]:
    if ratios.height == 0:
        return []
    by_loss = [set(ratios.filter(pl.col("loss") == loss)["seed"].to_list()) for loss in (baseline, candidate)]
    return sorted(by_loss[0] & by_loss[1])


def bottom_note(reference: str, correction: str) -> str:
    """The one sentence defining the bottom line's terms."""
    return (f"Calibration ratio = mean prediction / {reference} over an ad's evaluation rows (1 = calibrated), "
            "given as the median over the paired seeds with the min–max over those seeds; \"closer to 1\" compares "
            f"|ln ratio| of the medians; gap = |mean prediction − {reference.removeprefix('the ')}| per seed; the "
            f"per-ad test is a paired Wilcoxon test of the gaps over the seeds, {correction}-adjusted over the tested "
            "ads of the comparison.")
