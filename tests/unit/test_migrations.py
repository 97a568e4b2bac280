"""The Alembic migrations build exactly the schema the code declares."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

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


def test_an_older_ledger_keeps_its_jobs_and_names_partly_failed_ones_honestly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
        for num, (state, succeeded) in enumerate([("failed", 196), ("failed", 0), ("succeeded", 5)], 1):
            conn.execute(
                text(
                    "INSERT INTO jobs (num, id, key, round, pipeline, fingerprint, project, inputs, options, out,"
                    " state, created_at, updated_at, entries, ingested, succeeded, failed)"
                    " VALUES (:num, :id, :key, 0, 'p', 'f', '/p', '[]', '{}', '/o', :state, 1, 1, 0, 1, :ok, 4)"
                ),
                {"num": num, "id": f"job-{num}", "key": f"k{num}", "state": state, "ok": succeeded},
            )
    ledger = Ledger(url)
    try:
        assert [(j.id, j.state) for j in sorted(ledger.list_jobs(), key=lambda j: j.id)] == [
            ("job-1", "completed_with_errors"),  # 196 succeeded: not "failed"
            ("job-2", "failed"),  # nothing succeeded
            ("job-3", "succeeded"),
        ]
    finally:
        ledger.close()
    with engine.connect() as conn:
        assert current_revision(conn) == HEAD
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []  # columns and indexes kept
    engine.dispose()
