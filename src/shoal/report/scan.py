"""One pass over a job's item rows, a page at a time, for every file and figure of its report.

Reading ten million rows is most of a report's cost, so it is done once, and in columns: an ADBC
driver (Arrow's database connectivity, for SQLite and PostgreSQL) reads the rows straight into
Arrow record batches, with no Python object per value, and every consumer (result files, figures,
charts) works on whole columns of a page. Memory holds one page. A SQLite job of one page at
most is read through the ledger's own connection instead: the ADBC reader's process costs more to
start (half a second) than such a job's rows cost to read.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
from sqlalchemy.engine import make_url

from shoal.errors import MissingDependencyError, StorageError
from shoal.store import JobRecord, Ledger
from shoal.store.schema import item_key
from shoal.wire import CACHED

PAGE = 20_000  #: rows a page holds (SQLite); a SQLite job of at most this many is read in this process
BATCH_BYTES = 4 << 20  #: bytes a page holds (PostgreSQL)
_TEXT = ("id", "status", "input", "meta", "result", "seconds", "worker", "error_stage", "error_type", "error_message")
#: every column typed the same on every page: NULL text is '', a NULL time is -1
_SELECT = (
    "CAST(seq AS BIGINT) AS seq, "
    + ", ".join(f"CAST(COALESCE({name}, '') AS TEXT) AS {name}" for name in _TEXT)
    + ", CAST(attempts AS BIGINT) AS attempts"
    + ", CAST(COALESCE(started_at, -1.0) AS DOUBLE PRECISION) AS started_at"
    + ", CAST(COALESCE(finished_at, -1.0) AS DOUBLE PRECISION) AS finished_at"
)
#: the columns' types, as the ADBC drivers give them
SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        *((name, pa.string()) for name in _TEXT),
        ("attempts", pa.int64()),
        ("started_at", pa.float64()),
        ("finished_at", pa.float64()),
    ]
)


class Page:
    """A page of a job's rows as Arrow columns, with the arrays consumers share computed once."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        self.batch = batch

    def __len__(self) -> int:
        return int(self.batch.num_rows)

    def text(self, name: str) -> pa.Array:
        return self.batch.column(name)

    @cached_property
    def succeeded(self) -> np.ndarray[Any, Any]:
        return mask(pc.equal(self.text("status"), "succeeded"))

    @cached_property
    def failed(self) -> np.ndarray[Any, Any]:
        return mask(pc.equal(self.text("status"), "failed"))

    @cached_property
    def started(self) -> np.ndarray[Any, Any]:
        """Epoch seconds; NaN for an item that never ran."""
        return _times(self.batch.column("started_at"))

    @cached_property
    def finished(self) -> np.ndarray[Any, Any]:
        return _times(self.batch.column("finished_at"))

    @cached_property
    def attempts(self) -> np.ndarray[Any, Any]:
        found: np.ndarray[Any, Any] = self.batch.column("attempts").to_numpy()
        return found

    @cached_property
    def has_meta(self) -> bool:
        return bool(pc.any(pc.not_equal(self.text("meta"), "")).as_py())

    @cached_property
    def _timings(self) -> dict[str, np.ndarray[Any, Any]]:
        table = json_table(self.text("seconds"))
        if table is None:
            return _seconds_slowly(self.text("seconds").to_pylist())
        return {
            name: np.nan_to_num(table.column(name).to_numpy(zero_copy_only=False).astype(float))
            for name in table.column_names
        }

    @cached_property
    def seconds(self) -> dict[str, np.ndarray[Any, Any]]:
        """Stage seconds by stage, a value per row (0 where a row has none)."""
        return {name: values for name, values in self._timings.items() if not name.startswith(CACHED)}

    @cached_property
    def cache_hits(self) -> dict[str, np.ndarray[Any, Any]]:
        """By stage (cache=True), whether each row's result for it came from the cache (1) or not (0)."""
        return {name.removeprefix(CACHED): v for name, v in self._timings.items() if name.startswith(CACHED)}

    @cached_property
    def took(self) -> np.ndarray[Any, Any]:
        """Each row's stage seconds, summed."""
        total = np.zeros(len(self))
        for values in self.seconds.values():
            total += values
        return total


def json_table(texts: pa.Array) -> pa.Table | None:
    """JSON objects, one per text ('' for none), as an Arrow table (nested objects as structs);
    None when their values are of types Arrow cannot put in one column (a number here, text
    there)."""
    objects = pc.if_else(pc.equal(texts, ""), "{}", texts)
    data = joined_lines(objects)
    try:
        return pa_json.read_json(pa.BufferReader(data), read_options=pa_json.ReadOptions(block_size=len(data) + 1))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def joined_lines(texts: pa.Array) -> bytes:
    """Texts as one run of lines, each ended by a newline, copied once by Arrow."""
    lines = pc.binary_join_element_wise(texts, pa.scalar(""), "\n")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if not len(lines):
        return b""
    width = np.int64 if pa.types.is_large_string(lines.type) else np.int32
    offsets = np.frombuffer(lines.buffers()[1], dtype=width)[lines.offset : lines.offset + len(lines) + 1]
    data: bytes = lines.buffers()[2].to_pybytes()
    return data[int(offsets[0]) : int(offsets[-1])]


