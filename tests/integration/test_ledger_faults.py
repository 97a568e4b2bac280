"""The ledger under faults: a write that fails, a connection reset, a kill that leaves rows ahead
of the watermark, and processes that open, create or claim the same thing at the same instant.
Each test drives the real `shoal` command against a real SQLite file or PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from shoal.prestart import settings_for
from shoal.project import load_project
from shoal.runner import prepare
from shoal.sources import open_inputs
from shoal.store import Ledger
from shoal.store.rows import PENDING_TAIL, failure_row, item_head, succeeded_row, with_failure, with_success
from tests.conftest import MakeProject
from tests.helpers import SLOW_SETUP, kill_9, read_results, shoal_cli, start_cli, succeeded_when

pytestmark = pytest.mark.integration

#: logs "<coordinator pid> <item id>" for every item it processes
LOGGED = """
import os, time
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("logged")
LOG = Path({log!r})

@pipeline.stage()
def work(item):
    time.sleep({delay})
    with LOG.open("a") as log:
        log.write(f"{{os.getppid()}} {{item.id}}\\n")
    return {{"text": item.read_text().strip()}}
"""

#: cheap items from the rows of a CSV file
ROWS = """
import shoal
pipeline = shoal.Pipeline("rows")

@pipeline.stage()
def double(item):
    return {"twice": 2 * int(item.meta["n"])}
"""


def _csv(path: Path, rows: int) -> Path:
    path.write_text("n\n" + "".join(f"{i}\n" for i in range(rows)))
    return path


def _processed(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


def _at_once(commands: list[list[str]], cwd: Path, env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """Start several processes so that their Python code begins at the same instant."""
    start_at = time.time() + 2.0
    wrapper = "import sys, time, runpy; t = float(sys.argv.pop(1))\nwhile time.time() < t: pass\n"
    wrapper += "sys.argv[0] = 'shoal'; sys.exit(__import__('shoal.cli').cli.main(sys.argv[1:]))"
    running = [
        subprocess.Popen(
            [sys.executable, "-c", wrapper, str(start_at), *command],
            cwd=cwd,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    done = []
    for process in running:
        out, err = process.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a ledger on it fills up a few thousand items into a run."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; run the tests as root (CI does)")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_ledger_stops_the_run_in_one_line_and_the_same_command_recovers_every_item(
    home: Path, make_project: MakeProject, small_disk: Path
) -> None:
    project = make_project(ROWS)
    rows = _csv(home / "numbers.csv", 20_000)
    command = ("run", str(project), "--input", str(rows), "--workers", "2", "--out", str(home / "out"))
    env = {"SHOAL_DB_URL": f"sqlite:///{small_disk / 'ledger.db'}"}

    full = shoal_cli(*command, cwd=home, env=env, timeout=300)
    assert full.returncode == 2, full.stderr
    assert "Traceback" not in full.stderr
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("shoal: error: cannot write to the ledger"), full.stderr
    assert "full" in last

    subprocess.run(["mount", "-o", "remount,size=256m", str(small_disk)], check=True)
    ledger = Ledger(env["SHOAL_DB_URL"])
    try:
        (job,) = ledger.list_jobs()
        assert job.state != "running", "the failed run left its job marked running"
    finally:
        ledger.close()

    again = shoal_cli(*command, cwd=home, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    results = read_results(home / "out")
    assert sorted(r["result"]["twice"] for r in results) == [2 * i for i in range(20_000)]


def test_a_postgres_connection_reset_mid_run_loses_nothing(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path], postgres_url: str
) -> None:
    log = home / "processed.log"
    project = make_project(LOGGED.format(log=str(log), delay=0.01))
    command = ("run", str(project), "--input", str(inputs(400)), "--workers", "2", "--out", str(home / "out"))
    running = start_cli(*command, cwd=home, env={"SHOAL_DB_URL": postgres_url})
    admin = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    try:
        deadline = time.monotonic() + 60
        while len(_processed(log)) < 50:
            assert time.monotonic() < deadline
            assert running.poll() is None, running.communicate()[1]
            time.sleep(0.02)
        with admin.connect() as conn:  # every connection of the coordinator is cut
            reset = conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            ).fetchall()  # fmt: skip
        assert reset
        _, stderr = running.communicate(timeout=120)
    finally:
        admin.dispose()
    assert running.returncode == 0, stderr
    results = read_results(home / "out")
    assert len(results) == len({r["id"] for r in results}) == 400


def test_resume_recognises_rows_a_killed_run_wrote_ahead_of_its_watermark(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    """A run killed in its first second can leave settled rows while the watermark is still 0:
    item 0 was still in memory. The next run must take those rows as they are."""
    log = home / "processed.log"
    project = make_project(LOGGED.format(log=str(log), delay=0.0))
    listing = inputs(30)
    command = ("run", str(project), "--input", str(listing), "--workers", "2", "--retries", "2")
    entries = list(open_inputs([str(listing)]))

    # the job as that killed run left it: rows written past entry 0, the watermark still at 0
    ledger = Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")
    try:
        loaded = load_project(project)
        plan = prepare(ledger, loaded, settings_for(loaded, [str(listing)], {"retries": 2}))
        job = plan.job
        rows = []
        for seq, entry in list(enumerate(entries))[1:13]:
            head = item_head(job.num, entry.id, seq, entry.input, entry.uri, None)
            if seq % 3 == 0:  # failed once, its retry due: still pending
                error = {"stage": "work", "type": "OSError", "message": "flaky"}
                rows.append(with_failure(head, failure_row(job.num, entry.id, "pending", 1, error)))
            elif seq == 5:  # failed for good
                error = {"stage": "work", "type": "ValueError", "message": "bad", "retry": False}
                rows.append(with_failure(head, failure_row(job.num, entry.id, "failed", 1, error)))
            else:  # done: must not run again
                done = succeeded_row(job.num, entry.id, 1, "w:1", 1.0, 2.0, "{}", '{"text": "earlier"}')
                rows.append(with_success(head, done))
        rows.append(item_head(job.num, entries[13].id, 13, entries[13].input, entries[13].uri, None) + PENDING_TAIL)
        ledger.record(job.id, new=rows, entries=0)
    finally:
        ledger.close()

    resumed = shoal_cli(*command, cwd=home)
    assert resumed.returncode == 1, resumed.stderr  # the item failed for good: the job completed with errors
    ran = Counter(item for _, item in _processed(log))
    recorded_done = {entries[seq].id for seq in range(1, 13) if seq % 3 and seq != 5}
    assert not recorded_done & set(ran), "an item recorded as succeeded ran again"
    assert all(n == 1 for n in ran.values())
    assert set(ran) == {e.id for e in entries} - recorded_done - {entries[5].id}
    ledger = Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")
    try:
        (job,) = ledger.list_jobs()
        assert ledger.counts(job.id) == {"pending": 0, "succeeded": 29, "failed": 1, "cancelled": 0}
        assert job.state == "completed_with_errors"
    finally:
        ledger.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_processes_opening_a_new_ledger_at_once_all_succeed(database: str, tmp_path: Path, request: Any) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    start_at = time.time() + 2.0
    code = f"import time\nwhile time.time() < {start_at}: pass\nfrom shoal.store import Ledger\nLedger({url!r}).close()"
    opening = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [process.communicate(timeout=60)[1] for process in opening]
    assert [process.returncode for process in opening] == [0, 0, 0, 0], errors


def _simultaneous(setup: str, body: str, processes: int, rounds: int) -> list[str]:
    """Run ``setup``, then ``body`` once a round, in several processes; round r of every process
    begins at the same instant. The code sees ``me`` (the process number) and ``r``; it prints."""
    start = time.time() + 3.0
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    script = (
        f"import sys, time\nme = int(sys.argv[1])\n{setup.strip()}\nfor r in range({rounds}):\n"
        f"    start = {start} + r * 0.3\n    while time.time() < start: pass\n{indented}\n"
    )
    running = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(n)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for n in range(processes)
    ]
    lines = []
    for process in running:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        lines += out.splitlines()
    return lines


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_claims_made_at_the_same_instant_have_one_winner(database: str, tmp_path: Path, request: Any) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    ledger = Ledger(url)
    try:
        for r in range(10):
            fields = {"id": f"job-{r}", "pipeline": "p", "fingerprint": "f", "project": "/p", "inputs": "[]"}
            fields |= {"options": "{}", "out": "/out", "state": "pending", "created_at": 0.0, "updated_at": 0.0}
            fields |= {"finished_at": None, "entries": 0, "ingested": False, "owner": None, "heartbeat_at": None}
            ledger.open_job(f"key-{r}", lambda fields=fields: fields)
    finally:
        ledger.close()
    setup = f"from shoal.errors import JobBusyError\nfrom shoal.store import Ledger\nledger = Ledger({url!r})"
    claim = """
