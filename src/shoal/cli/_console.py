"""Consoles for the CLI: piped output gets wide lines, so tables stay whole in logs and greps."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console

from shoal.settings import default_home

PIPED_WIDTH = 200  #: columns when stdout is not a terminal


def stdout_console() -> Console:
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else PIPED_WIDTH)


def stderr_console() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else PIPED_WIDTH)


def hint_older_ledger(console: Console, db: str | None) -> None:
    """Before the user's data folder held it, the ledger was ./shoal-runs/ledger.db: say where
    jobs of that time still are, rather than let them seem lost (or silently run again)."""
    older = Path("shoal-runs") / "ledger.db"
    if db or os.environ.get("SHOAL_DB_URL") or not older.is_file() or older.resolve() == default_home() / "ledger.db":
        return
    console.print(f"note: jobs run here before are in {older}; SHOAL_HOME=shoal-runs finds them")


STATE_COLOURS = {"succeeded": "green", "completed_with_errors": "dark_orange", "failed": "red", "interrupted": "yellow"}


def coloured(state: str) -> str:
    """A job state as Rich markup: red only when nothing succeeded."""
    return f"[{STATE_COLOURS.get(state, 'white')}]{state}[/]"
