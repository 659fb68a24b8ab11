"""The runners' console: log lines plus one live progress line (rich) on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time

__all__ = ["Echo"]


class Echo:
    """Log lines plus one live progress line (rich) on a terminal; plain lines otherwise.

    Under ``ray job submit`` or with output redirected, the progress line is printed as a log
    line at most every 10 s so job logs stay readable.
    """

    def __init__(self, stream=None) -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)
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