try:
    ledger.claim(f"job-{r}", f"claimer-{me}:1")  # another host's name: judged by heartbeat alone
    print("won", r)
except JobBusyError:
    print("lost", r)
"""
    lines = _simultaneous(setup, claim, processes=4, rounds=10)
    winners = Counter(line.split()[1] for line in lines if line.startswith("won"))
    assert winners == Counter({str(r): 1 for r in range(10)}), "a job got two owners"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_same_job_prepared_at_the_same_instant_is_one_job(
    database: str, home: Path, make_project: MakeProject, inputs: Callable[[int], Path], request: Any
) -> None:
    url = f"sqlite:///{home / 'ledger.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    Ledger(url).close()  # an existing ledger
    project = make_project(LOGGED.format(log=str(home / "log"), delay=0))
    listings = [str(inputs(3, name=f"round-{r}")) for r in range(5)]  # each round a job of its own
    setup = f"""
from shoal.project import load_project
from shoal.prestart import settings_for
from shoal.runner import prepare
from shoal.store import Ledger
project = load_project({str(project)!r})
plans = [settings_for(project, [listing], {{"db_url": {url!r}}}) for listing in {listings!r}]
ledger = Ledger({url!r})
"""
    prepare_job = "print(r, prepare(ledger, project, plans[r]).job.id)"
    lines = _simultaneous(setup, prepare_job, processes=4, rounds=5)
    jobs = {tuple(line.split()) for line in lines}
    assert len(jobs) == 5, sorted(jobs)
    ledger = Ledger(url)
    try:
        assert len(ledger.list_jobs()) == 5
    finally:
        ledger.close()


def test_two_runs_started_at_the_same_instant_make_one_job(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    log = home / "processed.log"
    project = make_project(LOGGED.format(log=str(log), delay=0.005))
    Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}").close()  # an existing ledger
    command = ["run", str(project), "--input", str(inputs(300)), "--workers", "1"]

    first, second = _at_once([command, command], home, {})
    assert sorted([first.returncode, second.returncode]) in ([0, 0], [0, 2]), (first.stderr, second.stderr)
    busy = first if first.returncode == 2 else second
    if busy.returncode == 2:
        assert "is being run by" in busy.stderr
    ran = Counter(item for _, item in _processed(log))
    assert len(ran) == 300
    assert set(ran.values()) == {1}, "an item was processed by both runs"
    ledger = Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")
    try:
        assert len(ledger.list_jobs()) == 1
    finally:
        ledger.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_unfinished_job_claimed_by_two_runs_at_once_has_one_owner(
    database: str, home: Path, make_project: MakeProject, inputs: Callable[[int], Path], request: Any
) -> None:
    url = f"sqlite:///{home / 'ledger.db'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    env = {"SHOAL_DB_URL": url}
    log = home / "processed.log"
    project = make_project(LOGGED.format(log=str(log), delay=0.02))
    command = ["run", str(project), "--input", str(inputs(120)), "--workers", "2"]

    killed = start_cli(*command, cwd=home, env=env)
    deadline = time.monotonic() + 60
    while len(_processed(log)) < 20:
        assert time.monotonic() < deadline, killed.communicate()[1]
        time.sleep(0.02)
    kill_9(killed)
    time.sleep(0.5)  # its workers die with it
    before = len(_processed(log))

    first, second = _at_once([command, command], home, env)
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], (first.stderr, second.stderr)
    refused = first if first.returncode == 2 else second
    assert "is being run by" in refused.stderr
    assert "--wait" in refused.stderr
    after = _processed(log)[before:]
    assert len({pid for pid, _ in after}) == 1, "two coordinators ran the job"
    assert len(after) == len({item for _, item in after})

    waited = shoal_cli(*command, "--wait", cwd=home, env=env)  # finished by now: reported, not redone
    assert waited.returncode == 0
    assert "already ran" in waited.stderr


GATED = """
import os, time
from pathlib import Path
import shoal

pipeline = shoal.Pipeline("logged")
LOG, GATE = Path({log!r}), Path({gate!r})

