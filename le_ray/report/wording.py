"""Plain wording of the numbers and lists the verdict and its bottom line print; pure functions, no tables.

* :func:`number`: 3 significant digits, and whole numbers with thousands separators from 1,000 up (1,373, never
  1.37e+03).
* :func:`times` and :func:`ratio_words`: a calibration ratio r. Between :data:`FACTOR_BELOW` and
  :data:`FACTOR_ABOVE` it reads as a percentage off (r > 1 over-predicts by 100·(r − 1) %, r < 1 under-predicts by
  100·(1 − r) %); beyond them as a multiple of the ad's rate ("predicts 1,800× the ad's rate", "predicts 0.31× the
  ad's rate"), where a percentage would run to 179961 %; below :data:`FACTOR_TINY` as "predicts under 1/1,000 of
  the ad's rate" (a multiple would read 2.4e-09×).
* :func:`pval`: every p-value of the verdict, 3 significant digits (0.875, 0.0312, 2.4e-05).
* :func:`ads` and :func:`join`: "ad 3" / "ads 2, 3"; "a", "a and b", "a, b and c".
* :func:`percent`: a probability as a percentage (0.00051 → "0.051 %").
* :func:`exclusion_reason` and :func:`excluded_ads`: the ads the audit left out of testing for too few clicks,
  each named with its rate, and why (its ``repeats.min_eval_clicks`` check); :func:`unmeasured_ads`: the ads
  without an evaluation click, whose rate is not measured (never "0 %"), with their training rate when known.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["number", "times", "ratio_words", "pval", "ads", "join", "percent", "exclusion_reason", "excluded_ads",
           "unmeasured_ads", "EXCLUDED_WHY", "FACTOR_ABOVE", "FACTOR_BELOW", "FACTOR_TINY", "UNDER_TINY"]

FACTOR_ABOVE = 2.0  #: a ratio above this reads as a multiple of the ad's rate, not a percentage over it
FACTOR_BELOW = 0.5  #: a ratio below this reads as a multiple (a fraction) of the ad's rate
FACTOR_TINY = 0.001  #: a ratio below this reads "under 1/1,000 of the ad's rate" (never 2.4e-09×)
UNDER_TINY = f"under 1/{1 / FACTOR_TINY:,.0f} of"  #: how such a ratio reads, before "the ad's rate"


def number(x: float | None) -> str:
    """``x`` to 3 significant digits; from 999.5 up (in size) a whole number with thousands separators; n/a when
    missing or not finite."""
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:,.0f}" if abs(x) >= 999.5 else f"{x:.3g}"


def mean_sd(mean: float | None, sd: float | None) -> str:
    """``mean ± sd`` with the sd to 2 significant digits and the mean to the same decimal place: 0.049131 and
    0.0020 → '0.0491 ± 0.0020', 12,345.6 and 234 → '12350 ± 230'; 5 significant digits for the mean when the sd is 0,
    not finite, or so small that its place lies beyond 8 decimals (then the sd in e-notation: '0.41235 ± 3e-10')."""
    if mean is None or not math.isfinite(mean):
        return f"{number(mean)} ± {number(sd)}"
    if sd is None or not math.isfinite(sd) or sd == 0:
        return f"{mean:.5g} ± {0 if sd == 0 else number(sd)}"
    place = math.floor(math.log10(abs(sd))) - 1  # the decimal exponent of sd's second significant digit
    if round(sd, -place) >= 10.0 ** (place + 2):  # 0.0995 → 0.10: one place coarser
        place += 1
    if place < -8:
        return f"{mean:.5g} ± {sd:.2g}"
    decimals, shown = max(0, -place), round(mean, -place)
    shown = abs(shown) if shown == 0 else shown  # no '-0.000' for a small negative mean
    return f"{shown:.{decimals}f} ± {round(sd, -place):.{decimals}f}"


def times(r: float) -> str:
    """``r`` as a multiple: ``1,800×``, ``11.5×``, ``0.31×``."""
    return f"{number(r)}×"


def ratio_words(r: float, size: str) -> str:
    """What a calibration ratio ``r`` says the loss does to the ad: ``predicts 1,800× the ad's rate`` beyond
    [FACTOR_BELOW, FACTOR_ABOVE] (``predicts under 1/1,000 of the ad's rate`` below FACTOR_TINY), else
    ``over-predicts it by <size>`` / ``under-predicts it by <size>`` (``size``: the percentage off, as the caller
    writes it)."""
    if r < FACTOR_TINY:
        return f"predicts {UNDER_TINY} the ad's rate"
    if r > FACTOR_ABOVE or r < FACTOR_BELOW:
        return f"predicts {times(r)} the ad's rate"
    return f"{'over' if r > 1 else 'under'}-predicts it by {size}"


def pval(p: float | None) -> str:
    """A p-value, 3 significant digits (1, 0.875, 0.0312, 2.4e-05); n/a when missing or not finite."""
    if p is None or not math.isfinite(p):
        return "n/a"
    return f"{p:.3g}"


#: a sentence names at most this many ads of a list (the first: callers order them rarest first), then "and N more"
MAX_LISTED_ADS = 20


def _listed(items: Sequence[str]) -> list[str]:
    """``items``, or their first :data:`MAX_LISTED_ADS` and ``"N more"`` (a band of 12,000 ads was one line of
    120 KB in a 20,000-ad report)."""
    items = [str(x) for x in items]
    return items if len(items) <= MAX_LISTED_ADS else [*items[:MAX_LISTED_ADS], f"{len(items) - MAX_LISTED_ADS:,} more"]


def ads(ids: Sequence[str]) -> str:
    """``ad 3``, ``ads 3, 2`` or, beyond :data:`MAX_LISTED_ADS`, ``ads 3, 2, … and 980 more``."""
    named = _listed(ids)
    listed = ", ".join(named) if len(named) == len(ids) else f"{', '.join(named[:-1])} and {named[-1]}"
    return f"ad{'s' if len(ids) > 1 else ''} {listed}"


def join(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = [str(x) for x in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}" if items else ""


def percent(rate: float | None) -> str:
    """A probability as a percentage: 0.00051 → '0.051 %', 0.125 → '12 %'."""
    if rate is None or not math.isfinite(rate):
        return "n/a"
    x = 100.0 * rate
    return f"{x:.0f} %" if x >= 10 else f"{x:.2g} %"


def exclusion_reason(min_clicks: int | None = None, expected: bool = False) -> str:
    """Why the audit left an ad out of testing, to follow "with": fewer than ``min_clicks`` (expected) evaluation clicks
    (``repeats.min_eval_clicks``) when given, else too few clicks of either split (an ad without a training click is
    left out too)."""
    noun = f"{'expected ' if expected else ''}evaluation click"
    if min_clicks is None:
        return ("too few clicks to test (no training click, or evaluation clicks below `repeats.min_eval_clicks`; see "
                "the caveats)")
    plural = "s" if min_clicks != 1 else ""
    return f"fewer than {min_clicks} {noun}{plural} (`repeats.min_eval_clicks`; see the caveats)"


EXCLUDED_WHY = exclusion_reason()  #: the reason said when the caller gives none


def excluded_ads(ids: Sequence[str], rates: Sequence[float]) -> str:
    """``ads 0 (0.001 %), 1 (0.0028 %) and 2 (0.0077 %)``: each ad with its rate."""
    return f"ad{'s' if len(ids) > 1 else ''} " + join(_listed([f"{i} ({percent(r)})" for i, r in zip(ids, rates)]))


def unmeasured_ads(ids: Sequence[str], train_rates: Sequence[float | None] | None = None) -> str:
    """``ads 23160 (training rate 30 %) and 19743``: ads without an evaluation click (no measured rate, so no
    "0 %"), each with its training rate when known."""
    rates = list(train_rates) if train_rates is not None else [None] * len(ids)
    named = [f"{i} (training rate {percent(r)})" if r is not None and math.isfinite(r) else str(i)
             for i, r in zip(ids, rates)]
    return f"ad{'s' if len(ids) > 1 else ''} " + join(_listed(named))
