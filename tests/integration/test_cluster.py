"""Losing parts of a cluster mid-run: a worker process, a whole `shoal worker`, the broker itself.
Every item still ends succeeded exactly once, and soon (not after a broker's visibility timeout)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.engines import EngineUnderTest, engine_for
from tests.helpers import ledger_in, read_results, shoal_cli, start_cli, succeeded_when

pytestmark = pytest.mark.integration

ITEM_TIMEOUT = 5
SLOW = """
import os, time
import shoal

pipeline = shoal.Pipeline("cluster")

@pipeline.stage()
def work(item):
    time.sleep(0.1)
    return {"pid": os.getpid()}
"""


#: prints and logs a line per item; item 3 crashes its process (a segfault), item 4 raises
NOISY = """
import faulthandler, logging, os, time
import shoal

pipeline = shoal.Pipeline("noisy")

@pipeline.stage()
def work(item):
    time.sleep(0.2)
    name = os.path.basename(item.input)
    print(f"printed by {name}")
    logging.getLogger("noisy").warning("warned by %s", name)
    if name == "item-0003.txt":
        faulthandler._sigsegv()
    if name == "item-0004.txt":
        raise ValueError(f"raised by {name}")
    return {"pid": os.getpid()}
"""
LOG_NAME = re.compile(r"(?P<host>.+)-(?P<pid>\d+)\.log")


@pytest.fixture(params=["celery-redis", "celery-rabbitmq"])
def cluster(request: pytest.FixtureRequest, home: Path) -> Iterator[EngineUnderTest]:
    under_test = engine_for(request.param, home)
    yield under_test
    under_test.stop_workers()


def _runtime_processes(worker: subprocess.Popen[bytes]) -> list[int]:
    """The local worker processes a `shoal worker` runs items in."""
    found = subprocess.run(["pgrep", "-P", str(worker.pid), "-f", "shoal.engines.local_worker"], capture_output=True)
    return [int(pid) for pid in found.stdout.split()]


def _run_command(project: Path, listing: Path, cluster: EngineUnderTest) -> tuple[str, ...]:
    queue = ("--engine", "celery", "--broker", cluster.broker, "--queue", cluster.queue)
    return ("run", str(project), "-i", str(listing), "--timeout", str(ITEM_TIMEOUT), *queue)


def _assert_exactly_once(home: Path, job_id: str, count: int) -> None:
    results = read_results(home / "shoal-runs" / job_id)
    assert len(results) == count
    assert len({r["id"] for r in results}) == count


def test_killing_one_worker_process_loses_nothing(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], cluster: EngineUnderTest
) -> None:
    project = make_project(SLOW)
    first, _ = cluster.start_workers(project, 2)
    running = start_cli(*_run_command(project, inputs(60), cluster), cwd=home)
    job_id, _ = succeeded_when(home, 10)
    victims = _runtime_processes(first)
    assert victims
    os.kill(victims[0], signal.SIGKILL)
    _, stderr = running.communicate(timeout=120)
    assert running.returncode == 0, stderr
    _assert_exactly_once(home, job_id, 60)
    assert first.poll() is None  # the shoal worker itself lives on, with a new process


def test_killing_a_whole_worker_re_dispatches_its_items_within_the_item_timeout(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], cluster: EngineUnderTest
) -> None:
    project = make_project(SLOW)
    first, _ = cluster.start_workers(project, 2)
    running = start_cli(*_run_command(project, inputs(60), cluster), cwd=home)
    job_id, _ = succeeded_when(home, 10)
    killed_at = time.time()
    os.killpg(first.pid, signal.SIGKILL)  # the Celery process; its item processes die with it
    _, stderr = running.communicate(timeout=120)
    finished_after = time.time() - killed_at
    assert running.returncode == 0, stderr
    _assert_exactly_once(home, job_id, 60)
    # RabbitMQ hands a dead consumer's messages to the other worker at once; with Redis they would
    # wait for the visibility timeout (an hour), so shoal notices the silence and sends them again
    ledger = ledger_in(home)
    requeued = [e["at"] - killed_at for e in ledger.events(job_id) if e["kind"] == "requeued"]
    ledger.close()
    if cluster.broker.startswith("redis"):
        assert requeued, "the lost worker's items were never sent again"
    assert all(delay < ITEM_TIMEOUT + 5 for delay in requeued)
    assert finished_after < ITEM_TIMEOUT + 5 + 60 * 0.1 + 15  # seconds, not an hour


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Redis:
    """A Redis server of this test's own, so restarting it disturbs nobody else."""

    def __init__(self, home: Path) -> None:
        if not shutil.which("redis-server"):
            pytest.skip("redis-server is not installed: apt-get install redis-server")
        self.port = _free_port()
        self.home = home
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, cwd=self.home,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