@pipeline.stage()
def work(item):
    if int(item.read_text()) >= 50:  # the first items finish (their chunks hold no gated item)
        while not GATE.exists():  # the job stays running until the test opens the gate
            time.sleep(0.02)
    with LOG.open("a") as log:
        log.write(f"{{os.getppid()}} {{item.id}}\\n")
    return {{"text": item.read_text().strip()}}
"""


def test_wait_takes_over_once_the_running_process_is_done(
    home: Path, make_project: MakeProject, inputs: Callable[[int], Path]
) -> None:
    log, gate = home / "processed.log", home / "gate"
    project = make_project(GATED.format(log=str(log), gate=str(gate)))
    command = ("run", str(project), "--input", str(inputs(100)), "--workers", "2")

    running = start_cli(*command, cwd=home)
    try:
        succeeded_when(home, 5)
        refused = shoal_cli(*command, cwd=home)
        assert refused.returncode == 2
        assert "is being run by" in refused.stderr
        waiting = start_cli(*command, "--wait", cwd=home)
        gate.touch()
        _, waited_err = waiting.communicate(timeout=180)
        running.communicate(timeout=60)
    finally:
        gate.touch()
        running.kill()
        running.communicate()
    assert running.returncode == 0
    assert waiting.returncode == 0, waited_err
    assert "already ran" in waited_err
    assert len(_processed(log)) == 100


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """``mount(name, options)``: a tmpfs of its own (``ro``, ``size=64k``...); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; run the tests as root (CI does)")
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_read_only_run_folder_is_one_line_and_the_next_run_can_pick_another(
    home: Path, make_project: MakeProject, mount_tmpfs: Callable[[str, str], Path]
) -> None:
    project = make_project(ROWS)
    rows = _csv(home / "numbers.csv", 50)
    read_only = mount_tmpfs("read-only", "ro,size=1m")
    command = ("run", str(project), "--input", str(rows), "--workers", "1")

    refused = shoal_cli(*command, "--out", str(read_only / "run"), cwd=home)
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(f"shoal: error: cannot write the run folder {read_only}")
    assert "--out" in refused.stderr

    moved = shoal_cli(*command, "--out", str(home / "writable"), cwd=home)
    assert moved.returncode == 0, moved.stderr
    assert len(read_results(home / "writable")) == 50
    ledger = Ledger(f"sqlite:///{home / 'shoal-runs' / 'ledger.db'}")
    try:
        (job,) = ledger.list_jobs()
        assert job.out == str(home / "writable")
    finally:
        ledger.close()


def test_a_full_disk_while_writing_the_report_is_one_line_and_the_report_can_go_elsewhere(
    home: Path, make_project: MakeProject, mount_tmpfs: Callable[[str, str], Path]
) -> None:
    project = make_project(ROWS)
    rows = _csv(home / "numbers.csv", 3000)
    small = mount_tmpfs("small", "size=64k")
    command = ("run", str(project), "--input", str(rows), "--workers", "2")

    full = shoal_cli(*command, "--out", str(small / "run"), cwd=home)
    assert full.returncode == 2, full.stderr
    assert "Traceback" not in full.stderr
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith(f"shoal: error: cannot write the run folder {small / 'run'}: No space left on device")

    again = shoal_cli(*command, "--out", str(home / "roomy"), cwd=home)
    assert again.returncode == 0, again.stderr
    assert "already ran" in again.stderr  # the items were done: only the report is written, here
    assert sorted(r["result"]["twice"] for r in read_results(home / "roomy")) == [2 * i for i in range(3000)]


def test_workers_started_before_a_run_folder_on_another_file_system_copy_their_log_there(
    home: Path, make_project: MakeProject, mount_tmpfs: Callable[[str, str], Path]
) -> None:
    """The scratch log cannot be linked across file systems: it is copied, none of the worker's own
    output lost (its child's, written after the switch, goes to the scratch file)."""
    elsewhere = mount_tmpfs("elsewhere", "size=8m")
    rows = _csv(home / "numbers.csv", 4)
    run = elsewhere / "run"
    result = shoal_cli("run", str(make_project(SLOW_SETUP)), "-i", str(rows), "-w", "2", "--out", str(run), cwd=home)
    assert result.returncode == 0, result.stderr
    logs = sorted((run / "logs").glob("*.log"))
    assert len(logs) == 2
    for log in logs:
        assert [line for line in log.read_text().splitlines() if line.startswith("setup")] == [
            "setup began",
            "setup ended",
        ]
