"""The ledger's guarantees, settings precedence, and the run folder's files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from shoal.errors import ConfigError, JobBusyError
from shoal.metrics.ledger import JobsCollector
from shoal.outputs import export_results, flatten, utc_many
from shoal.report import scan, write_report
from shoal.run_folder import utc
from shoal.settings import RunSettings
from shoal.store import JobRecord, Ledger
from shoal.store.ledger import HEARTBEAT_STALE
from shoal.store.queries import page_jobs
from shoal.store.rows import PENDING_TAIL, item_head, succeeded_row, with_success
from shoal.store.schema import jobs


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")


def _job(ledger: Ledger, job_id: str = "job-1", out: str = "/out") -> JobRecord:
    return ledger.open_job(f"key-{job_id}", lambda: dict(
        id=job_id, pipeline="p", fingerprint="f", project="/p", inputs='["in"]', options="{}",
        out=out, state="running", created_at=time.time(), updated_at=time.time(), finished_at=None, entries=0,
        ingested=False, owner=None, heartbeat_at=None,
    ))[0]  # fmt: skip


def test_a_succeeded_item_is_never_overwritten(ledger: Ledger) -> None:
    job = _job(ledger)
    first = succeeded_row(job.num, "a", 1, "w:1", 1.0, 2.0, '{"s":1}', '{"n":1}')
    ledger.record(job.id, new=[with_success(item_head(job.num, "a", 0, "in/a", "in/a", None), first)])
    late = succeeded_row(job.num, "a", 2, "w:2", 5.0, 6.0, '{"s":1}', '{"n":2}')
    ledger.record(job.id, succeeded=[late], new=[item_head(job.num, "a", 0, "in/a", "in/a", None) + PENDING_TAIL])
    row = ledger.item(job.id, "a")
    assert row is not None
    assert (row["status"], row["result"], row["worker"]) == ("succeeded", '{"n":1}', "w:1")


def test_a_job_is_claimed_by_one_live_coordinator(ledger: Ledger, tmp_path: Path) -> None:
    job = _job(ledger)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ledger.claim(job.id, f"{os.uname().nodename}:{other.pid}")
        with pytest.raises(JobBusyError, match=f"being run by .*:{other.pid}"):
            ledger.claim(job.id, f"{os.uname().nodename}:{os.getpid()}")
    finally:
        other.kill()
        other.wait()
    ledger.claim(job.id, f"{os.uname().nodename}:{os.getpid()}")  # its owner died: taken over at once
    assert ledger.get_job(job.id).owner == f"{os.uname().nodename}:{os.getpid()}"


def test_a_job_whose_coordinator_died_without_a_word_reads_as_interrupted(ledger: Ledger) -> None:
    """A coordinator killed, or stopped by a full disk it could not even record that on, leaves
    its job marked running: readers see it interrupted, in lists, filters and metrics alike."""
    job = _job(ledger)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        ledger.claim(job.id, f"{os.uname().nodename}:{other.pid}:abc")
        assert ledger.get_job(job.id).state == "running"
        assert [j.state for j in page_jobs(ledger, state="running")[0]] == ["running"]
    finally:
        other.kill()
        other.wait()
    assert ledger.get_job(job.id).state == "interrupted"  # its process is gone: at once, on this host
    assert [j.state for j in ledger.list_jobs()] == ["interrupted"]
    with ledger.engine.begin() as conn:  # elsewhere, a heartbeat gone stale is what tells
        conn.execute(update(jobs).values(heartbeat_at=time.time() - HEARTBEAT_STALE - 1))
    assert page_jobs(ledger, state="running") == ([], 0)
    assert [j.id for j in page_jobs(ledger, state="interrupted")[0]] == [job.id]
    registry = CollectorRegistry()
    registry.register(JobsCollector(ledger))
    assert registry.get_sample_value("shoal_jobs", {"state": "interrupted"}) == 1
    assert registry.get_sample_value("shoal_jobs", {"state": "running"}) == 0


def test_bad_database_urls_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        Ledger("not a url")


def test_settings_precedence_is_flags_then_environment_then_file(monkeypatch: pytest.MonkeyPatch) -> None:
    toml = {"workers": 3, "retries": 5, "timeout": 9.0}
    monkeypatch.setenv("SHOAL_RETRIES", "4")
    monkeypatch.setenv("SHOAL_TIMEOUT", "8")
    settings = RunSettings.build(toml, timeout=7.0)
    assert (settings.workers, settings.retries, settings.timeout) == (3, 4, 7.0)
    with pytest.raises(ConfigError, match="unknown setting 'wrokers'"):
        RunSettings.build({"wrokers": 2})
    with pytest.raises(ConfigError, match="retries=-1"):
        RunSettings.build(retries=-1)


@pytest.mark.parametrize("page", [scan.PAGE, 2], ids=["in-process", "reader-process"])
def test_result_files_and_report(ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: int) -> None:
    """A job of a page at most is read through the ledger's connection; a larger one by a reader
    process of its own (here in pages of 2 rows): the files are the same."""
    monkeypatch.setattr(scan, "PAGE", page)
    out = tmp_path / "run"
    job = _job(ledger, out=str(out))
    now = time.time()
    number = ledger.start_run(job.id, "local", 2, "me:1")
    rows = []
    for n in range(3):
        head = item_head(job.num, f"i{n}", n, f"in/{n}.jpg", f"in/{n}.jpg", '{"label": "x"}' if n == 0 else None)
        result = json.dumps({"faces": n, "box": {"x": n, "y": 1}, "id": "clash"})
        seconds = f'{{"a": {0.5 + n / 10}}}'
        rows.append(
            with_success(
                head, succeeded_row(job.num, f"i{n}", 1, f"w:{n % 2}", now + n, now + n + 0.6, seconds, result)
            )
        )
    failed = (
        *item_head(job.num, "bad", 3, "in/bad.jpg", "in/bad.jpg", None),
        *(
            "failed",
            3,
            "w:1",
            now,
            now + 1,
            "{}",
            None,
            "Detect",
            "CorruptInputError",
            "in/bad.jpg: not an image",
            "tb",
        ),
    )
    ledger.record(job.id, new=[*rows, failed], entries=5, duplicates=1)
    ledger.end_run(job.id, number, "finished", 0.1)
    ledger.set_state(job.id, "failed", finished=True)

    report = write_report(ledger, job.id, out)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["i0", "i1", "i2"]
    assert records[0]["meta"] == {"label": "x"}
    assert records[1]["result"] == {"faces": 1, "box": {"x": 1, "y": 1}, "id": "clash"}
    assert records[1]["seconds"] == {"a": 0.6}
    assert records[1]["started"] == utc(now + 1)
    with (out / "results.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    assert table[1]["box.x"] == "1"
    assert table[1]["result.id"] == "clash"  # a result field named like a record column is prefixed
    assert table[0]["meta.label"] == "x"
    with (out / "errors.csv").open(newline="") as handle:
        (error,) = list(csv.DictReader(handle))
    assert error == {
        "id": "bad", "input": "in/bad.jpg", "stage": "Detect", "error_type": "CorruptInputError",
        "message": "in/bad.jpg: not an image", "attempts": "3",
    }  # fmt: skip
    assert report["items"] == {
        "total": 4,
        "pending": 0,
        "succeeded": 3,
        "failed": 1,
        "cancelled": 0,
        "retried": 1,
        "duplicates": 1,
    }
    assert report["item_seconds"]["max_item"] == "i2"
    assert report["item_seconds"]["min_item"] == "i0"
    assert report["errors"] == {"CorruptInputError": 1}
    text = (out / "performance.txt").read_text()
    for words in ("succeeded       3", "max             700 ms  (i2)", "speedup", "efficiency", "workers         2"):
        assert words in text
    assert "  CorruptInputError  1\n" in text  # the count apart from the name
    assert "is mostly start-up: its speedup and efficiency say little" in text  # a job of about a second
    assert (out / "runtime.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "throughput.png").read_bytes()[:4] == b"\x89PNG"
    export_results(ledger, job.id, out)  # idempotent: the same files again
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    here, there = _rows_both_ways(ledger, job, monkeypatch)
    assert here.num_rows == 4
    assert here.equals(there)


def _rows_both_ways(ledger: Ledger, job: JobRecord, monkeypatch: pytest.MonkeyPatch) -> tuple[pa.Table, pa.Table]:
    """A job's rows as read in this process and as read by the reader process."""
    found = []
    for page in (1000, 1):  # 4 rows: in this process, then by the reader in pages of 1
        monkeypatch.setattr(scan, "PAGE", page)
        found.append(pa.Table.from_batches(list(scan.batches(ledger, ledger.get_job(job.id)))).combine_chunks())
    return found[0], found[1]


