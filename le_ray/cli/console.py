"""The ``le-ray`` console script: one command per runner (each also runs as ``python -m <module>``)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Sequence

from le_ray.cli.args import (DEFAULT_PROFILE, add_config_arguments, command_parser, config_shadows_provenance,
                             exit_on_user_error)
from le_ray.cli.commands import COMMANDS, QUICKSTART_TIME
from le_ray.errors import UserError
from le_ray.config import profiles, read_json, to_dict, to_plain
from le_ray.registry import LOSSES, suggest
from le_ray.version import version_string

__all__ = ["main", "top_parser", "config_main"]

DESCRIPTION = ("Train click-through-rate models with Localized Entropy, BCE or focal loss, repeat every "
               "(seed x loss) trial as a Ray task, and answer with paired statistics and per-ad calibration tests.")


def top_parser() -> argparse.ArgumentParser:
    width = max(len(n) for n in COMMANDS)
    listing = "\n".join(f"  {name:<{width}}  {c.summary}" for name, c in COMMANDS.items())
    epilog = (f"commands:\n{listing}\n\n`le-ray help <command>` (or `le-ray <command> --help`) shows a command's "
              "options, examples and environment variables.\n\nexamples:\n  le-ray repeats\n      the quickstart "
              f"sweep (local Ray, embedded synthetic data; {QUICKSTART_TIME})\n  le-ray config profiles\n      "
              "every profile and what it is for")
    parser = argparse.ArgumentParser(prog="le-ray", description=DESCRIPTION, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     usage="le-ray [--version] [--help] <command> [options]")
    parser.add_argument("--version", action="version", version=version_string())
    return parser


def _config_parser() -> argparse.ArgumentParser:
    parser = command_parser("config")
    parser.add_argument("action", choices=["show", "profiles"],
                        help="show: the resolved config as JSON; profiles: every profile with its description")
    add_config_arguments(parser)
    parser.add_argument("--effective", action="store_true",
                        help="with show: print each trained loss's resolved training settings instead")
    return parser


def _print_profiles(config_path: str | None) -> None:
    found = profiles(read_json(config_path) if config_path else None)
    width = max(len(n) for n in found)
    for name, profile in sorted(found.items()):
        parent = f" (extends {', '.join(profile.extends)})" if profile.extends else ""
        print(f"{name:<{width}}  {profile.description or '(no description)'}{parent}")


@exit_on_user_error
def config_main(argv: Sequence[str] | None = None) -> int:
    args = _config_parser().parse_args(argv)
    if args.action == "profiles":
        given = [o for o, on in (("--profile", args.profile), ("--set", args.sets), ("--effective", args.effective))
                 if on]
        if given:
            raise UserError(f"config profiles lists the profiles and takes only --config; {', '.join(given)} "
                            "belong(s) to `le-ray config show`")
        _print_profiles(args.config)
        return 0
    cfg, shadows, _ = config_shadows_provenance(args)
    for message in dict.fromkeys(shadow.message for shadow in shadows):  # the audit's wording, once per message
        print(f"WARNING [shadowed_set] {message}", file=sys.stderr)
    if args.profile is None and args.config is None:  # on stderr: the JSON on stdout stays clean for tools
        print(f"note: without --profile or --config this starts from configs/default.json; a new `le-ray repeats`, "
              f"`run` or `prepare` given neither trains the {DEFAULT_PROFILE} profile (add --profile "
              f"{DEFAULT_PROFILE} to see that)", file=sys.stderr)
    shown = ({LOSSES[loss].name: to_plain(cfg.training_for(loss)) for loss in cfg.losses} if args.effective
             else to_dict(cfg))
    print(json.dumps(shown, indent=2))
    return 0


def _unknown(command: str) -> int:
    print(f"le-ray: unknown command {command!r}; expected one of {', '.join(COMMANDS)}"
          f"{suggest(command, COMMANDS)}\n(see `le-ray --help`)", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--version"):
        top_parser().parse_args(argv or ["--help"])
        return 0
    command, rest = argv[0], argv[1:]
    if command == "help":
        return main([rest[0], "--help"]) if rest else main(["--help"])
    if command not in COMMANDS:
        return _unknown(command)
    if command == "config":
        return config_main(rest)
    module = importlib.import_module(COMMANDS[command].module)
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
