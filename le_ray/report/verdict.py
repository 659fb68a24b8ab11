"""The written verdict of a sweep: the bottom line on the rare ads first, then the metric-level results, the ads
by absolute rate band and one list of caveats. Plain sentences from the test tables; pure functions of plain data.

1. **Bottom line**, one paragraph per comparison on its rarest tested ads: :mod:`le_ray.report.bottom_line`
   (built from this module's :class:`VerdictInputs`).
2. **Metric-level results**: the paired tests whose ``p_adjusted`` is below alpha, in whose favour, with the
   mean delta, its bootstrap CI and the rank-biserial effect size; the others as "no significant difference"
   when the test could have reached alpha, else as untestable (:func:`smallest_reachable_p`); a metric constant
   over the seeds (``informative`` false) as uninformative, outside the correction family.
3. **Rate bands**: absolute decades of the reference rate, edges :data:`BAND_EDGES` (< 0.1 %, 0.1–1 %, 1–10 %,
   ≥ 10 %) or ``report.rate_bands`` [e_1, …, e_n] (< e_1, e_1–e_2, …, ≥ e_n); a rate r lies in band
   k = #{edges ≤ r}. Each band lists its ads once; an untested ad is said to have too few clicks only when the
   audit excluded it. When no tested ad lies below :data:`RARE_BELOW` the verdict says the data cannot answer
   the rare-ad question; when no two losses share a stored seed it says instead that no comparison is possible
   yet (:func:`pending_headline`): a stopped sweep, not a property of the data.
4. **Caveats**: one list per report, one finding per bullet (:func:`caveat_lines`).

Testability: an exact Wilcoxon test of n paired seeds cannot give p below p_min(n) = 2/2^n (two-sided; 1/2^n
one-sided), and a correction over a family of m tests cannot lower it (Holm: every adjusted p ≥ m·p_min; BH
and none: ≥ p_min). When that bound is ≥ alpha, p ≥ alpha holds by construction, so the verdict says the
comparison is untestable with n seeds rather than "not significantly different".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from le_ray.stats import min_exact_p, smallest_holm_p
from le_ray.registry import label
from le_ray.report.wording import (EXCLUDED_WHY, ads as _ads, excluded_ads, number, percent, pval,
                                   unmeasured_ads)

__all__ = ["VerdictInputs", "Verdict", "BAND_EDGES", "band_edges", "RARE_BELOW", "MAX_BOTTOM_ADS", "band_labels", "rate_bands",
           "metric_sentences", "band_sentences", "bands_overview", "rare_headline",
           "pending_headline", "smallest_reachable_p", "untestable_conditions", "percent", "seeds_word", "is_untestable",
           "why_untestable", "short_of_alpha", "family", "Family", "ranked_pairs", "pairs_words", "ranks_favour",
           "mean_against", "mean_against_words", "one_sided", "one_sided_words", "not_significant", "candidate_ahead",
           "verdict_markdown", "verdict_text", "span"]

BAND_EDGES = (0.001, 0.01, 0.1)  #: decade edges of the absolute rate bands (probability)


def band_edges(cfg) -> tuple[float, ...]:
    """The rate-band edges of a report: ``report.rate_bands`` when set, else :data:`BAND_EDGES`."""
    return tuple(cfg.report.rate_bands) if cfg.report.rate_bands else BAND_EDGES
RARE_BELOW = 0.01  #: an ad is rare when its rate is below 1 %
MAX_BOTTOM_ADS = 2  #: the bottom line names at most this many of the rarest tested ads (one when none is rare)


@dataclass(frozen=True)
class VerdictInputs:
    """What one comparison's verdict reads: its tests, the per-seed calibration ratios, the settings."""
    baseline: str
    candidate: str
    metric_tests: pl.DataFrame     # metric, higher_is_better, n, mean_delta, ci_low, ci_high, rank_biserial,
    #                                p_adjusted, [baseline_constant, candidate_constant, informative]
    condition_tests: pl.DataFrame  # condition, ad_id, base_rate, baseline_gap, candidate_gap, n, p_value, p_<corr>
    ratios: pl.DataFrame           # loss, seed, condition, ratio: mean prediction / reference rate per seed;
    #                                optional n, ref_sum, sum_p (rows, Σ reference, Σ predictions) per seed
    alpha: float
    correction: str
    seeds: int
    reference: str                 # "the true click probability" or "the evaluation click rate"
    edges: tuple[float, ...] = BAND_EDGES
    differences: tuple[str, ...] = ()  # settings that differ between the two losses (setting_differences)
    alternative: str = "two-sided"  # of the Wilcoxon tests: sets the smallest exact p (smallest_reachable_p)
    train_rates: Mapping[int, float] = field(default_factory=dict)  # condition → training click rate (fixed split)
    confidence: float = 0.95  # of the bootstrap CIs (repeats.bootstrap_confidence)
    zero_method: str = "wilcox"  # of the Wilcoxon tests: "wilcox" ranks only the nonzero deltas (ranked_pairs)
    fixed_split: bool = True  # one train/evaluation split for every seed (repeats.resample_data false)
    warmup_ads: frozenset = frozenset()  # conditions the audit's le_history_warmup warning names
    names: Mapping[str, str] = field(default_factory=dict)  # display name of baseline / candidate (default: label)

    def shown(self, loss: str) -> str:
        """The display name of ``loss`` (``baseline`` or ``candidate``): its :attr:`names` entry, else the loss's
        label (BCE, LE, focal); two sweeps' arms of one loss are told apart by name (``le-ray compare-sweeps``)."""
        return self.names.get(loss) or label(loss)

    def ad_rate(self, each: bool = False) -> str:
        """``the ad's true click probability`` or ``the ad's evaluation click rate`` (``each ad's ...``): what a
        per-ad test measures the gaps against, said where a loss is found closer to it (with the evaluation rate,
        one noisy draw shared by every seed, "closer to the ad's rate" would claim more than the test shows)."""
        return f"{'each' if each else 'the'} ad's {self.reference.removeprefix('the ')}"


@dataclass
class Verdict:
    """The verdict of a report: bottom line paragraphs (title, sentences), the note defining their terms, the ads
    by band, per-comparison results (title, sentences) and the caveats, each a plain sentence list."""
    headline: list[str] = field(default_factory=list)  # said before everything: e.g. no ad is rare
    bottom: list[tuple[str, list[str]]] = field(default_factory=list)
    readings: list[str] = field(default_factory=list)  # what the bottom lines' ratios can and cannot show
    note: str = ""
    bands: list[str] = field(default_factory=list)
    bands_title: str = "Ads by absolute rate band"
    comparisons: list[tuple[str, list[str]]] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------- formatting


def _edge(e: float) -> str:
    return f"{100.0 * e:g} %"


def span(low: float, high: float) -> str:
    """`` 0.0419`` or ``s 0.0359–0.0823`` (after ``threshold``)."""
    return f" {low:.3g}" if f"{low:.3g}" == f"{high:.3g}" else f"s {low:.3g}–{high:.3g}"


def band_labels(edges: Sequence[float] = BAND_EDGES) -> list[str]:
    """['< 0.1 %', '0.1–1 %', '1–10 %', '≥ 10 %'] for the decade edges; len(edges) + 1 labels."""
    inner = [f"{_edge(a).removesuffix(' %')}–{_edge(b)}" for a, b in zip(edges, edges[1:])]
    return [f"< {_edge(edges[0])}", *inner, f"≥ {_edge(edges[-1])}"]


def rate_bands(rates, edges: Sequence[float] = BAND_EDGES) -> np.ndarray:
    """Band index per rate, k = #{edges ≤ r} (0 = below the first edge); −1 for a NaN rate. Shape of ``rates``."""
    r = np.asarray(rates, dtype=np.float64)
    return np.where(np.isnan(r), -1, np.searchsorted(np.asarray(edges, dtype=np.float64), r, side="right"))


def seeds_word(n: int) -> str:
    return f"{n} paired seed{'s' if n != 1 else ''}"


# ------------------------------------------------------------------------------------------------ testability


