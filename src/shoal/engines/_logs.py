"""Worker processes' logs: a file per process, named by host and pid, carried to the run folder.

Every worker process writes its output to ``<log dir>/<host>-<pid>.log`` on its own machine, so
processes of many `shoal worker`s sharing one log dir never write the same file, and a process
that replaces a crashed one starts a file of its own. A cluster's machines may share no disk with
the coordinator, so the output a process wrote while it ran a chunk goes back with the chunk's
report (its last TAIL_BYTES) and the coordinator appends it to the file of the same name in the
job's logs folder, off its event loop and up to FILE_BYTES a file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)
TAIL_BYTES = 64 * 1024  #: bytes of a chunk's output that travel with its report at most
FILE_BYTES = 16 * 1024 * 1024  #: bytes collected into one file of a run folder at most
MAX_FILES = 1024  #: files collected into one run folder at most: a report names its own workers
CUT = b"\n[shoal: collection stopped here, at its limit; the rest is in the worker's own log on its machine]\n"


def log_name(worker: str) -> str:
    """The log file of a worker process named ``host:pid``: ``host-pid.log``, safe as a file name
    whatever a remote worker calls itself."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", worker.replace(":", "-")).lstrip(".")
    return f"{stem or 'worker'}.log"


def open_log(folder: Path) -> int:
    """This process's own log file in ``folder``, opened for appending (created with the umask)."""
    name = log_name(f"{os.uname().nodename}:{os.getpid()}")
    return os.open(folder / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)


class Tail:
    """What a process has appended to its log file since the last read: the end of it, from a
    whole line, at most TAIL_BYTES."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._read_to = 0
        with contextlib.suppress(OSError):  # a stale file of an earlier process with this pid: not ours
            self._read_to = path.stat().st_size

    def read(self) -> str:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return ""  # the process has not created it (yet): nothing written
        end = os.fstat(self._fd).st_size
        start = max(self._read_to, end - TAIL_BYTES)
        data = os.pread(self._fd, end - start, start) if end > start else b""
        cut, self._read_to = start - self._read_to, end
        if not cut:
            return data.decode("utf-8", "replace")
        line = data.find(b"\n") + 1
        host = os.uname().nodename
        note = f"[shoal: {cut + line} bytes of output cut here; all of it is in {self.path} on {host}]\n"
        return note + data[line:].decode("utf-8", "replace")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Collector:
    """Appends the output reports carried to ``folder/<host>-<pid>.log``. ``add`` only queues it;
    a thread of its own writes what queued meanwhile in one go, so a slow disk never holds up the
    caller, and a file stops at FILE_BYTES with a line saying so. Past MAX_FILES files (worker
    names come in reports: a broken or hostile one could name any number), the rest is dropped."""

    def __init__(self, folder: Path, limit: int = FILE_BYTES) -> None:
        self.folder = folder
        self.limit = limit
        self._pending: dict[str, bytearray] = {}
        self._sizes: dict[str, int] = {}  #: bytes each file holds, or will once the queued writes land
        self._writer: ThreadPoolExecutor | None = None
        self._writing: Future[None] | None = None
        self._failed = False

    def add(self, logs: dict[str, str]) -> None:
        for worker, text in logs.items():
            name = log_name(worker)
            size = self._sizes.get(name)
            if size is None:
                if len(self._sizes) >= MAX_FILES:
                    continue
                size = self._size(name)
            if size >= self.limit:
                continue
            data = text.encode("utf-8", "replace")
            if size + len(data) > self.limit:
                data = data[: self.limit - size] + CUT
            self._sizes[name] = min(self.limit, size + len(data))
            self._pending.setdefault(name, bytearray()).extend(data)
        self.pump()

    def pump(self) -> None:
        """Start writing what is queued, unless a write is under way (it is picked up after)."""
        if not self._pending or (self._writing is not None and not self._writing.done()):
            return
        if self._writer is None:
            from concurrent.futures import ThreadPoolExecutor  # here: worker processes import this module too

            self._writer = ThreadPoolExecutor(1, thread_name_prefix="shoal-logs")
        batch, self._pending = self._pending, {}
        self._writing = self._writer.submit(self._write, batch)

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        if self._writing is not None:
            self._writing.result()
        self.pump()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _size(self, name: str) -> int:
        try:
            return (self.folder / name).stat().st_size
        except OSError:
            return 0

    def _write(self, batch: dict[str, bytearray]) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for name, data in batch.items():
                with open(self.folder / name, "ab") as handle:
                    handle.write(data)
        except OSError as exc:  # the run goes on without its copies of the logs
            if not self._failed:
                log.warning("cannot write worker logs to %s (%s); they stay on the workers' machines", self.folder, exc)
            self._failed = True
