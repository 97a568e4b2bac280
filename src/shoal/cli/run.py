"""`shoal run PROJECT`: process a project's inputs on the embedded engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shoal.cli._console import hint_older_ledger, stderr_console
from shoal.middleware import Middleware

Project = Annotated[
    Path,
    typer.Argument(
        metavar="PROJECT",
        help="project folder holding pipeline.py (or that pipeline.py), or SCRIPT.py:FUNCTION to run an existing "
        "script's function on each input file",
        show_default=False,
    ),
]
Inputs = Annotated[
    list[str] | None,
    typer.Option(
        "--input", "-i", metavar="PATH_OR_URL", help="folder, glob, file, list of URIs, CSV/JSONL, or URL; repeatable"
    ),
]
Workers = Annotated[
    int | None, typer.Option("--workers", "-w", metavar="N", help="worker processes [default: CPU count]")
]
Out = Annotated[
    str | None,
    typer.Option(
        "--out",
        "-o",
        metavar="DIR_OR_URL",
        help="run folder, a path or s3://bucket/prefix [default: SHOAL_HOME/JOB_ID]",
    ),
]
Retries = Annotated[int | None, typer.Option(metavar="N", help="attempts after the first failure [default: 2]")]
Timeout = Annotated[
    float | None, typer.Option(metavar="SECONDS", help="seconds one item may take before its worker is replaced")
]
Limit = Annotated[int | None, typer.Option(metavar="N", help="process only the first N inputs")]
New = Annotated[bool, typer.Option("--new", help="start a fresh job even if this one ran before")]
Wait = Annotated[bool, typer.Option("--wait", help="if another process runs this job, wait for it instead of exiting")]
Db = Annotated[str | None, typer.Option("--db", metavar="URL", help="ledger database URL [env SHOAL_DB_URL]")]
Engine = Annotated[
    str | None, typer.Option(metavar="local|celery", help="local or celery [default: celery when --broker is given]")
]
Broker = Annotated[
    str | None, typer.Option(metavar="URL", help="redis:// or amqp:// broker URL [env SHOAL_BROKER_URL]")
]
Queue = Annotated[
    str | None, typer.Option(metavar="NAME", help="queue name shared with `shoal worker` [default: shoal]")
]
BundlesUrl = Annotated[
    str | None,
    typer.Option(
        "--bundles",
        envvar="SHOAL_BUNDLES_URL",
        metavar="URL",
        help="where the code goes for workers started without a project: a shared folder or s3:// prefix "
        "[default: the Redis broker]",
    ),
]
Debug = Annotated[bool, typer.Option("--debug", help="show tracebacks")]
MetricsPort = Annotated[
    int | None, typer.Option(metavar="PORT", help="serve Prometheus metrics on this port (0: any free one)")
]
MetricsHost = Annotated[
    str | None, typer.Option(metavar="ADDRESS", help="address for --metrics-port [default: 127.0.0.1]")
]
MetricsLinger = Annotated[
    float | None, typer.Option(metavar="SECONDS", help="seconds /metrics stays up after the job ends")
]


def run_command(
    project: Project,
    inputs: Inputs = None,
    workers: Workers = None,
    out: Out = None,
    retries: Retries = None,
    timeout: Timeout = None,
    limit: Limit = None,
    new: New = False,
    wait: Wait = False,
    db: Db = None,
    engine: Engine = None,
    broker: Broker = None,
    queue: Queue = None,
    bundles: BundlesUrl = None,
    debug: Debug = False,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = None,
    metrics_linger: MetricsLinger = None,
) -> int:
    """Run PROJECT's pipeline over its inputs; re-running the same command resumes it."""
    from shoal.prestart import prestart

    flags: dict[str, Any] = {
        "new": new or None,
        "wait": wait or None,
        "workers": workers,
        "out": out,
        "retries": retries,
        "timeout": timeout,
        "limit": limit,
        "db_url": db,
        "engine": engine,
        "broker_url": broker,
        "queue": queue,
        "bundles_url": bundles,
        "metrics_port": metrics_port,
        "metrics_host": metrics_host,
        "metrics_linger": metrics_linger,
    }
    started = prestart(project, inputs, flags)  # workers import the project while the ledger is imported
    try:
        from shoal.cli._progress import BarProgress, LineProgress
        from shoal.runner import run

        console = stderr_console()
        hint_older_ledger(console, db)
        progress: Middleware = BarProgress(console) if console.is_terminal else LineProgress()
        result = run(project, inputs, middleware=[progress], prestarted=started, **flags)
    finally:
        if started.engine is not None:  # stopped already by a run that took it; else not needed
            started.engine.stop(kill=True)
    if result.reused:
        console.print(
            f"job {result.job_id} already ran over these inputs ({result.state}); its results are in "
            f"{result.out}. Add --new to run it again."
        )
    if result.state == "interrupted":
        console.print(f"[yellow]interrupted[/]: run the same command again to resume job {result.job_id}")
    from shoal.cli._summary import print_result  # Arrow: imported by the run's report meanwhile, not up front

    print_result(result)
    return result.exit_code
