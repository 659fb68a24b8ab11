"""``le-ray prepare`` (= ``python -m le_ray.prepare``): run the data pipeline alone; print the per-condition table."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from le_ray.config import Config
from le_ray.data.synthetic import generate_synthetic

__all__ = ["main", "prepare_main"]


def _condition_rows(cfg: Config) -> tuple[list[dict[str, Any]], dict[str, Any], Any]:
    """Per-condition rows/clicks of the (filtered) source before any split, plus counts/timings."""
    if cfg.data.source == "ctr":
        from le_ray.data.ctr import load_ctr

        src = load_ctr(cfg)
        table = src.condition_table.sort("id")
        conditions = [{"value": v, "id": int(i), "rows": int(r), "clicks": int(c)}
                      for v, i, r, c in table.select("value", "id", "rows", "clicks").iter_rows()]
        return conditions, {"source_rows": src.source_rows, "kept_rows": src.kept_rows,
                            "timings": dict(src.timings)}, src
    started = time.perf_counter()
    syn = generate_synthetic(cfg.synthetic, seed=cfg.project.seed,
                             test_split=cfg.synthetic.test_split if cfg.data.use_test_set else 0.0)
    rows = syn.labelled
    counts = np.bincount(rows.cond, minlength=cfg.synthetic.num_conditions)
    clicks = np.bincount(rows.cond, weights=rows.y, minlength=cfg.synthetic.num_conditions)
    conditions = [{"value": str(j), "id": j, "rows": int(counts[j]), "clicks": int(clicks[j])}
                  for j in range(cfg.synthetic.num_conditions)]
    total = len(rows) + (0 if syn.test is None else len(syn.test))
    return conditions, {"source_rows": total, "kept_rows": len(rows),
                        "timings": {"generate": time.perf_counter() - started}}, None


def prepare_main(argv=None) -> int:
    """``le-ray prepare``: run the data pipeline alone; print the per-condition table and timings."""
    import argparse
    import polars as pl

    from le_ray.cli_args import add_config_arguments, config_from_args
    from le_ray.atomic import atomic_write_json
    from le_ray.report.tables import format_table

    parser = argparse.ArgumentParser(prog="le-ray prepare", description="Run the data pipeline (filter, encode) "
                                     "alone and print the per-condition table and timings.")
    add_config_arguments(parser)
    parser.add_argument("--json", metavar="FILE", help="also write the table and timings as JSON")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    conditions, counts, src = _condition_rows(cfg)
    frame = pl.DataFrame(conditions, schema={"value": pl.String, "id": pl.Int64, "rows": pl.Int64,
                                             "clicks": pl.Int64})
    frame = frame.with_columns((pl.col("clicks") / pl.col("rows")).alias("rate"))
    print(f"{cfg.source_key}: {counts['source_rows']} source rows, {counts['kept_rows']} kept, "
          f"{len(conditions)} conditions")
    print(format_table(frame))
    print("timings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in counts["timings"].items()))
    if src is not None and cfg.plots.enabled and cfg.plots.ctr_filter_stats:
        from le_ray.data.filters import filter_mode_of
        from le_ray.report import plots

        path = Path(cfg.output.dir) / "prepare" / cfg.source_key / filter_mode_of(cfg) / "filter_stats.png"
        plots.save_figure(plots.plot_filter_stats(src.filter_stats), path, dpi=cfg.plots.dpi)
        print(f"filter statistics plot: {path}")
    if args.json:
        atomic_write_json(args.json, {**counts, "conditions": conditions})
    return 0


def main(argv=None) -> int:
    from le_ray.cli_args import exit_on_user_error

    return exit_on_user_error(prepare_main)(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
