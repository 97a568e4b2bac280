"""Consoles for the CLI: piped output gets wide lines, so tables stay whole in logs and greps."""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 200  #: columns when stdout is not a terminal


def stdout_console() -> Console:
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else PIPED_WIDTH)


def stderr_console() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else PIPED_WIDTH)
