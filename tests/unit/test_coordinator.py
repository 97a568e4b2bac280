"""The coordinator's decisions, driven by a scripted in-process engine: retries, isolation of
failed batches, blame for crashes, staging of new items and the input watermark."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shoal.coordinator import Coordinator, RetryPolicy
from shoal.engines import Chunk, ChunkLost, Event, ItemsDone, WorkerReady
from shoal.pipeline import Pipeline
from shoal.sources import Entry
from shoal.sources.feeds import FiniteFeed
from shoal.store import JobRecord, Ledger
from shoal.wire import JobSpec, Report, WireItem

#: what happens to an item: "ok", an error dict, or "crash" (its worker dies running it)
Fate = Callable[[WireItem], Any]


class ScriptedEngine:
    """Runs every chunk at once, in this process, deciding each item's fate with a function."""

    def __init__(self, fate: Fate, workers: int = 2) -> None:
        self.fate = fate
        self.size = workers
        self.queue: list[Chunk] = []
        self.chunks: list[list[str]] = []
        self.started = False

    @property
    def workers(self) -> int:
        return self.size

    chunk_seconds = 0.1

    def start(self) -> None:
        self.started = True

    def capacity(self) -> int:
        return 2 * self.size - len(self.queue)

    def submit(self, chunk: Chunk) -> None:
        self.queue.append(chunk)
        self.chunks.append([w["id"] for w in chunk.items])

    def poll(self, timeout: float) -> list[Event]:
        events: list[Event] = [WorkerReady("w:1", 0.0)] if self.started else []
        self.started = False
        for chunk in self.queue:
            events.append(self._run(chunk))
        self.queue = []
        return events

    def _run(self, chunk: Chunk) -> Event:
        report = Report()
        for index, wire in enumerate(chunk.items):
            fate = self.fate(wire)
            if fate == "crash":
                return ChunkLost(
                    chunk.id, "w:1", "WorkerCrashed", "process w:1 was killed by signal SIGSEGV", 0, [wire["id"]]
                )
            if fate == "crash-batch":
                suspects = [w["id"] for w in chunk.items[index:]]
                return ChunkLost(chunk.id, "w:1", "WorkerCrashed", "process w:1 exited with code 1", 0, suspects)
            if fate == "ok":
                report.ok.append([wire["id"], json.dumps({"attempt": wire.get("attempt", 1)}), 1.0, 2.0, '{"s":0.1}'])
            else:
                report.failed.append({"id": wire["id"], "start": 1.0, "end": 2.0, "seconds": "{}", "error": fate})
        return ItemsDone(chunk.id, "w:1", report)

    def stop(self, *, kill: bool = False) -> None:
        """Nothing runs in the background."""


def _pipeline(batch_size: int | None = None) -> Pipeline:
    pipeline = Pipeline("scripted")
    pipeline.stage(batch_size=batch_size, name="work")(lambda item: {})
    return pipeline


def _job(ledger: Ledger) -> JobRecord:
    return ledger.open_job("k", lambda: dict(
        id="job-1", pipeline="scripted", fingerprint="f", project="/p", inputs="[]", options="{}",
        out="/out", state="running", created_at=0.0, updated_at=0.0, finished_at=None, entries=0,
        ingested=False, owner=None, heartbeat_at=None,
    ))[0]  # fmt: skip


def _entries(names: list[str]) -> list[Entry]:
    return [Entry(name, f"/data/{name}", f"/data/{name}") for name in names]


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def _run(
    ledger: Ledger,
    fate: Fate,
    names: list[str],
    *,
    retries: int = 2,
    batch_size: int | None = None,
    workers: int = 2,
) -> Coordinator:
    job = _job(ledger)
    engine = ScriptedEngine(fate, workers)
    coordinator = Coordinator(
        ledger, job, engine, JobSpec(job.id, "f", "/out"), _pipeline(batch_size), FiniteFeed(iter(_entries(names))),
        policy=RetryPolicy(retries, backoff=0.0),
    )  # fmt: skip
    assert coordinator.run() == "finished"
    coordinator.engine_chunks = engine.chunks  # type: ignore[attr-defined]
    return coordinator


def _item(ledger: Ledger, item_id: str) -> dict[str, Any]:
    row = ledger.item("job-1", item_id)
    assert row is not None
    return dict(row)


def _error(kind: str, message: str, *, batch: int = 1, retry: bool = True) -> dict[str, Any]:
    return {"stage": "work", "type": kind, "message": message, "traceback": "", "batch": batch, "retry": retry}


def test_a_retry_that_succeeds_before_the_next_commit_is_recorded_once_as_succeeded(ledger: Ledger) -> None:
    fate: Fate = lambda w: "ok" if w.get("attempt", 1) == 2 else _error("IOError", "flaky")  # noqa: E731
    _run(ledger, fate, ["a", "b"])
    for name in ("a", "b"):
        row = _item(ledger, name)
        assert (row["status"], row["attempts"], json.loads(row["result"])) == ("succeeded", 2, {"attempt": 2})
        assert row["error_type"] == "IOError"  # the last failed attempt stays visible
    assert [e["kind"] for e in ledger.events("job-1")] == ["retry", "retry"]


