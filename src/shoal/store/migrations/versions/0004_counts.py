"""Counts kept with each job (so listing jobs or showing one never counts its item rows), its
duplicates, its resume checkpoint, and an index of the items not (yet) succeeded, so pages of
failed or pending items are found without scanning a job of millions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STATUSES = ("pending", "succeeded", "failed", "cancelled")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in (*STATUSES, "duplicates"):
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(sa.Column("checkpoint", sa.Text))
    for status in STATUSES:  # jobs recorded before: counted once, here
        op.execute(
            f"UPDATE jobs SET {status} = (SELECT COUNT(*) FROM items "
            f"WHERE items.job = jobs.num AND items.status = '{status}')"
        )
    op.execute(
        "UPDATE jobs SET duplicates = entries - (SELECT COUNT(*) FROM items "
        "WHERE items.job = jobs.num AND items.seq < jobs.entries)"
    )
    op.create_index(
        "ix_items_unfinished",
        "items",
        ["job", "status", "seq"],
        sqlite_where=sa.text("status != 'succeeded'"),
        postgresql_where=sa.text("status != 'succeeded'"),
    )


def downgrade() -> None:
    op.drop_index("ix_items_unfinished", "items")
    with op.batch_alter_table("jobs") as batch:
        for name in (*STATUSES, "duplicates", "checkpoint"):
            batch.drop_column(name)
