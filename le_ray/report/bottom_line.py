"""The verdict's bottom line: one paragraph per comparison (candidate vs baseline) on its rarest tested ads.

For the rarest tested ads (those of the lowest non-empty rate band, at most :data:`MAX_BOTTOM_ADS`): each loss's
calibration ratio r = mean prediction / reference rate (the true click probability of synthetic data, else the
evaluation click rate), as the median over the paired seeds with its min–max over those seeds; its direction
(r > 1 over-predicts by 100·(r − 1) %, r < 1 under-predicts by 100·(1 − r) %; beyond [1/2, 2] as a multiple of the
ad's rate, :func:`le_ray.report.wording.ratio_words`), said to be in the median when the seed range spans 1; which
loss is closer to 1 in |ln r| of the medians and by how much (about equally close when the two differ by less than
:data:`CLOSER_TOLERANCE`); and the per-ad paired Wilcoxon test on the gap |mean prediction − reference| with its
adjusted p, stated with direction and size whether significant or not (NaN p, or too few paired seeds: untestable,
never "significant" nor "not significant"). When the loss with the smaller mean gap is not the one whose median
ratio is closer to 1, the test sentence says so: the two summaries (mean of |p̄ − r| over seeds, median of the
ratio) can rank the losses differently. The sentence counts the seeds on which each loss's gap was the smaller;
after the ads, once per seed count, a comparison with a not significant test says how many of the seeds one loss
must win for a per-ad test to reach alpha at all, and to be the first ad a Holm family finds.

These readings keep a ratio from being taken for more than it shows (:func:`ratio_readings`, said once per report
after the bottom lines):

* **Evaluation noise** (reference = the evaluation click rate, one split for every seed): the rate r̂ = k / n of an
  ad with k clicks in n evaluation rows is itself a draw. A calibrated model predicts the true rate r; the 95 %
  Wilson interval [L, U] of r̂ covers the rates the data do not rule out, so such a model's ratio r / r̂ may be
  anything in [L / r̂, U / r̂]. A ratio inside that range is no evidence of miscalibration, and when both losses'
  ratios lie inside it, which is closer to 1 may turn on r̂ (both divide by it). The ad's training rate over r̂
  is what a model that learned the training rate shows.
* **A shift over all ads**: Σ predictions / Σ reference over every ad and paired seed (the ads with the most
  predicted clicks dominate it: usually the frequent ones, but also a rare ad predicted far above its rate). A
  loss whose overall ratio lies outside [1 / (1 + :data:`SHIFT_TOLERANCE`), 1 + :data:`SHIFT_TOLERANCE`] may have
  every ad's ratio moved that way, so being nearer 1 on one ad may come from that shift rather than from its
  calibration on rare ads.
* **A failed fit**: a loss whose overall ratio over the tested ads at or above RARE_BELOW (not over every ad: a rare
  ad predicted at 1,000× its rate can outweigh the frequent ones) lies outside [1 / :data:`FAILED_FIT`,
  :data:`FAILED_FIT`], or whose median ratio on the tested ad with the highest click rate is off by more than
  :data:`FREQUENT_OFF`, is miscalibrated on the frequent ads too, so its ratio on a rare ad shows that failed fit
  rather than rare-ad behaviour.
* **LE's history warm-up**: a rarest ad the audit's ``le_history_warmup`` warning names is tied to LE's ratio only
  when LE under-predicts it (median ratio < 1): the warm-up pushes predictions towards 0, so it cannot explain an
  over-prediction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import binomtest

from le_ray.report.verdict import (MAX_BOTTOM_ADS, RARE_BELOW, Family, VerdictInputs, band_labels,
                                   candidate_ahead, family, is_untestable, mean_against, mean_against_words, one_sided,
                                   one_sided_words,
                                   pairs_words, ranked_pairs, ranks_favour, rate_bands, short_of_alpha, why_untestable)
from le_ray.report.wording import (EXCLUDED_WHY, FACTOR_ABOVE, FACTOR_BELOW, FACTOR_TINY, UNDER_TINY, ads,
                                   excluded_ads, join, number, percent, pval, ratio_words, times)
from le_ray.stats import median_range, min_wins_for_p

__all__ = ["ratio_stats", "noise_range", "overall_ratio", "bottom_line", "ratio_readings", "rare_answer",
           "bottom_note", "CLOSER_TOLERANCE", "SHIFT_TOLERANCE", "NOISE_CONFIDENCE", "FAILED_FIT", "FREQUENT_OFF"]

CLOSER_TOLERANCE = 0.01  #: |ln r| differences below this (about 1 % of the ratio) are "about equally close to 1"
SHIFT_TOLERANCE = 0.1  #: an overall ratio further than 10 % from 1 is a shift of every ad's ratio
NOISE_CONFIDENCE = 0.95  #: of the Wilson interval of an ad's evaluation rate
FAILED_FIT = 2.0  #: an overall ratio of the frequent ads beyond [1/2, 2] is a loss miscalibrated on them too
FREQUENT_OFF = 0.5  #: ... as is a median ratio on the tested ad with the highest click rate more than 50 % off 1
LE = "localized_entropy"


def ratio_stats(ratios: pl.DataFrame, loss: str, condition: int, seeds: Sequence[int]) -> tuple[float, float, float]:
    """(median, min, max) over ``seeds`` of the finite, positive calibration ratios of ``loss`` on ``condition``
    (NaN when there is none)."""
    rows = ratios.filter((pl.col("loss") == loss) & (pl.col("condition") == condition)
                         & pl.col("seed").is_in(list(seeds)))
    return median_range(rows["ratio"].cast(pl.Float64).to_numpy() if rows.height else np.zeros(0))


def median_ratios(ratios: pl.DataFrame, loss: str, seeds: Sequence[int]) -> dict[int, float]:
    """condition → :func:`ratio_stats`'s median for every condition of ``loss`` at once (one group-by; a call per ad
    filtered the whole table each time: minutes at 20,000 tested ads)."""
    r = pl.col("ratio").cast(pl.Float64)
    rows = ratios.filter((pl.col("loss") == loss) & pl.col("seed").is_in(list(seeds)) & r.is_finite() & (r > 0))
    found = rows.group_by("condition").agg(r.median().alias("median"))
    return dict(zip(found["condition"].to_list(), found["median"].to_list()))


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


def noise_ranges(clicks: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`noise_range` of many ads at once, (low [C], high [C]), NaN where it gives None: the two-sided Wilson
    interval in closed form (Newcombe 1998, as scipy's ``binomtest(...).proportion_ci(method="wilson")`` computes
    it: center ± z / (2(n + z²)) · √(4n·p·q + z²), with 1 at k = n), which costs one scipy call per ad otherwise
    (minutes at 20,000 ads in the rare-ad picture)."""
    from scipy.special import ndtri

    k, n = np.asarray(clicks, dtype=float), np.asarray(rows, dtype=float)
    ok = np.isfinite(k) & np.isfinite(n)
    k, n = np.where(ok, np.round(k), 0.0), np.where(ok, np.round(n), 0.0)
    ok &= (n >= 1) & (k >= 1)
    k, n = np.minimum(k, n), np.where(ok, n, 1.0)
    p = k / n
    z = ndtri(0.5 + 0.5 * NOISE_CONFIDENCE)
    denom = 2 * (n + z ** 2)
    center, delta = (2 * n * p + z ** 2) / denom, z / denom * np.sqrt(4 * n * p * (1 - p) + z ** 2)
    high = np.where(k == n, 1.0, center + delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, (center - delta) / p, np.nan), np.where(ok, high / p, np.nan)


