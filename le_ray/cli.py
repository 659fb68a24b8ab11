"""``le-ray`` console script: subcommands mirror the modules (each also runs as ``python -m``).

    le-ray config show [--config F] [--profile P] [--set k=v ...]   resolved config as JSON
    le-ray config profiles                                          profile names
    le-ray prepare  ...   = python -m le_ray.prepare        (data pipeline alone, per-condition table)
    le-ray run      ...   = python -m le_ray.run            (one diagnostic run per loss)
    le-ray repeats  ...   = python -m le_ray.repeats        (the Ray sweep; the main job)
    le-ray report DIR     = python -m le_ray.report          (rebuild a sweep's report from stored trials)
    le-ray compare A B    = python -m le_ray.compare_runs    (BCE-vs-LE tables from two stored runs)
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Sequence

from le_ray.cli_args import add_config_arguments, config_from_args, exit_on_user_error
from le_ray.config import profile_names, to_dict

__all__ = ["main"]

_SUBCOMMANDS = {
    "prepare": "le_ray.prepare",
    "run": "le_ray.run",
    "repeats": "le_ray.repeats",
    "report": "le_ray.report.__main__",
    "compare": "le_ray.compare_runs",
}


@exit_on_user_error
def config_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="le-ray config", description="Show the resolved configuration.")
    parser.add_argument("action", choices=["show", "profiles"])
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    if args.action == "profiles":
        print("\n".join(profile_names(args.config)))
        return 0
    print(json.dumps(to_dict(config_from_args(args)), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ["config", *_SUBCOMMANDS]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "config":
        return config_main(rest)
    if command not in _SUBCOMMANDS:
        print(f"le-ray: unknown command {command!r}; expected one of {', '.join(commands)}", file=sys.stderr)
        return 2
    module = importlib.import_module(_SUBCOMMANDS[command])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
