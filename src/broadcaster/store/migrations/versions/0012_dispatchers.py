"""The dispatchers running, each with a heartbeat: replicas spread the channels with work
between them instead of the first to look taking them all.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    op.create_table(
        "dispatchers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("expiry", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dispatchers")
