"""The embedded engine: worker processes on this machine, fed over pipes.

Each worker is a fresh interpreter that imports only the worker runtime and the project, so it
stays small; or, where that makes no difference to it, a fork of this process, which skips the
interpreter's start and shoal's imports (shoal.engines.forked).

A worker that hangs past the item timeout is killed; a worker that dies is replaced; either way
the chunk it held is reported lost with the items it was running.

Each worker leads a process group of its own, and is killed as a group: a stage that forked a
child (which may hold the worker's pipes open) leaves nothing behind. A worker's death is seen
through its process (a pidfd), not through the end of its pipe, which such a child keeps open.
The pipes are non-blocking on this side, so a worker that stops reading never stops the engine.

Each worker writes its output to a log file of its own, ``<log dir>/<host>-<pid>.log``. With
``carry_logs`` (a cluster worker's engine) what it wrote while running a chunk goes back with the
chunk's report, for the coordinator to put in the job's run folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal._json import encode, loads
from shoal._pipe import Receiver, Sender, wait
from shoal.engines import Census, Chunk, ChunkLost, Event, ItemsDone, WorkerFailed, WorkerReady
from shoal.engines._logs import Tail, log_name
from shoal.engines._slots import SlotBoard
from shoal.engines.forked import Forked, fork_is_safe, fork_worker
from shoal.wire import Report

log = logging.getLogger(__name__)
PREFETCH = 2  #: chunks queued per worker, so a worker never waits for its next chunk
STOP_GRACE = 5.0  #: seconds a worker gets to exit after being asked


@dataclass
class _Worker:
    slot: int
    process: subprocess.Popen[bytes] | Forked
    inbox: Sender  #: we write
    outbox: Receiver  #: we read
    exited: int | None  #: a pidfd, readable once the process has exited (None where Linux has none)
    spawned: float
    tail: Tail | None  #: its log file, where its output is carried back with its reports
    name: str = ""
    ready: bool = False
    chunks: deque[Chunk] = field(default_factory=deque)
    killed_for: str = ""  #: why we killed it, if we did
    leaving: bool = False  #: asked to stop after its chunks (the engine shrank): takes none, is not replaced


class LocalEngine:
    """N worker processes on this machine."""

    def __init__(
        self,
        project: Path,
        fingerprint: str,
        workers: int,
        *,
        log_dir: Path | None = None,
        carry_logs: bool = False,
        python_path: tuple[str, ...] = (),
        capacity: int | None = None,
        log_later: bool = False,
        fork: bool = False,
    ) -> None:
        self.project = project
        self.fork = fork  #: start()'s workers may be forked from this process (shoal.engines.forked)
        self.python_path = python_path  #: folders the processes import from first (a project's requirements)
        self.fingerprint = fingerprint
        self._size = max(1, workers)
        self.log_dir = log_dir
        self.carry_logs = carry_logs and log_dir is not None  #: reports carry what each process wrote
        self._workers: dict[int, _Worker] = {}
        self._started = False
        self._tmp = Path(tempfile.mkdtemp(prefix="shoal-engine-"))
        if log_later and log_dir is None:  # a scratch log until log_to() names the real folder
            self.log_dir = self._tmp / "logs"
            self._scratch_logs = True
        else:
            self._scratch_logs = False
        self._capacity = max(self._size, capacity or 0)  #: the most workers `resize` may ask for
        self._board = SlotBoard(self._tmp / "slots", self._capacity, create=True)
        self._stopping = False

    @property
    def workers(self) -> int:
        return self._size

    @property
    def chunk_seconds(self) -> float:
        return 0.1  # a round trip over a pipe costs well under a millisecond

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers.values()]

    def start(self) -> None:
        if not self._started:
            self._started = True
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
            for slot in range(self._size):
                self._spawn(slot, fork=self.fork)

    def log_to(self, folder: Path) -> None:
        """Workers started before their log folder was known (``log_later``) go on logging there,
        their scratch log's content first; workers started from now on log there at once."""
        if not self._scratch_logs:
            return
        self._scratch_logs = False
        scratch, self.log_dir = self.log_dir, folder
        folder.mkdir(parents=True, exist_ok=True)
        live = set()
        for worker in self._workers.values():
            with contextlib.suppress(OSError):  # one that died meanwhile: its log is moved below
                worker.inbox.send(encode({"op": "log", "folder": str(folder)}))
                live.add(log_name(_process_name(worker.process)))
        for log in scratch.glob("*.log") if scratch is not None else ():
            if log.name not in live:  # a worker that died starting: what it said goes with the rest
                with contextlib.suppress(OSError), (folder / log.name).open("ab") as target:
                    target.write(log.read_bytes())

    def capacity(self) -> int:
        return sum(PREFETCH - len(w.chunks) for w in self._serving())

    def idle(self) -> int:
        """Workers started and holding no chunk: one submitted now runs at once, behind nothing."""
        return sum(1 for w in self._serving() if w.ready and not w.chunks)

    def ready(self) -> int:
        """Workers started (project imported, setup() done)."""
        return sum(1 for w in self._serving() if w.ready)

    def alive(self) -> int:
        """Worker processes running, those leaving included (what memory holds now)."""
        return len(self._workers)

    def resize(self, workers: int) -> None:
        """Run ``workers`` workers from now: new ones start at once; the ones beyond it take no
        more chunks and exit once theirs are done (nothing they hold is lost)."""
        workers = max(1, min(workers, self._capacity))
        serving = sorted(w.slot for w in self._serving())
        free = (slot for slot in range(self._capacity) if slot not in self._workers)
        for _ in range(workers - len(serving)):
            slot = next(free, None)
            if slot is None:
                break  # every slot holds a worker that is still leaving: the rest start next time
            self._spawn(slot)
        for slot in serving[workers:]:
            worker = self._workers[slot]
            worker.leaving = True
            with contextlib.suppress(OSError):  # it is dying already
                worker.inbox.send(encode({"op": "stop"}))
        self._size = workers

    def _serving(self) -> list[_Worker]:
        return [w for w in self._workers.values() if not w.killed_for and not w.leaving]

    def submit(self, chunk: Chunk) -> None:
        worker = min(self._serving(), key=lambda w: (len(w.chunks), not w.ready))
        worker.chunks.append(chunk)
        message = {"op": "chunk", "chunk": chunk.id, "job": chunk.job.to_dict(), "items": chunk.items}
        with contextlib.suppress(OSError):  # it is dying; its chunks are reported lost when it is gone
            worker.inbox.send(encode(message))

    def poll(self, timeout: float, *, wake: int | None = None) -> list[Event]:
        """Wait up to ``timeout`` for workers to report; a byte on the ``wake`` pipe (a file
        descriptor another thread writes to) ends the wait early."""
        workers = list(self._workers.values())
        watched = [w.outbox.fd for w in workers] + [w.exited for w in workers if w.exited is not None]
        sending = [w.inbox.fd for w in workers if w.inbox.waiting]
        readable, writable = wait(watched + ([wake] if wake is not None else []), sending, timeout)
        events: list[Event] = []
        for worker in workers:
            if worker.inbox.fd in writable:
                with contextlib.suppress(OSError):
                    worker.inbox.flush()
            if worker.outbox.fd in readable:
                events += self._read(worker)
            if worker.outbox.ended or worker.exited in readable or (worker.exited is None and _exits(worker, 0)):
                events += self._lost(worker)
        self._enforce_timeouts()
        return events

    def census(self) -> Census:
        """Live workers, and those whose slot says they are running an item (no message needed)."""
        live = [w for w in self._workers.values() if not w.killed_for and not _exits(w, 0.0)]
        return Census(len(live), sum(self._board.read(w.slot).count > 0 for w in live))

    def running(self) -> list[dict[str, Any]]:
        """Each live process: its pid and name, and the items it runs now (their job, stage,
        seconds so far and progress), from the slot board; safe to call from another thread."""
        rows = []
        for worker in list(self._workers.values()):
            posting = self._board.read(worker.slot)
            chunks = list(worker.chunks)
            chunk = chunks[0] if chunks else None
            busy = chunk is not None and posting.count > 0 and posting.chunk == chunk.id
            if chunk is None or not busy:
                rows.append({"pid": worker.process.pid, "name": worker.name, "job": None, "items": []})
                continue
            items = [it["id"] for it in chunk.items[posting.first : posting.first + posting.count]]
            rows.append(
                {
                    "pid": worker.process.pid,
                    "name": worker.name,
                    "job": chunk.job.job_id,
                    "items": items,
                    "stage": posting.stage,
                    "seconds": round(time.monotonic() - posting.started, 1),
                    "done": posting.done,  #: what the stage said of its progress (item.progress)
                    "total": posting.total,  #: 0: not said
                }
            )
        return rows

    def stop(self, *, kill: bool = False) -> None:
        self._stopping = True
        for worker in self._workers.values():
            if kill:
                _kill(worker.process)
            else:
                with contextlib.suppress(OSError):
                    worker.inbox.send(encode({"op": "stop"}))
        deadline = time.monotonic() + STOP_GRACE
        for worker in self._workers.values():
            while worker.inbox.waiting and time.monotonic() < deadline:  # the stop may wait behind a chunk
                with contextlib.suppress(OSError):
                    wait([], [worker.inbox.fd], 0.05)
                    worker.inbox.flush()
            if not _exits(worker, max(0.0, deadline - time.monotonic())):
                log.warning("worker %s did not stop within %g s: killed", worker.name, STOP_GRACE)
            _kill(worker.process)  # what its stages started goes with it (before it is reaped)
            worker.process.wait()
            self._close(worker)
        self._workers.clear()
        self._board.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    # --- internals -------------------------------------------------------------------------
    def _spawn(self, slot: int, *, fork: bool = False) -> None:
        self._board.reset(slot)
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        args = [str(to_worker_r), str(from_worker_w), str(self._board.path), str(slot), str(os.getpid())]
        args.append(str(self.log_dir or ""))  # it opens its own log file, once it knows its pid
        process: subprocess.Popen[bytes] | Forked
        if fork and self._may_fork():
            process = fork_worker(args, (to_worker_r, from_worker_w))
        else:
            process = subprocess.Popen(
                [sys.executable, "-m", "shoal.engines.local_worker", *args],
                pass_fds=(to_worker_r, from_worker_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # stderr: ours, until it has its log (only a broken interpreter speaks)
                start_new_session=True,  # Ctrl-C at the terminal reaches the coordinator only; killed as a group
                env=self._environment(),
            )
        os.close(to_worker_r)
        os.close(from_worker_w)
        worker = _Worker(
            slot,
            process,
            Sender(to_worker_w),
            Receiver(from_worker_r),
            _pidfd(process.pid),
            time.monotonic(),
            Tail(self.log_dir / log_name(_process_name(process))) if self.carry_logs and self.log_dir else None,
        )
        self._workers[slot] = worker
        worker.inbox.send(encode({"op": "start", "project": str(self.project), "fingerprint": self.fingerprint}))

    def _may_fork(self) -> bool:
        """Fork this process rather than start a fresh interpreter: only where the child would be
        what a fresh one is (see shoal.engines.forked)."""
        return not self.python_path and fork_is_safe()

    def _environment(self) -> dict[str, str] | None:
        if not self.python_path:
            return None  # this process's own
        path = [*self.python_path, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}

    def _receive(self, worker: _Worker, message: dict[str, Any]) -> list[Event]:
        op = message["op"]
        if op == "done":
            chunk = worker.chunks[0]
            report = Report.from_dict(message)
            if message.get("last"):
                worker.chunks.popleft()
                report.logs.update(_output(worker))
            return [ItemsDone(chunk.id, worker.name, report)]
        worker.name = str(message["worker"])
        if op == "ready":
            worker.ready = True
            return [WorkerReady(worker.name, time.monotonic() - worker.spawned)]
        return [WorkerFailed(worker.name, str(message["message"]))]

    def _read(self, worker: _Worker) -> list[Event]:
        events: list[Event] = []
        for frame in worker.outbox.receive():
            events += self._receive(worker, loads(frame))
        return events

    def _lost(self, worker: _Worker) -> list[Event]:
        """The worker exited (or closed its pipe): report its chunks and start a replacement."""
        _kill(worker.process)  # its stages' children too, and the worker itself if it only closed the pipe
        code = worker.process.wait()
        events = self._read(worker)  # what it reported before it went
        posting = self._board.read(worker.slot)
        kind = "Timeout" if worker.killed_for else "WorkerCrashed"
        message = worker.killed_for or f"worker process {worker.name or worker.process.pid} {_exit_text(code)}"
        if not worker.ready and not worker.killed_for and not worker.leaving and not self._stopping:
            events.append(WorkerFailed(worker.name or f"pid {worker.process.pid}", f"{message} while starting"))
        for i, chunk in enumerate(worker.chunks):
            running = i == 0 and posting.count > 0 and posting.chunk == chunk.id
            suspects = (
                [it["id"] for it in chunk.items[posting.first : posting.first + posting.count]] if running else []
            )
            stage = posting.stage if running else -1
            logs = _output(worker) if i == 0 else {}  # how it died, if it could say
            events.append(ChunkLost(chunk.id, worker.name, kind, message, stage, suspects, logs))
        self._close(worker)
        del self._workers[worker.slot]
        if not self._stopping and worker.ready and not worker.leaving:
            self._spawn(worker.slot)
        return events

    @staticmethod
    def _close(worker: _Worker) -> None:
        worker.inbox.close()
        worker.outbox.close()
        if worker.tail is not None:
            worker.tail.close()
        if worker.exited is not None:
            os.close(worker.exited)
            worker.exited = None

    def _enforce_timeouts(self) -> None:
        """Kill a worker whose current item has run past its job's item timeout."""
        now = time.monotonic()
        for worker in self._workers.values():
            if worker.killed_for or not worker.chunks:
                continue
            timeout = worker.chunks[0].job.item_timeout
            posting = self._board.read(worker.slot)
            if not timeout or posting.count == 0 or posting.chunk != worker.chunks[0].id:
                continue
            if now - posting.started > timeout * posting.count:
                worker.killed_for = (
                    f"took longer than the {timeout:g} s item timeout; its worker {worker.name} was killed and replaced"
                )
                _kill(worker.process)


def _process_name(process: subprocess.Popen[bytes] | Forked) -> str:
    """host:pid, as the worker names itself (its name is known only once it speaks)."""
    return f"{os.uname().nodename}:{process.pid}"


def _output(worker: _Worker) -> dict[str, str]:
    """What the worker wrote since the last look, by its name, where its output is carried."""
    text = worker.tail.read() if worker.tail is not None else ""
    return {_process_name(worker.process): text} if text else {}


def _kill(process: subprocess.Popen[bytes] | Forked) -> None:
    """SIGKILL a worker's process group: the worker and whatever its stages started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()  # in case it left its group (a stage called setsid): the worker itself


def _exits(worker: _Worker, timeout: float) -> bool:
    """Whether the worker exits within ``timeout`` seconds. It is not reaped, so its process
    group can still be killed safely afterwards (its id cannot have been taken by another)."""
    if worker.exited is not None:
        return bool(wait([worker.exited], [], timeout)[0])
    try:
        worker.process.wait(timeout)  # no pidfd: reaping is the only way to know
    except subprocess.TimeoutExpired:
        return False
    return True


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when the process exits (Linux 5.3+), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
