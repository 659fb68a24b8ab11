"""What every entry point shares: the config options, config from parsed arguments, clean exits on user errors."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from le_ray.config import Config, load_config
from le_ray.errors import UserError

__all__ = ["add_config_arguments", "config_from_args", "exit_on_user_error"]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The config options every subcommand shares."""
    parser.add_argument("--config", metavar="FILE", help="JSON config merged over configs/default.json")
    parser.add_argument("--profile", metavar="NAME", help="experiment.definitions entry to apply")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dotted key; VALUE is parsed as JSON, else used as a string (repeatable)")


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, profile=args.profile, sets=args.sets)


def exit_on_user_error(func):
    """Turn config/data errors into one clear message and exit status 2 (no traceback)."""
    def wrapper(argv: Sequence[str] | None = None) -> int:
        try:
            return func(argv)
        except (UserError, FileNotFoundError, PermissionError) as exc:
            print(f"le-ray: {exc}", file=sys.stderr)
            return 2
    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper
