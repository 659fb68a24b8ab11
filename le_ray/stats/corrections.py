"""Multiple-testing corrections (Holm, Benjamini–Hochberg) and what an exact Wilcoxon test can reach with n pairs."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import stats as sps

from le_ray.stats.choices import ALTERNATIVES, CORRECTIONS, _check_choice


def _finite_p(p) -> tuple[np.ndarray, np.ndarray]:
    """(p as float array [m_all], mask of non-NaN entries); p must lie in [0, 1]."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"p-values must be 1-D, got shape {arr.shape}")
    ok = ~np.isnan(arr)
    if ((arr[ok] < 0) | (arr[ok] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    return arr, ok


def holm_adjust(p) -> np.ndarray:
    """Holm step-down adjusted p-values, shape [m]; NaN entries stay NaN and are not counted.

    With the m finite p sorted ascending p_(1) ≤ … ≤ p_(m):
    p̃_(i) = min(1, max_{k ≤ i} (m − k + 1)·p_(k)).
    """
    arr, ok = _finite_p(p)
    out = np.full(arr.shape, np.nan)
    q = arr[ok]
    order = np.argsort(q, kind="stable")
    adj = np.maximum.accumulate((q.size - np.arange(q.size)) * q[order])
    res = np.empty(q.size)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def bh_adjust(p) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values, shape [m]; NaN entries stay NaN, not counted.

    p̃_(i) = min(1, min_{k ≥ i} m·p_(k)/k) over the m finite p sorted ascending.
    """
    arr, ok = _finite_p(p)
    out = np.full(arr.shape, np.nan)
    q = arr[ok]
    order = np.argsort(q, kind="stable")
    scaled = q[order] * q.size / np.arange(1, q.size + 1)
    adj = np.minimum.accumulate(scaled[::-1])[::-1]
    res = np.empty(q.size)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out


def adjust_p(p, correction: str, *, include=None) -> np.ndarray:
    """Adjusted p-values, shape [m]: ``correction`` ("holm", "bh" or "none") over the entries where ``include``
    (bool [m], default all) is True and p is not NaN; every other entry is NaN (not in the family, not counted
    in its size). E.g. a metric constant over the seeds is left out, so it does not dilute the others.
    """
    _check_choice(correction, CORRECTIONS, "correction")
    arr, _ = _finite_p(p)
    keep = np.ones(arr.shape, dtype=bool) if include is None else np.asarray(include, dtype=bool)
    if keep.shape != arr.shape:
        raise ValueError(f"include must have the shape of p {arr.shape}, got {keep.shape}")
    family = np.where(keep, arr, np.nan)
    return {"holm": holm_adjust, "bh": bh_adjust, "none": lambda x: x}[correction](family)


def min_exact_p(n_pairs: int, alternative: str = "two-sided") -> float:
    """Smallest p-value an exact Wilcoxon signed-rank test can give with ``n_pairs`` non-zero paired differences.

    Under H0 each of the 2^n sign patterns of the n ranked differences is equally likely, so the most extreme
    statistic (every difference of one sign: W+ = n(n+1)/2 or 0) has probability 1/2^n. One-sided
    ("greater", "less") the smallest p is 1/2^n; two-sided both extremes count, 2/2^n. E.g. n = 5:
    0.0625 two-sided, 0.03125 one-sided. Exact powers of two (``math.ldexp``), no overflow for large n.
    """
    _check_choice(alternative, ALTERNATIVES, "alternative")
    if int(n_pairs) != n_pairs or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive integer, got {n_pairs!r}")
    return math.ldexp(2.0 if alternative == "two-sided" else 1.0, -int(n_pairs))


def min_pairs_for_alpha(alpha: float, *, m_tests: int = 1, correction: str = "holm",
                        alternative: str = "two-sided") -> int:
    """Smallest number of pairs n for which an exact Wilcoxon test can give an adjusted p < alpha.

    The smallest exact p with n pairs is :func:`min_exact_p`: 2/2^n (two-sided) or 1/2^n (one-sided); the bar
    it must pass is alpha/m_tests for Holm (its smallest adjusted p is m · p_(1)), alpha for "none", and alpha for
    BH too: BH's adjusted p_(i) = min over j >= i of (m/j) · p_(j), so when every test of the family has the
    smallest p, each adjusted p is that p (one result alone still needs alpha/m_tests: pass m_tests=m with
    correction "holm" for that bar).  E.g. alpha 0.05, two-sided: n = 6 (n = 5 gives 0.0625).
    """
    _check_choice(correction, CORRECTIONS, "correction")
    _check_choice(alternative, ALTERNATIVES, "alternative")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha!r}")
    if int(m_tests) != m_tests or m_tests < 1:
        raise ValueError(f"m_tests must be a positive integer, got {m_tests!r}")
    target = alpha / m_tests if correction == "holm" else alpha
    n = 1
    while min_exact_p(n, alternative) >= target:
        n += 1
    return n


def smallest_holm_p(n_pairs: int, family_pairs: Mapping[int, int], alternative: str = "two-sided") -> float:
    """Smallest Holm-adjusted p an exact Wilcoxon test ranking ``n_pairs`` pairs can get in a family whose tests rank
    the pairs of ``family_pairs`` ({ranked pairs: number of tests}, this test counted; m = the number of tests).

    Each test's p is at least its floor f = :func:`min_exact_p` of its pairs. Holm's adjusted p of the test ranked
    k is max_{j ≤ k} (m − j + 1) · p_(j), so this test's is smallest when the tests ranked before it sit at their
    floors, and only a test whose floor is ≤ this test's own f can be ranked before it (its p must not exceed this
    test's). With the others' floors sorted, q_1 ≤ q_2 ≤ ..., and own floor f: the minimum over k of
    max(max_{j < k} (m − j + 1) · q_j, (m − k + 1) · f), over the k whose q_{k−1} ≤ f; at most 1. Equal counts give
    m · f; a family of (6, 6, 10) ranked pairs gives a 6-pair test 2 · 2/2^6 = 0.0625, not its own floor 0.03125
    (null audit: the bound by the family's best count alone called such a test testable); a test ranking no pair
    has p = 1. Works per distinct
    count (a block of c equal floors starting at rank a adds (m − a + 1) · q, and the best place after it is after
    its last), so a family of 20,000 ads over 30 seeds costs ~30 steps."""
    floor = min_exact_p(n_pairs, alternative)
    counts = {int(k): int(c) for k, c in family_pairs.items() if c > 0}
    counts[int(n_pairs)] = counts.get(int(n_pairs), 1) - 1  # the others: this test is not ranked before itself
    m = sum(counts.values()) + 1
    best, running, placed = m * floor, 0.0, 0
    # a test that ranks no pair (every delta a tie) reports p = 1
    for q, c in sorted((min_exact_p(k, alternative) if k >= 1 else 1.0, c) for k, c in counts.items() if c > 0):
        if q > floor:
            break
        running = max(running, (m - placed) * q)  # the block's first test, ranked placed + 1
        placed += c
        best = min(best, max(running, (m - placed) * floor))  # this test ranked right after the block
    return min(1.0, best)


def min_wins_for_p(n_pairs: int, threshold: float, alternative: str = "two-sided") -> int | None:
    """Fewest of ``n_pairs`` ranked pairs one side must win for the Wilcoxon test to give p < ``threshold``.

    With w pairs on the winning side and n − w on the other, p is smallest when the other side holds the n − w
    smallest differences (ranks 1..n − w, so its rank sum is (n − w)(n − w + 1)/2); each such best case is
    tested with ``scipy.stats.wilcoxon`` on distinct differences, the call (and so the exact or approximate
    method) the tests make. Winning that many pairs is necessary, not sufficient: the same wins with larger
    losing differences give a larger p. ``greater``: the positive side (the candidate, as the tests orient
    deltas), w from 0; ``less``: the negative side; two-sided: the side with more wins, w from ⌈n/2⌉ (so the
    answer ⌈n/2⌉ says nothing: some side always wins that many). p falls as w grows over that range, so the
    answer is found by bisection. None when even w = n does not reach ``threshold``. E.g. n = 10, two-sided: 7
    for p < 0.05 (p = 28/1024), 8 for p < 0.0125 (p = 10/1024).
    """
    _check_choice(alternative, ALTERNATIVES, "alternative")
    if int(n_pairs) != n_pairs or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive integer, got {n_pairs!r}")
    n, sign = int(n_pairs), -1.0 if alternative == "less" else 1.0

    def reaches(wins: int) -> bool:
        ranks = np.arange(1, n + 1, dtype=np.float64)
        signed = np.where(ranks > n - wins, sign, -sign) * ranks
        return float(sps.wilcoxon(signed, alternative=alternative).pvalue) < threshold

    fewest = (n + 1) // 2 if alternative == "two-sided" else 0
    if not reaches(n):
        return None
    if reaches(fewest):
        return fewest
    low, high = fewest, n  # reaches(high), not reaches(low)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high
