"""A shared-memory board where each local worker posts what it is running right now.

Workers write (chunk, first item, item count, stage, start time) before every stage call, and
how far the call has got whenever a stage says so (``item.progress(done, total)``); the
coordinator reads it to enforce per-item timeouts, to show live progress and, when a worker dies,
to know which items were running. Posting costs a memory write, not a message.

A sequence number makes reads consistent (a seqlock): the writer makes it odd, writes the fields,
then makes it even; a reader accepts fields only between two equal, even readings of it. A worker
killed in the middle of a post leaves the number odd for good, so a reader gives up after a
bounded number of tries and says it does not know, rather than spin.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SEQ = struct.Struct("<Q")
# chunk, first, count, stage, started (monotonic s), done, total; after the sequence
_FIELDS = struct.Struct("<qIIIdII")
SLOT_SIZE = 48
TRIES = 1000  #: reads of a slot being written before giving up on it
assert _SEQ.size + _FIELDS.size <= SLOT_SIZE


@dataclass(frozen=True)
class Posting:
    chunk: int
    first: int
    count: int  #: 0 when the worker is idle
    stage: int
    started: float  #: time.monotonic() when the stage call began
    done: int = 0  #: the stage's own count of what it has done in this call (frames, rows...)
    total: int = 0  #: what it has to do in all; 0: not said
    known: bool = True  #: False: the slot was being written (or its writer died writing it)


UNKNOWN = Posting(-1, 0, 0, -1, 0.0, known=False)
_MAX = 2**32 - 1  #: the largest count a slot holds


class SlotBoard:
    """``slots`` fixed-size records in a file mapped by the coordinator and every worker."""

    def __init__(self, path: Path, slots: int, *, create: bool = False) -> None:
        self.path = path
        if create:
            path.write_bytes(b"\0" * SLOT_SIZE * slots)
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, SLOT_SIZE * slots)
        finally:
            os.close(fd)
        self._seq = [0] * slots
        self._posted: dict[int, tuple[int, int, int, int, float]] = {}  #: what this process last posted
        self._writing = threading.Lock()  #: one writer at a time: a stage may say its progress from a thread

    def post(self, slot: int, chunk: int, first: int, count: int, stage: int) -> None:
        """A new stage call begins: its progress starts at nothing said."""
        with self._writing:
            self._posted[slot] = (chunk, first, count, stage, time.monotonic())
            self._write(slot, 0, 0)

    def progress(self, slot: int, done: int, total: int) -> None:
        """How far the stage call this process posted last has got."""
        with self._writing:
            if slot in self._posted:
                self._write(slot, min(max(int(done), 0), _MAX), min(max(int(total), 0), _MAX))

    def _write(self, slot: int, done: int, total: int) -> None:
        offset = slot * SLOT_SIZE
        seq = self._seq[slot] + 1
        _SEQ.pack_into(self._map, offset, seq)  # odd: writing
        _FIELDS.pack_into(self._map, offset + _SEQ.size, *self._posted[slot], done, total)
        _SEQ.pack_into(self._map, offset, seq + 1)  # even: done
        self._seq[slot] = seq + 1

    def idle(self, slot: int) -> None:
        self.post(slot, -1, 0, 0, 0)

    def read(self, slot: int) -> Posting:
        """What the slot's worker is running; UNKNOWN if no consistent reading could be had."""
        offset = slot * SLOT_SIZE
        for _ in range(TRIES):
            (before,) = _SEQ.unpack_from(self._map, offset)
            if before % 2:
                continue
            fields = _FIELDS.unpack_from(self._map, offset + _SEQ.size)
            if _SEQ.unpack_from(self._map, offset)[0] == before:
                return Posting(*fields)
        return UNKNOWN

    def reset(self, slot: int) -> None:
        """Clear a slot for a new worker process (its sequence restarts at zero)."""
        self._map[slot * SLOT_SIZE : (slot + 1) * SLOT_SIZE] = b"\0" * SLOT_SIZE

    def close(self) -> None:
        self._map.close()
