"""`shoal workers`: real `shoal worker`s list themselves, show the items they run and how far each
has got, turn lost when killed, and hand out their logs; Flower still sees them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeProject
from tests.engines import EngineUnderTest, engine_for
from tests.helpers import shoal_cli, start_cli

pytestmark = pytest.mark.integration
FLOWER_FLAGS = ("--address=127.0.0.1", "--inspect_timeout=5000")

#: item 0 waits for a file to appear (so it is seen running), printing a line and its progress first
BLOCKING = """
import os, time
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("blocking")

@pipeline.stage()
def work(item):
    name = os.path.basename(item.input)
    print(f"stage printed {name}", flush=True)
    if name == "item-0000.txt":
        item.progress(3, 7)
        release = Path(item.input).parent / "release"
        while not release.exists():
            time.sleep(0.05)
    return {"pid": os.getpid()}
"""


def wait_for(check: Callable[[], Any], what: str, deadline: float = 90) -> Any:
    """Poll ``check`` until it returns something truthy; fail saying ``what`` after ``deadline`` s."""
    end, found = time.monotonic() + deadline, None
    while time.monotonic() < end:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"never saw {what} within {deadline} s (last: {found!r})")


@pytest.fixture(params=["celery-redis", "celery-rabbitmq"])
def cluster(request: pytest.FixtureRequest, home: Path) -> Iterator[EngineUnderTest]:
    under_test = engine_for(request.param, home)
    yield under_test
    under_test.stop_workers()


def listed(cluster: EngineUnderTest, home: Path) -> list[dict[str, Any]]:
    done = shoal_cli("workers", "--broker", cluster.broker, "--json", cwd=home)
    assert done.returncode == 0, done.stderr
    pids = {w.pid for w in cluster.workers}
    return [w for w in json.loads(done.stdout) if w["pid"] in pids]  # other tests' workers share the broker


def test_workers_lists_busy_items_logs_and_lost_ones(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], cluster: EngineUnderTest
) -> None:
    project = make_project(BLOCKING)
    first, second = cluster.start_workers(project, 2, concurrency=2)
    workers = wait_for(lambda: (found := listed(cluster, home)) and len(found) == 2 and found, "both workers")
    for w in workers:
        assert w["host"] == os.uname().nodename
        assert w["queue"].startswith(cluster.queue + ".")
        assert w["concurrency"] == 2
        assert w["fingerprint"]
        assert w["queue"].endswith(w["fingerprint"])
        assert w["state"] == "up"
        assert w["rss"] > 0

    listing = inputs(4)
    release = listing.parent / "items-files" / "release"
    run = ("run", str(project), "-i", str(listing), "--engine", "celery", "--broker", cluster.broker)
    running = start_cli(*run, "--queue", cluster.queue, cwd=home)
    try:

        def busy_with_item() -> dict[str, Any] | None:
            for w in listed(cluster, home):
                for p in w["processes"]:
                    if any(str(i).startswith("item-0000") for i in p["items"]) and p["done"] == 3:
                        return w | {"process": p}
            return None

        busy = wait_for(busy_with_item, "a process running item 0, 3 of 7 done")
        assert busy["busy"] >= 1
        assert (busy["process"]["stage"], busy["process"]["total"]) == ("work", 7)
        name = busy["name"]
        logs = wait_for(
            lambda: "stage printed item-0000.txt" in (out := _log(cluster, home, name)) and out,
            "the stage's print in the worker's log",
        )
        assert "==>" in logs
    finally:
        release.touch()
        _, stderr = running.communicate(timeout=180)
    assert running.returncode == 0, stderr
    wait_for(lambda: sum(w["done"] for w in listed(cluster, home)) >= 4, "4 items done")

    victim = next(p for p in (first, second) if p.pid != busy["pid"]) if cluster.broker.startswith("redis") else None
    if victim is None:  # RabbitMQ keeps no records: a one-shot listing cannot remember the dead
        os.killpg(first.pid, signal.SIGKILL)
        wait_for(lambda: [w["pid"] for w in listed(cluster, home)] == [second.pid], "the killed worker gone")
        return
    os.killpg(victim.pid, signal.SIGKILL)
    states = wait_for(
        lambda: (
            (found := {w["pid"]: w["state"] for w in listed(cluster, home)})
            and found.get(victim.pid) == "lost"
            and found
        ),
        "the killed worker marked lost",
    )
    assert states[busy["pid"]] == "up"


def _log(cluster: EngineUnderTest, home: Path, name: str) -> str:
    done = shoal_cli("workers", "--broker", cluster.broker, "--log", name, cwd=home)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_flower_sees_shoal_workers(home: Path, make_project: MakeProject) -> None:
    pytest.importorskip("flower")
    cluster = engine_for("celery-redis", home)
    try:
        (worker,) = cluster.start_workers(make_project(BLOCKING), 1)
        port = _free_port()
        log = (home / "flower.log").open("wb")
        flower = subprocess.Popen(
            [sys.executable, "-m", "celery", "--broker", cluster.broker, "flower", f"--port={port}", *FLOWER_FLAGS],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=home,
            env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},  # loopback only
        )
        try:
            name = f"shoal-{worker.pid}@{os.uname().nodename}"

            def seen() -> dict[str, Any] | None:
                try:
                    url = f"http://127.0.0.1:{port}/api/workers?refresh=1&workername={name}"
                    with urllib.request.urlopen(url, timeout=30) as answer:
                        found: dict[str, Any] = json.loads(answer.read())
                except OSError:
                    return None
                return found.get(name) if found.get(name, {}).get("active_queues") else None

            info = wait_for(seen, "the shoal worker in Flower's API", deadline=120)
            assert any(q["name"].startswith(cluster.queue + ".") for q in info["active_queues"])
        finally:
            flower.terminate()
            flower.wait(30)
            log.close()
    finally:
        cluster.stop_workers()
