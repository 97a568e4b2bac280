"""The web service's tables: API tokens (hashes only) and the jobs it was asked to run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "submissions",
        sa.Column("job_id", sa.String(128), primary_key=True),
        sa.Column("submitted_at", sa.Float, nullable=False),
        sa.Column("submitted_by", sa.String(64)),
        sa.Column("upload", sa.Text),
        sa.Column("error", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("submissions")
    op.drop_table("tokens")
