"""`shoal predict NAME FILE...`: answers from a server's warm replicas, one JSON line per file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.submit import Server, Token

Name = Annotated[str, typer.Argument(metavar="PIPELINE", help="the pipeline's name on the server")]
Files = Annotated[list[Path], typer.Argument(metavar="FILE...", help="files to send, one input each")]
Deadline = Annotated[
    float | None, typer.Option("--timeout-ms", metavar="MS", help="answer within this, or the server says 504")
]


def predict_command(
    pipeline: Name,
    files: Files,
    server: Server = "http://127.0.0.1:8000",
    token: Token = None,
    timeout_ms: Deadline = None,
) -> int:
    """Print each file's answer as a JSON line, in order; exit 1 if any input failed."""
    import orjson

    from shoal.client import Client
    from shoal.errors import InputError

    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(f"not a file: {', '.join(missing)}")
    with Client(server, token) as client:
        answer = client.predict(pipeline, files, timeout_ms)
    for path, output in zip(files, answer["outputs"], strict=True):
        print(orjson.dumps({"file": str(path), **output}).decode(), flush=True)
    return 0 if all(o["ok"] for o in answer["outputs"]) else 1
