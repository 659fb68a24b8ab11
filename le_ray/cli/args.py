"""What every entry point shares: the config options, config from parsed arguments, clean exits on user errors."""

from __future__ import annotations

import argparse
import errno
import functools
import sys
import textwrap
import warnings
from typing import Sequence

from le_ray.config import Config, Shadow, load_config, resolve_config, shadowed_sets
from le_ray.config.load import Provenance, merge_with_provenance
from le_ray.config.resolve import DeprecatedKeyWarning
from le_ray.cli.commands import COMMANDS, ENVIRONMENT, Command
from le_ray.errors import UserError

__all__ = ["add_config_arguments", "config_from_args", "config_and_shadows", "config_shadows_provenance",
           "exit_on_user_error", "command_parser", "epilog"]


def epilog(command: Command) -> str:
    """The examples and environment variables of ``command``, for the end of its --help."""
    lines = ["examples:"]
    for text, what in command.examples:
        lines += [f"  {text}", f"      {what}"]
    if command.environment:
        lines.append("\nenvironment:")
        lines += [f"  {name:<24} {ENVIRONMENT[name]}" for name in command.environment]
    return "\n".join(lines)


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``: prog ``le-ray <name>``, its description, examples and environment."""
    command = COMMANDS[name]
    # allow_abbrev off: a prefix such as --no-res would work here but not in the commands le_ray prints back (the
    # resume line and config.history match each flag's full spelling), so every option must be spelled out
    return argparse.ArgumentParser(prog=f"le-ray {name}", description=textwrap.fill(command.description, 100),
                                   epilog=epilog(command), allow_abbrev=False,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The config options every subcommand shares."""
    parser.add_argument("--config", metavar="FILE", help="JSON config merged over configs/default.json")
    parser.add_argument("--profile", metavar="NAME", help="a profile (configs/profiles/NAME.json or the config "
                        "file's experiment.definitions.NAME); list them with `le-ray config profiles`")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a dotted key; VALUE is parsed as JSON, else used as a string (repeatable); "
                        "training.by_loss.*.KEY=VALUE sets KEY for every loss at once")


def config_argv(args: argparse.Namespace) -> list[str]:
    """The config options of parsed ``args`` as command-line words (``--config``, ``--profile``, each ``--set`` in
    order), so that another command can be told to build the same config: ``shlex.join`` them for display."""
    words = ["--config", args.config] if args.config else []
    words += ["--profile", args.profile] if args.profile else []
    return words + [w for s in args.sets for w in ("--set", s)]


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, profile=args.profile, sets=args.sets)


def config_and_shadows(args: argparse.Namespace) -> tuple[Config, list[Shadow]]:
    """The config of the parsed arguments and the ``--set`` keys a more specific key shadows (for the audit)."""
    return config_shadows_provenance(args)[:2]


DEFAULT_PROFILE = "quickstart"  #: what repeats, run and prepare use when neither --profile nor --config is given


def with_default_profile(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with ``--profile quickstart`` when neither a profile nor a config file is given, so that the
    commands that train or prepare data (repeats, run, prepare) start from the same experiment."""
    if args.profile is None and args.config is None:
        args.profile = DEFAULT_PROFILE
    return args


def config_shadows_provenance(args: argparse.Namespace) -> tuple[Config, list[Shadow], Provenance]:
    """:func:`config_and_shadows` plus where each value comes from (for the audit's ``settings_differ``)."""
    data, origins = merge_with_provenance(args.config, profile=args.profile, sets=args.sets)
    cfg = resolve_config(data)
    return cfg, shadowed_sets(data, args.sets, cfg.source_keys, cfg.losses), origins


def _warning_line(message) -> None:
    """A deprecated config key as one ``WARNING`` line (not Python's file:line report with its source line)."""
    print(f"le-ray: WARNING {message}", file=sys.stderr)


def exit_on_user_error(func):
    """Turn config/data errors into one clear message and exit status 2 (no traceback); a deprecated config key is
    reported as one WARNING line."""
    def wrapper(argv: Sequence[str] | None = None) -> int:
        with warnings.catch_warnings():
            shown = warnings.showwarning
            warnings.showwarning = lambda message, category, *rest: (
                _warning_line(message) if issubclass(category, DeprecatedKeyWarning)
                else shown(message, category, *rest))
            try:
                return func(argv)
            except (UserError, FileNotFoundError, PermissionError) as exc:
                print(f"le-ray: {exc}", file=sys.stderr)
                return 2
            except OSError as exc:  # a full disk, a quota, a read-only file system: the machine's state, no bug
                if exc.errno not in STORAGE_ERRNOS:
                    raise
                print(f"le-ray: {exc}", file=sys.stderr)
                return 2
    return functools.wraps(func)(wrapper)


#: OSError numbers that say the storage refused a write (no space, over quota, read-only): one line, exit 2
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