def smallest_reachable_p(n: int, alternative: str, correction: str = "none", m: int = 1,
                         best: int | None = None, members: Sequence[tuple[int, int]] = ()) -> float:
    """The smallest p a paired exact Wilcoxon test ranking ``n`` pairs can report after ``correction`` over a family
    of ``m`` tests whose test with the most ranked pairs ranks ``best`` (default ``n``): p_min(n) = 2/2^n
    two-sided, 1/2^n one-sided (:func:`le_ray.stats.min_exact_p`). Holm's adjusted p_(i) = max_{k ≤ i} (m − k + 1)
    · p_(k) is at least m · p_(1), the family's smallest p times m, so at least m · p_min(best), and at least its own
    p: max(m · p_min(best), p_min(n)), at most 1 (a test ranked last keeps multiplier 1; only the first one's p is
    multiplied by m). With ``members``, the family's (ranked pairs, tests) pairs, Holm's bound is the exact one of
    :func:`le_ray.stats.smallest_holm_p` (a test can be ranked after another only if that one's floor is no higher:
    in a family of (6, 6, 10) pairs a 6-pair test reaches 0.0625, not 0.03125). BH's min_{j ≥ i} (m/j) · p_(j) ≥
    p_(i) ≥ p_min(n), and none: p_min(n). 1 when n < 1."""
    if n < 1:
        return 1.0
    p = min_exact_p(int(n), alternative)
    if correction != "holm":
        return p
    if members:
        return smallest_holm_p(int(n), dict(members), alternative)
    return min(1.0, max(max(int(m), 1) * min_exact_p(int(best if best else n), alternative), p))


@dataclass(frozen=True)
class Family:
    """A correction family (the tests with a finite adjusted p), as ``ranked``: (ranked pairs, tests) of its
    members, by pairs, which set the family's smallest reachable p; ``size`` m and ``best`` (the most pairs any of
    its tests ranks) follow from it."""
    ranked: tuple[tuple[int, int], ...] = ()

    @property
    def size(self) -> int:
        return sum(tests for _, tests in self.ranked)

    @property
    def best(self) -> int:
        return max((pairs for pairs, _ in self.ranked), default=0)


def family(v: "VerdictInputs", t: pl.DataFrame, p_col: str) -> Family:
    """The correction family of the rows of ``t`` with a finite adjusted p in ``p_col`` (adjust_p leaves every test
    outside the family NaN)."""
    if t.height == 0 or p_col not in t.columns:
        return Family()
    members = ranked_pairs(v, t.filter(t[p_col].cast(pl.Float64).is_finite().fill_null(False)))
    return Family(tuple(sorted(Counter(int(k) for k in members["_ranked"].to_list()).items())))


def is_untestable(v: VerdictInputs, n: int, fam: Family) -> bool:
    """Whether a test ranking ``n`` pairs in family ``fam`` cannot reach p < alpha by construction."""
    return smallest_reachable_p(n, v.alternative, v.correction, fam.size, fam.best, fam.ranked) >= v.alpha


def why_untestable(v: VerdictInputs, n: int, fam: Family, paired: int | None = None) -> str:
    """Why a test ranking ``n`` pairs in family ``fam`` is untestable: its smallest exact p (and adjusted p, for
    Holm) cannot reach alpha, or else the test gave no p-value (NaN). ``paired``: the paired seeds behind the ``n``
    ranked pairs (default ``n``); ranking none of several means every paired seed gave both sides the same value."""
    if not is_untestable(v, n, fam):
        return "the test gave no p-value"
    if n < 1:
        return (f"each of the {seeds_word(paired)} gives both the same value, so the test has no difference to rank"
                if paired else "no seed is stored for both losses")
    p = smallest_reachable_p(n, v.alternative)
    held = f"the smallest exact {v.alternative} Wilcoxon p at n = {n} is {pval(p)}"
    adjusted = smallest_reachable_p(n, v.alternative, v.correction, fam.size, fam.best, fam.ranked)
    if adjusted > p:
        held += f", {pval(adjusted)} after {v.correction} over {fam.size} tests"
    return f"{held}, not below alpha {v.alpha:g}"


# --------------------------------------------------------------------------------------------- metric level


def _uninformative(v: VerdictInputs, row: dict[str, Any]) -> str:
    if row.get("left_out"):
        return row["left_out"]
    flat = [v.shown(loss) for loss, key in ((v.candidate, "candidate_constant"), (v.baseline, "baseline_constant"))
            if row.get(key)]
    if flat:
        return f"identical in all {row['n']} seeds for {' and '.join(flat)}"
    return f"the same for {v.shown(v.candidate)} and {v.shown(v.baseline)} in every one of {row['n']} seeds"