def overall_ratio(ratios: pl.DataFrame, loss: str, seeds: Sequence[int],
                  conditions: Sequence[int] | None = None) -> float:
    """Σ predictions / Σ reference of ``loss`` over every ad (or the given ``conditions``) and the given seeds (NaN
    without the sums)."""
    if not {"sum_p", "ref_sum"} <= set(ratios.columns):
        return math.nan
    rows = ratios.filter((pl.col("loss") == loss) & pl.col("seed").is_in(list(seeds)))
    rows = rows if conditions is None else rows.filter(pl.col("condition").is_in(list(conditions)))
    total = float(rows["ref_sum"].sum() or 0.0)
    return float(rows["sum_p"].sum()) / total if total > 0 else math.nan


def _direction(name: str, stats: tuple[float, float, float], noise: tuple[float, float] | None) -> str:
    """``LE over-predicts it by 41 % (ratio 1.41, seed range …)``, or beyond [1/2, 2] ``LE predicts 1,800× the
    ad's rate (seed range 1,373–4,590)`` (the multiple is the ratio)."""
    mid, lo, hi = stats
    if not np.isfinite(mid):
        return f"{name} has no finite ratio"
    size = percent(abs(mid - 1.0))
    what = ratio_words(mid, size) if size != "0 %" else "is calibrated on it"
    spans = lo < 1 < hi and size != "0 %"
    inside = "the median inside the evaluation noise" if noise and noise[0] <= mid <= noise[1] else ""
    multiple = FACTOR_TINY <= mid and (mid > FACTOR_ABOVE or mid < FACTOR_BELOW)  # then the multiple is the ratio
    said = [] if multiple else [f"ratio {number(mid)}"]
    if number(lo) != number(hi):  # one seed, or every seed alike: no range to give
        said.append(f"seed range {number(lo)}–{number(hi)}{' spans 1' if spans else ''}")
    said += [inside] if inside else []
    return f"{name} {what}{' in the median' if spans else ''}" + (f" ({', '.join(said)})" if said else "")


