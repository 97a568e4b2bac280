"""The slot board: a reader never accepts half a record, never spins on a slot whose writer died
in the middle of writing it, and reads a stage's progress with the call it belongs to."""

from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import Any

import pytest

from shoal.engines import _slots
from shoal.engines._slots import SLOT_SIZE, SlotBoard


class BytewiseStruct:
    """A struct.Struct whose pack_into writes one byte at a time and keeps the buffer as it was
    after each byte: every state a reader on another core could meet during a post."""

    def __init__(self, real: struct.Struct, states: list[bytes]) -> None:
        self.real, self.states = real, states
        self.size = real.size

    def pack_into(self, buffer: Any, offset: int, *values: Any) -> None:
        for i, byte in enumerate(self.real.pack(*values)):
            buffer[offset + i] = byte
            self.states.append(bytes(buffer[:SLOT_SIZE]))

    def unpack_from(self, buffer: Any, offset: int = 0) -> tuple[Any, ...]:
        return self.real.unpack_from(buffer, offset)


def test_a_reader_sees_the_old_record_the_new_one_or_nothing_at_every_moment_of_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    board = SlotBoard(tmp_path / "slots", 1, create=True)
    board.post(0, 7, 1, 2, 3)
    old = board.read(0)
    states = [bytes(board._map[:SLOT_SIZE])]  # before the write begins
    for name in ("_SEQ", "_FIELDS"):
        monkeypatch.setattr(_slots, name, BytewiseStruct(getattr(_slots, name), states))
    board.post(0, 123456789, 40, 8, 2)
    monkeypatch.undo()
    new = board.read(0)
    assert (new.chunk, new.first, new.count, new.stage) == (123456789, 40, 8, 2)

    seen = set()
    for state in states:
        (tmp_path / "moment").write_bytes(state)
        reading = SlotBoard(tmp_path / "moment", 1).read(0)
        assert reading in (old, new, _slots.UNKNOWN), f"a torn record was accepted: {reading}"
        seen.add("old" if reading == old else "new" if reading == new else "unknown")
    assert seen == {"old", "new", "unknown"}
    board.close()


def test_a_slot_left_half_written_by_a_killed_worker_reads_as_unknown(tmp_path: Path) -> None:
    board = SlotBoard(tmp_path / "slots", 2, create=True)
    board.post(1, 5, 0, 1, 0)
    board._map[SLOT_SIZE : SLOT_SIZE + 8] = struct.pack("<Q", 3)  # the writer died after making it odd
    found: list[Any] = []
    reader = threading.Thread(target=lambda: found.append(board.read(1)), daemon=True)
    reader.start()
    reader.join(10)
    assert found, "reading the slot never returned"
    assert found[0] == _slots.UNKNOWN
    assert found[0].count == 0  # so no timeout is enforced and nobody is blamed on its word
    board.reset(1)
    board.post(1, 6, 0, 1, 0)  # a replacement worker's posts read again
    assert board.read(1).chunk == 6
    board.close()


def test_progress_belongs_to_the_stage_call_posted_last_and_starts_again_with_the_next(tmp_path: Path) -> None:
    board = SlotBoard(tmp_path / "slots", 2, create=True)
    board.progress(0, 5, 10)  # nothing posted yet: nothing to say it of
    assert board.read(0).count == 0
    board.post(0, 7, 0, 1, 2)
    began = board.read(0).started
    board.progress(0, 5, 10)
    reading = SlotBoard(tmp_path / "slots", 2).read(0)  # as the coordinator's own mapping sees it
    assert (reading.chunk, reading.count, reading.stage, reading.done, reading.total) == (7, 1, 2, 5, 10)
    assert reading.started == began  # progress does not restart the stage's clock (timeouts count from it)
    board.progress(0, -3, 2**40)  # out of range: clamped, never an error inside a stage
    assert (board.read(0).done, board.read(0).total) == (0, 2**32 - 1)
    board.post(0, 7, 0, 1, 3)
    assert (board.read(0).done, board.read(0).total) == (0, 0)
    assert board.read(1).count == 0  # the other slot untouched
    board.close()
