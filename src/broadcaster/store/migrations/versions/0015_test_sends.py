"""Test sends: a draft's messages sent to a few named contacts, recorded on the broadcast.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    op.create_table(
        "test_sends",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("broadcast_id", sa.String(32), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(128), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_test_sends_broadcast", "test_sends", ["broadcast_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_test_sends_broadcast", table_name="test_sends")
    op.drop_table("test_sends")
