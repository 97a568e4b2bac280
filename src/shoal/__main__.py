"""`python -m shoal` is the `shoal` command."""

from shoal.cli import entry

entry()
