"""Sending: channel dispatch leases, resends, open batch counts, the index that finds channels
with work, and the conversations broadcasts created.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    op.create_table(
        "channel_leases",
        sa.Column("channel_id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expiry", sa.BigInteger(), nullable=False),
    )
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("resend_of", sa.String(32), nullable=False, server_default=""))
        batch.add_column(
            sa.Column("open_batches", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index("ix_batches_open", "batches", ["state", "channel_id"])
    op.create_table("conversations", sa.Column("contact_id", sa.String(32), primary_key=True))


def downgrade() -> None:
    op.drop_table("conversations")
    op.drop_index("ix_batches_open", "batches")
    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_column("open_batches")
        batch.drop_column("resend_of")
    op.drop_table("channel_leases")
