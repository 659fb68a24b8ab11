"""The errors a user can fix: one :class:`UserError` base, so entry points exit cleanly on all of them.

Every runner turns a ``UserError`` into one message on stderr and exit status 2 (no traceback);
anything else is a bug and keeps its traceback. Each subclass names what was wrong (the dotted
config key, the file and column, the results folder) and what was expected.
"""

from __future__ import annotations

__all__ = ["UserError", "ConfigError", "DataError", "ResultsError"]


class UserError(ValueError):
    """Bad input the user can correct (config, data, CLI, results folder)."""


class ConfigError(UserError):
    """A config (file, profile or --set override) is invalid; the message names every bad key."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({len(self.problems)} problem(s)):\n{lines}")


class DataError(UserError):
    """Bad input data (file, column or value); the message names all three where they apply."""


class ResultsError(UserError):
    """The results location is unusable (relative under ray job submit, not writable, foreign config, ...)."""
