"""schemathesis fuzzes every operation of the OpenAPI schema against a live server: no 500s.

Every operation is run, the upload (multipart, with JobOptions as a JSON part) and the event
stream included: the server closes idle streams after a second, so the event stream of a
streaming job it creates comes to an end too. The links in the schema lead it from a created job
to its items, their artifacts and its zip, so it also meets real ids and names.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.web_server import LiveServer

pytestmark = pytest.mark.integration

EXAMPLES = 60  #: per operation and phase; about 70 s here on two cores, minutes when they are busy


@pytest.mark.timeout(600)
def test_schemathesis_finds_no_server_error(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path], tmp_path: Path
) -> None:
    allowed = files(3, bad=1)
    server = serve(projects=[tool_project()], allow_paths=[allowed], max_upload_mb=1, stream_idle_timeout=1)
    with server.client() as http:  # one real job, so the fuzzing also meets existing ids
        assert http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(allowed)]}).status_code == 202
        operations = sum(len(methods) for methods in http.get("/openapi.json").json()["paths"].values())
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json"]
    command += ["--checks", "not_a_server_error", "--max-examples", str(EXAMPLES), "--seed", "7"]
    command += ["--request-timeout", "60", "--no-color", "--generation-database", "none"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=580)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
    summary = result.stdout[result.stdout.rfind("API Operations:") :]
    assert f"Selected: {operations}/{operations}" in summary, summary  # every operation: uploads, events too
    assert f"Tested: {operations}" in summary, summary