def test_redis_restarting_mid_run_loses_nothing(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    redis = _Redis(home)
    cluster = EngineUnderTest("celery-redis", home)
    cluster.broker = f"redis://127.0.0.1:{redis.port}/0"
    try:
        project = make_project(SLOW)
        cluster.start_workers(project, 2)
        running = start_cli(*_run_command(project, inputs(60), cluster), cwd=home)
        job_id, _ = succeeded_when(home, 15)
        redis.kill()  # everything Redis held is gone: queued tasks, results, heartbeats
        time.sleep(1)
        redis.start()
        _, stderr = running.communicate(timeout=180)
        assert running.returncode == 0, stderr
        assert "lost the broker" in stderr
        _assert_exactly_once(home, job_id, 60)
    finally:
        cluster.stop_workers()
        redis.kill()


def test_rabbitmq_restarting_mid_run_loses_nothing(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    cluster = engine_for("celery-rabbitmq", home)
    if not shutil.which("rabbitmqctl"):
        pytest.skip("rabbitmqctl is not installed: apt-get install rabbitmq-server")
    try:
        project = make_project(SLOW)
        cluster.start_workers(project, 2)
        running = start_cli(*_run_command(project, inputs(60), cluster), cwd=home)
        job_id, _ = succeeded_when(home, 15)
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        time.sleep(1)
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=60)
        _, stderr = running.communicate(timeout=180)
        assert running.returncode == 0, stderr
        _assert_exactly_once(home, job_id, 60)
    finally:
        cluster.stop_workers()
        subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=60)


def test_a_worker_of_other_code_is_named_and_never_given_work(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    cluster = engine_for("celery-redis", home)
    try:
        old = make_project(SLOW, name="old")
        cluster.start_workers(old, 1)
        new = make_project(SLOW + "\n# a change\n", name="new")
        result = shoal_cli(*_run_command(new, inputs(5), cluster), cwd=home)
        assert result.returncode == 2
        assert "no worker runs pipeline 'cluster' at version" in result.stderr
        assert "runs cluster version" in result.stderr
        assert str(old) in result.stderr
    finally:
        cluster.stop_workers()


def test_workers_of_the_same_code_on_another_queue_are_another_pool_and_are_named(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    """A job for queue "gpu" must not count the "cpu" pool's threads as its own, even where they
    run the same code: its chunks would wait on a queue nobody reads, until declared lost."""
    cluster = engine_for("celery-redis", home)
    try:
        project = make_project(SLOW)
        cluster.start_workers(project, 1)
        command = list(_run_command(project, inputs(3), cluster))
        command[command.index("--queue") + 1] = "gpu"
        result = shoal_cli(*command, cwd=home)
        assert result.returncode == 2, result.stderr
        assert "no shoal worker listens on queue 'gpu'" in result.stderr
        assert "Workers on other queues (" in result.stderr
        assert repr(cluster.queue) in result.stderr  # other tests' workers on this broker may be named too
    finally:
        cluster.stop_workers()


def test_a_worker_serves_prometheus_metrics_of_the_items_it_ran(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    import httpx

    cluster = engine_for("celery-redis", home)
    port = _free_port()
    try:
        project = make_project(SLOW)
        cluster.start_workers(
            project, 1, concurrency=2, extra=("--metrics-port", str(port), "--metrics-host", "127.0.0.1")
        )
        result = shoal_cli(*_run_command(project, inputs(12), cluster), cwd=home)
        assert result.returncode == 0, result.stderr
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        cluster.stop_workers()
    done = [
        line
        for line in text.splitlines()
        if line.startswith("shoal_worker_items_total{") and 'outcome="succeeded"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in done) == 12
    assert 'pipeline="cluster"' in done[0]
    assert "shoal_workers_alive 2.0" in text


def _logs(folder: Path) -> dict[int, str]:
    """The log files in a folder, by the pid their name gives; each named by this host."""
    found = {}
    for path in folder.iterdir():
        match = LOG_NAME.fullmatch(path.name)
        assert match is not None, f"{path.name} is not named HOST-PID.log"
        assert match["host"] == os.uname().nodename
        found[int(match["pid"])] = path.read_text(errors="replace")
    return found


def test_each_worker_process_logs_to_its_own_file_and_a_job_s_logs_reach_its_run_folder(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], cluster: EngineUnderTest
) -> None:
    project = make_project(NOISY)
    workers = cluster.start_workers(project, 2)  # two `shoal worker`s on one machine, one log dir
    processes = {p for w in workers for p in _runtime_processes(w)}
    result = shoal_cli(*_run_command(project, inputs(8), cluster), "--retries", "0", cwd=home)
    processes |= {p for w in workers for p in _runtime_processes(w)}  # with the crashed one's replacement
    job_id = re.search(r"running job (\S+) on (\d+) workers", result.stderr)
    assert job_id is not None, result.stderr
    assert re.search(rf"on {job_id[2]} workers \(", result.stdout), "the start line and the summary disagree"
    assert job_id[2] == "2"

    collected = _logs(home / "shoal-runs" / job_id[1] / "logs")
    assert set(collected) <= processes, "a log named by a process that is no worker's"
    assert {p for w in workers for p in _runtime_processes(w)} & set(collected), "nothing from a live process"
    text = "".join(collected.values())
    for n in range(8):
        assert f"printed by item-{n:04d}.txt" in text
        assert f"warned by item-{n:04d}.txt" in text
    assert "ValueError: raised by item-0004.txt" in text  # its traceback
    assert "Fatal Python error: Segmentation fault" in text  # how the crashed process died, and where:
    assert re.search(r'File ".*pipeline.py", line \d+ in work', text)

    local = _logs(home / "worker-logs")  # each process of both workers wrote its own file there
    assert {w.pid for w in workers} | set(collected) <= set(local)
    assert all(" ready." in local[w.pid] for w in workers)
    for pid, output in collected.items():
        assert output.strip() in local[pid]
