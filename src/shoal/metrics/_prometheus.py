"""A small Prometheus HTTP API client that never hangs: every request has a deadline, failed
requests are retried a bounded number of times with backoff, and then an error is raised."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from shoal.errors import ConfigError, PrometheusError

RETRYABLE = {429, 500, 502, 503, 504}


class PrometheusAPI:
    """GET /api/v1/... on one server."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"not a Prometheus URL: {url!r} (e.g. http://localhost:9090)")
        self.url = url.rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, params: dict[str, str]) -> Any:
        """The ``data`` of a successful answer; raises PrometheusError after the last retry."""
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, body = self._once(path, params)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            answer = _decode(body)
            if status == 200 and answer.get("status") == "success":
                return answer.get("data")
            problem = f"HTTP {status}: {answer.get('error') or body[:200].decode(errors='replace')}"
            if status not in RETRYABLE:
                break  # a bad query stays bad
        raise PrometheusError(f"{self.url}{path} failed: {problem}")

    def _once(self, path: str, params: dict[str, str]) -> tuple[int, bytes]:
        """One request, abandoned once ``timeout`` has passed in all (a trickling answer too)."""
        deadline = time.monotonic() + self.timeout
        with self._client.stream("GET", f"{self.url}{path}", params=params) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"no complete answer within {self.timeout:g} s")
            return response.status_code, b"".join(chunks)


def _decode(body: bytes) -> dict[str, Any]:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return answer if isinstance(answer, dict) else {}
