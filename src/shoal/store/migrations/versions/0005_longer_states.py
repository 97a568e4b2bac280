"""A job's state holds ``completed_with_errors`` (21 characters; the column held 16), and
finished jobs where some items succeeded are named so, not ``failed``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:  # SQLite copies the table: jobs are few rows
        batch.alter_column("state", type_=sa.String(32), existing_type=sa.String(16), existing_nullable=False)
    op.execute("UPDATE jobs SET state = 'completed_with_errors' WHERE state = 'failed' AND succeeded > 0")


def downgrade() -> None:
    op.execute("UPDATE jobs SET state = 'failed' WHERE state = 'completed_with_errors'")
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("state", type_=sa.String(16), existing_type=sa.String(32), existing_nullable=False)