def ranked_pairs(v: VerdictInputs, t: pl.DataFrame) -> pl.DataFrame:
    """``t`` with ``_n`` (paired seeds, ``n``) and ``_ranked`` (the pairs whose sign the test can flip: the nonzero
    deltas), both filled for old tables. Under wilcox (the default) the exact test ranks just those, so 2/2^nonzero
    (two-sided) is its floor; pratt and zsplit rank the zeros too, and with zeros present scipy then takes the
    normal approximation, whose p can fall below that floor: such a p below alpha is read as it is, and a test
    called untestable by the floor may in fact have reached it."""
    n = pl.col("n").fill_null(0) if "n" in t.columns else pl.lit(v.seeds)
    ranked = pl.col("n_nonzero").fill_null(n) if "n_nonzero" in t.columns else n
    return t.with_columns(n.cast(pl.Int64).alias("_n"), ranked.cast(pl.Int64).alias("_ranked"))


def pairs_words(n: int, ranked: int) -> str:
    """``8 paired seeds`` or ``8 paired seeds, 2 with a nonzero delta`` (when the test ranks fewer)."""
    return seeds_word(n) + (f", {ranked} with a nonzero delta" if ranked != n else "")


def _untestable_mask(v: VerdictInputs, t: pl.DataFrame, p_col: str, m: Family) -> pl.Series:
    """Per row of ``t``: its p is NaN, or its test of the pairs it ranks cannot reach alpha (family ``m``)."""
    p = t[p_col].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    k = ranked_pairs(v, t)["_ranked"].to_list()
    return pl.Series([not np.isfinite(x) or is_untestable(v, int(r), m) for x, r in zip(p, k)], dtype=pl.Boolean)


def _untestable_lines(v: VerdictInputs, rows: pl.DataFrame, m: Family) -> list[str]:
    """One sentence per (seeds, ranked pairs): the metrics that cannot be tested with them, and why."""
    c, b, lines = v.shown(v.candidate), v.shown(v.baseline), []
    rows = ranked_pairs(v, rows)
    for n, k in sorted(set(zip(rows["_n"].to_list(), rows["_ranked"].to_list()))):
        names = ", ".join(rows.filter((pl.col("_n") == n) & (pl.col("_ranked") == k))["metric"].to_list())
        point = "; the bootstrap CI of one seed is a single point" if n == 1 else ""
        lines.append(f"{c} vs {b} is untestable with {pairs_words(n, k)} in: {names} ({why_untestable(v, k, m, n)}"
                     f"{point}); this is no evidence that they are alike.")
    return lines


def metric_sentences(v: VerdictInputs) -> list[str]:
    """Which metrics differ significantly after the correction, in whose favour; those no test of this many
    seeds could show (untestable); the uninformative ones."""
    t, c, b = v.metric_tests, v.shown(v.candidate), v.shown(v.baseline)
    if t.height == 0:
        return [f"No paired metric test: {c} and {b} share no complete seed."]
    informative = t["informative"] if "informative" in t.columns else pl.Series([True] * t.height)
    t = t.with_columns(informative.alias("_informative"))
    m = family(v, t.filter(pl.col("_informative")), "p_adjusted")
    t = t.with_columns(_untestable_mask(v, t, "p_adjusted", m).alias("_untestable"))
    lines = []
    for row in t.filter(pl.col("_informative") & (pl.col("p_adjusted") < v.alpha)).iter_rows(named=True):
        win, lose = (c, b) if ranks_favour(row, "mean_delta") else (b, c)
        way = "higher is better" if row["higher_is_better"] else "lower is better"
        lines.append(f"{win} beats {lose} on {row['metric']} ({way}): mean delta {number(row['mean_delta'])} "
                     f"({v.confidence:.0%} bootstrap CI [{number(row['ci_low'])}, {number(row['ci_high'])}], "
                     f"unadjusted; favours {c} when > 0), "
                     f"rank-biserial {number(row['rank_biserial'])}, {v.correction} p = {pval(row['p_adjusted'])}."
                     + (f" {mean_against_words(win, lose, 'delta')}" if mean_against(row, "mean_delta") else ""))
    not_below = pl.col("_informative") & ~(pl.col("p_adjusted") < v.alpha).fill_null(False)
    rest = t.filter(not_below & ~pl.col("_untestable"))
    if rest.height:
        lines.append(f"{not_significant(v, f'{v.correction}-adjusted p >= {v.alpha:g}')} in: "
                     f"{', '.join(rest['metric'].to_list())}.{_ci_apart(v, rest, m)}")
    lines += _untestable_lines(v, t.filter(not_below & pl.col("_untestable")), m)
    for row in t.filter(~pl.col("_informative")).iter_rows(named=True):
        lines.append(f"{row['metric']} is uninformative for {c} vs {b} ({_uninformative(v, row)}), so it is left "
                     f"out of the {v.correction} family.")
    return lines


