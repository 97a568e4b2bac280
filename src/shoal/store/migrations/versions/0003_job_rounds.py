"""Jobs of one identity are numbered (rounds: `--new` starts the next), and a (key, round) pair
is unique, so two processes creating the same job at the same instant make one job, not two.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("round", sa.Integer, nullable=False, server_default="0"))
    # earlier `--new` runs made several jobs of one key: number them in order of creation
    op.execute(
        "UPDATE jobs SET round = (SELECT COUNT(*) FROM jobs AS earlier "
        "WHERE earlier.key = jobs.key AND earlier.num < jobs.num)"
    )
    op.create_index("ux_jobs_key_round", "jobs", ["key", "round"], unique=True)
    op.drop_index("ix_jobs_key", "jobs")  # the unique index serves lookups by key


def downgrade() -> None:
    op.create_index("ix_jobs_key", "jobs", ["key"])
    op.drop_index("ux_jobs_key_round", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("round")