def _closer_loss(v: VerdictInputs, b: float, c: float) -> str | None:
    """The loss whose median ratio is closer to 1 in |ln r| (None when either is not finite or they are about
    equally close)."""
    if not (np.isfinite(b) and np.isfinite(c) and b > 0 and c > 0):
        return None
    lb, lc = abs(math.log(b)), abs(math.log(c))
    return None if abs(lb - lc) < CLOSER_TOLERANCE else v.candidate if lc < lb else v.baseline


def _closer(v: VerdictInputs, b: float, c: float, noise: tuple[float, float] | None = None) -> str:
    """Which median ratio is closer to 1 in |ln r|; when both lie inside the evaluation noise, that the ranking
    rests on the ad's evaluation rate: both divide by the same r̂, and another r̂ in its interval can reverse it."""
    if not (np.isfinite(b) and np.isfinite(c) and b > 0 and c > 0):
        return "which loss is closer to 1 cannot be said"
    lb, lc = abs(math.log(b)), abs(math.log(c))
    win = _closer_loss(v, b, c)
    if win is None:
        return (f"{v.shown(v.candidate)} and {v.shown(v.baseline)} are about equally close to 1 (|ln ratio| {lc:.2g} vs "
                f"{lb:.2g})")
    w, l = (lc, lb) if win == v.candidate else (lb, lc)
    said = f"{v.shown(win)}'s median is closer to 1 by {l - w:.2g} in |ln ratio| ({w:.3g} vs {l:.3g})"
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
    plural = "" if number(clicks) == "1" else "s"
    sentence = (f"Ad {row['ad_id']}'s evaluation rate rests on {number(clicks)} click{plural} in {rows:,.0f} rows: "
                f"the true rates those clicks leave plausible ({NOISE_CONFIDENCE:.0%} Wilson interval) would give a "
                f"calibrated model a ratio of {noise[0]:.2f}–{noise[1]:.2f}, so a ratio inside that range is no "
                "evidence of miscalibration")
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
            shifted.append(f"{v.shown(loss)} predicts {_overall(r)} the {v.reference.removeprefix('the ')} "
                           f"({'over' if r > 1 else 'under'}-predicts overall)")
    return shifted


def _overall(r: float) -> str:
    """An overall ratio as a multiple, two decimals (0.55×, 7.88×), whole with separators from 1,000 up, two
    significant digits below 0.1 (0.0042×, never 0.00×) and "under 1/1,000 of" below FACTOR_TINY."""
    if 0 <= r < FACTOR_TINY:
        return UNDER_TINY
    return times(r) if abs(r) >= 999.5 else f"{r:.2g}×" if abs(r) < 0.1 else f"{r:.2f}×"


