"""`shoal serve`: the web UI and REST API, running submitted jobs itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.run import Db

Host = Annotated[
    str, typer.Option(envvar="SHOAL_HOST", metavar="ADDRESS", help="address to bind; any but loopback requires tokens")
]
Port = Annotated[int, typer.Option(envvar="SHOAL_PORT", metavar="PORT", help="port to listen on")]
Engine = Annotated[
    str | None, typer.Option(metavar="local|celery", help="engine for submitted jobs: local or celery [default: local]")
]
Broker = Annotated[
    str | None, typer.Option(metavar="URL", help="broker URL for the celery engine [env SHOAL_BROKER_URL]")
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        envvar="SHOAL_HOME",
        metavar="DIR",
        help="uploads, run folders and the default ledger [default: the user data folder]",
    ),
]
Projects = Annotated[
    list[Path] | None, typer.Option("--project", "-p", metavar="PROJECT", help="a project folder to serve; repeatable")
]
Workers = Annotated[
    int | None, typer.Option("--workers", "-w", metavar="N", help="workers per job [default: CPU count]")
]
Auth = Annotated[bool, typer.Option("--auth", help="require a token even on a loopback address")]
MaxUpload = Annotated[float | None, typer.Option(metavar="MIB", help="largest upload in MiB [default: 1024]")]
MaxJobs = Annotated[
    int | None, typer.Option(metavar="N", help="jobs run at the same time, streaming jobs aside [default: 2]")
]
MaxStreams = Annotated[int | None, typer.Option(metavar="N", help="streaming jobs open at the same time [default: 8]")]
StreamIdle = Annotated[
    float | None,
    typer.Option(
        metavar="SECONDS", help="close a streaming job after this many seconds without new items [default: never]"
    ),
]
Allow = Annotated[
    list[Path] | None,
    typer.Option("--allow-path", metavar="DIR", help="a folder submitted inputs may name; repeatable"),
]
AllowedHosts = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-host",
        metavar="HOST",
        help="a name (or *.domain) the server is reached by, beyond localhost and its addresses; repeatable; "
        "* turns the Host check off (unsafe) [env SHOAL_ALLOWED_HOSTS, comma-separated]",
    ),
]


def serve_command(
    projects: Projects = None,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    db: Db = None,
    engine: Engine = None,
    broker: Broker = None,
    data_dir: DataDir = None,
    workers: Workers = None,
    auth: Auth = False,
    max_upload_mb: MaxUpload = None,
    max_jobs: MaxJobs = None,
    max_streams: MaxStreams = None,
    stream_idle_timeout: StreamIdle = None,
    allow_paths: Allow = None,
    allowed_hosts: AllowedHosts = None,
) -> int:
    """Serve the web UI and REST API (/docs); jobs left unfinished by the last run resume."""
    try:
        from shoal.web.server import serve
        from shoal.web.settings import ServerSettings
    except ImportError as exc:
        from shoal.errors import MissingDependencyError

        raise MissingDependencyError(exc.name or "fastapi", "web") from None

    if data_dir is not None:
        os.environ["SHOAL_HOME"] = str(data_dir.expanduser().resolve())  # runs, uploads and ledger live here
    settings = ServerSettings.build(
        projects=projects,
        host=host,
        port=port,
        db_url=db,
        engine=engine,
        broker_url=broker,
        workers=workers,
        auth=auth,
        max_upload_mb=max_upload_mb,
        max_jobs=max_jobs,
        max_streams=max_streams,
        stream_idle_timeout=stream_idle_timeout,
        allow_paths=allow_paths,
        allowed_hosts=allowed_hosts,
    )
    serve(settings)
    return 0
