"""Bring a ledger database to the current schema with Alembic, only when it is behind."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect, text

from shoal.store.migrations import HEAD

MIGRATIONS = Path(__file__).parent / "migrations"


def current_revision(engine: Engine) -> str | None:
    if not inspect(engine).has_table("alembic_version"):
        return None
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Upgrade to HEAD. Up-to-date ledgers cost one query; Alembic loads only to do real work."""
    if current_revision(engine) == HEAD:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
