"""The engine conformance suite: the same tests, unchanged, against every engine (the embedded
one, Celery over Redis, Celery over RabbitMQ). Retries, timeouts and crashing items are each
really done: stages that fail, hang and kill their own process, run by real worker processes."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import shoal
from shoal.store import Ledger
from tests.conftest import MakeProject
from tests.engines import EngineUnderTest
from tests.helpers import SLOW, kill_9, read_errors, read_results, shoal_cli, start_cli, succeeded_when

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

FLAKY = """
import time
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("flaky")
LOG = Path({log!r})

@pipeline.stage()
def call_service(item):
    name = Path(item.uri).name
    with LOG.open("a") as log:
        log.write(f"{{name}} {{time.time()}}\\n")
    tries = sum(1 for line in LOG.read_text().splitlines() if line.startswith(name + " "))
    if name == "item-0001.txt" and tries <= 2:
        raise ConnectionError(f"service unavailable on try {{tries}}")
    if name == "item-0002.txt":
        raise ValueError("bad value in item 2")
    if name == "item-0003.txt":
        raise shoal.ItemError("unusable input", retry=False)
    return {{"tries": tries}}
"""


def test_failed_items_are_retried_with_exponential_backoff(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], engine: EngineUnderTest
) -> None:
    log = home / "calls.log"
    project = make_project(FLAKY.format(log=str(log)))
    result = shoal.run(project, [str(inputs(6))], retries=2, retry_backoff=0.3, **engine.flags(project))

    assert result.state == "completed_with_errors"
    assert result.exit_code == 1
    assert result.counts["succeeded"] == 4
    assert result.counts["failed"] == 2
    by_name = {Path(r["input"]).name: r for r in read_results(result.out)}
    assert by_name["item-0001.txt"]["attempts"] == 3
    assert by_name["item-0001.txt"]["result"] == {"tries": 3}
    assert by_name["item-0000.txt"]["attempts"] == 1

    calls = [line.split() for line in log.read_text().splitlines()]
    flaky_times = [float(t) for name, t in calls if name == "item-0001.txt"]
    first_wait, second_wait = flaky_times[1] - flaky_times[0], flaky_times[2] - flaky_times[1]
    assert first_wait >= 0.3
    assert second_wait >= 0.6  # the backoff doubled

    errors = {Path(e["input"]).name: e for e in read_errors(result.out)}
    assert errors["item-0002.txt"]["stage"] == "call_service"
    assert errors["item-0002.txt"]["error_type"] == "ValueError"
    assert errors["item-0002.txt"]["message"] == "bad value in item 2"
    assert errors["item-0002.txt"]["attempts"] == "3"
    assert errors["item-0003.txt"]["attempts"] == "1"  # retry=False: failed at once
    assert [name for name, _ in calls].count("item-0003.txt") == 1


HANGING = """
import os, time
import shoal

pipeline = shoal.Pipeline("hangs")

@pipeline.stage()
def work(item):
    if item.uri.endswith("item-0003.txt"):
        time.sleep(3600)
    return {"pid": os.getpid()}
"""


def test_hung_item_is_killed_retried_then_failed_as_timed_out(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], engine: EngineUnderTest
) -> None:
    project = make_project(HANGING)
    flags = engine.flags(project)
    result = shoal.run(project, [str(inputs(10))], retries=1, retry_backoff=0.1, timeout=1, **flags)

    assert result.state == "completed_with_errors"
    assert result.counts == {"pending": 0, "succeeded": 9, "failed": 1, "cancelled": 0}
    (error,) = read_errors(result.out)
    assert Path(error["input"]).name == "item-0003.txt"
    assert error["error_type"] == "Timeout"
    assert error["stage"] == "work"
    assert "took longer than the 1 s item timeout" in error["message"]
    assert error["attempts"] == "2"
    ledger = Ledger(result.db)
    killed = [e["worker"] for e in ledger.events(result.job_id) if e["item_id"].startswith("item-0003")]
    ledger.close()
    assert len(killed) == 2
    for worker in killed:  # each hung worker process was killed, and the run went on without it
        with pytest.raises(ProcessLookupError):
            os.kill(int(worker.rsplit(":", 1)[1]), 0)


CRASHING = """
import ctypes, os
import shoal

pipeline = shoal.Pipeline("crashes")

@pipeline.stage(batch_size=4)
def work(items):
    for item in items:
        if item.uri.endswith("item-0002.txt"):
            os._exit(1)
        if item.uri.endswith("item-0005.txt"):
            ctypes.string_at(0)  # a segmentation fault
    return [{"pid": os.getpid()} for item in items]