def _failed_fit(v: VerdictInputs, loss: str, seeds: Sequence[int]) -> str | None:
    """That ``loss`` is miscalibrated on the frequent ads too, so its rare-ad ratio shows a failed fit: its overall
    ratio over the tested ads at or above RARE_BELOW lies beyond [1 / FAILED_FIT, FAILED_FIT] (over every ad it may
    come from the rare ones: a rare ad predicted 1,000× its rate outweighs a frequent one), or its median ratio on the
    tested ad with the highest click rate is off by more than FREQUENT_OFF. None without a tested ad at or above
    RARE_BELOW."""
    t = v.condition_tests.filter(pl.col("base_rate").is_finite()) if v.condition_tests.height else None
    if t is None or t.filter(pl.col("base_rate") >= RARE_BELOW).height == 0:
        return None
    top = t.sort("base_rate").row(-1, named=True)
    frequent_ads = t.filter(pl.col("base_rate") >= RARE_BELOW)["condition"].to_list()
    overall, frequent = (overall_ratio(v.ratios, loss, seeds, frequent_ads),
                         ratio_stats(v.ratios, loss, top["condition"], seeds)[0])
    shifted = np.isfinite(overall) and overall > 0 and abs(math.log(overall)) > math.log(FAILED_FIT)
    if not (shifted or (np.isfinite(frequent) and abs(frequent - 1) > FREQUENT_OFF)):
        return None
    by_ad = median_ratios(v.ratios, loss, seeds)
    medians = [by_ad.get(j, math.nan) for j in t["condition"].to_list()]
    off = sum(bool(np.isfinite(r) and abs(r - 1) > FREQUENT_OFF) for r in medians)
    where = "every tested ad" if off == t.height else f"the ads clicked at {percent(RARE_BELOW)} or more too"
    said = [f"{_overall(overall)} the {v.reference.removeprefix('the ')} summed over the tested ads at or above "
            f"{percent(RARE_BELOW)}"] if np.isfinite(overall) else []
    said += [f"median ratio {number(frequent)} on the tested ad with the highest click rate, ad {top['ad_id']} "
             f"({percent(top['base_rate'])})",
             f"more than {percent(FREQUENT_OFF)} off on {off} of the {t.height} tested ads"]
    return (f"In this run, {v.shown(loss)} is miscalibrated on {where} ({'; '.join(said)}): "
            + ("its ratio on a rare ad reflects that failed fit, not rare-ad behaviour." if _has_rare(v) else
               f"its ratios on its rarest tested ads (none below {percent(RARE_BELOW)}) reflect that failed fit."))


def _has_rare(v: VerdictInputs) -> bool:
    """Whether some tested ad of ``v`` lies below RARE_BELOW (else its rarest tested ads are not rare ones)."""
    t = v.condition_tests
    return bool(t.height) and t.filter(pl.col("base_rate").is_finite() & (pl.col("base_rate") < RARE_BELOW)).height > 0


def ratio_readings(inputs: Sequence[VerdictInputs]) -> list[str]:
    """What keeps the bottom lines' ratios from being read for more than they show, once per report: each rarest
    ad's evaluation noise (and training rate), LE's warm-up, the losses shifted over all ads, then those
    miscalibrated on the frequent ads too (see the module docstring)."""
    noise, shifted, failed = [], [], {}
    for v in inputs:
        seeds = _paired_seeds(v.ratios, v.baseline, v.candidate)
        for row in _rarest(v).iter_rows(named=True):
            noise.append(_noise_sentence(v, row, seeds, _noise(v, row, seeds)))
        shifted += _shifts(v, seeds)
        for loss in (v.candidate, v.baseline):
            if loss not in failed:  # a loss in several comparisons is judged once, on its first one's seeds
                failed[loss] = _failed_fit(v, loss, seeds)
    readings = list(dict.fromkeys(s for s in noise + _warmups(inputs) if s))
    shifted = list(dict.fromkeys(shifted))
    if shifted:
        rare = any(_has_rare(v) for v in inputs)
        moved = ("a rare ad's ratio, so being nearer 1 on a rare ad may come from it rather than from calibration on "
                 "rare ads" if rare else f"the ratios of the rarest tested ads (none below {percent(RARE_BELOW)}), so "
                 "being nearer 1 on them may come from it rather than from calibration on them")
        readings.append(f"Summed over all ads (a figure dominated by the ads with the most predicted clicks, "
                        f"usually those clicked most often), {'; '.join(shifted)}: a shift of that size may also move "
                        f"{moved}.")
    return readings + [s for s in failed.values() if s]


