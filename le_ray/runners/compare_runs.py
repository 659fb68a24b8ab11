"""``le-ray compare BASELINE_DIR CANDIDATE_DIR``: comparison tables of two loss folders of stored diagnostic runs.

Each directory is a loss folder written by ``le_ray.runners.run`` (``per_condition.csv`` + ``metrics.json``),
e.g. ``output/<run>/bce/avazu/default/top_k`` and ``output/<run>/le/avazu/default/top_k``. Writes the
per-condition comparison, |1 − calibration| table and summary (CSV + aligned text) to ``--out``
and prints them — the earlier system's ad-id comparison script, without retraining. Two folders of the same loss
(e.g. BCE at two learning rates, from two runs) compare as ``<loss>_baseline`` and ``<loss>_candidate``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import polars as pl

from le_ray.metrics import compare
from le_ray.cli.args import command_parser, exit_on_user_error
from le_ray.atomic import atomic_write_text
from le_ray.errors import UserError
from le_ray.report.tables import format_table, write_csv

__all__ = ["main", "load_run"]


def load_run(folder: str | Path) -> tuple[str, pl.DataFrame, dict[str, float]]:
    """(loss name, per-condition table, summary metrics) of a stored run folder."""
    folder = Path(folder)
    missing = [name for name in ("per_condition.csv", "metrics.json") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{str(folder)!r} is not a le_ray run folder: missing {', '.join(missing)} "
                                "(expected a loss folder, output/<run>/<loss>/<source>/<nn_type>/<filter_mode>/)")
    record = json.loads((folder / "metrics.json").read_text())
    table = pl.read_csv(folder / "per_condition.csv", schema_overrides={"value": pl.String})
    return record["loss"], table, {k: v for k, v in record.get("metrics", {}).items() if v is not None}


def _parser():
    parser = command_parser("compare")
    parser.add_argument("baseline", help="loss folder of the baseline run (e.g. output/<run>/bce/synthetic/small/none)")
    parser.add_argument("candidate", help="loss folder of the candidate run (e.g. output/<run>/le/synthetic/small/none)")
    parser.add_argument("--out", default="comparison", help="folder for the tables (default ./comparison)")
    parser.add_argument("--sort-by", default="base_rate", choices=compare.SORT_KEYS,
                        help="row order of the per-condition table: base_rate (descending), or the largest "
                             "|difference| in calibration ratio (abs_delta_calibration) or LE ratio (abs_delta_le_ratio)")
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file; expected a folder for the tables (new or existing)")
    base_loss, base_table, base_summary = load_run(args.baseline)
    cand_loss, cand_table, cand_summary = load_run(args.candidate)
    if Path(args.baseline).resolve() == Path(args.candidate).resolve():
        raise UserError(f"baseline and candidate are the same folder ({args.baseline!r}); expected two loss folders")
    if base_loss == cand_loss:  # one loss in two runs (other settings): told apart by their roles
        print(f"both folders trained {base_loss}: {base_loss}_baseline is {args.baseline}, {base_loss}_candidate "
              f"is {args.candidate}")
        base_loss, cand_loss = f"{base_loss}_baseline", f"{cand_loss}_candidate"
    tables = {base_loss: base_table, cand_loss: cand_table}
    differences = compare.data_differences(tables, baseline=base_loss, candidate=cand_loss)
    conditions = compare.compare_conditions(tables, baseline=base_loss, candidate=cand_loss, sort_by=args.sort_by)
    closeness = compare.calibration_closeness(tables)
    summary = compare.compare_summary({base_loss: base_summary, cand_loss: cand_summary}, baseline=base_loss,
                                      candidate=cand_loss)
    closer = compare.count_closer_conditions(tables, baseline=base_loss, candidate=cand_loss)
    write_csv(conditions, out / "conditions.csv")
    write_csv(closeness, out / "calibration_closeness.csv")
    write_csv(summary, out / "summary.csv")
    text = (f"{cand_loss} vs {base_loss} per condition (sorted by {args.sort_by}):\n{format_table(conditions)}\n\n"
            f"|1 - calibration ratio|:\n{format_table(closeness)}\n\nsummary (positive pct_change favours "
            f"{cand_loss}):\n{format_table(summary)}\nconditions where {cand_loss}'s |pred_mean - base_rate| is "
            f"smaller: {closer['candidate_closer']} of {closer['conditions']} (ties {closer['ties']})")
    if differences:  # e.g. two seeds on redrawn synthetic data: the tables set two evaluation sets side by side
        text = ("WARNING: the two runs were evaluated on different data; the per-condition count and base_rate "
                f"below are the {base_loss} run's:\n" + "\n".join(f"  - {d}" for d in differences) + "\n\n" + text)
    atomic_write_text(out / "comparison.txt", text + "\n")
    print(text)
    print(f"\ntables written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
