"""`shoal worker [PROJECT] --broker URL`: serve a project's pipeline to `shoal run --engine celery`, or,
without PROJECT, any project whose code a run publishes signed with the cluster key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.run import BundlesUrl

Project = Annotated[
    Path | None,
    typer.Argument(
        metavar="[PROJECT]",
        help="the one project to serve; without it, any project a run publishes as a bundle signed with "
        "SHOAL_CLUSTER_KEY",
        show_default=False,
    ),
]
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
Cache = Annotated[
    Path | None,
    typer.Option(
        envvar="SHOAL_CACHE_DIR",
        metavar="DIR",
        help="where fetched code bundles and their requirements live [default: the shoal home's worker-cache]",
    ),
]
Warm = Annotated[int, typer.Option(metavar="N", help="code versions kept loaded in processes, ready to run")]
Keep = Annotated[int, typer.Option(metavar="N", help="code bundles and requirement environments kept on disk")]
Wheels = Annotated[
    str | None,
    typer.Option(
        envvar="SHOAL_WHEELS",
        metavar="PATH_OR_URL",
        help="install bundles' requirements from this folder of wheels only, not a package index (offline hosts)",
    ),
]


def worker_command(
    project: Project = None,
    broker: BrokerUrl = None,
    concurrency: Concurrency = None,
    queue: QueueName = "shoal",
    log_dir: LogDir = None,
    loglevel: LogLevel = "INFO",
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "0.0.0.0",
    bundles: BundlesUrl = None,
    cache: Cache = None,
    warm: Warm = 2,
    keep: Keep = 8,
    wheels: Wheels = None,
) -> int:
    """Start a Celery worker for PROJECT, or for any project's signed code bundle; stop it with
    Ctrl-C or SIGTERM (running chunks finish)."""
    from shoal.engines.celery.worker import Bundles, serve
    from shoal.errors import ConfigError
    from shoal.settings import default_home

    if not broker:
        raise ConfigError("shoal worker needs a broker: --broker URL or SHOAL_BROKER_URL")
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, not {concurrency}")
    if warm < 1 or keep < 1:
        raise ConfigError("--warm and --keep must be at least 1")
    serve(
        project,
        broker,
        concurrency=concurrency or os.cpu_count() or 1,
        queue=queue,
        log_dir=log_dir or default_home() / "worker-logs",
        loglevel=loglevel.upper(),
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        bundles=Bundles(bundles, cache or default_home() / "worker-cache", warm=warm, keep=keep, wheels=wheels),
    )
    return 0
