"""``python -m le_ray.report SWEEP_DIR`` (= ``le-ray report``): rebuild a sweep's report from stored trials."""

from __future__ import annotations

import sys
from typing import Sequence

from le_ray.cli.args import command_parser, exit_on_user_error


def _parser():
    parser = command_parser("report")
    parser.add_argument("sweep_dir", help="a sweep folder written by le-ray repeats (results/<sweep>)")
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from le_ray.report.sweep import build_report

    print(f"report: {build_report(args.sweep_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
