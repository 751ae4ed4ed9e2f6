"""The channel's broadcasts take turns: batches are claimed by their number within their
broadcast (then by broadcast) rather than by due time, read in that order off a new index that
replaces the due-time one.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    op.create_index("ix_batches_turn", "batches", ["channel_id", "state", "batch", "broadcast_id"])
    op.drop_index("ix_batches_due", table_name="batches")


def downgrade() -> None:
    op.create_index("ix_batches_due", "batches", ["channel_id", "state", "due_time"])
    op.drop_index("ix_batches_turn", table_name="batches")
