"""`shoal token create|list|revoke`: API tokens for `shoal serve`, stored in the ledger as hashes."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from shoal.cli.run import Db
from shoal.run_folder import utc
from shoal.settings import default_db

app = typer.Typer(help="Manage API tokens for `shoal serve` (stored as hashes in the ledger).", no_args_is_help=True)
Name = Annotated[str, typer.Argument(metavar="NAME", help="who or what the token is for", show_default=False)]


def _ledger(db: str | None):  # type: ignore[no-untyped-def]
    from shoal.store import Ledger

    return Ledger(db or os.environ.get("SHOAL_DB_URL") or default_db())


@app.command("create", short_help="create a token and print it, this once")
def create(name: Name, db: Db = None) -> int:
    """Create a token and print it: it is shown this once, and only its hash is kept."""
    from shoal.store.tokens import create_token

    ledger = _ledger(db)
    try:
        print(create_token(ledger, name))
    finally:
        ledger.close()
    return 0


@app.command("list", short_help="list token names")
def list_command(db: Db = None) -> int:
    """List token names (the tokens themselves are not stored)."""
    from shoal.store.tokens import list_tokens

    ledger = _ledger(db)
    try:
        for name, created in list_tokens(ledger):
            print(f"{name}\t{utc(created)}")
    finally:
        ledger.close()
    return 0


@app.command("revoke", short_help="delete a token")
def revoke(name: Name, db: Db = None) -> int:
    """Delete a token; requests with it are refused within seconds."""
    from shoal.errors import ConfigError
    from shoal.store.tokens import revoke_token

    ledger = _ledger(db)
    try:
        if not revoke_token(ledger, name):
            raise ConfigError(f"no token named {name!r} (see `shoal token list`)")
    finally:
        ledger.close()
    print(f"revoked {name}")
    return 0
