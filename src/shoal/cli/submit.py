"""`shoal submit PROJECT|NAME --input ... --server URL [--wait]`: run a job on a shoal server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.run import Inputs, Limit, New, Retries, Timeout

Target = Annotated[
    str,
    typer.Argument(
        metavar="PIPELINE_OR_PROJECT", help="a pipeline name, or a project folder (its pipeline's name is used)"
    ),
]
Server = Annotated[str, typer.Option(envvar="SHOAL_SERVER", metavar="URL", help="the server's URL")]
Token = Annotated[str | None, typer.Option(envvar="SHOAL_TOKEN", metavar="TOKEN", help="an API token")]
Wait = Annotated[bool, typer.Option("--wait", help="follow the job's progress until it ends")]
Upload = Annotated[bool, typer.Option("--upload", help="upload the local input files instead of naming paths")]


def submit_command(
    target: Target,
    inputs: Inputs = None,
    server: Server = "http://127.0.0.1:8000",
    token: Token = None,
    wait: Wait = False,
    upload: Upload = False,
    retries: Retries = None,
    timeout: Timeout = None,
    limit: Limit = None,
    new: New = False,
) -> int:
    """Submit a job to a shoal server; with --wait, exit like `shoal run` when it ends."""
    from shoal.client import Client
    from shoal.states import EXIT_CODES

    options = {
        k: v
        for k, v in {"retries": retries, "timeout": timeout, "limit": limit, "new": new or None}.items()
        if v is not None
    }
    pipeline = _pipeline_name(target)
    with Client(server, token) as client:
        if upload:
            job = client.upload(pipeline, _files(inputs or []), options)
        else:
            job = client.submit(pipeline, [_absolute(v) for v in inputs or []], options)
        print(f"job {job['id']} {job['state']}: {server.rstrip('/')}/jobs/{job['id']}")
        if not wait:
            return 0
        state = job["state"]
        for _event, data in client.events(job["id"]):
            state = data.get("state", state)
            done, failed, total = data.get("succeeded", 0), data.get("failed", 0), data.get("total", 0)
            print(f"{state}: {done} succeeded, {failed} failed of {total}", flush=True)
    return EXIT_CODES.get(state, 1)


def _pipeline_name(target: str) -> str:
    folder = Path(target)
    if (folder / "pipeline.py").is_file():
        from shoal.project import load_project

        return load_project(folder).pipeline.name
    return target


def _absolute(value: str) -> str:
    """Local paths as absolute paths (the server resolves them on its own machine); URLs as given."""
    return value if "://" in value else os.path.abspath(os.path.expanduser(value))


def _files(values: list[str]) -> list[Path]:
    from shoal.errors import InputError

    found: list[Path] = []
    for value in values:
        path = Path(value).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"--upload needs local files or folders; {value} is neither")
    if not found:
        raise InputError("--upload found no files to send")
    return found
