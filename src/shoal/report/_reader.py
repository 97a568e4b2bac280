"""Read a job's rows from a SQLite ledger into an Arrow IPC stream on stdout, in a process of its own.

``python -m shoal.report._reader DATABASE SQL PAGE``. The ADBC driver brings its own copy of
SQLite; two copies of SQLite in one process break each other's file locks on the same database
(closing one releases the other's), which can corrupt a ledger that others write. So the rows are
read here, and the report's process only receives Arrow batches (and, on two cores, reading and
writing the report overlap).
"""

from __future__ import annotations

import sys

import pyarrow as pa


def main(database: str, sql: str, page: str) -> int:
    import adbc_driver_sqlite.dbapi as sqlite

    with sqlite.connect(database) as connection, connection.cursor() as cursor:
        cursor.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": page})
        cursor.execute(sql)
        reader = cursor.fetch_record_batch()
        with pa.ipc.new_stream(sys.stdout.buffer, reader.schema) as stream:
            for batch in reader:
                if batch.num_rows:
                    stream.write_batch(batch)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
