"""`shoal retry JOB`: run a job's failed items again, and only those."""

from __future__ import annotations

from typing import Annotated

import typer

from shoal.cli._console import stderr_console
from shoal.cli.jobs import Target, _locate
from shoal.cli.run import Broker, Db, Debug, Engine, Queue, Retries, Timeout, Workers
from shoal.middleware import Middleware

SameCode = Annotated[bool, typer.Option("--same-code", help="refuse if the project's code changed since the job ran")]
SameInputs = Annotated[
    bool, typer.Option("--same-inputs", help="run each failed item with the row it read first, not the inputs now")
]


def retry_command(
    target: Target,
    same_code: SameCode = False,
    same_inputs: SameInputs = False,
    workers: Workers = None,
    retries: Retries = None,
    timeout: Timeout = None,
    db: Db = None,
    engine: Engine = None,
    broker: Broker = None,
    queue: Queue = None,
    debug: Debug = False,
) -> int:
    """Run a job's failed items again with the project's current code and its inputs read again
    (a fixed row is run as it reads now); its other items stand."""
    from shoal.cli._progress import BarProgress, LineProgress
    from shoal.cli._summary import print_result
    from shoal.runner import retry

    job_id, url = _locate(target, db)
    console = stderr_console()
    progress: Middleware = BarProgress(console) if console.is_terminal else LineProgress()
    flags = {"workers": workers, "retries": retries, "timeout": timeout, "engine": engine, "broker_url": broker}
    flags["queue"] = queue
    result = retry(
        job_id,
        db_url=url,
        flags={name: value for name, value in flags.items() if value is not None},
        same_code=same_code,
        same_inputs=same_inputs,
        middleware=[progress],
    )
    if result.reread is not None:
        console.print(f"re-read the inputs of job {job_id}: {result.reread.describe()}")
    if result.state == "interrupted":
        console.print(f"[yellow]interrupted[/]: `shoal retry {job_id}` or `shoal run` resumes it")
    print_result(result)
    return result.exit_code
