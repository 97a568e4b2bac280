"""A retry reads its job's inputs again, so a row fixed since the job ran runs as it reads now.

A job's identity names its inputs (paths and URLs), not their contents. A file an item names is
read when the item runs, so a fixed file is picked up anyway; a CSV or JSONL row is stored with
its item when first read, so only reading the table again shows a fixed row. The inputs are read
in order beside the job's failed items (both go by position), so nothing is held in memory and
the ledger is asked only for failed items, a page at a time.

An entry at a failed item's position is that item's when it has the item's id, or, for a row, an
id the job has nowhere else while the inputs hold as many entries as when the job read them (a
row fixed so that its id changed: a corrected file path, a row that could not be read at all).
Rows added or removed change the ids of the rows after them (their ids come from their lines):
then only an entry with the item's own id is taken, the others keep what they read first, and
no row runs twice under two ids.
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
        verb = "reads" if self.changed == 1 else "read"
        said = f"{plural(self.changed, 'failed item')} {verb} differently now"
        return said + (f"; {plural(self.unreadable, 'row')} still unreadable" if self.unreadable else "")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def reread_failed(ledger: Ledger, job: JobRecord, policy: ReadPolicy | None = None) -> Reread:
    """Read ``job``'s inputs again (under the read ``policy``) and store what its failed items read now."""
    inputs: list[str] = json.loads(job.inputs)
    if any(is_stream(value) for value in inputs):
        return Reread(stream=True)
    found, entries = Reread(), enumerate(open_inputs(inputs, policy=policy))
    seq, entry, after = -1, None, -1
    same_shape: bool | None = None  #: counted once, and only when an entry's id changed
    while page := ledger.unfinished_page(job.id, "failed", after, PAGE):
        after = page[-1]["seq"]
        here: list[tuple[RowMapping, Entry]] = []
        for row in page:
            while seq < row["seq"] and seq != END:
                seq, entry = next(entries, (END, None))
            if seq == row["seq"] and entry is not None:
                here.append((row, entry))
        moved = sorted(e.id for row, e in here if e.id != row["id"])
        if moved and same_shape is None:
            same_shape = sum(1 for _ in open_inputs(inputs, policy=policy)) == job.entries
        elsewhere = ledger.known(job.id, moved) if moved and same_shape else {}
        changes = [
            c
            for row, e in here
            if (e.id == row["id"] or (same_shape and e.id not in elsewhere)) and (c := _change(row, e))
        ]
        ledger.reread(job.id, changes)
        _counted(found, changes)
        if seq == END:
            break  # the inputs are shorter now: the items after their end keep what they read
    return found


def _change(row: RowMapping, entry: Entry) -> dict[str, Any] | None:
    """What to store for a failed item given its entry now; None when nothing changed or the
    entry is not the item's: a file named by another path is another file, while a row may be
    fixed under another id, and a row that could not be read had no id of its own."""
    could_read = row["uri"] is not None or row["meta"] is not None
    rows_both = row["meta"] is not None and (entry.meta is not None or entry.error is not None)
    if entry.id != row["id"] and could_read and not rows_both:
        return None
    if entry.error is not None:
        return {"id": row["id"], "input": entry.input, "uri": None, "meta": None, "error": entry.error}
    meta = None if entry.meta is None else dumps(entry.meta)
    if (entry.input, entry.uri, meta) == (row["input"], row["uri"], row["meta"]):
        return None
    return {"id": row["id"], "input": entry.input, "uri": entry.uri, "meta": meta, "error": None}


def _counted(found: Reread, changes: list[dict[str, Any]]) -> None:
    found.unreadable += sum(c["error"] is not None for c in changes)
    found.changed += sum(c["error"] is None for c in changes)
