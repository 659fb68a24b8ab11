"""The options every paired test here takes, and the constants they share: which alternatives, zero methods and
multiple-testing corrections exist, when a delta counts as a tie, and which metrics are tested in which direction."""

from __future__ import annotations

from collections.abc import Sequence

from le_ray.glossary import TESTED_METRICS


# the tested metrics and their directions are defined once, with their definitions, in the glossary
LOWER_IS_BETTER = tuple(m for m, higher in TESTED_METRICS.items() if not higher)
HIGHER_IS_BETTER = tuple(m for m, higher in TESTED_METRICS.items() if higher)
REPEAT_METRICS: dict[str, bool] = {**dict.fromkeys(LOWER_IS_BETTER, False), **dict.fromkeys(HIGHER_IS_BETTER, True)}
ALTERNATIVES = ("two-sided", "greater", "less")
ZERO_METHODS = ("wilcox", "pratt", "zsplit")
CORRECTIONS = ("holm", "bh", "none")
TIE_TOL = 1e-15  # |delta| ≤ TIE_TOL counts as a tie (delta set to exactly 0)
CONSTANT_RTOL = 1e-12  # values whose spread is ≤ CONSTANT_RTOL·max(1, |value|) count as one constant value


def _check_choice(value, allowed: Sequence[str], name: str) -> None:
    """Raise ValueError when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
