"""Credentials a channel issues for itself (LINE: short-lived channel access tokens), sealed,
with the renewal lease that lets one replica renew them.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    op.create_table(
        "channel_credentials",
        sa.Column("channel_id", sa.String(32), primary_key=True),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("issue_time", sa.BigInteger(), nullable=False),
        sa.Column("renew_time", sa.BigInteger(), nullable=False),
        sa.Column("expire_time", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=False),
        sa.Column("lease_expiry", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("channel_credentials")
