"""The first ledger schema: jobs, items, runs, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("num", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(128), nullable=False, unique=True),
        sa.Column("key", sa.String(64), nullable=False, index=True),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("out", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("entries", sa.BigInteger, nullable=False),
        sa.Column("ingested", sa.Boolean, nullable=False),
        sa.Column("owner", sa.String(128)),
        sa.Column("heartbeat_at", sa.Float),
    )
    op.create_table(
        "items",
        sa.Column("key", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("job", sa.Integer, nullable=False),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("uri", sa.Text),
        sa.Column("meta", sa.Text),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(128)),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("seconds", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("error_stage", sa.String(64)),
        sa.Column("error_type", sa.String(128)),
        sa.Column("error_message", sa.Text),
        sa.Column("error_traceback", sa.Text),
    )
    op.create_index("ux_items_job_id", "items", ["job", "id"], unique=True)
    op.create_table(
        "runs",
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("outcome", sa.String(16)),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("workers", sa.Integer, nullable=False),
        sa.Column("startup_s", sa.Float),
        sa.Column("owner", sa.String(128), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(128), nullable=False),
        sa.Column("item_id", sa.String(200), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(128)),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("stage", sa.String(64)),
        sa.Column("error_type", sa.String(128)),
        sa.Column("message", sa.Text),
    )
    op.create_index("ix_events_job", "events", ["job_id", "item_id"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("runs")
    op.drop_index("ux_items_job_id", "items")
    op.drop_table("items")
    op.drop_table("jobs")
