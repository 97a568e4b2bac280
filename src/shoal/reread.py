"""A retry reads its job's inputs again, so a row fixed since the job ran runs as it reads now.

A job's identity names its inputs (paths and URLs), not their contents. A file an item names is
read when the item runs, so a fixed file is picked up anyway; a CSV or JSONL row is stored with
its item when first read, so only reading the table again shows a fixed row. The inputs are read
in order beside the job's failed items (both go by position), so nothing is held in memory and
the ledger is asked only for failed items, a page at a time.

An entry at a failed item's position is that item's when it has the item's id, or when the item
was a row that could not be read at all (its id came from its line). Another entry there means
the inputs changed shape (rows added or removed): the item keeps what it read first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import RowMapping

from shoal._json import dumps
from shoal.sources import Entry, is_stream, open_inputs

if TYPE_CHECKING:
    from shoal.access import ReadPolicy
    from shoal.store import JobRecord, Ledger

PAGE = 2000  #: failed items asked for at once
END = 2**62  #: past the last entry


@dataclass
class Reread:
    """What reading a job's inputs again found for its failed items."""

    changed: int = 0  #: items whose row, file or name reads differently now
    unreadable: int = 0  #: rows still unreadable: they stay failed, with the cause found now
    stream: bool = False  #: a stream's entries cannot be read again: items run as first read

    def describe(self) -> str:
        if self.stream:
            return "the job reads a stream: its failed items run with the entries read the first time"
        said = f"{self.changed} failed item{'s' * (self.changed != 1)} read{'s' * (self.changed == 1)} differently now"
        return said + (
            f"; {self.unreadable} row{'s' * (self.unreadable != 1)} still unreadable" if self.unreadable else ""
        )


def reread_failed(ledger: Ledger, job: JobRecord, policy: ReadPolicy | None = None) -> Reread:
    """Read ``job``'s inputs again (under the read ``policy``) and store what its failed items read now."""
    inputs: list[str] = json.loads(job.inputs)
    if any(is_stream(value) for value in inputs):
        return Reread(stream=True)
    found, entries = Reread(), enumerate(open_inputs(inputs, policy=policy))
    seq, entry, after = -1, None, -1
    while page := ledger.pending(job.id, after, PAGE, status="failed"):
        after = page[-1]["seq"]
        changes = []
        for row in page:
            while seq < row["seq"] and seq != END:
                seq, entry = next(entries, (END, None))
            if seq == row["seq"] and entry is not None and (change := _change(row, entry)):
                changes.append(change)
        ledger.reread(job.id, changes)
        _counted(found, changes)
        if seq == END:
            break  # the inputs are shorter now: the items after their end keep what they read
    return found


def _change(row: RowMapping, entry: Entry) -> dict[str, Any] | None:
    """What to store for a failed item given the entry now at its position; None to keep it."""
    could_read = row["uri"] is not None or row["meta"] is not None
    if entry.id != row["id"] and could_read:
        return None  # another entry sits here now: the inputs changed shape
    if entry.error is not None:
        return {"id": row["id"], "input": entry.input, "uri": None, "meta": None, "error": entry.error}
    meta = None if entry.meta is None else dumps(entry.meta)
    if (entry.input, entry.uri, meta) == (row["input"], row["uri"], row["meta"]):
        return None
    return {"id": row["id"], "input": entry.input, "uri": entry.uri, "meta": meta, "error": None}


def _counted(found: Reread, changes: list[dict[str, Any]]) -> None:
    found.unreadable += sum(c["error"] is not None for c in changes)
    found.changed += sum(c["error"] is None for c in changes)
