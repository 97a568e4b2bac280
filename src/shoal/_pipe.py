"""Length-prefixed messages over a pipe, between shoal processes (workers, the ledger writer).

multiprocessing.connection does the same but brings multiprocessing, pickle and sockets along:
a third of a worker's start-up. These frames are all a worker needs: a 4-byte length, then bytes.
"""

from __future__ import annotations

import os
import select
import struct

_HEADER = struct.Struct("!I")


class PipeEnd:
    """One end of a pipe, reading or writing whole messages."""

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

    def ready(self) -> bool:
        """Whether a message (or the end) can be read without waiting."""
        return bool(select.select([self.fd], [], [], 0)[0])

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _read(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = os.read(self.fd, min(left, 1 << 20))
            if not chunk:
                raise EOFError("the other end of the pipe closed")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)


def wait(ends: list[PipeEnd], extra: list[int], timeout: float) -> tuple[list[PipeEnd], bool]:
    """The ends ready to read within ``timeout`` seconds, and whether one of ``extra`` was."""
    poller = select.poll()
    by_fd = {end.fd: end for end in ends}
    for fd in [*by_fd, *extra]:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    ready = [fd for fd, _ in poller.poll(max(0.0, timeout) * 1000)]
    return [by_fd[fd] for fd in ready if fd in by_fd], any(fd in extra for fd in ready)
