"""The worker process of the local engine: ``python -m shoal.engines.local_worker ...``.

It speaks length-prefixed JSON over two inherited pipes, posts what it is running on the slot
board, and dies with its coordinator (the kernel kills it when the parent goes away). Its output
(and its stages' children's) goes to its own log file, with the tracebacks of the first failures
of each job, and is flushed before every report, so a report's items' output is in the file.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from shoal._json import encode, loads
from shoal._pipe import PipeEnd
from shoal.engines._logs import log_name, open_log
from shoal.wire import Failure, JobSpec, Report

FLUSH_EVERY = 0.02  #: seconds; report finished items at least this often within a chunk
TRACEBACKS = 20  #: failures of one job whose traceback a process writes to its log


def main(argv: list[str]) -> int:
    inbox_fd, outbox_fd, slots_path, slot, parent, log_dir = argv
    _log_to(log_dir)
    _die_with_parent(int(parent))
    faulthandler.enable()  # a segfaulting stage leaves its Python traceback in the worker log
    inbox = PipeEnd(int(inbox_fd))
    outbox = PipeEnd(int(outbox_fd))
    from shoal.engines._slots import SlotBoard
    from shoal.worker.runtime import Runtime, worker_name

    board = SlotBoard(Path(slots_path), int(slot) + 1)
    messages = _drain(inbox)
    start = messages.get()
    if start is None:
        return 0
    current = {"chunk": -1, "offset": 0}

    def probe(first: int, count: int, stage: int) -> None:
        board.post(int(slot), current["chunk"], current["offset"] + first, count, stage)

    def progress(done: int, total: int) -> None:
        board.progress(int(slot), done, total)

    began = time.monotonic()
    try:
        runtime = Runtime.start(start["project"], start["fingerprint"], probe, progress)
    except Exception as exc:
        _send(outbox, {"op": "failed", "worker": worker_name(), "message": _describe(exc)})
        return 3
    _send(outbox, {"op": "ready", "worker": worker_name(), "startup_s": time.monotonic() - began})
    group = runtime.project.pipeline.group_size
    failures = _FailureLog()
    while (message := messages.get()) is not None and message["op"] == "chunk":
        current["chunk"] = message["chunk"]
        job = JobSpec.from_dict(message["job"])
        _run_chunk(runtime, job, outbox, message["chunk"], message["items"], group, current, failures)
        board.idle(int(slot))
    runtime.close()
    return 0


def _run_chunk(
    runtime: Any,
    job: JobSpec,
    outbox: PipeEnd,
    chunk: int,
    items: list[dict[str, Any]],
    group: int,
    current: dict[str, int],
    failures: _FailureLog,
) -> None:
    pending = Report()
    flushed = time.perf_counter()
    for offset in range(0, len(items), group):
        current["offset"] = offset
        report = runtime.run(items[offset : offset + group], job)
        failures.write(job.job_id, report.failed)
        pending.extend(report)
        if time.perf_counter() - flushed > FLUSH_EVERY and offset + group < len(items):
            _send(outbox, {"op": "done", "chunk": chunk, **pending.to_dict()})
            pending, flushed = Report(), time.perf_counter()
    _send(outbox, {"op": "done", "chunk": chunk, "last": True, **pending.to_dict()})


def _drain(inbox: PipeEnd) -> queue.SimpleQueue[dict[str, Any] | None]:
    """Read the coordinator's messages on a thread, so its writes never wait on our work. A new
    log folder is acted on here at once: setup() may be loading a model for a while yet."""
    messages: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            while True:
                message = loads(inbox.recv())
                if message["op"] == "log":
                    _move_log(message["folder"])
                else:
                    messages.put(message)
        except (EOFError, OSError):
            messages.put(None)  # the coordinator is gone or closed the pipe: finish and exit

    threading.Thread(target=read, name="shoal-inbox", daemon=True).start()
    return messages


def _send(outbox: PipeEnd, message: dict[str, Any]) -> None:
    if message["op"] == "done":  # what its items printed is in the log before the report is read
        sys.stdout.flush()
        sys.stderr.flush()
    outbox.send(encode(message))


class _FailureLog:
    """Writes the tracebacks of a job's failed items to the log, the first TRACEBACKS of them (a
    batch that failed together once); every one is kept with its item in the ledger anyway."""

    def __init__(self) -> None:
        self.written: Counter[str] = Counter()  #: tracebacks written, by job

    def write(self, job: str, failed: list[Failure]) -> None:
        together: dict[tuple[str, str], list[str]] = {}
        for failure in failed:
            error = failure["error"]
            key = (error["stage"], error.get("traceback") or error["message"])
            together.setdefault(key, []).append(failure["id"])
        for (stage, text), ids in together.items():
            self.written[job] += 1
            if self.written[job] <= TRACEBACKS:
                items = f"item {ids[0]}" if len(ids) == 1 else f"items {', '.join(ids[:10])}{', ...' * (len(ids) > 10)}"
                print(f"shoal: job {job}: {items} failed in stage {stage!r}:\n{text.rstrip()}", file=sys.stderr)
            elif self.written[job] == TRACEBACKS + 1:
                print(f"shoal: job {job}: more items failed; their tracebacks are kept with them only", file=sys.stderr)


def _describe(exc: Exception) -> str:
    from shoal.errors import ShoalError

    return str(exc) if isinstance(exc, ShoalError) else f"{type(exc).__name__}: {exc}"


_log: list[Path] = []  #: the log file we write to now (none: our output goes nowhere)


def _log_to(folder: str) -> None:
    """Send our output, and our stages' children's, to our own log file (or nowhere)."""
    fd = open_log(Path(folder)) if folder else os.open(os.devnull, os.O_WRONLY)
    if folder:
        _log[:] = [_own_log(folder)]
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _move_log(folder: str) -> None:
    """Go on writing in ``folder`` (the run folder's logs, known now). On the same file system the
    scratch log itself is linked there, so what we and the processes setup() started write goes
    on into it; else it is copied there first, and what is written while we switch after it."""
    sys.stdout.flush()
    sys.stderr.flush()
    scratch = _log[0] if _log else None
    if scratch is not None:
        try:
            os.link(scratch, _own_log(folder))
        except OSError:  # another file system, or a stale log of an earlier process with our pid
            pass
        else:
            _log[:] = [_own_log(folder)]
            with contextlib.suppress(OSError):
                scratch.unlink()
            return
    fd = open_log(Path(folder))
    copied = _copy(scratch, fd, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    _copy(scratch, fd, copied)
    os.close(fd)
    _log[:] = [_own_log(folder)]
    if scratch is not None:
        with contextlib.suppress(OSError):
            scratch.unlink()


def _own_log(folder: str) -> Path:
    return Path(folder) / log_name(f"{os.uname().nodename}:{os.getpid()}")  # as open_log names it


def _copy(source: Path | None, target: int, offset: int) -> int:
    """Append ``source`` from ``offset`` to ``target``; returns where it ended."""
    if source is None:
        return offset
    with contextlib.suppress(OSError), source.open("rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(1 << 16):
            os.write(target, chunk)
            offset += len(chunk)
    return offset


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL us when the coordinator dies, so a kill -9 leaves no orphans."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before we asked
        os._exit(0)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: nothing is left to clean up, and it is slow
