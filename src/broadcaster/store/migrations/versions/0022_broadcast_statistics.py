"""Broadcast statistics: the figures a broadcast's channel reports (opens, clicks) as last read,
why they are unavailable, when they are read next and by which replica; the pace of reads per
channel account; and the channel's id for each accepted batch (`batches.request_id`).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    # With a server default: PostgreSQL adds it without rewriting the table.
    op.add_column(
        "batches",
        sa.Column("request_id", sa.String(128), nullable=False, server_default=""),
    )
    op.create_table(
        "broadcast_statistics",
        sa.Column("broadcast_id", sa.String(32), primary_key=True),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(128), nullable=False, server_default=""),
        sa.Column("unavailable_reason", sa.String(64), nullable=False, server_default=""),
        sa.Column("send_time", sa.BigInteger(), nullable=False),
        sa.Column("next_fetch_time", sa.BigInteger(), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=False, server_default=""),
        sa.Column("lease_expiry", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("fetch_time", sa.BigInteger(), nullable=True),
        sa.Column("unique_impressions", sa.BigInteger(), nullable=True),
        sa.Column("unique_clicks", sa.BigInteger(), nullable=True),
        sa.Column("unique_media_plays", sa.BigInteger(), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
    )
    # A channel's broadcasts still to be read, by when: the collector's claim and its due time.
    op.create_index(
        "ix_broadcast_statistics_due",
        "broadcast_statistics",
        ["channel_id", "next_fetch_time"],
        sqlite_where=sa.text("next_fetch_time IS NOT NULL"),
        postgresql_where=sa.text("next_fetch_time IS NOT NULL"),
    )
    op.create_table(
        "statistics_pacing",
        sa.Column("channel_id", sa.String(32), primary_key=True),
        sa.Column("next_time", sa.BigInteger(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("statistics_pacing")
    op.drop_index("ix_broadcast_statistics_due", "broadcast_statistics")
    op.drop_table("broadcast_statistics")
    with op.batch_alter_table("batches") as b:
        b.drop_column("request_id")
