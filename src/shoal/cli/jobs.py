"""`shoal jobs` lists jobs; `shoal report` reprints a job's summary and rebuilds its report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from shoal.cli._console import stdout_console
from shoal.cli.run import Db
from shoal.errors import ConfigError
from shoal.outputs import run_folder, utc
from shoal.settings import default_db

Target = Annotated[str, typer.Argument(metavar="JOB_OR_RUN_DIR", help="a job id, or a run folder", show_default=False)]
Limit = Annotated[int, typer.Option(metavar="N", help="how many jobs to show, newest first")]


def jobs_command(db: Db = None, limit: Limit = 30) -> int:
    """List jobs, newest first, with their progress."""
    from shoal.store import Ledger

    ledger = Ledger(_url(db))
    table = Table(title=f"jobs in {ledger.safe_url}", title_justify="left")
    for column in ("job", "pipeline", "state", "succeeded", "failed", "total", "created", "run folder"):
        table.add_column(column, overflow="fold")
    try:
        for job in ledger.list_jobs(limit):
            counts = job.counts  # kept with the job: no item is counted
            table.add_row(
                job.id,
                job.pipeline,
                job.state,
                str(counts["succeeded"]),
                str(counts["failed"]),
                str(sum(counts.values())),
                utc(job.created_at) or "",
                job.out,
            )
    finally:
        ledger.close()
    stdout_console().print(table)
    return 0


def report_command(target: Target, db: Db = None) -> int:
    """Reprint a job's summary and rebuild its result and report files."""
    from shoal.cli._summary import print_summary
    from shoal.report import write_report
    from shoal.runner import EXIT_CODES
    from shoal.store import Ledger

    job_id, url = _locate(target, db)
    ledger = Ledger(url)
    try:
        job = ledger.get_job(job_id)
        out = run_folder(job.out)
        report = write_report(ledger, job.id, out)
        print_summary(stdout_console(), ledger, job.id, report, out)
    finally:
        ledger.close()
    return EXIT_CODES.get(job.state, 1)


def _locate(target: str, db: str | None) -> tuple[str, str]:
    """A run folder names its job and ledger in job.json; anything else is a job id."""
    folder = Path(target)
    if folder.is_dir():
        try:
            info = json.loads((folder / "job.json").read_text())
        except (OSError, ValueError):
            raise ConfigError(f"{target} is not a run folder (it has no readable job.json)") from None
        return str(info["job_id"]), db or str(info["db"])
    return target, _url(db)


def _url(db: str | None) -> str:
    return db or os.environ.get("SHOAL_DB_URL") or default_db()
