"""`shoal jobs` lists jobs (`rm` and `prune` remove them); `shoal report` reprints a job's summary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from shoal.cli._console import coloured, hint_older_ledger, stdout_console
from shoal.cli.run import Db
from shoal.errors import ConfigError
from shoal.run_folder import folder_owner, run_folder, utc
from shoal.settings import default_db

if TYPE_CHECKING:
    from shoal.cleanup import Removed

Target = Annotated[str, typer.Argument(metavar="JOB_OR_RUN_DIR", help="a job id, or a run folder", show_default=False)]
Limit = Annotated[int, typer.Option(metavar="N", help="how many jobs to show, newest first")]


Targets = Annotated[list[str], typer.Argument(metavar="JOB_OR_RUN_DIR...", help="jobs to remove", show_default=False)]
OlderThan = Annotated[str, typer.Option("--older-than", metavar="SPAN", help="age of the last change: 30d, 12h, 90m")]

app = typer.Typer(help="List jobs, newest first, with their progress; remove old ones.", add_completion=False)


@app.callback(invoke_without_command=True)
def jobs_command(ctx: typer.Context, db: Db = None, limit: Limit = 30) -> int:
    """List jobs, newest first, with their progress."""
    from shoal.store import Ledger

    if ctx.invoked_subcommand is not None:
        return 0

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
                coloured(job.state),
                str(counts["succeeded"]),
                str(counts["failed"]),
                str(sum(counts.values())),
                utc(job.created_at) or "",
                job.out,
            )
    finally:
        ledger.close()
    stdout_console().print(table)
    hint_older_ledger(stdout_console(), db)
    return 0


@app.command("rm", short_help="remove jobs: rows, run folders, uploads")
def rm_command(targets: Targets, db: Db = None) -> int:
    """Remove jobs for good: their ledger rows, run folders and uploads (refused while running)."""
    from shoal.cleanup import remove_job
    from shoal.store import Ledger

    for target in targets:
        job_id, url = _locate(target, db)
        ledger = Ledger(url)
        try:
            _say(remove_job(ledger, job_id))
        finally:
            ledger.close()
    return 0


@app.command("prune", short_help="remove jobs unchanged for --older-than")
def prune_command(older_than: OlderThan, db: Db = None) -> int:
    """Remove every job not running that has not changed for --older-than."""
    from shoal.cleanup import prune
    from shoal.store import Ledger

    ledger = Ledger(_url(db))
    try:
        removed = prune(ledger, older_than)
    finally:
        ledger.close()
    for one in removed:
        _say(one)
    stdout_console().print(f"removed {len(removed)} job{'s' * (len(removed) != 1)} older than {older_than}")
    return 0


def _say(removed: Removed) -> None:
    folders = f": {', '.join(removed.folders)}" if removed.folders else ""
    stdout_console().print(f"removed job {removed.job.id} ({removed.job.state}){folders}", soft_wrap=True)
    for why in removed.kept:
        stdout_console().print(f"  kept {why}", soft_wrap=True)


def report_command(target: Target, db: Db = None) -> int:
    """Reprint a job's summary and rebuild its result and report files."""
    from shoal.cli._summary import print_summary
    from shoal.report import write_report
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
    return 0  # the report was printed: the job's own outcome is in it, not in this exit status


def _locate(target: str, db: str | None) -> tuple[str, str]:
    """A run folder names its job and ledger in job.json; anything else is a job id."""
    folder = Path(target)
    if folder.is_dir():
        info = folder_owner(folder)
        if info is None or "job_id" not in info:
            raise ConfigError(f"{target} is not a run folder (it has no readable job.json)")
        return str(info["job_id"]), db or str(info["db"])
    return target, _url(db)


def _url(db: str | None) -> str:
    return db or os.environ.get("SHOAL_DB_URL") or default_db()