"""


def test_item_that_kills_its_worker_fails_alone(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], engine: EngineUnderTest
) -> None:
    project = make_project(CRASHING)
    result = shoal.run(project, [str(inputs(12))], retries=1, retry_backoff=0.05, **engine.flags(project))

    assert result.counts["succeeded"] == 10  # the crashing items' batch-mates included
    assert result.counts["failed"] == 2
    errors = {Path(e["input"]).name: e for e in read_errors(result.out)}
    assert set(errors) == {"item-0002.txt", "item-0005.txt"}
    assert all(e["error_type"] == "WorkerCrashed" and e["attempts"] == "2" for e in errors.values())
    assert "exited with code 1 while running stage 'work'" in errors["item-0002.txt"]["message"]
    assert "killed by signal SIGSEGV" in errors["item-0005.txt"]["message"]
    assert sorted(Path(r["input"]).name for r in read_results(result.out)) == [
        f"item-{i:04d}.txt" for i in range(12) if i not in (2, 5)
    ]


def test_kill_9_of_the_coordinator_then_the_same_command_resumes(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], engine: EngineUnderTest
) -> None:
    log = home / "processed.log"
    project = make_project(SLOW.format(log=str(log), delay=0.05))
    command = ("run", str(project), "--input", str(inputs(80)), *engine.cli_args(project))

    first = start_cli(*command, cwd=home)
    job_id, done_before_kill = succeeded_when(home, 20)
    kill_9(first)

    second = shoal_cli(*command, cwd=home)
    failures = read_errors(home / "shoal-runs" / job_id) if second.returncode else []
    assert second.returncode == 0, (second.stderr, failures[:3])
    processed = Counter(log.read_text().split())
    assert all(processed[item] == 1 for item in done_before_kill), "an item recorded as succeeded was redone"
    results = read_results(home / "shoal-runs" / job_id)
    assert len(results) == 80
    assert len({r["id"] for r in results}) == 80  # every item exactly once


LONG = """
import time
import shoal

pipeline = shoal.Pipeline("long")

@pipeline.stage()
def work(item):
    time.sleep({seconds})
    return {{"slept": {seconds}}}
"""


def test_items_longer_than_the_silence_that_means_a_lost_chunk_run_once_and_succeed(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], engine: EngineUnderTest
) -> None:
    """A chunk whose heartbeats stop for LOST_AFTER seconds is sent again; one that runs that long
    while beating is fine, and so is one queued behind it all that time. Three items, two workers:
    the third waits out a whole long item in the queue."""
    from shoal.engines.celery.engine import LOST_AFTER

    project = make_project(LONG.format(seconds=LOST_AFTER + 1))
    result = shoal.run(project, [str(inputs(3))], **engine.flags(project))

    assert result.state == "succeeded", read_errors(result.out)
    assert sorted(r["attempts"] for r in read_results(result.out)) == [1, 1, 1]
    ledger = Ledger(result.db)
    try:
        requeued = [e for e in ledger.events(result.job_id) if e["kind"] == "requeued"]
    finally:
        ledger.close()
    assert requeued == [], "a chunk that was running, or queued, was declared lost"


FORKING = """
import os, time
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("forks")
CHILDREN = Path({children!r})

def leave_a_child():
    pid = os.fork()
    if pid == 0:  # holds the worker's pipes open, as any forked child does, and never exits
        time.sleep(3600)
        os._exit(0)
    with CHILDREN.open("a") as log:
        log.write(f"{{pid}}\\n")

@pipeline.stage()
def work(item):
    leave_a_child()
    if item.uri.endswith("item-0003.txt"):
        os._exit(1)
    if item.uri.endswith("item-0006.txt"):
        time.sleep(3600)
    return {{"pid": os.getpid()}}
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # killed, waiting for init to reap it


def test_children_a_stage_forks_neither_hang_the_run_nor_outlive_it(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], engine: EngineUnderTest
) -> None:
    children = home / "children.log"
    project = make_project(FORKING.format(children=str(children)))
    result = shoal.run(project, [str(inputs(10))], retries=0, timeout=2, **engine.flags(project))

    errors = {Path(e["input"]).name: e["error_type"] for e in read_errors(result.out)}
    assert errors == {"item-0003.txt": "WorkerCrashed", "item-0006.txt": "Timeout"}
    assert result.counts["succeeded"] == 8
    if engine.celery:  # the run is over; its workers serve on until stopped
        engine.stop_workers()
    pids = [int(line) for line in children.read_text().split()]
    assert len(pids) >= 10
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in pids if not _gone(pid)] == [], "children of stages outlived the run"
