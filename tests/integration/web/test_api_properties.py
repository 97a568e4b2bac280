"""Property tests against a live server: generated paths, names and options never get a 5xx,
a 422 names the field at fault, and every job accepted comes to an end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.strategies import NAMES, NUMBERS, PATHS, RELATIVE
from tests.web_server import LiveServer, wait_for_end

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("no_stray_workers"),
    # The server runs in this process: botocore's retry backoff for an s3:// input (random.random()
    # in fsspec's IO thread) moves the global random state while Hypothesis draws in this thread.
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

EXAMPLES = settings(
    max_examples=40, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _post(http: httpx.Client, path: str, body: Any) -> httpx.Response:
    """JSON as a hostile client writes it: NaN, Infinity and lone surrogates as such."""
    return http.post(path, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def _names(response: httpx.Response, *field: Any) -> bool:
    detail = response.json()["detail"]
    if isinstance(detail, list):
        return all(tuple(e["loc"][: len(field)]) == field for e in detail)
    return isinstance(detail, str) and "input" in detail


def test_generated_inputs_and_options_never_get_a_server_error(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    data = files(3)
    server = serve(projects=[tool_project()], allow_paths=[data])  # so "/" is refused, not 34,000 files
    accepted: set[str] = set()
    with server.client() as http:

        @EXAMPLES
        @given(PATHS | RELATIVE.map(lambda p: f"{data}/{p}"))
        def inputs(value: str) -> None:
            response = _post(http, "/api/v1/jobs", {"pipeline": "tool", "inputs": [value]})
            assert response.status_code < 500, (value, response.text)
            if response.status_code == 202:
                accepted.add(response.json()["id"])
            else:
                assert response.status_code == 422, response.text
                assert _names(response, "body", "inputs", 0), response.text

        @EXAMPLES
        @given(st.fixed_dictionaries({}, optional={"limit": NUMBERS, "timeout": NUMBERS, "fetch_timeout": NUMBERS}))
        def options(chosen: dict[str, Any]) -> None:
            response = _post(http, "/api/v1/jobs", {"pipeline": "tool", "inputs": [str(data)], "options": chosen})
            assert response.status_code in (202, 422), (chosen, response.text)
            if response.status_code == 202:
                accepted.add(response.json()["id"])
            else:
                assert {tuple(e["loc"][:3]) for e in response.json()["detail"]} <= {
                    ("body", "options", name) for name in chosen
                }, response.text

        inputs()
        options()
        assert accepted  # some were valid: they ran
        for job_id in accepted:  # nothing accepted stays running or pending for ever
            end = wait_for_end(http, job_id)[-1][1]
            finished = ("succeeded", "completed_with_errors", "failed")
            assert end["state"] in finished, (end, http.get(f"/api/v1/jobs/{job_id}").json())


def test_generated_item_and_artifact_names_never_get_a_server_error(
    serve: Callable[..., LiveServer], tool_project: Callable[..., Path], files: Callable[..., Path]
) -> None:
    server = serve(projects=[tool_project()])
    with server.client() as http:
        job = http.post("/api/v1/jobs", json={"pipeline": "tool", "inputs": [str(files(1))]}).json()["id"]
        wait_for_end(http, job)
        item = http.get(f"/api/v1/jobs/{job}/items").json()["items"][0]["id"]
        base = f"/api/v1/jobs/{job}"

        def text(value: str) -> str:  # what a URL can carry: a lone surrogate arrives as U+FFFD
            return quote(value.encode("utf-8", "surrogatepass"), safe="/")

        @EXAMPLES
        @given(RELATIVE, NAMES)
        def names(name: str, item_id: str) -> None:
            for path in (
                f"{base}/artifacts/{item}/{text(name)}",
                f"{base}/artifacts/{quote(item_id.replace('/', '_').encode('utf-8', 'surrogatepass'))}/copy.txt",
                f"{base}/items/{quote(item_id.replace('/', '_').encode('utf-8', 'surrogatepass'))}",
                f"{base}/artifacts.zip?item={quote(item_id.encode('utf-8', 'surrogatepass'))}",
                f"/api/v1/jobs?pipeline={quote(item_id.encode('utf-8', 'surrogatepass'))}",
            ):
                response = http.get(path)
                assert response.status_code < 500, (path, response.text)

        names()
