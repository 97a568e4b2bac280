"""The model registry: versions of a served pipeline, aliases (production, canary) and their history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("pipeline", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("created_by", sa.String(64)),
        sa.Column("folder", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text),
    )
    op.create_table(
        "model_aliases",
        sa.Column("pipeline", sa.String(64), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("previous", sa.String(32)),
        sa.Column("weight", sa.Float),
        sa.Column("options", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(64)),
    )
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline", sa.String(64), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("version", sa.String(32)),
        sa.Column("by", sa.String(64)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_model_events_pipeline", "model_events", ["pipeline", "id"])


def downgrade() -> None:
    op.drop_index("ix_model_events_pipeline", "model_events")
    op.drop_table("model_events")
    op.drop_table("model_aliases")
    op.drop_table("model_versions")