def rare_answer(inputs: Sequence[VerdictInputs], ads_table: pl.DataFrame | None = None,
                excluded_why: str = EXCLUDED_WHY) -> list[str]:
    """The rare-ad question answered in one line, when some tested ad's rate is below RARE_BELOW: for each comparison
    with LE, the rare ads on which a loss is significantly closer to the ad's rate (grouped by that loss, with each
    adjusted p), or that none is (with the smallest), or that the tests are untestable; the rare ads the audit left
    out of testing (``ads_table``: ad_id, base_rate, tested, excluded, as for
    :func:`le_ray.report.verdict.bands_overview`) named with their rates and ``excluded_why``. Nothing without a
    tested rare ad."""
    parts, rare_ids = [], []
    for v in inputs:
        if LE not in (v.baseline, v.candidate) or v.condition_tests.height == 0:
            continue
        rare = v.condition_tests.filter(pl.col("base_rate") < RARE_BELOW).sort("base_rate")
        if rare.height == 0:
            continue
        rare_ids += rare["ad_id"].to_list()
        parts.append(_rare_result(v, rare))
    if not parts:
        return []
    tested = list(dict.fromkeys(rare_ids))
    return [f"Does LE calibrate rare ads better? On the {len(tested)} tested ad{'s' if len(tested) > 1 else ''} below "
            f"{percent(RARE_BELOW)} ({ads(tested)}){_left_out(ads_table, excluded_why)}: {'; '.join(parts)}."]


def _left_out(table: pl.DataFrame | None, why: str) -> str:
    """``, with ads 0 (0.001 %) and 1 (0.0028 %) left out of testing with <why>``: the rare ads the audit excluded
    (not those without an evaluation click, ``no_eval_click``: their rate is not measured, so not known to be rare)."""
    if table is None or table.height == 0 or not {"excluded", "base_rate", "ad_id"} <= set(table.columns):
        return ""
    tested = pl.col("tested").fill_null(False) if "tested" in table.columns else pl.lit(False)
    measured = ~pl.col("no_eval_click").fill_null(False) if "no_eval_click" in table.columns else pl.lit(True)
    out = table.filter(pl.col("excluded").fill_null(False) & ~tested & (pl.col("base_rate") < RARE_BELOW) & measured)
    out = out.sort("base_rate")
    if out.height == 0:
        return ""
    return f", with {excluded_ads(out['ad_id'].to_list(), out['base_rate'].to_list())} left out of testing with {why}"


def _rare_result(v: VerdictInputs, rare: pl.DataFrame) -> str:
    """One comparison's per-ad tests on its rare ads, in words (see :func:`rare_answer`); a comparison whose losses
    trained with different settings says so (its bottom line names them)."""
    c, b = v.shown(v.candidate), v.shown(v.baseline)
    return _rare_words(v, rare, c, b) + (" (trained with different settings: see its caveat)" if v.differences else "")


def _rare_words(v: VerdictInputs, rare: pl.DataFrame, c: str, b: str) -> str:
    p_col = "p_value" if v.correction == "none" else f"p_{v.correction}"
    fam, p = family(v, v.condition_tests, p_col), rare[p_col].cast(pl.Float64).fill_nan(None)
    won: dict[str, list[tuple[str, float]]] = {}
    significant = rare.filter(p.is_not_null() & (p < v.alpha))
    for r, ahead in zip(significant.iter_rows(named=True), candidate_ahead(significant)):
        won.setdefault(c if ahead else b, []).append((r["ad_id"], r[p_col]))
    if won:
        return f"{c} vs {b}, " + ", ".join(_won_words(v, w, hits) for w, hits in won.items())
    ranked = ranked_pairs(v, rare)["_ranked"].to_list()
    if p.is_null().all() or all(is_untestable(v, int(k), fam) for k in ranked):
        return f"{c} vs {b}, untestable with these seeds"
    sides = one_sided(v)
    if sides is not None:  # a one-sided test never shows "no difference", only that its side is not closer
        return (f"{c} vs {b}, {v.shown(sides[0])} not significantly closer ({v.correction} p ≥ {pval(p.min())}; "
                f"{one_sided_words(v)})")
    return f"{c} vs {b}, no significant difference ({v.correction} p ≥ {pval(p.min())})"


