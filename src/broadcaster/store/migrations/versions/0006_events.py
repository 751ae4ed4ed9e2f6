"""Message Center events (outbox).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("contact_id", sa.String(32), nullable=False),
        sa.Column("broadcast_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_merchant", "events", ["merchant_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_events_merchant", "events")
    op.drop_table("events")