def short_of_alpha(v: VerdictInputs, fam: Family, test: str, members: str) -> str:
    """``the exact test, holm-adjusted over 9 metrics, does not reach alpha`` (``test``, ``members`` in words), or
    without the adjustment when there is none: what a bootstrap interval that excludes 0 is set against."""
    if v.correction == "none" or fam.size <= 1:
        return f"{test} does not reach alpha"
    return f"{test}, {v.correction}-adjusted over {fam.size} {members}, does not reach alpha"


def ranks_favour(row: Mapping[str, Any], delta: str) -> bool:
    """Whether a test's row favours the candidate in the direction of its rank test: the sign of ``rank_biserial``
    ((T+ − T−) / (T+ + T−), what a Wilcoxon test is about), else of ``delta`` (> 0 favours the candidate) where the
    row has no finite nonzero one. A significant test's winner is read from this, not from the mean: a few seeds
    with large deltas one way can point the mean against the many that go the other way."""
    r = row.get("rank_biserial")
    if r is not None and np.isfinite(r) and r != 0:
        return bool(r > 0)
    d = row.get(delta)
    return d is not None and bool(np.isfinite(d)) and d > 0


def mean_against(row: Mapping[str, Any], delta: str) -> bool:
    """Whether the mean ``delta`` points against the ranks (both finite and nonzero, of opposite signs)."""
    r, d = row.get("rank_biserial"), row.get(delta)
    if r is None or d is None or not (np.isfinite(r) and np.isfinite(d)) or r == 0 or d == 0:
        return False
    return (r > 0) != (d > 0)


def mean_against_words(win: str, lose: str, what: str) -> str:
    """The sentence said when a significant test's ranks and mean disagree (:func:`mean_against`). It claims no
    majority of seeds: a positive rank sum T+ − T− can come from fewer seeds with larger ranks."""
    return (f"The mean {what} points the other way, towards {lose}: the test ranks the seeds' differences by size, "
            f"and those ranks favour {win}, while larger differences on {lose}'s side pull the average towards "
            f"{lose}; the test's direction is that of the ranks, not of the average, so read the size with care.")


def one_sided(v: VerdictInputs) -> tuple[str, str] | None:
    """(the side a one-sided test looks for as better, the other side) as loss keys; None for a two-sided test.
    delta > 0 favours the candidate, so ``greater`` tests the candidate better and ``less`` the baseline."""
    return {"greater": (v.candidate, v.baseline), "less": (v.baseline, v.candidate)}.get(v.alternative)


def not_significant(v: VerdictInputs, p_words: str = "", better: str = "better than", where: str = "") -> str:
    """A non-rejection in words: ``LE and BCE do not differ significantly<where> (<p_words>)`` for a two-sided test;
    a one-sided test only says that the side it tests is not significantly ``better`` the other, never that the two
    do not differ (a difference the other way is not tested)."""
    sides = one_sided(v)
    if sides is None:
        return f"{v.shown(v.candidate)} and {v.shown(v.baseline)} do not differ significantly{where}" + (
            f" ({p_words})" if p_words else "")
    tested, other = (v.shown(x) for x in sides)
    said = f"{p_words}; " if p_words else ""
    return f"{tested} is not significantly {better} {other}{where} ({said}{one_sided_words(v)})"


def one_sided_words(v: VerdictInputs) -> str:
    """What every non-rejection of a one-sided test adds: ``one-sided (greater): the reverse is not tested``."""
    return f"one-sided ({v.alternative}): the reverse is not tested"


