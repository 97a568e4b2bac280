"""The Alembic migrations build exactly the schema the code declares."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from shoal.store import Ledger
from shoal.store.migrate import MIGRATIONS, current_revision
from shoal.store.migrations import HEAD
from shoal.store.schema import metadata


def test_head_constant_names_the_newest_revision() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_a_new_ledger_is_migrated_to_head_and_matches_the_declared_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(url).close()
    engine = create_engine(url)
    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    Ledger(url).close()  # opening an up-to-date ledger again changes nothing
    engine.dispose()
