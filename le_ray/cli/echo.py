"""The runners' console: log lines plus one live progress line (rich) on a terminal, plain lines otherwise.

Output that is not a terminal (a redirected log, ``ray job submit``, a pipe) carries no ANSI escape codes:
rich is told it is not writing to a terminal, and Ray's coloured worker-log prefixes are switched off
(``RAY_COLOR_PREFIX=0``, read by the driver each time it prints a worker's line) unless the user set it.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["Echo", "is_terminal", "plain_output_when_redirected"]


def is_terminal(stream) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes and streams without ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def plain_output_when_redirected(stream=None) -> bool:
    """When ``stream`` (stdout) is not a terminal, keep Ray's worker-log prefixes free of colour codes; returns
    whether the output is plain."""
    plain = not is_terminal(stream or sys.stdout)
    if plain:
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    return plain


class Echo:
    """Log lines plus one live progress line (rich) on a terminal; plain lines otherwise.

    Under ``ray job submit`` or with output redirected, the progress line is printed as a log
    line at most every 10 s so job logs stay readable, and nothing carries ANSI codes.
    """

    def __init__(self, stream=None) -> None:
        from rich.console import Console

        if stream is None:  # the process's own stdout: Ray's worker lines go there too
            plain_output_when_redirected()
        stream = stream or sys.stdout
        terminal = is_terminal(stream)
        self.console = Console(file=stream, highlight=False, soft_wrap=True, force_terminal=terminal,
                               color_system="auto" if terminal else None)
        self.live = None
        self.last_plain_progress = 0.0

    def __call__(self, text: str, live: bool = False) -> None:
        if not self.console.is_terminal:
            if live and time.monotonic() - self.last_plain_progress < 10:
                return
            self.last_plain_progress = time.monotonic() if live else self.last_plain_progress
            self.console.print(text, markup=False)
            return
        if live:
            from rich.text import Text

            self._live().update(Text(text))
        else:
            (self.live.console if self.live else self.console).print(text, markup=False)

    def _live(self):
        if self.live is None:
            from rich.live import Live
            from rich.text import Text

            self.live = Live(Text(""), console=self.console, refresh_per_second=4, transient=True)
            self.live.start()
        return self.live

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
