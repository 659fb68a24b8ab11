"""Tests for le_ray.stats: Wilcoxon vs direct scipy calls, orientation, ties, NaN pairs,
effect size, bootstrap, Holm/BH, repeated-run tables and per-condition calibration tests."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from le_ray import stats as S
from le_ray.stats.paired import _wilcoxon_on_delta
from le_ray.stats.per_condition import _wilcoxon_many


def _runs(seeds=range(8), shift=0.01, seed=0):
    """Long table seed × loss with every REPEAT_METRICS column; LE better by ``shift``."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in seeds:
        base = {m: 0.5 + rng.normal(0, 0.01) for m in S.REPEAT_METRICS}
        rows.append({"seed": s, "loss": "bce", **base})
        le = {m: v + (shift if S.REPEAT_METRICS[m] else -shift) * (1 + 0.1 * s) for m, v in base.items()}
        rows.append({"seed": s, "loss": "localized_entropy", **le})
    return pl.DataFrame(rows)


# ------------------------------------------------------------------ paired_wilcoxon


@pytest.mark.parametrize("alternative", S.ALTERNATIVES)
@pytest.mark.parametrize("zero_method", S.ZERO_METHODS)
@pytest.mark.parametrize("higher", [False, True])
def test_paired_wilcoxon_matches_direct_scipy(alternative, zero_method, higher):
    rng = np.random.default_rng(1)
    b = np.round(rng.normal(size=15), 1)
    c = np.round(b + rng.normal(0.1, 0.3, size=15), 1)  # ties and zero differences
    c[:2] = b[:2]
    out = S.paired_wilcoxon(b, c, higher_is_better=higher, alternative=alternative, zero_method=zero_method)
    x, y = (c, b) if higher else (b, c)  # scipy's x − y is the oriented delta
    if zero_method == "wilcox":  # wilcox discards zero differences: scipy on the nonzero ones (its exact method)
        x, y = x[x != y], y[x != y]
    ref = sps.wilcoxon(x, y, zero_method=zero_method, alternative=alternative)
    assert out["statistic"] == pytest.approx(float(ref.statistic), abs=1e-12)
    assert out["p_value"] == pytest.approx(float(ref.pvalue), abs=1e-12)
    delta = (c - b) if higher else (b - c)
    assert out["n"] == 15 and out["n_nonzero"] == int(np.count_nonzero(delta))
    assert out["mean_delta"] == pytest.approx(delta.mean())
    assert out["median_delta"] == pytest.approx(np.median(delta))
    # small n without ties: scipy's exact distribution
    b7, c7 = rng.random(7), rng.random(7)
    out7 = S.paired_wilcoxon(b7, c7, higher_is_better=higher, alternative=alternative, zero_method=zero_method)
    x7, y7 = (c7, b7) if higher else (b7, c7)
    ref7 = sps.wilcoxon(x7, y7, zero_method=zero_method, alternative=alternative)
    assert (out7["statistic"], out7["p_value"]) == pytest.approx((ref7.statistic, ref7.pvalue), abs=1e-12)


@pytest.mark.parametrize("higher", [False, True])
def test_orientation_candidate_better_every_seed(higher):
    rng = np.random.default_rng(2)
    b = rng.random(8)
    c = b + 0.05 * (1 + rng.random(8)) * (1 if higher else -1)
    greater = S.paired_wilcoxon(b, c, higher_is_better=higher, alternative="greater")
    less = S.paired_wilcoxon(b, c, higher_is_better=higher, alternative="less")
    two = S.paired_wilcoxon(b, c, higher_is_better=higher)
    assert greater["p_value"] < 0.05 and less["p_value"] > 0.5 and two["p_value"] < 0.05
    assert greater["mean_delta"] > 0 and greater["median_delta"] > 0
    assert greater["statistic"] == 36.0  # T+ = 1 + … + 8


def test_zero_differences_never_bring_p_below_the_exact_minimum_of_the_ranked_pairs():
    """Null audit: with zero deltas present scipy's auto method fell back to the normal approximation, so 5 nonzero
    deltas among 14 seeds gave p = 0.043 (tied: 0.025), below the exact 2/2^5 = 0.0625 that the verdict's
    untestable bound assumes; wilcox now ranks the nonzero deltas with the exact distribution."""
    delta = np.array([0.0] * 9 + [0.1, 0.2, 0.3, 0.4, 0.5])
    out = S.paired_wilcoxon(np.zeros(14), delta, higher_is_better=True)
    assert out["n"] == 14 and out["n_nonzero"] == 5 and out["p_value"] == S.min_exact_p(5) == 0.0625
    one_sided = S.paired_wilcoxon(np.zeros(20), np.r_[np.zeros(15), delta[9:]], higher_is_better=True,
                                  alternative="greater")
    assert one_sided["p_value"] == S.min_exact_p(5, "greater")
    assert _wilcoxon_many(delta[:, None], "two-sided", "wilcox")["p_value"][0] == 0.0625  # the per-ad path