def test_flatten_and_utc() -> None:
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": "[1,2]", "d": None}
    assert utc(0.0) == "1970-01-01T00:00:00.000Z"
    stamps = [0.0, 1796410473.9391928, 1796410473.9999996, 1.0005, None, 1700000000.123456]
    assert utc_many(stamps) == [utc(s) for s in stamps]  # the fast way gives the same text


def _counted(ledger: Ledger, job: JobRecord) -> dict[str, int]:
    """Counts the slow way, from the item rows themselves."""
    from sqlalchemy import func, select

    from shoal.store.schema import items

    with ledger.engine.connect() as conn:
        query = select(items.c.status, func.count()).where(items.c.job == job.num).group_by(items.c.status)
        found = dict(conn.execute(query).all())
    return {s: found.get(s, 0) for s in ("pending", "succeeded", "failed", "cancelled")}


def test_kept_counts_follow_every_kind_of_write(ledger: Ledger) -> None:
    from shoal.store.rows import failure_row, with_failure

    job = _job(ledger)
    heads = [item_head(job.num, f"i{n}", n, f"in/{n}", f"in/{n}", None) for n in range(8)]
    ok = succeeded_row(job.num, "i0", 1, "w", 1.0, 2.0, "{}", "{}")
    error = {"stage": "s", "type": "E", "message": "m"}
    ledger.record(
        job.id,
        new=[
            with_success(heads[0], ok),
            with_failure(heads[1], failure_row(job.num, "i1", "failed", 1, error)),
            with_failure(heads[2], failure_row(job.num, "i2", "pending", 1, error)),
            *(head + PENDING_TAIL for head in heads[3:]),
        ],
    )
    assert ledger.counts(job.id) == _counted(ledger, job) == {"pending": 6, "succeeded": 1, "failed": 1, "cancelled": 0}
    ledger.record(job.id, new=[heads[3] + PENDING_TAIL])  # written already: nothing changes
    late = [succeeded_row(job.num, i, 2, "w", 1.0, 2.0, "{}", "{}") for i in ("i0", "i2", "i3")]  # i0: done already
    ledger.record(
        job.id,
        succeeded=late,
        unfinished=[failure_row(job.num, "i4", "failed", 2, error), failure_row(job.num, "i5", "pending", 1, error)],
    )
    assert ledger.counts(job.id) == _counted(ledger, job) == {"pending": 3, "succeeded": 3, "failed": 2, "cancelled": 0}
    assert ledger.cancel(job.id) == 3
    assert ledger.counts(job.id) == _counted(ledger, job) == {"pending": 0, "succeeded": 3, "failed": 2, "cancelled": 3}