def _ci_apart(v: VerdictInputs, rest: pl.DataFrame, fam: Family) -> str:
    """For metrics not significant after the correction whose unadjusted bootstrap CI excludes 0: that it does;
    under a one-sided test, those whose interval lies on the untested side are said apart."""
    if not {"ci_low", "ci_high"} <= set(rest.columns):
        return ""
    above, below = (rest.filter(x)["metric"].to_list() for x in (pl.col("ci_low") > 0, pl.col("ci_high") < 0))
    sides = one_sided(v)
    against = [] if sides is None else (below if sides[0] == v.candidate else above)
    apart = [x for x in above + below if x not in against]
    said = ""
    if apart:
        test = short_of_alpha(v, fam, "the exact test", "metrics")
        said = (f" The unadjusted {v.confidence:.0%} bootstrap CI of the mean delta excludes 0 for {', '.join(apart)}, "
                f"but {test}: the bootstrap interval of the mean and the rank test need not agree.")
    if against:
        said += (f" For {', '.join(against)} the interval lies on {v.shown(sides[1])}'s side, which the one-sided test "
                 f"({v.alternative}) does not test: a difference that way is never significant here.")
    return said


def _band_sentence(v: VerdictInputs, name: str, rows: pl.DataFrame, p_col: str, m: Family) -> str:
    c, b = v.shown(v.candidate), v.shown(v.baseline)
    significant = (pl.col(p_col) < v.alpha).fill_null(False)
    rows, parts = rows.with_columns(candidate_ahead(rows).alias("_ahead")), []
    for loss, other, better in ((c, b, pl.col("_ahead")), (b, c, ~pl.col("_ahead"))):
        won = rows.filter(significant & better)
        if won.height:
            parts.append(f"{loss} is closer to {v.ad_rate(each=won.height > 1)} than {other} on {won.height} "
                         f"({_ads(won['ad_id'].to_list())}; {v.correction} p <= {pval(won[p_col].max())})")
    total, rows = rows.height, rows.filter(~significant)
    untestable = ranked_pairs(v, rows.filter(_untestable_mask(v, rows, p_col, m)))
    for n, r in sorted(set(zip(untestable["_n"].to_list(), untestable["_ranked"].to_list()))):
        k = untestable.filter((pl.col("_n") == n) & (pl.col("_ranked") == r)).height
        where = "" if total == 1 else f" on {'all ' if k == total else ''}{k}"
        parts.append(f"untestable{where} with {pairs_words(n, r)} ({why_untestable(v, r, m, n)})")
    rest = rows.height - untestable.height
    if rest:
        more = "" if total == 1 else f" on the other {rest}" if parts else f" on any of the {total}"
        parts.append(not_significant(v, better=f"closer to {v.ad_rate()} than", where=more))
    return f"{c} vs {b}, ads at {name} ({total} tested): " + "; ".join(parts) + "."


def candidate_ahead(rows: pl.DataFrame) -> pl.Series:
    """Per per-ad test row: whether its rank test favours the candidate (:func:`ranks_favour` of ``delta_mean`` =
    baseline gap − candidate gap; a table without it compares the mean gaps)."""
    def ahead(r: dict[str, Any]) -> bool:
        gaps = [np.nan if r.get(k) is None else r[k] for k in ("baseline_gap", "candidate_gap")]
        delta = r.get("delta_mean", gaps[0] - gaps[1])
        return ranks_favour({**r, "delta_mean": delta}, "delta_mean")
    return pl.Series([ahead(r) for r in rows.iter_rows(named=True)], dtype=pl.Boolean)


def untestable_conditions(v: VerdictInputs) -> pl.Series:
    """Per row of ``v.condition_tests``: whether its per-ad test could not reach alpha with the seeds it ranks (or
    gave no p-value), in the family of the comparison's per-ad correction, and is not significant (a p below alpha
    is read as significant first, as the band sentences do): what they call untestable."""
    t = v.condition_tests
    p_col = "p_value" if v.correction == "none" else f"p_{v.correction}"
    if t.height == 0 or p_col not in t.columns:
        return pl.Series("untestable", [True] * t.height, dtype=pl.Boolean)
    significant = (t[p_col].cast(pl.Float64).fill_null(float("nan")) < v.alpha).fill_null(False)
    return (_untestable_mask(v, t, p_col, family(v, t, p_col)) & ~significant).alias("untestable")


