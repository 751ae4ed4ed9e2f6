"""Recipient limits (the limit a broadcast was sent with, the recipients it left out) and the
indexes of ListBroadcasts' channel filter and its send-time and schedule-time orders.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as b:
        b.add_column(sa.Column("recipient_limit", sa.BigInteger(), nullable=True))
        b.add_column(
            sa.Column("left_out_by_limit", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_index(
        "ix_broadcasts_merchant_channel", "broadcasts", ["merchant_id", "channel_id", "id"]
    )
    op.create_index(
        "ix_broadcasts_merchant_send",
        "broadcasts",
        ["merchant_id", sa.text("COALESCE(send_time, -1)"), "id"],
    )
    op.create_index(
        "ix_broadcasts_merchant_schedule",
        "broadcasts",
        ["merchant_id", sa.text("COALESCE(schedule_time, 9223372036854775807)"), "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_broadcasts_merchant_schedule", "broadcasts")
    op.drop_index("ix_broadcasts_merchant_send", "broadcasts")
    op.drop_index("ix_broadcasts_merchant_channel", "broadcasts")
    with op.batch_alter_table("broadcasts") as b:
        b.drop_column("left_out_by_limit")
        b.drop_column("recipient_limit")
