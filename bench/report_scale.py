"""Time the report's per-ad work as the number of ads grows: the rare-ad picture, the failed-fit medians and the
per-ad tests' effect sizes, beside the per-ad scans they replaced, measured in the same run.

Data: a long table of 3 losses × S seeds × C ads (the rare-ad picture's input: loss, condition, ad_id, base_rate,
ratio, n, ref_sum) with rates log-uniform on [1e-4, 0.3], ratios e^N(0, 0.3) with 5 % NaN; deltas [S, C] of the
per-ad tests rounded to 0.1 (ties). For each C in ``--ads`` (default 200, 2,000, 20,000; S = ``--seeds``, default
30), wall-clock seconds of:

* ``picture``: ``plot_calibration_by_rate`` drawn and saved as a PNG at 60 dpi;
* ``picture data, per-ad scan``: what the picture's data cost before (a ``median_range`` of a mask over the whole
  table per loss and ad), up to ``--scan-up-to`` ads (default 2,000: beyond, minutes);
* ``medians``: ``median_ratios`` of one loss (the failed-fit reading), and ``ratio_stats`` per ad (before), up to
  ``--scan-up-to`` ads;
* ``rank-biserial``: ``rank_biserial_columns`` of the deltas, and ``rank_biserial`` per column (before).

Usage::

    python bench/report_scale.py [--ads 200 2000 20000] [--seeds 30] [--scan-up-to 2000]
"""

from __future__ import annotations

import argparse
import platform
import time

import matplotlib
import numpy as np
import polars as pl

matplotlib.use("Agg")

from le_ray.metrics.compare import format_table  # noqa: E402
from le_ray.report import plots  # noqa: E402
from le_ray.report.bottom_line import median_ratios, ratio_stats  # noqa: E402
from le_ray.stats import median_range  # noqa: E402
from le_ray.stats.paired import rank_biserial, rank_biserial_columns  # noqa: E402

LOSSES = ("bce", "localized_entropy", "focal")


def long_table(ads: int, seeds: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The rare-ad picture's long table: one row per loss × ad × seed."""
    rates = np.exp(rng.uniform(np.log(1e-4), np.log(0.3), ads))
    loss, cond, seed = np.meshgrid(np.array(LOSSES), np.arange(ads), np.arange(seeds), indexing="ij")
    cond = cond.ravel()
    ratio = np.exp(rng.normal(0.0, 0.3, cond.size))
    ratio[rng.random(cond.size) < 0.05] = np.nan
    rows = np.full(cond.size, 20_000.0)
    return {"loss": loss.ravel(), "condition": cond, "seed": seed.ravel(), "ad_id": cond.astype(str),
            "base_rate": rates[cond], "ratio": ratio, "n": rows, "ref_sum": np.round(rows * rates[cond])}


def seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def scan_picture_data(t: dict[str, np.ndarray], ads: int) -> None:
    """The picture's per-ad statistics as computed before: a mask over the whole table per loss and ad."""
    for loss in LOSSES:
        for j in range(ads):
            median_range(t["ratio"][(t["loss"] == loss) & (t["condition"] == j)])


def one_size(ads: int, seeds: int, scan_up_to: int, rng: np.random.Generator) -> list[dict]:
    t = long_table(ads, seeds, rng)
    ratios = pl.DataFrame({k: t[k] for k in ("loss", "seed", "condition", "ratio")})
    delta = np.round(rng.normal(0.0, 1.0, (seeds, ads)), 1)
    scan = ads <= scan_up_to
    picture = seconds(lambda: plots.plot_calibration_by_rate(t).savefig("/tmp/report_scale.png", dpi=60))
    out = [{"ads": ads, "step": "picture", "now s": picture,
            "before s": seconds(lambda: scan_picture_data(t, ads)) if scan else None}]
    all_seeds = list(range(seeds))
    out.append({"ads": ads, "step": "medians", "now s": seconds(lambda: median_ratios(ratios, "bce", all_seeds)),
                "before s": seconds(lambda: [ratio_stats(ratios, "bce", j, all_seeds) for j in range(ads)])
                if scan else None})
    out.append({"ads": ads, "step": "rank-biserial", "now s": seconds(lambda: rank_biserial_columns(delta)),
                "before s": seconds(lambda: [rank_biserial(delta[:, j]) for j in range(ads)])})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ads", type=int, nargs="+", default=[200, 2_000, 20_000])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--scan-up-to", type=int, default=2_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = [row for ads in args.ads for row in one_size(ads, args.seeds, args.scan_up_to, rng)]
    print(f"{platform.processor() or platform.machine()}, {args.seeds} seeds x 3 losses; 'before s' is the per-ad "
          "scan it replaced (picture: its data only, no drawing), empty where it would take minutes")
    print(format_table(pl.DataFrame(rows)))


if __name__ == "__main__":
    main()
