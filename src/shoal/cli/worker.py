"""`shoal worker PROJECT --broker URL`: serve a project's pipeline to `shoal run --engine celery`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.run import Project

BrokerUrl = Annotated[
    str | None,
    typer.Option("--broker", envvar="SHOAL_BROKER_URL", metavar="URL", help="redis:// or amqp:// broker URL"),
]
Concurrency = Annotated[int | None, typer.Option(metavar="N", help="items processed at once [default: CPU count]")]
QueueName = Annotated[
    str, typer.Option("--queue", envvar="SHOAL_QUEUE", metavar="NAME", help="queue shared with `shoal run`")
]
LogDir = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR", help="where each worker process logs, to HOST-PID.log [default: the shoal home's worker-logs]"
    ),
]
LogLevel = Annotated[str, typer.Option(metavar="LEVEL", help="Celery log level")]
MetricsPort = Annotated[
    int | None, typer.Option(envvar="SHOAL_METRICS_PORT", metavar="PORT", help="serve Prometheus metrics on this port")
]
MetricsHost = Annotated[
    str, typer.Option(envvar="SHOAL_METRICS_HOST", metavar="ADDRESS", help="address the metrics endpoint binds")
]


def worker_command(
    project: Project,
    broker: BrokerUrl = None,
    concurrency: Concurrency = None,
    queue: QueueName = "shoal",
    log_dir: LogDir = None,
    loglevel: LogLevel = "INFO",
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "0.0.0.0",
) -> int:
    """Start a Celery worker for PROJECT; stop it with Ctrl-C or SIGTERM (running chunks finish)."""
    from shoal.engines.celery.worker import serve
    from shoal.errors import ConfigError
    from shoal.settings import default_home

    if not broker:
        raise ConfigError("shoal worker needs a broker: --broker URL or SHOAL_BROKER_URL")
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, not {concurrency}")
    serve(
        project,
        broker,
        concurrency=concurrency or os.cpu_count() or 1,
        queue=queue,
        log_dir=log_dir or default_home() / "worker-logs",
        loglevel=loglevel.upper(),
        metrics_port=metrics_port,
        metrics_host=metrics_host,
    )
    return 0