def band_sentences(v: VerdictInputs) -> list[str]:
    """Per-ad calibration results of the comparison, by absolute rate band (ads named only when significant;
    untestable ones counted with the reason)."""
    t = v.condition_tests
    if t.height == 0:
        return []
    p_col = "p_value" if v.correction == "none" else f"p_{v.correction}"
    band = pl.Series("band", rate_bands(t["base_rate"].to_numpy(), v.edges))
    t, m = t.with_columns(band), family(v, t, p_col)
    return [_band_sentence(v, name, t.filter(pl.col("band") == k), p_col, m)
            for k, name in enumerate(band_labels(v.edges)) if t.filter(pl.col("band") == k).height]


# ------------------------------------------------------------------------------------------------ rate bands


def _flag(ads: pl.DataFrame, name: str) -> pl.Series:
    """Boolean column ``name`` of ``ads`` (False where absent or null)."""
    return ads[name].fill_null(False) if name in ads.columns else pl.Series(name, [False] * ads.height)


def bands_overview(ads: pl.DataFrame, edges: Sequence[float], untested: str = "no usable pair of seeds",
                   excluded_why: str = EXCLUDED_WHY) -> list[str]:
    """One line per band with its tested ads (each ad named once in the report). ``ads``: condition, ad_id,
    base_rate (the reference rate), tested (bool), excluded (bool: the audit left the ad out for too few clicks;
    those are named with their rates and ``excluded_why``, the audit's reason: see
    :func:`le_ray.report.wording.exclusion_reason`), optional no_eval_click (bool: no evaluation click, so no
    measured rate; such ads are listed apart, in no band, with their optional train_rate). An ad neither tested
    nor excluded is named with the reason ``untested`` (e.g. no two losses share a stored seed yet), never as having
    too few clicks."""
    if ads.height == 0:
        return []
    ads = ads.with_columns(_flag(ads, "tested").alias("tested"), _flag(ads, "excluded").alias("excluded"))
    ads, unmeasured = ads.filter(~_flag(ads, "no_eval_click")), ads.filter(_flag(ads, "no_eval_click")).sort("ad_id")
    ads = ads.sort("base_rate")
    ads = ads.with_columns(pl.Series("band", rate_bands(ads["base_rate"].to_numpy(), edges)))
    lines = []
    for k, name in enumerate(band_labels(edges)):
        rows = ads.filter(pl.col("band") == k)
        tested = rows.filter(pl.col("tested"))["ad_id"].to_list()
        parts = [f"{len(tested)} tested ({_ads(tested)})" if tested else "no tested ad"]
        excluded = rows.filter(~pl.col("tested") & pl.col("excluded"))
        if excluded.height:
            parts.append(f"{excluded.height} left out of testing with {excluded_why}: "
                         f"{excluded_ads(excluded['ad_id'].to_list(), excluded['base_rate'].to_list())}")
        other = rows.filter(~pl.col("tested") & ~pl.col("excluded"))["ad_id"].to_list()
        if other:
            parts.append(f"{len(other)} untested ({_ads(other)}: {untested})")
        lines.append(f"{name}: " + "; ".join(parts))
    if unmeasured.height:
        train = unmeasured["train_rate"].to_list() if "train_rate" in unmeasured.columns else None
        lines.append(f"no evaluation click (rate not measured, so in no band; not tested): "
                     f"{unmeasured_ads(unmeasured['ad_id'].to_list(), train)}")
    return lines


def rare_headline(ads: pl.DataFrame, reference: str, advice: str) -> list[str]:
    """When no tested ad's rate lies below RARE_BELOW: that this data cannot answer the rare-ad question, and how
    to get rare ads (``advice``); else nothing. Rare ads the audit excluded are said to have too few clicks;
    rare ads untested for another reason are counted apart (not blamed on the clicks); an ad without an evaluation
    click (``no_eval_click``) has no measured rate and is no rare ad."""
    if ads.height == 0:
        return []
    unmeasured = int(_flag(ads, "no_eval_click").sum())
    rare = ads.filter((pl.col("base_rate") < RARE_BELOW) & ~_flag(ads, "no_eval_click"))
    if _flag(rare, "tested").any():
        return []
    excluded = int(_flag(rare, "excluded").sum())
    notes = [f"{excluded} ad(s) below it had too few clicks to test"] if excluded else []
    if unmeasured:
        notes.append(f"{unmeasured} ad(s) without an evaluation click have no measured rate and are not counted")
    if rare.height - excluded:
        notes.append(f"{rare.height - excluded} ad(s) below it had no usable pair of seeds")
    return [f"No tested ad is below {_edge(RARE_BELOW)} ({'; '.join([reference, *notes])}): this data cannot answer "
            f"the rare-ad question; {advice}."]