def test_all_ties_and_tiny_differences():
    b = np.array([0.3, 0.4, 0.5])
    out = S.paired_wilcoxon(b, b.copy(), higher_is_better=False)
    assert out == {"n": 3, "n_nonzero": 0, "median_delta": 0.0, "mean_delta": 0.0, "statistic": 0.0, "p_value": 1.0}
    tiny = S.paired_wilcoxon(b, b + 1e-16, higher_is_better=True, alternative="greater")
    assert tiny["statistic"] == 0.0 and tiny["p_value"] == 1.0 and tiny["n_nonzero"] == 0


def test_nan_pairs_dropped_and_no_pairs():
    b = np.array([0.1, np.nan, 0.3, 0.4, np.inf, 0.6, 0.7])
    c = np.array([0.0, 0.2, 0.1, np.nan, 0.5, 0.2, 0.1])
    out = S.paired_wilcoxon(b, c, higher_is_better=False)
    ok = np.isfinite(b) & np.isfinite(c)
    ref = sps.wilcoxon(b[ok], c[ok])
    assert out["n"] == 4 and out["p_value"] == pytest.approx(ref.pvalue)
    empty = S.paired_wilcoxon([np.nan], [1.0], higher_is_better=False)
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("median_delta", "statistic", "p_value"))


def test_paired_wilcoxon_validation():
    with pytest.raises(ValueError, match="zero_method"):
        S.paired_wilcoxon([1, 2], [2, 3], higher_is_better=True, zero_method="exact")
    with pytest.raises(ValueError, match="alternative"):
        S.paired_wilcoxon([1, 2], [2, 3], higher_is_better=True, alternative="bigger")
    with pytest.raises(ValueError, match="equal length"):
        S.paired_wilcoxon([1, 2], [2], higher_is_better=True)


def test_rank_biserial_hand():
    assert S.rank_biserial([1.0, 2.0, -3.0]) == pytest.approx(0.0)
    assert S.rank_biserial([1.0, 2.0, 3.0]) == 1.0
    assert S.rank_biserial([-1.0, 2.0, 3.0, 0.0]) == pytest.approx((5 - 1) / 6)
    assert S.rank_biserial([1.0, -1.0, 2.0]) == pytest.approx((1.5 + 3 - 1.5) / 6)  # average ranks
    assert S.rank_biserial([0.0, 0.0]) == 0.0
    assert math.isnan(S.rank_biserial([]))


def test_bootstrap_ci_seeded_and_vectorised():
    delta = np.array([0.1, 0.3, -0.2, 0.5, 0.05])
    low, high = S.bootstrap_mean_ci(delta, samples=2000, seed=3)
    idx = np.random.default_rng(3).integers(0, 5, size=(2000, 5))
    a = sps.norm.cdf(-math.sqrt(5 / 4) * sps.t.ppf(0.975, 4))  # Hesterberg's expanded level: 0.00095 at n = 5
    assert a == pytest.approx(0.000954, abs=2e-6) and S.expanded_levels(5, 0.95) == pytest.approx((a, 1 - a))
    ref = np.quantile(delta[idx].mean(axis=1), [a, 1 - a])
    assert (low, high) == (pytest.approx(ref[0]), pytest.approx(ref[1]))
    assert S.expanded_levels(1, 0.9) == pytest.approx((0.05, 0.95))  # one value: nothing to expand
    assert low <= delta.mean() <= high
    assert S.bootstrap_mean_ci(np.full(4, 0.2), samples=50) == pytest.approx((0.2, 0.2))
    assert all(math.isnan(v) for v in S.bootstrap_mean_ci([]))


@pytest.mark.parametrize("seeds, floor, ceiling", [(5, 0.90, 0.94), (10, 0.93, 0.96), (20, 0.935, 0.96)])
def test_the_bootstrap_interval_covers_the_true_mean_about_as_often_as_its_label_says(seeds, floor, ceiling):
    """Null audit: the plain percentile interval labelled 95 % covered a zero mean 84 % of the time over 5 seeds and
    90 % over 10; the expanded levels bring it to ~92 % and ~95 % (4,000 normal columns, fixed draws: the binomial
    standard error of a rate is ~0.004)."""
    delta = np.random.default_rng(11).normal(size=(seeds, 4000))
    low, high = S.bootstrap_mean_cis(delta, samples=2000, seed=2)
    covered = float(((low <= 0) & (0 <= high)).mean())
    assert floor <= covered <= ceiling, covered


