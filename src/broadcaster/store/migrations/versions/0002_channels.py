"""Channels, contact syncs, webhook event ids; contact follower-state times.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
kind = "expand"


def _time(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "channels",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("tier", sa.SmallInteger(), nullable=False),
        sa.Column("account_id", sa.String(256), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("handle", sa.String(256), nullable=False),
        sa.Column("picture_uri", sa.String(2000), nullable=False),
        sa.Column("sealed_credentials", sa.Text(), nullable=True),
        _time("create_time"),
        _time("update_time"),
        _time("delete_time", nullable=True),
    )
    op.create_index("ix_channels_merchant_id", "channels", ["merchant_id", "id"])
    op.create_index(
        "uq_channels_account",
        "channels",
        ["merchant_id", "type", "account_id"],
        unique=True,
        sqlite_where=sa.text("delete_time IS NULL"),
        postgresql_where=sa.text("delete_time IS NULL"),
    )
    op.create_table(
        "contact_syncs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("phase", sa.SmallInteger(), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("profile_cursor", sa.String(32), nullable=True),
        _counter("contacts_synced"),
        _counter("contacts_created"),
        _counter("contacts_unfollowed"),
        _counter("profiles_fetched"),
        sa.Column("error_reason", sa.String(64), nullable=False),
        sa.Column("message", sa.String(1024), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=False),
        _time("lease_expiry"),
        _time("start_time"),
        _time("end_time", nullable=True),
    )
    op.create_index("ix_contact_syncs_channel", "contact_syncs", ["channel_id", "id"])
    op.create_index(
        "uq_contact_syncs_running",
        "contact_syncs",
        ["channel_id"],
        unique=True,
        sqlite_where=sa.text("state = 1"),
        postgresql_where=sa.text("state = 1"),
    )
    op.create_table(
        "webhook_events",
        sa.Column("channel_id", sa.String(32), primary_key=True),
        sa.Column("event_id", sa.String(128), primary_key=True),
        _time("receive_time"),
    )
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(
            sa.Column("state_time", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("seen_sync", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("seen_sync")
        batch.drop_column("state_time")
    op.drop_table("webhook_events")
    op.drop_index("uq_contact_syncs_running", "contact_syncs")
    op.drop_index("ix_contact_syncs_channel", "contact_syncs")
    op.drop_table("contact_syncs")
    op.drop_index("uq_channels_account", "channels")
    op.drop_index("ix_channels_merchant_id", "channels")
    op.drop_table("channels")