def _won_words(v: VerdictInputs, winner: str, hits: Sequence[tuple[str, float]]) -> str:
    """``BCE closer to the ad's evaluation click rate on ad 2 (holm p = 0.0312)``, or for several ads ``BCE closer to
    each ad's true click probability on ads 2, 3 (holm p = 0.0312 each)`` (``p = 0.01, 0.02 respectively`` when they
    differ): the reference named, as :meth:`VerdictInputs.ad_rate`."""
    ids, ps = [ad for ad, _ in hits], [pval(q) for _, q in hits]
    if len(hits) == 1:
        return f"{winner} closer to {v.ad_rate()} on ad {ids[0]} ({v.correction} p = {ps[0]})"
    said = f"{ps[0]} each" if len(set(ps)) == 1 else f"{', '.join(ps)} respectively"
    return f"{winner} closer to {v.ad_rate(each=True)} on {ads(ids)} ({v.correction} p = {said})"


def _warmups(inputs: Sequence[VerdictInputs]) -> list[str]:
    """The rarest ads of comparisons with LE that the audit's ``le_history_warmup`` warning names and LE under-predicts
    (median ratio < 1), in one sentence: LE's ratio on them may carry the warm-up of its history window (fewer than
    one expected click per batch), which pushes predictions towards 0, so it cannot explain an over-prediction."""
    ids = []
    for v in inputs:
        if LE in (v.baseline, v.candidate):
            seeds = _paired_seeds(v.ratios, v.baseline, v.candidate)
            ids += [row["ad_id"] for row in _rarest(v).iter_rows(named=True) if row["condition"] in v.warmup_ads
                    and ratio_stats(v.ratios, LE, row["condition"], seeds)[0] < 1]
    ids = list(dict.fromkeys(ids))
    if not ids:
        return []
    one = len(ids) == 1
    return [f"{'Ad' if one else 'Ads'} {join(ids)} {'is one' if one else 'are ones'} the audit's le_history_warmup "
            "warning names (fewer than one expected click per batch): LE's history window for "
            f"{'it' if one else 'each'} starts nearly empty, so LE's ratio on {'it' if one else 'them'} may show that "
            "warm-up as much as the loss; the warning's larger batch size, or LE's windows started full at the base "
            "rates (training.cross_batch.warm_start=true), tests which."]


def _noise(v: VerdictInputs, row: dict[str, Any], seeds: Sequence[int]) -> tuple[float, float] | None:
    """The ratio range a calibrated model can show on the ad: evaluation-rate reference on a fixed split only (with
    the data redrawn per seed the ratio is a median over draws, which one draw's interval would overstate)."""
    if v.reference != "the evaluation click rate" or not v.fixed_split:
        return None
    return noise_range(*_eval_counts(v.ratios, row["condition"], seeds))


def _test_sentence(v: VerdictInputs, row: dict[str, Any], p_col: str, m: Family, closer: str | None = None) -> str:
    """The per-ad test in words: gaps, adjusted p and its reading (untestable when p is NaN or cannot reach
    alpha with ``n`` seeds in a family of ``m``); when ``closer`` (the loss whose median ratio is closer to 1) is
    not the loss with the smaller mean gap, a clause saying why the two can disagree."""
    gb, gc, p = row["baseline_gap"], row["candidate_gap"], row[p_col]
    n, ranked = _pairs(v, row)
    head = f"Per-ad test over {pairs_words(n, ranked)}"
    if not (np.isfinite(gb) and np.isfinite(gc)):
        return f"{head}: no usable pair, so it is untestable."
    if gb == gc:
        gaps = f"{v.shown(v.candidate)} and {v.shown(v.baseline)} have the same mean gap ({gb:.2g})"
    else:
        (win, wg), (lose, lg) = sorted(((v.candidate, gc), (v.baseline, gb)), key=lambda t: t[1])
        gaps = (f"{v.shown(win)}'s mean gap is smaller than {v.shown(lose)}'s by {lg - wg:.2g} in probability "
                f"({wg:.2g} vs {lg:.2g}{_share(lg - wg, row['base_rate'])}{_gap_ci(v, row, win == v.candidate)})")
        if closer == lose:
            gaps += (f", although {v.shown(lose)}'s median ratio is closer to 1: the test is on the gap |mean "
                     "prediction − rate| averaged over the seeds, the ratio summary on the median ratio, and the two "
                     "can rank the losses differently")
    counts = _seed_counts(v, row, n, ranked)
    gaps += counts
    if p is None or not np.isfinite(p):
        return f"{head}: {gaps}; the test is untestable with these seeds."
    if p >= v.alpha and is_untestable(v, ranked, m):  # a p below alpha (an approximate one) is read as it is
        return (f"{head}: {gaps}; {v.correction} p = {pval(p)}, but untestable with {pairs_words(n, ranked)} "
                f"({why_untestable(v, ranked, m, n)}): p >= alpha by construction, which says nothing either way.")
    said = (f"{head}: {gaps}{';' if counts else ','} {v.correction} p = {pval(p)}: {_verdict_words(v, p)} at alpha "
            f"{v.alpha:g} with these seeds.")
    if p < v.alpha and mean_against(row, "delta_mean"):
        won, lost = (v.candidate, v.baseline) if ranks_favour(row, "delta_mean") else (v.baseline, v.candidate)
        said += f" {mean_against_words(v.shown(won), v.shown(lost), 'gap difference')}"
    ci = _row_ci(row)
    if p >= v.alpha and ci is not None and (ci[0] > 0 or ci[1] < 0):
        test = short_of_alpha(v, m, "the rank test", "ads")
        few = (f" and, over as few as {n} seeds, covers less often than its label (about 92 % for a 95 % label at 5)"
               if n < 10 else "")
        said += (f" The interval excludes 0, but {test}: the interval is not adjusted for the other tests{few}, so "
                 "read it as the size the seeds suggest, not as a test.")
    return said