def mask(found: Any) -> np.ndarray[Any, Any]:
    mask: np.ndarray[Any, Any] = found.to_numpy(zero_copy_only=False).astype(bool)
    return mask


def _times(column: pa.Array) -> np.ndarray[Any, Any]:
    found: np.ndarray[Any, Any] = column.to_numpy().astype(float)
    found[found < 0] = np.nan
    return found


def _seconds_slowly(texts: list[str]) -> dict[str, np.ndarray[Any, Any]]:
    import orjson

    found: dict[str, np.ndarray[Any, Any]] = {}
    for n, text in enumerate(texts):
        for stage, value in (orjson.loads(text) if text else {}).items():
            if isinstance(value, int | float):
                found.setdefault(stage, np.zeros(len(texts)))[n] = value
    return found


class Consumer(Protocol):
    """Something built from a job's rows, a page at a time."""

    def add(self, page: Page) -> None: ...


def batches(ledger: Ledger, job: JobRecord) -> Iterator[pa.RecordBatch]:
    """The job's item rows in input order, as Arrow record batches."""
    low, high = item_key(job.num, 0), item_key(job.num + 1, 0)
    sql = f"SELECT {_SELECT} FROM items WHERE key >= {low} AND key < {high} ORDER BY key"  # integers: nothing to escape
    url = make_url(ledger.url)
    if url.get_backend_name() == "sqlite":
        if sum(job.counts.values()) <= PAGE:
            yield from _from_ledger(ledger, sql)
        else:
            yield from _from_sqlite(url.database or ":memory:", sql)
        return
    try:
        import adbc_driver_postgresql
        import adbc_driver_postgresql.dbapi as postgresql
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "adbc-driver-postgresql", "postgres") from None
    uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with postgresql.connect(uri) as connection, connection.cursor() as cursor:
        hint = {adbc_driver_postgresql.StatementOptions.BATCH_SIZE_HINT_BYTES.value: str(BATCH_BYTES)}
        cursor.adbc_statement.set_options(**hint)  # pages of about SQLite's size, not the driver's 16 MB
        cursor.execute(sql)
        for batch in cursor.fetch_record_batch():
            if batch.num_rows:
                yield batch


def _from_ledger(ledger: Ledger, sql: str) -> Iterator[pa.RecordBatch]:
    """A small job's rows (a page at most) through the ledger's own connection: a Python object
    per value costs less here than starting a reader process (half a second, after the last item)."""
    with ledger.engine.connect() as connection:
        rows = connection.exec_driver_sql(sql).fetchall()
    if rows:
        columns = zip(*rows, strict=True)
        arrays = [pa.array(values, field.type) for values, field in zip(columns, SCHEMA, strict=True)]
        yield pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def _from_sqlite(database: str, sql: str) -> Iterator[pa.RecordBatch]:
    """Rows of a SQLite ledger, read by a process of their own (see report._reader: ADBC's copy
    of SQLite must not share this process with Python's on one file)."""
    command = [sys.executable, "-m", "shoal.report._reader", database, sql, str(PAGE)]
    reader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout is not None
    try:
        try:
            stream = pa.ipc.open_stream(reader.stdout)
        except pa.ArrowInvalid:
            stream = None  # it failed before writing anything: its error says why
        if stream is not None:
            yield from stream
        problem = reader.stderr.read().decode(errors="replace").strip() if reader.stderr else ""
        if reader.wait() != 0:
            raise StorageError(f"cannot read the ledger at {database}: {problem.splitlines()[-1] if problem else ''}")
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        reader.stdout.close()
        if reader.stderr is not None:
            reader.stderr.close()


def scan(ledger: Ledger, job: JobRecord, consumers: Iterable[Consumer]) -> int:
    """Feed every page of the job's rows to each consumer; returns how many rows there were.

    The next pages are read on another thread while consumers work on this one (the driver and
    Arrow let go of the GIL while they work, so the two overlap on two cores)."""
    members = list(consumers)
    seen = 0
    for batch in _read_ahead(batches(ledger, job)):
        seen += batch.num_rows
        page = Page(batch)
        for consumer in members:
            consumer.add(page)
    return seen


def _read_ahead(source: Iterator[pa.RecordBatch], depth: int = 3) -> Iterator[pa.RecordBatch]:
    ready: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for batch in source:
                while not stop.is_set():
                    try:
                        ready.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            end: pa.RecordBatch | BaseException | None = None
        except BaseException as exc:  # the reader's failure is the scan's
            end = exc
        while not stop.is_set():
            try:
                ready.put(end, timeout=0.1)
                return
            except queue.Full:
                continue

    reader = threading.Thread(target=read, name="shoal-report-reader", daemon=True)
    reader.start()
    try:
        while (found := ready.get()) is not None:
            if isinstance(found, BaseException):
                raise found
            yield found
    finally:
        stop.set()
        reader.join()
