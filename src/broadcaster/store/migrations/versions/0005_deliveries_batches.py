"""Deliveries (a sent broadcast's recipients) and batches (one send request each).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("broadcast_id", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger(), primary_key=True),
        sa.Column("contact_id", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
    )
    op.create_index("ix_deliveries_outcome", "deliveries", ["broadcast_id", "outcome", "seq"])
    op.create_table(
        "batches",
        sa.Column("broadcast_id", sa.String(32), primary_key=True),
        sa.Column("batch", sa.Integer(), primary_key=True),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_time", sa.BigInteger(), nullable=False),
        sa.Column("first_attempt_time", sa.BigInteger(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=False),
        sa.Column("lease_expiry", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_batches_due", "batches", ["channel_id", "state", "due_time"])


def downgrade() -> None:
    op.drop_index("ix_batches_due", "batches")
    op.drop_table("batches")
    op.drop_index("ix_deliveries_outcome", "deliveries")
    op.drop_table("deliveries")
