"""schema_compatibility: per revision, the oldest revision whose version still runs on it, so
that a version started on a schema newer than its own can tell whether it may run.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    # Filled by the migration environment once the migrations of a run are applied.
    op.create_table(
        "schema_compatibility",
        sa.Column("revision", sa.String(32), primary_key=True),
        sa.Column("oldest_compatible", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schema_compatibility")
