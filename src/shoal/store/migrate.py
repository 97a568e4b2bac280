"""Bring a ledger database to the current schema with Alembic, only when it is behind.

Several processes may open a new ledger at the same instant (two `shoal run`, a server and a
run, workers of a test). Only one may migrate: the others wait for it, then find the schema up to
date. PostgreSQL serialises them with an advisory lock held by the migrating transaction; SQLite
with an exclusive lock on a file beside the database (SQLite's own locks do not cover DDL that
the driver runs outside a transaction).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text

from shoal.store.migrations import HEAD

MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x5E0A1_1ED6E  #: PostgreSQL advisory lock key shared by every shoal process


def current_revision(engine: Engine | Connection) -> str | None:
    if not inspect(engine).has_table("alembic_version"):
        return None
    if isinstance(engine, Connection):
        return engine.execute(text("SELECT version_num FROM alembic_version")).scalar()
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Upgrade to HEAD. Up-to-date ledgers cost one query; Alembic loads only to do real work."""
    if current_revision(engine) == HEAD:
        return
    with _exclusive(engine), engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_ID})
        if current_revision(conn) == HEAD:  # another process migrated while we waited
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


@contextmanager
def _exclusive(engine: Engine) -> Iterator[None]:
    """For a SQLite file, hold an exclusive lock on ``<database>.lock`` while migrating."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