def pending_headline(trials: dict[str, tuple[int, int]], unpaired: Sequence[tuple[str, str]], compared: int,
                     resume: str, failures: Sequence[str] = ()) -> list[str]:
    """What a stopped, failed or partial sweep cannot say yet: ``unpaired`` (baseline, candidate) comparisons share
    no stored seed; ``trials``: loss → (stored, planned) trials; ``compared``: comparisons that do share one;
    ``resume``: the command that resumes the sweep; ``failures``: the reason of each failed trial. None compared:
    no comparison is possible at all (and the rare-ad question is not the data's fault: the sweep stopped early,
    or its trials failed, said with the first reason); else the comparisons still missing. Nothing when none is."""
    if not unpaired:
        return []
    stored = ", ".join(f"{label(loss)} {k} of {n}" for loss, (k, n) in trials.items())
    failed = ""
    if failures:
        (reason, times), = Counter(failures).most_common(1)
        failed = (f"{len(failures)} trial(s) failed (most often: {reason}" + (f", {times} times" if times > 1 else "")
                  + "; failures/ holds each traceback); a resume retries them with the same config, so it helps only "
                  "once the data or the environment is fixed (a config change needs a new sweep, --name <new name>)")
    if not compared and failed:
        return [f"No comparison is possible: {failed}. No two losses share a stored seed (trials stored per loss: "
                f"{stored}); resume with {resume}."]
    if not compared:
        return [f"No comparison is possible yet: no two losses share a stored seed (trials stored per loss: "
                f"{stored}), so nothing could be tested: the sweep stopped early, which says nothing about the data. "
                f"It can be resumed with {resume} (stored trials are kept), or this report rebuilt once paired "
                "seeds are stored."]
    names = ", ".join(f"{label(c)} vs {label(b)}" for b, c in unpaired)
    return [f"Not compared yet: {names} (no seed stored for both losses; trials stored per loss: {stored}); "
            + (f"{failed}; then resume with {resume}." if failed else f"the sweep can be resumed with {resume}.")]


# ------------------------------------------------------------------------------------------------- rendering


def verdict_markdown(v: Verdict) -> list[str]:
    """The verdict as Markdown lines (under ``## Verdict``): bottom line paragraphs first."""
    lines = [x for h in v.headline for x in (f"**{h}**", "")]
    lines += [f"_{v.note}_", ""] if v.note else []  # the terms first, then the paragraphs that use them
    for title, sentences in v.bottom:
        lines += [f"**{title}.** " + " ".join(sentences), ""]
    lines += ["**Reading these ratios.** " + " ".join(v.readings), ""] if v.readings else []
    if v.bands:
        lines += [f"**{v.bands_title}:**", "", *[f"- {line}" for line in v.bands], ""]
    for title, sentences in v.comparisons:
        lines += [f"**{title}:**", "", *[f"- {s}" for s in sentences], ""]
    if v.caveats:
        lines += ["### Caveats", "", *[f"- {c}" for c in v.caveats], ""]
    return lines


def verdict_text(v: Verdict, width: int = 100) -> list[str]:
    """The verdict as console lines wrapped to ``width``: bottom line first, then results, bands, caveats."""
    import textwrap

    def wrap(text: str, first: str = "", rest: str = "  ") -> list[str]:
        return textwrap.wrap(text, width=max(width, 40), initial_indent=first, subsequent_indent=rest,
                             break_on_hyphens=False) or [""]

    lines = [x for h in v.headline for x in wrap(h)] + ([""] if v.headline else [])
    lines += wrap(v.note) + [""] if v.note else []
    for title, sentences in v.bottom:
        lines += wrap(f"{title}: " + " ".join(sentences)) + [""]
    lines += wrap("Reading these ratios: " + " ".join(v.readings)) + [""] if v.readings else []
    if v.bands:
        lines += [f"{v.bands_title}:", *[x for b in v.bands for x in wrap(b, "  ", "    ")], ""]
    for title, sentences in v.comparisons:
        lines += [f"{title}:", *[x for s in sentences for x in wrap(s, "  - ", "    ")], ""]
    if v.caveats:
        lines += ["caveats:", *[x for c in v.caveats for x in wrap(c, "  - ", "    ")]]
    return lines