def test_a_failed_batch_is_split_and_only_the_culprit_is_blamed(ledger: Ledger) -> None:
    def fate(wire: WireItem) -> Any:
        alone = wire["id"] in isolated
        if wire["id"] == "c" and not alone:
            return _error("ValueError", "bad batch", batch=4)
        if wire["id"] == "c":
            return _error("ValueError", "c is bad")
        return "ok" if alone or wire["id"] not in ("a", "b", "d") else _error("ValueError", "bad batch", batch=4)

    isolated: set[str] = set()
    original = Coordinator._isolate

    def spy(self: Coordinator, wire: WireItem, worker: str) -> None:
        isolated.add(wire["id"])
        original(self, wire, worker)

    Coordinator._isolate = spy  # type: ignore[method-assign]
    try:
        _run(ledger, fate, ["a", "b", "c", "d"], retries=1, batch_size=4)
    finally:
        Coordinator._isolate = original  # type: ignore[method-assign]
    assert isolated == {"a", "b", "c", "d"}
    assert [_item(ledger, n)["attempts"] for n in "abd"] == [1, 1, 1]  # split uncharged, then succeeded
    assert all(_item(ledger, n)["status"] == "succeeded" for n in "abd")
    culprit = _item(ledger, "c")
    assert (culprit["status"], culprit["attempts"], culprit["error_message"]) == ("failed", 2, "c is bad")


def test_a_crash_blames_the_running_item_and_requeues_the_rest(ledger: Ledger) -> None:
    coordinator = _run(ledger, lambda w: "crash" if w["id"] == "b" else "ok", ["a", "b", "c", "d", "e"], retries=1)
    crashed = _item(ledger, "b")
    assert (crashed["status"], crashed["attempts"], crashed["error_type"]) == ("failed", 2, "WorkerCrashed")
    assert (
        crashed["error_message"]
        == "worker crashed: process w:1 was killed by signal SIGSEGV while running stage 'work'"
    )
    assert all(_item(ledger, n)["status"] == "succeeded" for n in "acde")
    assert coordinator.progress.done == 4


def test_several_suspects_of_a_crash_are_tried_alone_before_blame(ledger: Ledger) -> None:
    seen: list[list[str]] = []

    def fate(wire: WireItem) -> Any:
        return "crash-batch" if wire["id"] == "x" else "ok"

    coordinator = _run(ledger, fate, ["x", "y", "z"], retries=0)
    seen = coordinator.engine_chunks  # type: ignore[attr-defined]
    assert ["x"] in seen  # tried alone
    assert _item(ledger, "x")["status"] == "failed"
    assert _item(ledger, "y")["status"] == _item(ledger, "z")["status"] == "succeeded"
    assert _item(ledger, "y")["attempts"] == 1


def test_non_retryable_errors_fail_at_once(ledger: Ledger) -> None:
    _run(ledger, lambda w: _error("CorruptInputError", "not an image", retry=False), ["a"], retries=5)
    assert _item(ledger, "a")["attempts"] == 1


def test_duplicates_run_once_across_commits_and_the_watermark_covers_every_entry(ledger: Ledger) -> None:
    names = [f"n{i}" for i in range(2500)] + ["n1", "n2", "n2400"]
    coordinator = _run(ledger, lambda w: "ok", names)
    assert coordinator.progress.done == 2500
    job = ledger.get_job("job-1")
    assert job.entries == 2503
    assert job.ingested
    assert job.duplicates == 3
    assert ledger.counts("job-1")["succeeded"] == 2500


@pytest.mark.parametrize("workers", [1, 2])
def test_the_last_chunks_hold_less_than_a_batch_where_workers_share_them(ledger: Ledger, workers: int) -> None:
    """Whole batches until the end nears; then, with workers to share them, chunks of fewer items
    than a batch, so no worker runs a last full batch alone while the others idle."""
    names = [f"i{n:03d}" for n in range(96)]
    coordinator = _run(ledger, lambda wire: "ok", names, batch_size=8, workers=workers)
    chunks: list[list[str]] = coordinator.engine_chunks  # type: ignore[attr-defined]
    assert sorted(i for chunk in chunks for i in chunk) == names  # each item once
    sizes = [len(chunk) for chunk in chunks]
    if workers == 1:
        assert all(size % 8 == 0 for size in sizes), sizes  # one worker: nothing to balance
    else:
        assert sizes[0] % 8 == 0, sizes
        assert min(sizes) < 8, sizes
        assert sizes[-4:] == sorted(sizes[-4:], reverse=True), sizes
        assert sizes[-1] == 1, sizes
