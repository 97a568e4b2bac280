"""Broker, coordinator and two workers as separate hosts: network namespaces joined by a bridge,
each with its own address and its own loopback, so every message crosses a (virtual) network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.helpers import read_results
from tests.netns import Network, wait_for_line

pytestmark = pytest.mark.integration


@pytest.fixture
def network() -> Iterator[Network]:
    if not shutil.which("ip") or not shutil.which("redis-server"):
        pytest.skip("needs iproute2 and redis-server: apt-get install iproute2 redis-server")
    try:
        net = Network()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create network namespaces here (needs root, CAP_NET_ADMIN): {exc.stderr.decode().strip()}")
    yield net
    net.close()


WHERE = """
import os, time
import shoal

pipeline = shoal.Pipeline("where")

@pipeline.stage()
def where(item):
    time.sleep(0.05)
    return {"netns": os.readlink("/proc/self/ns/net"), "text": item.read_text().strip()}
"""


def test_broker_coordinator_and_two_workers_on_separate_hosts(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], network: Network
) -> None:
    broker = network.start_redis(home / "redis.log")
    project = make_project(WHERE)
    env = {**os.environ, "SHOAL_BROKER_URL": broker}
    for host in ("worker1", "worker2"):
        log = home / f"{host}.log"
        command = [sys.executable, "-m", "shoal", "worker", str(project), "--concurrency", "1"]
        worker = network.start(host, [*command, "--log-dir", str(home / host)], log, env=env, cwd=home)
        wait_for_line(log, b" ready.", worker)

    shared = home / "shared"  # the storage every host mounts (here: the same disk)
    command = [sys.executable, "-m", "shoal", "run", str(project), "-i", str(inputs(40)), "--out", str(shared / "run")]
    coordinator = network.start("coordinator", command, home / "coordinator.log", env=env, cwd=home)
    assert coordinator.wait(180) == 0, (home / "coordinator.log").read_text(errors="replace")[-3000:]

    results = read_results(shared / "run")
    assert sorted(r["result"]["text"] for r in results) == sorted(str(i) for i in range(40))
    namespaces = {r["result"]["netns"] for r in results}
    assert len(namespaces) == 2, "both worker hosts ran items"
    assert os.readlink("/proc/self/ns/net") not in namespaces  # none ran outside the worker hosts


SAYS = """
import os
import shoal

pipeline = shoal.Pipeline("{name}")

@pipeline.stage()
def say(item):
    return {{"netns": os.readlink("/proc/self/ns/net"), "file": __file__, "said": "{said}"}}
"""


def test_workers_with_empty_folders_on_two_hosts_run_two_projects_and_an_edit_with_nothing_copied(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], network: Network
) -> None:
    broker = network.start_redis(home / "redis.log")
    env = {**os.environ, "SHOAL_BROKER_URL": broker, "SHOAL_CLUSTER_KEY": "k" * 32}
    for host in ("worker1", "worker2"):
        empty = home / f"{host}-folder"  # the worker's whole world: no project in it, no code copied in
        empty.mkdir()
        command = [sys.executable, "-m", "shoal", "worker", "--concurrency", "1", "--cache", str(empty / "cache")]
        log = home / f"{host}.log"
        worker = network.start(host, [*command, "--log-dir", str(empty / "logs")], log, env=env, cwd=empty)
        wait_for_line(log, b" ready.", worker)

    shared, listing = home / "shared", inputs(20)
    first = make_project(SAYS.format(name="first", said="one"), name="first")
    second = make_project(SAYS.format(name="second", said="two"), name="second")
    runs = [(first, "one"), (second, "two"), (first, "edited")]
    for number, (project, said) in enumerate(runs):
        (project / "pipeline.py").write_text(SAYS.format(name=project.name, said=said))
        out = shared / f"run-{number}"
        command = [sys.executable, "-m", "shoal", "run", str(project), "-i", str(listing), "--out", str(out)]
        coordinator = network.start("coordinator", command, home / f"coordinator-{number}.log", env=env, cwd=home)
        assert coordinator.wait(180) == 0, (home / f"coordinator-{number}.log").read_text(errors="replace")[-3000:]
        results = read_results(out)
        assert sorted(r["result"]["said"] for r in results) == [said] * 20
        assert len({r["result"]["netns"] for r in results}) == 2, "both worker hosts ran items"
        folders = {Path(r["result"]["file"]).parents[4].name for r in results}
        assert folders == {"worker1-folder", "worker2-folder"}, "each ran its own fetched copy"
    for host in ("worker1", "worker2"):
        assert (home / f"{host}.log").read_text().count("fetched code bundle") == 3
