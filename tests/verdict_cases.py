"""Hand-made tables and inputs for the verdict's tests (tests/test_verdict.py, tests/test_bottom_line.py): metric
results, per-ad tests and per-seed ratios, and the VerdictInputs that holds them."""

import polars as pl

from le_ray.report.verdict import VerdictInputs

LE_RATIOS = [1.2, 1.5, 1.41, 3.05, 0.65]  # median 1.41, range 0.65–3.05: over-predicts by 41 %
BCE_RATIOS = [0.98, 0.67, 1.35, 1.0, 0.9]  # median 0.98: under-predicts by 2 %


def _metrics(rows, informative=None):
    t = pl.DataFrame(rows, orient="row", schema={"metric": pl.String, "higher_is_better": pl.Boolean,
                                                 "mean_delta": pl.Float64, "ci_low": pl.Float64,
                                                 "ci_high": pl.Float64, "rank_biserial": pl.Float64,
                                                 "p_adjusted": pl.Float64})
    t = t.with_columns(pl.lit(12).alias("n"))
    if informative is not None:
        t = t.with_columns(pl.Series("informative", informative), pl.Series("baseline_constant", [False] * t.height),
                           pl.Series("candidate_constant", [not x for x in informative]))
    return t


def _conditions(rows):
    return pl.DataFrame(rows, orient="row", schema={"condition": pl.Int64, "ad_id": pl.String, "base_rate": pl.Float64,
                                                    "baseline_gap": pl.Float64, "candidate_gap": pl.Float64,
                                                    "n": pl.Int64, "p_value": pl.Float64, "p_holm": pl.Float64})


def _ratios(by_condition):
    """loss, seed, condition, ratio from {condition: (bce ratios, le ratios)}."""
    rows = [(loss, s, j, r) for j, (bce, le) in by_condition.items()
            for loss, values in (("bce", bce), ("localized_entropy", le)) for s, r in enumerate(values)]
    return pl.DataFrame(rows, orient="row", schema=["loss", "seed", "condition", "ratio"])


def _inputs(metrics=None, conditions=None, ratios=None, differences=(), edges=(0.001, 0.01, 0.1)):
    return VerdictInputs("bce", "localized_entropy", metrics if metrics is not None else _metrics([]),
                         conditions if conditions is not None else _conditions([]),
                         ratios if ratios is not None else _ratios({}), alpha=0.05, correction="holm", seeds=5,
                         reference="the true click probability", edges=edges, differences=differences)
