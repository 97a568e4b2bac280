"""Each `shoal worker`'s live status, and the list of a broker's workers built from them.

A worker answers two control commands any Celery client can send: ``shoal_status`` (what it runs
now: its processes and their items, counters, memory and CPU) and ``shoal_log`` (the last lines of
its own log file, read on demand: its machine may share no disk with the asker). On a Redis broker
it also writes its status every BEAT_S seconds to ``shoal:worker:<name>``, kept KEEP_S seconds: a
worker that stops writing shows as lost, however it died, until the key expires. A RabbitMQ
broker has nowhere to keep records, so there the list is whoever answers ``shoal_status``; a
long-lived `Fleet` (the server's) remembers those it saw and marks the silent ones lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from shoal.engines._logs import log_name

if TYPE_CHECKING:
    from celery import Celery

    from shoal.engines.celery.supervisor import Supervisor
    from shoal.engines.celery.versions import Versions

log = logging.getLogger(__name__)
STATUS_COMMAND = "shoal_status"
LOG_COMMAND = "shoal_log"
BEAT_S = 2.0  #: seconds between a worker's status records
LOST_AFTER = 3 * BEAT_S  #: a worker silent this long is lost
KEEP_S = 600.0  #: seconds a silent worker's record stays (shown as lost) before it expires
KEY_PREFIX = "shoal:worker:"
LOG_LINES = 50  #: lines of a worker's log returned by default
MAX_LOG_LINES = 1000
ASK_S = 1.0  #: seconds to wait for workers to answer a broadcast


def _is_redis(broker_url: str) -> bool:
    return urlsplit(broker_url).scheme.startswith("redis")


def _proc_rss(pid: int | str) -> int:
    """Resident memory of a process in bytes, from /proc (0 where unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (0 where unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class WorkerStatus:
    """What one `shoal worker` reports about itself."""

    def __init__(
        self, name: str, info: dict[str, Any], supervisor: Supervisor | Versions, log_dir: Path | None
    ) -> None:
        self.name = name
        self.info = dict(info)
        self.supervisor = supervisor
        self.log_path = None if log_dir is None else log_dir / log_name(f"{os.uname().nodename}:{os.getpid()}")
        self.started = time.time()
        self._cpu: tuple[float, float] | None = None  #: (wall clock, CPU seconds) at the last record
        self._lock = threading.Lock()

    def record(self) -> dict[str, Any]:
        processes = self.supervisor.running()
        pids = [os.getpid(), *(p["pid"] for p in processes)]
        for p in processes:
            p["rss"] = _proc_rss(p["pid"])
        times = os.times()
        cpu = times.user + times.system + sum(_proc_cpu(pid) for pid in pids[1:])
        now = time.time()
        with self._lock:
            before, self._cpu = self._cpu, (now, cpu)
        percent = None if before is None or now <= before[0] else round(100 * (cpu - before[1]) / (now - before[0]), 1)
        return {
            **self.info,
            "name": self.name,
            "host": os.uname().nodename,
            "pid": os.getpid(),
            "started_at": self.started,
            "heartbeat_at": now,
            "healthy": self.supervisor.healthy,
            "loaded": self.supervisor.loaded,  #: the code versions it has warm
            "processes": processes,
            "busy": sum(1 for p in processes if p["items"]),
            "done": self.supervisor.done,
            "failed": self.supervisor.failed,
            "rss": sum(_proc_rss(pid) for pid in pids),
            "cpu_seconds": round(cpu, 2),
            "cpu_percent": percent,
            "log": None if self.log_path is None else str(self.log_path),
        }

    def _pids(self) -> list[int]:
        return [int(p["pid"]) for p in self.supervisor.running()]

    def log_tail(self, lines: int = LOG_LINES) -> list[dict[str, Any]]:
        """The last ``lines`` lines of this worker's own log file, then of each of its processes'
        (where the stages' prints and logs go), at most 256 KiB of each read."""
        if self.log_path is None:
            return []
        lines = max(1, min(int(lines), MAX_LOG_LINES))
        host = os.uname().nodename
        paths = [self.log_path] + [self.log_path.with_name(log_name(f"{host}:{p}")) for p in self._pids()]
        return [{"path": str(path), "lines": _tail(path, lines)} for path in paths]


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


def register_commands(app: Celery, status: WorkerStatus) -> None:
    """The ``shoal_status`` and ``shoal_log`` control commands, answered from ``status``."""
    from celery.worker.control import inspect_command

    @inspect_command(name=STATUS_COMMAND)  # type: ignore[untyped-decorator]
    def shoal_status(state: Any) -> dict[str, Any]:
        """This worker's live status: its processes and their items, counters, memory, CPU."""
        return status.record()

    @inspect_command(name=LOG_COMMAND, args=[("lines", int)], signature="[lines=50]")  # type: ignore[untyped-decorator]
    def shoal_log(state: Any, lines: int = LOG_LINES) -> dict[str, Any]:
        """The last lines of this worker's log file."""
        return {"name": status.name, "files": status.log_tail(lines)}


class Publisher:
    """Writes a worker's status to Redis every BEAT_S seconds; deletes it when the worker stops.
    Does nothing on other brokers (they answer ``shoal_status`` instead)."""

    def __init__(self, broker_url: str, status: WorkerStatus) -> None:
        self.broker_url = broker_url
        self.status = status
        self.key = KEY_PREFIX + status.name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoal-status", daemon=True)

    def start(self) -> None:
        if _is_redis(self.broker_url):
            self._thread.start()

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import redis

        client = redis.Redis.from_url(self.broker_url, socket_timeout=5, socket_connect_timeout=5)
        failing = False
        try:
            while not self._stop.is_set():
                try:
                    client.set(self.key, json.dumps(self.status.record()), ex=int(KEEP_S))
                    failing = False
                except Exception as exc:  # a broker outage: the next beat tries again
                    if not failing:
                        log.warning("shoal: publishing this worker's status failed (%s); trying again", exc)
                    failing = True
                self._stop.wait(BEAT_S)
            with contextlib.suppress(Exception):  # stopped on purpose: not lost, gone
                client.delete(self.key)
        finally:
            client.close()


def _mark(record: dict[str, Any], now: float) -> dict[str, Any]:
    age = now - float(record.get("heartbeat_at") or 0)
    return {**record, "state": "lost" if age > LOST_AFTER else "up", "seconds_since_heartbeat": round(age, 1)}


class Fleet:
    """The workers of one broker: their records, each marked ``up`` or ``lost``. Keep one around
    (as the server does) and on RabbitMQ it marks lost the workers that stopped answering."""

    def __init__(self, broker_url: str, *, clock: Callable[[], float] = time.time) -> None:
        from shoal.engines.celery.app import make_app

        self.broker_url = broker_url
        self.app = make_app(broker_url)
        self.clock = clock
        self._seen: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def workers(self) -> list[dict[str, Any]]:
        """Every worker known, newest heartbeat first within each host, sorted by host and pid."""
        records = self._from_redis() if _is_redis(self.broker_url) else self._from_replies()
        now = self.clock()
        return sorted((_mark(r, now) for r in records), key=lambda r: (str(r.get("host")), int(r.get("pid") or 0)))

    def log(self, name: str, lines: int = LOG_LINES) -> dict[str, Any] | None:
        """The last lines of worker ``name``'s log, or None if it did not answer."""
        replies = self.app.control.broadcast(
            LOG_COMMAND, arguments={"lines": lines}, destination=[name], reply=True, timeout=ASK_S * 2
        )
        for reply in replies or []:
            answer = reply.get(name)
            if isinstance(answer, dict):
                return answer
        return None

    def close(self) -> None:
        self.app.close()

    def _from_redis(self) -> list[dict[str, Any]]:
        import redis

        client = redis.Redis.from_url(self.broker_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            keys = sorted(client.scan_iter(match=KEY_PREFIX + "*", count=500))
            found = []
            for raw in client.mget(keys) if keys else []:
                with contextlib.suppress(TypeError, ValueError):
                    record = json.loads(raw or "")
                    if isinstance(record, dict):
                        found.append(record)
            return found
        finally:
            client.close()

    def _from_replies(self) -> list[dict[str, Any]]:
        replies = self.app.control.broadcast(STATUS_COMMAND, reply=True, timeout=ASK_S)
        now = self.clock()
        with self._lock:
            for reply in replies or []:
                for name, record in reply.items():
                    if isinstance(record, dict):
                        self._seen[name] = record
            for name in [n for n, r in self._seen.items() if now - float(r.get("heartbeat_at") or 0) > KEEP_S]:
                del self._seen[name]
            return list(self._seen.values())


def list_workers(broker_url: str) -> list[dict[str, Any]]:
    """The workers of a broker, each marked ``up`` or ``lost`` (see Fleet)."""
    fleet = Fleet(broker_url)
    try:
        return fleet.workers()
    finally:
        fleet.close()
