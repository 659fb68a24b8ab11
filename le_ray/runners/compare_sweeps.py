"""``le-ray compare-sweeps BASELINE_SWEEP CANDIDATE_SWEEP``: one loss of two stored sweeps, paired by seed.

E.g. LE with its history windows starting empty (one sweep) against LE started full (another sweep with
``--set training.cross_batch.warm_start=true``, the same data and seeds): the paired tests, per-ad tests and verdict
of a sweep report, with the settings that differ between the two arms as the first caveat
(:mod:`le_ray.report.sweep_pair`). Trains nothing; writes ``summary.md`` and ``tables/*.csv`` to ``--out`` and
prints the verdict.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from le_ray.cli.args import command_parser, exit_on_user_error
from le_ray.errors import UserError

__all__ = ["main"]


def _parser():
    parser = command_parser("compare-sweeps")
    parser.add_argument("baseline", help="the baseline sweep's folder (results/<sweep>)")
    parser.add_argument("candidate", help="the candidate sweep's folder (results/<sweep>)")
    parser.add_argument("--loss", default=None,
                        help="the loss compared (bce, le, focal); default: LE when both sweeps train it, else the "
                             "one loss both train")
    parser.add_argument("--candidate-loss", default=None,
                        help="the candidate sweep's loss when it is not --loss (e.g. --loss bce --candidate-loss le)")
    parser.add_argument("--out", default=None,
                        help="folder for summary.md and tables/ (default comparison/<candidate>-<loss>_vs_<baseline>-<loss>; "
                             "an earlier comparison's files there are replaced)")
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from le_ray.metrics.compare import terminal_width
    from le_ray.registry import LOSSES
    from le_ray.report.sweep_pair import compare_arms, default_loss, load_arm, write_pair
    from le_ray.report.verdict import verdict_text

    loss = args.loss or default_loss(args.baseline, args.candidate)
    base = load_arm(args.baseline, loss, "baseline")
    cand = load_arm(args.candidate, args.candidate_loss or loss, "candidate",
                    "--candidate-loss" if args.candidate_loss else "--loss")
    out = Path(args.out) if args.out else Path("comparison") / (
        f"{cand.root.name}-{LOSSES[cand.loss].folder}_vs_{base.root.name}-{LOSSES[base.loss].folder}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} is a file; expected a folder for summary.md and tables/ (new or existing)")
    pair = compare_arms(base, cand)
    summary = write_pair(pair, out)
    for line in verdict_text(pair.verdict, terminal_width()):
        print(line)
    print(f"\ncomparison: {summary.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