def _pairs(v: VerdictInputs, row: dict[str, Any]) -> tuple[int, int]:
    """A per-ad row's (paired seeds: its ``n``, else the comparison's; ranked pairs: its ``n_nonzero``, else n)."""
    n = int(row.get("n") or v.seeds)
    return n, int(row["n_nonzero"]) if row.get("n_nonzero") is not None else n


def _seed_counts(v: VerdictInputs, row: dict[str, Any], n: int, ranked: int) -> str:
    """``; seed by seed, BCE's gap is the smaller on 7 of the 10, LE's on 3`` (``, neither on 1`` for a seed whose
    two gaps are equal; ``on all 10`` when one loss wins every seed), the loss with more such seeds first; "" for a
    table without ``n_candidate_closer``."""
    closer = row.get("n_candidate_closer")
    if closer is None:
        return ""
    (first, k_first), (second, k_second) = sorted(((v.candidate, int(closer)), (v.baseline, ranked - int(closer))),
                                                  key=lambda t: -t[1])
    if k_first == 0:
        return f"; seed by seed, the two gaps are equal on {'the one seed' if n == 1 else f'all {n}'}"
    won = "the one seed" if n == 1 else f"all {n}" if k_first == n else f"{k_first} of the {n}"
    parts = [f"{v.shown(first)}'s gap is the smaller on {won}"]
    parts += [f"{v.shown(second)}'s on {k_second}"] if k_second else []
    parts += [f"neither on {n - ranked}"] if n > ranked else []
    return "; seed by seed, " + ", ".join(parts)


def _wins_needed(v: VerdictInputs, row: dict[str, Any], p_col: str, m: Family) -> str:
    """What a testable, not significant per-ad test could have found, said once per comparison and seed count: ``For
    LE vs BCE, a per-ad test over 10 paired seeds reaches alpha only when one loss's gap is the smaller on at least
    7 of the 10 (8 to be the first ad that holm over 4 ads finds).`` Each count is :func:`le_ray.stats.min_wins_for_p`
    at alpha (every ad: Holm's and BH's adjusted p is at least the ad's own) and at alpha / m (the first ad Holm
    finds: its p times m must pass alpha); a two-sided count of ⌈n/2⌉ says nothing (some loss always wins that
    many) and is left out. "" for a significant, untestable or NaN test, or when nothing is left to say."""
    p, (n, ranked) = row[p_col], _pairs(v, row)
    if p is None or not np.isfinite(p) or p < v.alpha or ranked < 1 or is_untestable(v, ranked, m):
        return ""
    sides = one_sided(v)
    trivial = (ranked + 1) // 2 if sides is None else -1
    alone = min_wins_for_p(ranked, v.alpha, v.alternative)
    first = min_wins_for_p(ranked, v.alpha / m.size, v.alternative) if v.correction == "holm" and m.size > 1 else None
    first = first if first is not None and first != alone and first > trivial else None
    if alone is None or (alone <= trivial and first is None):
        return ""
    c, b, who = v.shown(v.candidate), v.shown(v.baseline), "one loss" if sides is None else v.shown(sides[0])
    found = f"the first ad that {v.correction} over {m.size} ads finds"
    if alone <= trivial:
        return (f"For {c} vs {b}, over {pairs_words(n, ranked)} {found} needs {who}'s gap the smaller on at least "
                f"{first} of the {ranked}.")
    return (f"For {c} vs {b}, a per-ad test over {pairs_words(n, ranked)}{',' if ranked != n else ''} reaches alpha "
            f"only when {who}'s gap is the smaller on at least {alone} of the {ranked}"
            f"{f' ({first} to be {found})' if first else ''}.")


