"""Broadcast drafts; covering indexes for audience counts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None
kind = "expand"

_AUDIENCE = ["last_interaction_time", "opted_out", "follower_state"]


def upgrade() -> None:
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("display_name_folded", sa.String(1024), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("interaction_window", sa.SmallInteger(), nullable=False),
        sa.Column("customer_group_id", sa.String(32), nullable=True),
        sa.Column("group_name", sa.String(256), nullable=False),
        sa.Column("messages", sa.Text(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("sent", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("excluded", sa.BigInteger(), nullable=False),
        sa.Column("send_estimate", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.String(64), nullable=False),
        sa.Column("copied_from", sa.String(32), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sa.Column("update_time", sa.BigInteger(), nullable=False),
        sa.Column("send_time", sa.BigInteger(), nullable=True),
        sa.Column("complete_time", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_broadcasts_merchant_id", "broadcasts", ["merchant_id", "id"])
    op.create_index("ix_broadcasts_merchant_state", "broadcasts", ["merchant_id", "state", "id"])
    op.drop_index("ix_contacts_customer", "contacts")
    op.create_index(
        "ix_contacts_customer", "contacts", ["merchant_id", "channel_id", "customer_id", *_AUDIENCE]
    )
    op.create_index("ix_contacts_audience", "contacts", ["merchant_id", "channel_id", *_AUDIENCE])


def downgrade() -> None:
    op.drop_index("ix_contacts_audience", "contacts")
    op.drop_index("ix_contacts_customer", "contacts")
    op.create_index(
        "ix_contacts_customer", "contacts", ["merchant_id", "channel_id", "customer_id"]
    )
    op.drop_index("ix_broadcasts_merchant_state", "broadcasts")
    op.drop_index("ix_broadcasts_merchant_id", "broadcasts")
    op.drop_table("broadcasts")
