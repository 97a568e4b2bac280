"""A small client of the shoal REST API, used by `shoal submit`.

client = Client("http://head:8000", token="shoal_...")
job = client.submit("faces", ["/data/images/"])
for event, data in client.events(job["id"]):
    print(event, data["succeeded"], "/", data["total"])
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from shoal.errors import MissingDependencyError, ServerError


class Client:
    """Talks to one shoal server; every failure is a ServerError naming the cause."""

    def __init__(self, server: str, token: str | None = None, timeout: float = 30.0) -> None:
        try:
            import httpx
        except ImportError:
            raise MissingDependencyError("httpx", "web") from None
        self.server = server.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)
        self._httpx = httpx

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, "/api/v1" + path, **kwargs)
        except self._httpx.HTTPError as exc:
            raise ServerError(f"cannot reach the shoal server at {self.server}: {exc}") from None
        if response.status_code >= 400:
            raise ServerError(f"the server at {self.server} answered {response.status_code}: {_detail(response)}")
        return response.json()

    def pipelines(self) -> list[dict[str, Any]]:
        return self._call("GET", "/pipelines")  # type: ignore[no-any-return]

    def submit(self, pipeline: str, inputs: Sequence[str], options: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {"pipeline": pipeline, "inputs": list(inputs), "options": options or {}}
        return self._call("POST", "/jobs", json=body)  # type: ignore[no-any-return]

    def upload(self, pipeline: str, files: Sequence[Path], options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Upload local files and run the pipeline over them."""
        handles = [("files", (path.name, path.open("rb"))) for path in files]
        try:
            data = {"pipeline": pipeline, "options": json.dumps(options or {})}
            return self._call("POST", "/jobs/upload", data=data, files=handles, timeout=None)  # type: ignore[no-any-return]
        finally:
            for _, (_, handle) in handles:
                handle.close()

    def predict(self, pipeline: str, files: Sequence[Path], timeout_ms: float | None = None) -> dict[str, Any]:
        """Send files to the pipeline's online replicas; one outcome per file, in order."""
        handles = [("files", (path.name, path.open("rb"))) for path in files]
        try:
            data = {"timeout_ms": str(timeout_ms)} if timeout_ms else {}
            path = f"/pipelines/{pipeline}/predict"
            return self._call("POST", path, data=data, files=handles, timeout=None)  # type: ignore[no-any-return]
        finally:
            for _, (_, handle) in handles:
                handle.close()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")  # type: ignore[no-any-return]

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/cancel")  # type: ignore[no-any-return]

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event, data) pairs from the job's SSE stream, until its ``end`` event."""
        try:
            with self._http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ServerError(f"the server answered {response.status_code}: {_detail(response)}")
                event = "message"
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        yield event, json.loads(line[5:])
                        if event == "end":
                            return
        except self._httpx.HTTPError as exc:
            raise ServerError(f"lost the connection to {self.server}: {exc}") from None


def _detail(response: Any) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return str(response.text[:200])
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in detail)
    return str(detail)