def _verdict_words(v: VerdictInputs, p: float) -> str:
    """``significant`` (for the side its ranks favour: the caller says so when the mean gaps point the other way),
    or ``not significant`` with what a one-sided test leaves untested."""
    if p < v.alpha:
        return "significant"
    sides = one_sided(v)
    if sides is None:
        return "not significant"
    return f"not significant for {v.shown(sides[0])} closer ({one_sided_words(v)})"


def _gap_ci(v: VerdictInputs, row: dict[str, Any], candidate_won: bool) -> str:
    """``; 95 % bootstrap CI of the difference 0.0001 to 0.0009, unadjusted``: the interval of the losing loss's mean
    gap minus the winner's (the table's ci_low / ci_high are of baseline gap − candidate gap, so a baseline win
    flips them); "" when the table has none. It gives the size a non-significant test leaves possible."""
    ci = _row_ci(row)
    if ci is None or int(row.get("n") or 0) < 2:  # one seed: the bootstrap "interval" is that seed's value
        return ""
    low, high = ci if candidate_won else (-ci[1], -ci[0])
    return f"; {v.confidence:.0%} bootstrap CI of the difference {low:.2g} to {high:.2g}, unadjusted"


def _row_ci(row: dict[str, Any]) -> tuple[float, float] | None:
    """A per-ad row's (ci_low, ci_high) of baseline gap − candidate gap, or None when the table has no finite one."""
    low, high = row.get("ci_low"), row.get("ci_high")
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return None
    return low, high


def _share(gap: float, rate: float) -> str:
    """``, 86 % of the ad's rate``, or for a gap larger than the rate ``, 2,577× the ad's rate``."""
    if not rate > 0:
        return ""
    share = gap / rate
    return f", {times(share)} the ad's rate" if share > 1 else f", {percent(share)} of the ad's rate"


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
    c, b = v.shown(v.candidate), v.shown(v.baseline)
    rarest = _rarest(v)
    if rarest.height == 0:
        why = "no seed is stored for both losses yet" if v.seeds < 1 else "too few clicks, or no complete pair of seeds"
        return f"{c} vs {b}", [f"{c} vs {b}: no ad could be tested ({why})."]
    band = band_labels(v.edges)[int(rate_bands([rarest["base_rate"][0]], v.edges)[0])]
    title = f"{c} vs {b}, rarest tested ad{'s' if rarest.height > 1 else ''} ({band})"
    seeds = _paired_seeds(v.ratios, v.baseline, v.candidate)
    p_col = "p_value" if v.correction == "none" else f"p_{v.correction}"
    sentences, needs, m = [], [], family(v, v.condition_tests, p_col)
    for row in rarest.iter_rows(named=True):
        noise = _noise(v, row, seeds)
        rb, rc = (ratio_stats(v.ratios, loss, row["condition"], seeds) for loss in (v.baseline, v.candidate))
        sentences.append(f"Ad {row['ad_id']} ({v.reference.removeprefix('the ')} {percent(row['base_rate'])}): "
                         f"{_direction(c, rc, noise)}; {_direction(b, rb, noise)}; {_closer(v, rb[0], rc[0], noise)}.")
        sentences.append(_test_sentence(v, row, p_col, m, _closer_loss(v, rb[0], rc[0])))
        needs.append(_wins_needed(v, row, p_col, m))
    sentences += [need for need in dict.fromkeys(needs) if need]  # once per seed count
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