def test_bootstrap_cis_per_column_equal_one_call_per_column():
    rng = np.random.default_rng(4)
    delta = rng.normal(size=(7, 40)) * np.linspace(0.01, 3, 40)
    delta[2, 5] = delta[0, 6] = np.nan  # a column with a missing seed is bootstrapped alone
    delta[:, 9] = np.nan  # no usable seed: NaN
    delta[:, 11] = 0.25  # constant: a point interval
    for samples, seed, confidence in ((500, 0, 0.95), (1000, 7, 0.8)):
        low, high = S.bootstrap_mean_cis(delta, samples=samples, seed=seed, confidence=confidence)
        for j in range(delta.shape[1]):
            ref = S.bootstrap_mean_ci(delta[:, j], samples=samples, seed=seed, confidence=confidence)
            np.testing.assert_allclose([low[j], high[j]], ref, rtol=1e-12, atol=1e-15)
    assert math.isnan(low[9]) and (low[11], high[11]) == pytest.approx((0.25, 0.25))
    with pytest.MonkeyPatch.context() as patch:  # blocks of columns give what one block gives
        patch.setattr("le_ray.stats.paired._BOOTSTRAP_BLOCK", 3 * 500)
        blocked = S.bootstrap_mean_cis(delta, samples=500)
    np.testing.assert_allclose(blocked, S.bootstrap_mean_cis(delta, samples=500), rtol=1e-12)
    for bad in ({"samples": 0}, {"confidence": 1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            S.bootstrap_mean_cis(delta, **bad)


# ------------------------------------------------------------------ repeated runs


def test_metric_constants():
    assert set(S.LOWER_IS_BETTER) == {"logloss", "brier", "ece", "ece_small", "logratio_calib_iw",
                                      "logratio_calib_macro"}
    assert set(S.HIGHER_IS_BETTER) == {"accuracy", "roc_auc", "pr_auc"}
    assert all(S.REPEAT_METRICS[m] for m in S.HIGHER_IS_BETTER)
    assert not any(S.REPEAT_METRICS[m] for m in S.LOWER_IS_BETTER)


def test_summarize_runs_hand():
    table = pl.DataFrame({"seed": [0, 1, 2, 0, 1], "loss": ["bce", "bce", "bce", "le", "le"],
                          "logloss": [0.5, 0.7, 0.6, 0.4, None], "accuracy": [0.8, 0.9, float("nan"), 0.7, 0.9]})
    out = S.summarize_runs(table)
    assert out.columns == ["loss", "metric", "n", "mean", "std", "min", "max"]
    row = out.filter((pl.col("loss") == "bce") & (pl.col("metric") == "logloss")).row(0, named=True)
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.6) and row["std"] == pytest.approx(0.1)
    assert (row["min"], row["max"]) == (0.5, 0.7)
    le = out.filter((pl.col("loss") == "le") & (pl.col("metric") == "logloss")).row(0, named=True)
    assert le["n"] == 1 and math.isnan(le["std"])  # ddof 1 with one value
    acc = out.filter((pl.col("loss") == "bce") & (pl.col("metric") == "accuracy")).row(0, named=True)
    assert acc["n"] == 2 and acc["mean"] == pytest.approx(0.85)
    assert out["metric"].to_list()[:2] == ["logloss", "accuracy"]


def test_metric_tests_orientation_and_columns():
    out = S.metric_tests(_runs(), alternative="greater", bootstrap_samples=500)
    assert out["metric"].to_list() == list(S.REPEAT_METRICS)
    assert (out["n"] == 8).all() and (out["p_value"] < 0.05).all()
    assert (out["mean_delta"] > 0).all() and (out["rank_biserial"] == 1.0).all()
    assert (out["ci_low"] > 0).all() and (out["ci_low"] <= out["ci_high"]).all()
    less = S.metric_tests(_runs(), alternative="less", bootstrap_samples=10)
    assert (less["p_value"] > 0.5).all()


def test_metric_tests_matches_paired_wilcoxon_and_inner_join():
    table = _runs(shift=0.002, seed=4)
    # seed 7 missing for LE, seed 9 only for BCE → both left out; a NaN metric value drops one pair
    table = table.filter(~((pl.col("seed") == 7) & (pl.col("loss") == "localized_entropy")))
    extra = table.filter(pl.col("seed") == 0).head(1).with_columns(pl.lit(9, dtype=pl.Int64).alias("seed"))
    table = pl.concat([table, extra]).with_columns(
        pl.when((pl.col("seed") == 2) & (pl.col("loss") == "bce")).then(float("nan"))
        .otherwise(pl.col("brier")).alias("brier"))
    out = S.metric_tests(table, zero_method="pratt", bootstrap_samples=100, seed=5)
    for metric, hib in S.REPEAT_METRICS.items():
        b = [table.filter((pl.col("seed") == s) & (pl.col("loss") == "bce"))[metric][0] for s in range(7)]
        c = [table.filter((pl.col("seed") == s) & (pl.col("loss") == "localized_entropy"))[metric][0]
             for s in range(7)]
        ref = S.paired_wilcoxon(b, c, higher_is_better=hib, zero_method="pratt")
        row = out.filter(pl.col("metric") == metric).row(0, named=True)
        assert row["n"] == (6 if metric == "brier" else 7)
        for key in ("n", "n_nonzero", "statistic", "p_value", "mean_delta", "median_delta"):
            assert row[key] == pytest.approx(ref[key]), (metric, key)
        delta = S.paired_deltas(b, c, higher_is_better=hib)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(S.bootstrap_mean_ci(delta, samples=100, seed=5))


def test_metric_tests_errors():
    with pytest.raises(ValueError, match="not found"):
        S.metric_tests(_runs(), candidate="focal")
    dup = pl.concat([_runs(), _runs().head(1)])
    with pytest.raises(ValueError, match="duplicate seeds"):
        S.metric_tests(dup)
    focal = _runs().with_columns(pl.col("loss").replace("bce", "focal"))
    out = S.metric_tests(focal, baseline="focal", bootstrap_samples=10, metrics=["logloss", "accuracy"])
    assert out["baseline"].to_list() == ["focal", "focal"] and out.height == 2


# ------------------------------------------------------------------ corrections


def test_holm_hand_and_nan():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(S.holm_adjust(p), [0.03, 0.06, 0.06, 0.02])
    with_nan = S.holm_adjust([0.01, np.nan, 0.04, 0.03, 0.005])
    assert math.isnan(with_nan[1])
    np.testing.assert_allclose(with_nan[[0, 2, 3, 4]], [0.03, 0.06, 0.06, 0.02])
    assert S.holm_adjust([0.6, 0.9]).tolist() == [1.0, 1.0]  # 2·0.6 capped at 1
    assert S.holm_adjust([]).size == 0


def test_bh_matches_scipy_and_monotone():
    rng = np.random.default_rng(0)
    p = rng.random(40) ** 3
    adj = S.bh_adjust(p)
    np.testing.assert_allclose(adj, sps.false_discovery_control(p, method="bh"), rtol=1e-12)
    order = np.argsort(p)
    assert np.all(np.diff(adj[order]) >= 0) and adj.max() <= 1.0
    with_nan = S.bh_adjust(np.r_[p[:5], np.nan])
    np.testing.assert_allclose(with_nan[:5], sps.false_discovery_control(p[:5]), rtol=1e-12)
    assert math.isnan(with_nan[5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        S.bh_adjust([1.5])


def test_adjust_p_leaves_excluded_tests_out_of_the_family():
    p = np.array([0.01, 0.04, 1.0, 0.03])
    keep = np.array([True, True, False, True])
    out = S.adjust_p(p, "holm", include=keep)
    assert math.isnan(out[2])
    np.testing.assert_allclose(out[keep], S.holm_adjust(p[keep]))  # m = 3, not 4
    np.testing.assert_allclose(out[keep], [0.03, 0.06, 0.06])  # by hand: 3·0.01, max(2·0.03, 0.03), 1·0.04 → 0.06
    np.testing.assert_allclose(S.adjust_p(p, "bh"), S.bh_adjust(p))
    assert np.isnan(S.adjust_p(p, "none", include=keep)[2]) and S.adjust_p(p, "none")[1] == 0.04
    with pytest.raises(ValueError, match="shape"):
        S.adjust_p(p, "holm", include=[True])
    with pytest.raises(ValueError, match="correction"):
        S.adjust_p(p, "bonferroni")


def test_is_constant():
    assert S.is_constant([0.83, 0.83, 0.83]) and S.is_constant([5.0, 5.0 + 1e-13, np.nan])
    assert not S.is_constant([0.83, 0.8300001]) and not S.is_constant([]) and not S.is_constant([np.nan])


def test_metric_constant_over_seeds_is_uninformative():
    """Focal never predicts p >= 0.5 on a fixed split: its accuracy is 1 − click rate in every seed."""
    runs = _runs()
    focal = runs.filter(pl.col("loss") == "bce").with_columns(pl.lit("focal").alias("loss"),
                                                               pl.lit(0.95).alias("accuracy"))
    table = pl.concat([runs, focal])
    out = S.metric_tests(table, baseline="focal", bootstrap_samples=10)
    acc = out.filter(pl.col("metric") == "accuracy").row(0, named=True)
    assert acc["baseline_constant"] and not acc["candidate_constant"] and not acc["informative"]
    assert out.filter(pl.col("metric") != "accuracy")["informative"].all()
    ties = S.metric_tests(pl.concat([focal, focal.with_columns(pl.lit("bce").alias("loss"))]), baseline="focal",
                          candidate="bce", bootstrap_samples=10, metrics=["logloss"])
    assert not ties["informative"][0] and ties["n_nonzero"][0] == 0  # every delta a tie
    one = S.metric_tests(table.filter(pl.col("seed") == 0), baseline="focal", bootstrap_samples=10)
    assert one["informative"].all()  # one pair: nothing is "constant over seeds"


def test_min_pairs_for_alpha():
    assert S.min_pairs_for_alpha(0.05) == 6  # 2/2^5 = 0.0625 is not < 0.05
    assert S.min_pairs_for_alpha(0.05, alternative="greater") == 5  # 1/32
    assert S.min_pairs_for_alpha(0.05, m_tests=10) == 9  # 2/2^9 < 0.005
    # BH: every test of a family at the smallest p keeps that p after the adjustment (stats audit: 6 seeds were
    # said to reach no result under BH over 9 metrics while BH adjusted p = 9 · 0.03125 / 9 = 0.03125 < 0.05)
    assert S.min_pairs_for_alpha(0.05, m_tests=10, correction="bh") == 6
    assert S.bh_adjust(np.full(9, S.min_exact_p(6, "two-sided"))).max() < 0.05
    assert S.min_pairs_for_alpha(0.05, m_tests=10, correction="none") == 6
    # exact scipy p-value with n pairs all favouring the candidate
    assert sps.wilcoxon(np.arange(1.0, 6.0)).pvalue == pytest.approx(0.0625)
    assert sps.wilcoxon(np.arange(1.0, 7.0)).pvalue < 0.05
    with pytest.raises(ValueError, match="correction"):
        S.min_pairs_for_alpha(0.05, correction="sidak")


def _exact_p_by_enumeration(signs: np.ndarray, alternative: str) -> np.ndarray:
    """Exact Wilcoxon p of every sign pattern [P, n] (ranks 1..n, no ties) from the 2^n equally likely patterns."""
    n = signs.shape[1]
    every = np.array(np.meshgrid(*[[0, 1]] * n, indexing="ij")).reshape(n, -1).T  # all 2^n patterns
    null = every @ np.arange(1, n + 1)  # T+ under H0
    t = (signs > 0) @ np.arange(1, n + 1)
    at_most, at_least = ((null[None, :] <= t[:, None]).mean(1), (null[None, :] >= t[:, None]).mean(1))
    return {"greater": at_least, "less": at_most,
            "two-sided": np.minimum(1.0, 2 * np.minimum(at_most, at_least))}[alternative]


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_smallest_holm_p_is_the_least_holm_adjusted_p_over_every_placement_of_the_other_tests(alternative):
    """Against brute force with the project's holm_adjust: every other test either at its floor min_exact_p or
    above this test (p = 1), this test at its floor; the smallest adjusted p this test gets. Families of up to
    5 tests with 3 to 9 ranked pairs each."""
    import itertools
    rng = np.random.default_rng(3)
    for _ in range(60):
        pairs = [int(k) for k in rng.integers(3, 10, size=int(rng.integers(1, 6)))]
        own, others = pairs[0], pairs[1:]
        floors = [S.min_exact_p(k, alternative) for k in others]
        least = 1.0
        for above in itertools.product([False, True], repeat=len(others)):
            p = [S.min_exact_p(own, alternative)] + [1.0 if up else f for up, f in zip(above, floors)]
            least = min(least, float(S.holm_adjust(p)[0]))
        counts = {k: pairs.count(k) for k in set(pairs)}
        assert S.smallest_holm_p(own, counts, alternative) == pytest.approx(least, rel=1e-12), (pairs, least)
    assert S.smallest_holm_p(6, {6: 2, 10: 1}) == 0.0625  # null audit: not its floor 0.03125


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_min_wins_for_p_is_the_fewest_wins_of_any_sign_pattern_that_reaches_the_threshold(alternative):
    """Against every sign pattern of n ≤ 11 ranked pairs, p from the enumerated null distribution (not scipy): the
    fewest pairs the tested side wins (two-sided: the side with more) among patterns with p < threshold."""
    for n in range(1, 12):
        signs = np.where(np.array(np.meshgrid(*[[0, 1]] * n, indexing="ij")).reshape(n, -1).T > 0, 1.0, -1.0)
        p = _exact_p_by_enumeration(signs, alternative)
        positive = (signs > 0).sum(1)
        wins = {"greater": positive, "less": n - positive, "two-sided": np.maximum(positive, n - positive)}[alternative]
        for threshold in (0.1, 0.05, 0.05 / 4, 0.05 / 20, 0.001):
            reached = wins[p < threshold]
            expected = int(reached.min()) if reached.size else None
            if alternative == "two-sided" and expected is not None:
                expected = max(expected, (n + 1) // 2)
            assert S.min_wins_for_p(n, threshold, alternative) == expected, (n, threshold)
    assert S.min_wins_for_p(10, 0.05) == 7 and S.min_wins_for_p(10, 0.0125) == 8  # 28/1024, 10/1024
    assert S.min_wins_for_p(5, 0.05) is None  # 2/2^5 = 0.0625
    with pytest.raises(ValueError, match="n_pairs"):
        S.min_wins_for_p(0, 0.05)


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
@pytest.mark.parametrize("n", range(3, 9))
def test_min_exact_p_is_scipys_exact_p_of_an_all_positive_sample(n, alternative):
    # every difference favours one side: the most extreme sign pattern, the smallest p the exact test gives
    exact = sps.wilcoxon(np.arange(1.0, n + 1.0), alternative=alternative, method="exact").pvalue
    assert S.min_exact_p(n, alternative) == pytest.approx(exact, rel=1e-12)
    assert S.min_exact_p(n, alternative) == (2.0 if alternative == "two-sided" else 1.0) / 2**n


def test_min_exact_p_hand_and_validation():
    assert S.min_exact_p(5) == 0.0625 and S.min_exact_p(5, "less") == S.min_exact_p(5, "greater") == 0.03125
    assert S.min_exact_p(1) == 1.0
    with pytest.raises(ValueError, match="alternative"):
        S.min_exact_p(5, "both")
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="n_pairs"):
            S.min_exact_p(bad, "two-sided")


# ------------------------------------------------------------------ per-condition calibration


def _calib_data(n_seeds=8, n=3000, n_cond=6, seed=0):
    rng = np.random.default_rng(seed)
    cond = rng.integers(0, n_cond, n)
    cond[cond == 4] = 5  # condition 4 absent
    rate = np.linspace(0.05, 0.4, n_cond)[cond]
    y = (rng.random(n) < rate).astype(float)
    base = np.array([np.clip(rate * 1.3 + rng.normal(0, 0.01, n), 0, 1) for _ in range(n_seeds)])
    cand = np.array([np.clip(rate + rng.normal(0, 0.01, n), 0, 1) for _ in range(n_seeds)])
    return y, cond, base, cand


def test_calibration_tests_against_direct_paired_wilcoxon():
    y, cond, base, cand = _calib_data()
    out = S.per_condition_calibration_tests(y, cond, base, cand, alternative="greater", zero_method="zsplit",
                                            bootstrap_samples=800, seed=5, confidence=0.9)
    assert out.columns == ["condition", "count", "base_rate", "baseline_gap", "candidate_gap", "delta_mean", "ci_low",
                           "ci_high", "rank_biserial", "n", "n_nonzero", "n_candidate_closer", "statistic", "p_value",
                           "p_holm", "p_bh", "significant"]
    assert sorted(out["condition"].to_list()) == [0, 1, 2, 3, 5]
    for row in out.iter_rows(named=True):
        m = cond == row["condition"]
        gb = [abs(b[m].mean() - y[m].mean()) for b in base]
        gc = [abs(c[m].mean() - y[m].mean()) for c in cand]
        ref = S.paired_wilcoxon(gb, gc, higher_is_better=False, alternative="greater", zero_method="zsplit")
        assert row["count"] == m.sum() and row["base_rate"] == pytest.approx(y[m].mean())
        assert row["baseline_gap"] == pytest.approx(np.mean(gb)) and row["candidate_gap"] == pytest.approx(np.mean(gc))
        for key in ("n", "n_nonzero", "statistic", "p_value"):
            assert row[key] == pytest.approx(ref[key])
        assert row["delta_mean"] == pytest.approx(ref["mean_delta"])
        assert row["n_candidate_closer"] == sum(g_b > g_c for g_b, g_c in zip(gb, gc))  # the seeds the candidate wins
        assert row["rank_biserial"] == pytest.approx(S.rank_biserial(np.subtract(gb, gc))) and row["rank_biserial"] > 0
        ci = S.bootstrap_mean_ci(np.subtract(gb, gc), samples=800, seed=5, confidence=0.9)
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(ci[0]), pytest.approx(ci[1]))
        assert row["ci_low"] <= row["delta_mean"] <= row["ci_high"]
        assert row["p_value"] < 0.05  # candidate calibrated, baseline over-predicts by 30%
    np.testing.assert_allclose(out["p_holm"].to_numpy(), S.holm_adjust(out["p_value"].to_numpy()))
    np.testing.assert_allclose(out["p_bh"].to_numpy(), S.bh_adjust(out["p_value"].to_numpy()))
    assert out["significant"].to_list() == (out["p_holm"] < 0.05).to_list()


def test_calibration_tests_list_equals_2d_and_min_count():
    y, cond, base, cand = _calib_data(n_seeds=5)
    a = S.per_condition_calibration_tests(y, cond, base, cand)
    b = S.per_condition_calibration_tests(y, cond, list(base), list(cand))
    assert a.equals(b)
    counts = np.bincount(cond)
    cut = int(np.sort(counts[counts > 0])[2])
    c = S.per_condition_calibration_tests(y, cond, base, cand, min_count=cut)
    assert sorted(c["condition"].to_list()) == sorted(np.flatnonzero(counts >= cut).tolist())


def test_calibration_tests_per_seed_labels():
    rng = np.random.default_rng(3)
    ys, cs, pb, pc = [], [], [], []
    for s in range(6):
        n = 500 + 10 * s
        c = rng.integers(0, 3, n)
        if s == 0:
            c[c == 2] = 1  # condition 2 missing in seed 0 → 5 usable pairs
        y = (rng.random(n) < 0.3).astype(float)
        ys.append(y), cs.append(c), pb.append(np.full(n, 0.5)), pc.append(np.full(n, 0.3))
    out = S.per_condition_calibration_tests(ys, cs, pb, pc, sort_by="count")
    row2 = out.filter(pl.col("condition") == 2).row(0, named=True)
    assert row2["n"] == 5
    assert row2["count"] == sum(int((c == 2).sum()) for c in cs)
    gaps_b = [abs(0.5 - y[c == 2].mean()) for y, c in zip(ys[1:], cs[1:])]
    gaps_c = [abs(0.3 - y[c == 2].mean()) for y, c in zip(ys[1:], cs[1:])]
    ref = S.paired_wilcoxon(gaps_b, gaps_c, higher_is_better=False)
    assert row2["p_value"] == pytest.approx(ref["p_value"]) and row2["baseline_gap"] == pytest.approx(np.mean(gaps_b))
    assert out["count"].to_list() == sorted(out["count"].to_list(), reverse=True)


def test_calibration_tests_ties_sorting_and_corrections():
    y, cond, base, cand = _calib_data(n_seeds=6)
    cand = cand.copy()
    m0 = cond == 0
    cand[:, m0] = base[:, m0]  # condition 0: identical gaps → p = 1, delta 0
    out = S.per_condition_calibration_tests(y, cond, base, cand, correction="bh", alpha=0.05)
    row0 = out.filter(pl.col("condition") == 0).row(0, named=True)
    assert row0["p_value"] == 1.0 and row0["n_nonzero"] == 0 and row0["delta_mean"] == 0.0
    assert out["p_value"].to_list() == sorted(out["p_value"].to_list())
    assert out["significant"].to_list() == (out["p_bh"] < 0.05).to_list()
    by_abs = S.per_condition_calibration_tests(y, cond, base, cand, sort_by="abs_delta_mean")
    vals = by_abs["delta_mean"].abs().to_list()
    assert vals == sorted(vals, reverse=True)
    by_rate = S.per_condition_calibration_tests(y, cond, base, cand, sort_by="base_rate", correction="none")
    assert by_rate["base_rate"].to_list() == sorted(by_rate["base_rate"].to_list(), reverse=True)
    assert by_rate["significant"].to_list() == (by_rate["p_value"] < 0.05).to_list()
    with pytest.raises(ValueError, match="sort_by"):
        S.per_condition_calibration_tests(y, cond, base, cand, sort_by="name")
    with pytest.raises(ValueError, match="correction"):
        S.per_condition_calibration_tests(y, cond, base, cand, correction="bonferroni")


def test_calibration_tests_validation():
    y, cond, base, cand = _calib_data(n_seeds=3)
    with pytest.raises(ValueError, match="seeds"):
        S.per_condition_calibration_tests(y, cond, base, cand[:2])
    with pytest.raises(ValueError, match="lengths differ"):
        S.per_condition_calibration_tests(y, cond, base[:, :10], cand[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        S.per_condition_calibration_tests(np.r_[np.nan, y[1:]], cond, base, cand)


def test_wilcoxon_many_equals_columnwise_calls():
    rng = np.random.default_rng(9)
    delta = rng.normal(size=(6, 16))  # clean columns → one vectorised scipy call
    delta[:, :4] = np.round(delta[:, :4])  # ties / zeros → per-column fallback
    delta[0, 5] = delta[2, 6] = np.nan  # unusable pairs
    delta[:, 7] = 0.0  # all ties
    delta[:, 8] = np.nan  # no usable pair
    delta[:3, 9] = 1e-16  # tiny deltas are ties
    combos = [(a, "wilcox") for a in S.ALTERNATIVES] + [("two-sided", z) for z in S.ZERO_METHODS[1:]]
    for alternative, zero_method in combos:
        many = _wilcoxon_many(delta, alternative, zero_method)
        for j in range(delta.shape[1]):
            col = delta[:, j]
            ref = _wilcoxon_on_delta(col[np.isfinite(col)], alternative, zero_method)
            for key, value in ref.items():
                got = many[key][j]
                assert (math.isnan(value) and math.isnan(got)) or got == pytest.approx(value, abs=1e-12)


def test_calibration_tests_from_sums_equal_raw_prediction_path():
    """The report path (per-condition sums of stored tables) gives the raw-prediction results."""
    from le_ray.stats import calibration_tests_from_sums, per_condition_calibration_tests

    rng = np.random.default_rng(11)
    n, c, s = 600, 5, 7
    y = rng.binomial(1, 0.2, n).astype(float)
    cond = rng.integers(0, c, n)
    base = [np.clip(rng.normal(0.25, 0.05, n), 0.01, 0.99) for _ in range(s)]
    cand = [np.clip(rng.normal(0.21, 0.05, n), 0.01, 0.99) for _ in range(s)]
    direct = per_condition_calibration_tests(y, cond, base, cand, alternative="greater")
    counts = np.tile(np.bincount(cond, minlength=c), (s, 1))
    sy = np.tile(np.bincount(cond, weights=y, minlength=c), (s, 1))
    sb = np.array([np.bincount(cond, weights=p, minlength=c) for p in base])
    sc = np.array([np.bincount(cond, weights=p, minlength=c) for p in cand])
    from_sums = calibration_tests_from_sums(counts, sy, sb, sc, alternative="greater")
    assert direct.columns == from_sums.columns
    for col in ("condition", "count", "n", "significant"):
        assert direct[col].to_list() == from_sums[col].to_list()
    np.testing.assert_allclose(direct["p_value"].to_numpy(), from_sums["p_value"].to_numpy())
    np.testing.assert_allclose(direct["delta_mean"].to_numpy(), from_sums["delta_mean"].to_numpy())
    with pytest.raises(ValueError, match="share one"):
        calibration_tests_from_sums(counts, sy, sb[:, :2], sc)


@pytest.mark.parametrize("shared", [True, False])
def test_a_non_finite_stored_count_or_click_sum_leaves_its_seed_out_without_a_garbage_count(shared):
    """A null n or Σy of one seed (a damaged record) made the count -2^63 and the rate NaN (review)."""
    import warnings

    n = np.array([[100.0, 100.0], [np.nan, 100.0], [100.0, 100.0]])
    sy = np.array([[5.0, 9.0], [5.0, np.nan], [5.0, 9.0]])
    sb, sc = n * 0.06, n * 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "invalid value encountered in cast"
        out = S.calibration_tests_from_sums(n, sy, sb, sc, shared_data=shared, bootstrap_samples=50).sort("condition")
    assert out["count"].to_list() == ([100, 100] if shared else [200, 200])
    assert out["base_rate"].to_list() == pytest.approx([0.05, 0.09])
    assert out["n"].to_list() == [2, 2]  # the damaged seed's pair is left out of each ad's test
