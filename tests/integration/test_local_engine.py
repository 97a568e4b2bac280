"""The embedded engine when a worker stops reading its pipe: the engine never waits on it, and
kills it at its item timeout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from shoal.engines import Chunk, ChunkLost, Event, ItemsDone, WorkerReady
from shoal.engines.local import LocalEngine
from shoal.project import load_project
from shoal.wire import JobSpec
from tests.conftest import MakeProject

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_stray_workers")]

STOPPING = """
import os, signal
import shoal

pipeline = shoal.Pipeline("stops")

@pipeline.stage()
def work(item):
    if item.meta.get("stop"):  # stops reading, as a stage stuck in C code holding the GIL does
        os.kill(os.getpid(), signal.SIGSTOP)
    return {"n": len(item.meta.get("pad", ""))}
"""


def _events(engine: LocalEngine, until: type, deadline: float = 30) -> list[Event]:
    found: list[Event] = []
    end = time.monotonic() + deadline
    while not any(isinstance(e, until) for e in found):
        assert time.monotonic() < end, f"no {until.__name__} within {deadline} s: {found}"
        found += engine.poll(0.1)
    return found


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_worker_that_stops_reading_never_blocks_the_engine_and_is_killed_at_its_timeout(
    make_project: MakeProject, tmp_path: Path
) -> None:
    project = load_project(make_project(STOPPING))
    engine = LocalEngine(project.root, project.fingerprint, 1)
    engine.start()
    try:
        _events(engine, WorkerReady)
        spec = JobSpec("job-1", project.fingerprint, str(tmp_path / "out"), item_timeout=2)
        engine.submit(Chunk(1, spec, [{"id": "stopper", "uri": None, "meta": {"stop": True}}]))
        (pid,) = engine.pids()
        deadline = time.monotonic() + 30
        while _state(pid) != "T":
            assert time.monotonic() < deadline, "the worker never stopped"
            engine.poll(0.05)

        big = [{"id": f"big-{i}", "uri": None, "meta": {"pad": "x" * 100_000}} for i in range(10)]  # 1 MB
        submitted = threading.Event()
        sender = threading.Thread(target=lambda: (engine.submit(Chunk(2, spec, big)), submitted.set()), daemon=True)
        sender.start()
        assert submitted.wait(10), "handing a chunk to a worker that stopped reading blocked the engine"

        lost = [e for e in _events(engine, ChunkLost) if isinstance(e, ChunkLost)]
        by_chunk = {e.chunk_id: e for e in lost}
        assert by_chunk[1].kind == "Timeout"
        assert by_chunk[1].suspects == ["stopper"]
        assert "took longer than the 2 s item timeout" in by_chunk[1].message
        assert by_chunk[2].suspects == []  # never started: not to blame

        engine.submit(Chunk(3, spec, big))  # the replacement worker takes it
        done = [e for e in _events(engine, ItemsDone) if isinstance(e, ItemsDone)]
        while sum(len(e.report.ok) for e in done) < 10:
            done += [e for e in engine.poll(0.1) if isinstance(e, ItemsDone)]
        assert {row[0] for e in done for row in e.report.ok} == {item["id"] for item in big}
    finally:
        engine.stop(kill=True)
