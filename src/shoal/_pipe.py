"""Length-prefixed messages over a pipe, between shoal processes (the coordinator and its workers).

multiprocessing.connection does the same but brings multiprocessing, pickle and sockets along:
a third of a worker's start-up. These frames are all a worker needs: a 4-byte length, then bytes.

A worker reads and writes blocking (it has nothing else to do). The coordinator never does: a
worker that stops reading (a stage stuck in C code holding the GIL, a stopped process) must not
stop the coordinator, which still has timeouts to enforce. So its ends are non-blocking and
buffered: Sender queues frames and writes what the pipe takes, Receiver takes what has arrived
and hands over whole frames only.
"""

from __future__ import annotations

import os
import select
import struct

_HEADER = struct.Struct("!I")
_READ = 1 << 20  #: bytes asked of the pipe per read


class PipeEnd:
    """One end of a pipe, reading or writing whole messages, blocking (a worker's side)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def send(self, data: bytes) -> None:
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view) :]

    def recv(self) -> bytes:
        """The next message; EOFError once the other end is closed."""
        (size,) = _HEADER.unpack(self._read(_HEADER.size))
        return self._read(size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _read(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = os.read(self.fd, min(left, _READ))
            if not chunk:
                raise EOFError("the other end of the pipe closed")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


class Sender:
    """The writing end of a pipe that never blocks: frames wait here until the pipe takes them."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._pending = bytearray()

    def fileno(self) -> int:
        return self.fd

    @property
    def waiting(self) -> int:
        """Bytes not yet taken by the pipe."""
        return len(self._pending)

    def send(self, data: bytes) -> None:
        """Queue a message and write as much as the pipe takes now; raises OSError if the reader
        is gone."""
        self._pending += _HEADER.pack(len(data))
        self._pending += data
        self.flush()

    def flush(self) -> None:
        while self._pending:
            try:
                written = os.write(self.fd, self._pending)
            except BlockingIOError:
                return
            del self._pending[:written]

    def close(self) -> None:
        self._pending.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Receiver:
    """The reading end of a pipe that never blocks: whole frames out, partial ones kept."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._buffer = bytearray()
        self.ended = False  #: the writer closed its end

    def fileno(self) -> int:
        return self.fd

    def receive(self) -> list[bytes]:
        """Every whole message that has arrived; sets ``ended`` once the other end is closed."""
        while not self.ended:
            try:
                data = os.read(self.fd, _READ)
            except BlockingIOError:
                break
            if not data:
                self.ended = True
            self._buffer += data
        return self._frames()

    def _frames(self) -> list[bytes]:
        frames, start, buffer = [], 0, self._buffer
        while len(buffer) - start >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, start)
            if len(buffer) - start - _HEADER.size < size:
                break
            frames.append(bytes(buffer[start + _HEADER.size : start + _HEADER.size + size]))
            start += _HEADER.size + size
        del buffer[:start]
        return frames

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def wait(readable: list[int], writable: list[int], timeout: float) -> tuple[set[int], set[int]]:
    """The file descriptors ready to read and to write within ``timeout`` seconds (a closed or
    failed descriptor counts as ready, so its owner finds out)."""
    wanted: dict[int, int] = {}
    for fd in readable:
        wanted[fd] = wanted.get(fd, 0) | select.POLLIN
    for fd in writable:
        wanted[fd] = wanted.get(fd, 0) | select.POLLOUT
    poller = select.poll()
    for fd, flags in wanted.items():
        poller.register(fd, flags)
    done = select.POLLHUP | select.POLLERR | select.POLLNVAL
    ready_in, ready_out = set(), set()
    for fd, flags in poller.poll(max(0.0, timeout) * 1000):
        if flags & (select.POLLIN | done) and wanted[fd] & select.POLLIN:
            ready_in.add(fd)
        if flags & (select.POLLOUT | done) and wanted[fd] & select.POLLOUT:
            ready_out.add(fd)
    return ready_in, ready_out