def test_results_lines_are_the_same_whichever_way_they_are_joined() -> None:
    """Arrow joins most pages of results.jsonl without a Python object a value; the row-by-row
    way (names that need escaping, mixed pages, streams) must write the same records."""
    import numpy as np
    import pyarrow as pa

    from shoal.outputs import _iso, _jsonl, _jsonl_slowly

    ok = pa.RecordBatch.from_pydict(
        {
            "id": ["a-1", "b-2"],
            "input": ["rows.csv:2", "rows.csv:3"],
            "meta": ['{"n":"1","label":"x"}', '{"n":"2","label":"y"}'],
            "result": ['{"twice":2}', '{"twice":4,"deep":{"k":[1,2]}}'],
            "seconds": ['{"s":0.5}', ""],
            "attempts": pa.array([1, 2], pa.int64()),
            "worker": ["host:1", "host:2"],
            "finished_at": [2.0, 3.0],
        }
    )
    started, finished = _iso(np.array([1.5, 2.5])), _iso(np.array([2.0, 3.0]))
    fast = [json.loads(line) for line in _jsonl(ok, started, finished).decode().splitlines()]
    slow = [
        json.loads(line)
        for line in _jsonl_slowly(ok.to_pydict(), started.to_pylist(), finished.to_pylist()).splitlines()
    ]
    assert fast == slow
    assert fast[1]["meta"] == {"n": "2", "label": "y"}
    assert fast[1]["seconds"] == {}
