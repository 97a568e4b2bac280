"""The ledger's tables. Times are UTC epoch seconds; JSON is stored as text, written once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("num", Integer, primary_key=True, autoincrement=True),  #: compact key for item rows
    Column("id", String(128), nullable=False, unique=True),  #: the public id, e.g. faces-20261125-1302-3fa9
    Column("key", String(64), nullable=False),  #: identity: code + inputs + options
    Column("round", Integer, nullable=False, server_default="0"),  #: 0, then 1, 2... for each --new of one key
    Column("pipeline", String(64), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("project", Text, nullable=False),
    Column("inputs", Text, nullable=False),  #: JSON list of input URIs
    Column("options", Text, nullable=False),  #: JSON of the options that change results
    Column("out", Text, nullable=False),  #: the run folder
    Column("state", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("entries", BigInteger, nullable=False, default=0),  #: input entries recorded so far
    Column("ingested", Boolean, nullable=False, default=False),  #: the whole source is in
    Column("owner", String(128)),  #: host:pid of the coordinator running it
    Column("heartbeat_at", Float),
    # item counts by status, kept by every write, so no request counts a job's rows
    Column("pending", BigInteger, nullable=False, server_default="0"),
    Column("succeeded", BigInteger, nullable=False, server_default="0"),
    Column("failed", BigInteger, nullable=False, server_default="0"),
    Column("cancelled", BigInteger, nullable=False, server_default="0"),
    Column(
        "duplicates", BigInteger, nullable=False, server_default="0"
    ),  #: input entries before the watermark that repeated an item
    Column(
        "checkpoint", Text
    ),  #: JSON: where the inputs' entry at a recorded position begins, to resume without re-reading
    Index("ux_jobs_key_round", "key", "round", unique=True),  # one job per identity and round
)

SEQ_BITS = 40  #: an item's key is job.num << SEQ_BITS | seq: rows sit in input order, job by job


def item_key(job: int, seq: int) -> int:
    return (job << SEQ_BITS) | seq


def of_job(job: int, after_seq: int = -1) -> tuple[Any, ...]:
    """WHERE clauses for a job's items after a position: a range of the primary key."""
    return (items.c.key > item_key(job, after_seq) if after_seq >= 0 else items.c.key >= item_key(job, 0),
            items.c.key < item_key(job + 1, 0))  # fmt: skip


def unfinished(job: int, status: str) -> tuple[Any, ...]:
    """WHERE clauses for a job's items of one status other than succeeded, spelled so that the
    partial index ix_items_unfinished serves them."""
    return items.c.job == job, items.c.status == status, items.c.status != "succeeded"


items = Table(
    "items",
    metadata,
    Column("key", BigInteger, primary_key=True, autoincrement=False),  #: item_key(job, seq)
    Column("job", Integer, nullable=False),  #: jobs.num: an integer keeps rows and indexes small
    Column("id", String(200), nullable=False),
    Column("seq", BigInteger, nullable=False),  #: position in the inputs
    Column("input", Text, nullable=False),  #: how the input is named to people
    Column("uri", Text),  #: the file to read; NULL for a data row
    Column("meta", Text),  #: JSON of the CSV/JSONL row
    Column("status", String(16), nullable=False),  #: pending, succeeded, failed, cancelled
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(128)),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("seconds", Text),  #: JSON {stage: seconds}
    Column("result", Text),  #: JSON of the merged stage results
    Column("error_stage", String(64)),
    Column("error_type", String(128)),
    Column("error_message", Text),
    Column("error_traceback", Text),
    Index("ux_items_job_id", "job", "id", unique=True),  # one row per item: repeats are found here
    Index(  # pages of failed or pending items without a scan; a succeeded item costs it nothing
        "ix_items_unfinished",
        "job",
        "status",
        "seq",
        sqlite_where=text("status != 'succeeded'"),
        postgresql_where=text("status != 'succeeded'"),
    ),
)

runs = Table(
    "runs",
    metadata,
    Column("job_id", String(128), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("outcome", String(16)),  #: finished, interrupted, aborted; NULL while running or if killed
    Column("engine", String(32), nullable=False),
    Column("workers", Integer, nullable=False),
    Column("startup_s", Float),  #: run start to first worker ready
    Column("owner", String(128), nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(128), nullable=False),
    Column("item_id", String(200), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(16), nullable=False),  #: retry, failed, isolated, requeued
    Column("attempt", Integer, nullable=False),
    Column("worker", String(128)),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("stage", String(64)),
    Column("error_type", String(128)),
    Column("message", Text),
    Index("ix_events_job", "job_id", "item_id"),
)

tokens = Table(
    "tokens",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("hash", String(64), nullable=False, unique=True),  #: sha256 hex of the token; the token is never stored
    Column("created_at", Float, nullable=False),
)

submissions = Table(
    "submissions",
    metadata,
    Column("job_id", String(128), primary_key=True),  #: a job the web service runs, and resumes after a restart
    Column("submitted_at", Float, nullable=False),
    Column("submitted_by", String(64)),  #: the token's name, when auth is on
    Column("upload", Text),  #: the folder its uploaded files are in
    Column("error", Text),  #: why its last run could not start; not resumed while set
)


model_versions = Table(
    "model_versions",
    metadata,
    Column("pipeline", String(64), primary_key=True),
    Column("version", String(32), primary_key=True),  #: the fingerprint of its code and model files
    Column("created_at", Float, nullable=False),
    Column("source", Text),  #: where it came from: a git commit, a folder
    Column("created_by", String(64)),  #: who registered it (a token's name, a git pusher, a user)
    Column("folder", Text, nullable=False),  #: its files, kept as they were registered
    Column("metrics", Text),  #: JSON: the smoke or golden-set run's figures
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("pipeline", String(64), primary_key=True),
    Column("alias", String(64), primary_key=True),  #: production, canary, shadow, or any name
    Column("version", String(32), nullable=False),
    Column("previous", String(32)),  #: what the alias named before: a rollback goes back to it
    Column("weight", Float),  #: a canary's share of traffic (0-1); NULL for other aliases
    Column("options", Text),  #: JSON: a canary's guardrails (sticky key, minimum samples, limits)
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(64)),
)

model_events = Table(
    "model_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pipeline", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),  #: registered, promoted, rolled_back, canary, shadow, alias
    Column("version", String(32)),
    Column("by", String(64)),
    Column("detail", Text),  #: why: a guardrail's breach, a push's commit
    Index("ix_model_events_pipeline", "pipeline", "id"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("pipeline", String(64), nullable=False),
    Column("version", String(32), nullable=False),
    Column("at", Float, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("input", Text, nullable=False),  #: JSON: meta, and the uri or kept copy of the file it read
    Column("result", Text),  #: JSON
    Column("error", Text),  #: JSON {stage, type, message}
    Index("ix_predictions_version", "pipeline", "version", "id"),
)
