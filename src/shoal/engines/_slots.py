"""A shared-memory board where each local worker posts what it is running right now.

Workers write (chunk, first item, item count, stage, start time) before every stage call; the
coordinator reads it to enforce per-item timeouts and, when a worker dies, to know which items
were running. Posting costs a memory write, not a message. A sequence number makes reads
consistent (the writer makes it odd while writing).
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

_FORMAT = struct.Struct("<QqIIId")  # seq, chunk, first, count, stage, started (monotonic s)
SLOT_SIZE = 40
assert _FORMAT.size <= SLOT_SIZE


@dataclass(frozen=True)
class Posting:
    chunk: int
    first: int
    count: int  #: 0 when the worker is idle
    stage: int
    started: float  #: time.monotonic() when the stage call began


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

    def post(self, slot: int, chunk: int, first: int, count: int, stage: int) -> None:
        offset = slot * SLOT_SIZE
        seq = self._seq[slot] + 1
        struct.pack_into("<Q", self._map, offset, seq)  # odd: writing
        _FORMAT.pack_into(self._map, offset, seq + 1, chunk, first, count, stage, time.monotonic())
        self._seq[slot] = seq + 1

    def idle(self, slot: int) -> None:
        self.post(slot, -1, 0, 0, 0)

    def read(self, slot: int) -> Posting:
        offset = slot * SLOT_SIZE
        while True:
            seq, chunk, first, count, stage, started = _FORMAT.unpack_from(self._map, offset)
            if seq % 2 == 0 and struct.unpack_from("<Q", self._map, offset)[0] == seq:
                return Posting(chunk, first, count, stage, started)

    def reset(self, slot: int) -> None:
        """Clear a slot for a new worker process (its sequence restarts at zero)."""
        self._map[slot * SLOT_SIZE : (slot + 1) * SLOT_SIZE] = b"\0" * SLOT_SIZE

    def close(self) -> None:
        self._map.close()
