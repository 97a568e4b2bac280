"""The ledger on the real PostgreSQL: migrations, a whole run, and resume after kill -9."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import shoal
from shoal.store import Ledger
from shoal.store.migrate import current_revision
from shoal.store.migrations import HEAD
from shoal.store.schema import metadata
from tests.conftest import MakeProject
from tests.helpers import kill_9, read_results, shoal_cli, start_cli

pytestmark = pytest.mark.integration


def test_migrations_build_the_declared_schema_on_postgres(postgres_url: str) -> None:
    Ledger(postgres_url).close()
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    assert current_revision(engine) == HEAD
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


ECHO = """
import time
import shoal
pipeline = shoal.Pipeline("pg")

@pipeline.stage()
def echo(item):
    time.sleep({delay})
    if item.read_text().strip() == "13":
        raise ValueError("thirteen")
    return {{"text": item.read_text().strip()}}
"""


def test_a_run_records_every_item_in_postgres(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], postgres_url: str
) -> None:
    project = make_project(ECHO.format(delay=0))
    result = shoal.run(project, [str(inputs(40))], workers=2, retries=0, db_url=postgres_url)
    assert result.counts == {"pending": 0, "succeeded": 39, "failed": 1, "cancelled": 0}
    assert len(read_results(result.out)) == 39
    ledger = Ledger(postgres_url)
    failed = [r for r in ledger.iter_items(result.job_id, "failed")]
    ledger.close()
    assert failed[0]["error_message"] == "thirteen"


def test_a_run_folder_never_holds_the_ledgers_password(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], postgres_url: str
) -> None:
    """job.json is read by whoever reads the run folder: the ledger's password stays out of it.
    (The test server trusts loopback, so a password in the URL is accepted and unused.)"""
    with_password = postgres_url.replace("postgres@", "postgres:s3cret-pw@")
    result = shoal.run(make_project(ECHO.format(delay=0)), [str(inputs(3))], db_url=with_password)
    written = (result.out / "job.json").read_text()
    assert "s3cret-pw" not in written
    assert json.loads(written)["db"] == postgres_url
    again = shoal_cli("report", str(result.out), cwd=home)  # the folder still finds its ledger
    assert again.returncode == 0, again.stderr


def test_kill_9_and_resume_with_the_ledger_in_postgres(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], postgres_url: str
) -> None:
    project = make_project(ECHO.format(delay=0.05))
    command = ("run", str(project), "-i", str(inputs(60)), "-w", "2", "--retries", "0")
    first = start_cli(*command, cwd=home, env={"SHOAL_DB_URL": postgres_url})
    ledger = Ledger(postgres_url)
    job_id = _wait_for_successes(ledger, 15)
    kill_9(first)
    again = shoal_cli(*command, cwd=home, env={"SHOAL_DB_URL": postgres_url})
    assert again.returncode == 1, again.stderr  # item 13 fails on purpose
    assert ledger.counts(job_id) == {"pending": 0, "succeeded": 59, "failed": 1, "cancelled": 0}
    results = read_results(Path(ledger.get_job(job_id).out))
    ledger.close()
    assert len({r["id"] for r in results}) == len(results) == 59


def _wait_for_successes(ledger: Ledger, at_least: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = ledger.list_jobs()
        if jobs and ledger.counts(jobs[0].id)["succeeded"] >= at_least:
            return jobs[0].id
        time.sleep(0.05)
    raise AssertionError("the job made no progress")
