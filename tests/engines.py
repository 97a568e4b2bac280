"""The engines the conformance suite runs against, and the real services they need.

`local` needs nothing. `celery-redis` and `celery-rabbitmq` need the real servers on loopback
(`.ci/run` starts them); without them those tests skip, saying how to start them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

REDIS_URL = os.environ.get("SHOAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
RABBITMQ_URL = os.environ.get("SHOAL_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
START_HINTS = {
    6379: "start Redis: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
    5672: "start RabbitMQ: rabbitmq-server -detached",
    5432: "start PostgreSQL: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
}


def require_service(port: int, host: str = "127.0.0.1") -> None:
    """Skip the calling test, saying how to start the service, when nothing listens on ``port``."""
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        pytest.skip(f"nothing listens on {host}:{port}; {START_HINTS.get(port, 'start the service')}")


class EngineUnderTest:
    """One engine: the flags that select it, and for Celery the `shoal worker` processes."""

    def __init__(self, kind: str, home: Path) -> None:
        self.kind = kind
        self.home = home
        self.broker = {"celery-redis": REDIS_URL, "celery-rabbitmq": RABBITMQ_URL}.get(kind, "")
        self.queue = f"test-{uuid.uuid4().hex[:8]}"  # tests never take each other's work
        self.workers: list[subprocess.Popen[bytes]] = []

    @property
    def celery(self) -> bool:
        return bool(self.broker)

    def flags(self, project: Path, workers: int = 2) -> dict[str, Any]:
        """Keyword arguments for shoal.run(); starts Celery workers for ``project`` first."""
        if not self.celery:
            return {"workers": workers}
        if not self.workers:
            self.start_workers(project, workers)
        return {"engine": "celery", "broker_url": self.broker, "queue": self.queue}

    def cli_args(self, project: Path, workers: int = 2) -> list[str]:
        flags = self.flags(project, workers)
        if not self.celery:
            return ["--workers", str(workers)]
        return ["--engine", "celery", "--broker", flags["broker_url"], "--queue", flags["queue"]]

    def start_workers(
        self, project: Path | None, count: int, concurrency: int = 1, extra: tuple[str, ...] = ()
    ) -> list[subprocess.Popen[bytes]]:
        """`shoal worker PROJECT`, or with ``project`` None a worker that fetches code bundles."""
        started = []
        for n in range(count):
            log = self.home / f"celery-worker-{len(self.workers) + 1}.log"
            with log.open("wb") as output:
                serves = [str(project)] if project is not None else []
                command = [sys.executable, "-m", "shoal", "worker", *serves, "--broker", self.broker]
                command += ["--concurrency", str(concurrency), "--queue", self.queue]
                command += ["--log-dir", str(self.home / "worker-logs"), *extra]
                process = subprocess.Popen(
                    command, stdout=output, stderr=subprocess.STDOUT, cwd=self.home, start_new_session=True
                )
            started.append(process)
            self.workers.append(process)
            self._wait_ready(log, process)
            del n
        return started

    @staticmethod
    def _wait_ready(log: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in log.read_bytes():
                return
            if process.poll() is not None:
                raise AssertionError(f"shoal worker exited: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        raise AssertionError(f"shoal worker not ready after {timeout} s: {log.read_text(errors='replace')[-2000:]}")

    def stop_workers(self) -> None:
        for process in self.workers:
            if process.poll() is None:
                process.terminate()
        for process in self.workers:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
        self.workers.clear()


def engine_for(kind: str, home: Path) -> EngineUnderTest:
    if kind == "celery-redis":
        require_service(6379)
    elif kind == "celery-rabbitmq":
        require_service(5672)
    return EngineUnderTest(kind, home)
