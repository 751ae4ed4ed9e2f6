"""A channel that looks after itself: when its follower list is next re-synced (and the lease
of the replica doing it), when it was last read whole, its webhook's set-up and last event, the
quota last read, and its health (whether it needs attention, since when).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    with op.batch_alter_table("channels") as b:
        b.add_column(sa.Column("next_sync_time", sa.BigInteger(), nullable=True))
        b.add_column(
            sa.Column("sync_lease_expiry", sa.BigInteger(), nullable=False, server_default="0")
        )
        b.add_column(sa.Column("followers_sync_time", sa.BigInteger(), nullable=True))
        b.add_column(
            sa.Column("webhook_state", sa.SmallInteger(), nullable=False, server_default="0")
        )
        b.add_column(sa.Column("webhook_endpoint", sa.Text(), nullable=False, server_default=""))
        b.add_column(sa.Column("webhook_detail", sa.Text(), nullable=False, server_default=""))
        b.add_column(sa.Column("webhook_test_time", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("last_event_time", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("quota_limit", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("quota_used", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("quota_time", sa.BigInteger(), nullable=True))
        b.add_column(sa.Column("issues", sa.Integer(), nullable=False, server_default="0"))
        b.add_column(sa.Column("unhealthy_since", sa.BigInteger(), nullable=True))
    # Connected channels by their next re-sync, for the upkeep loop's claim.
    op.create_index(
        "ix_channels_next_sync",
        "channels",
        ["next_sync_time"],
        sqlite_where=sa.text("delete_time IS NULL"),
        postgresql_where=sa.text("delete_time IS NULL"),
    )
    # A merchant's channels needing attention, for ListChannels' filter.
    op.create_index(
        "ix_channels_attention",
        "channels",
        ["merchant_id", "id"],
        sqlite_where=sa.text("issues <> 0 AND delete_time IS NULL"),
        postgresql_where=sa.text("issues <> 0 AND delete_time IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_channels_attention", "channels")
    op.drop_index("ix_channels_next_sync", "channels")
    with op.batch_alter_table("channels") as b:
        for column in (
            "unhealthy_since",
            "issues",
            "quota_time",
            "quota_used",
            "quota_limit",
            "last_event_time",
            "webhook_test_time",
            "webhook_detail",
            "webhook_endpoint",
            "webhook_state",
            "followers_sync_time",
            "sync_lease_expiry",
            "next_sync_time",
        ):
            b.drop_column(column)
