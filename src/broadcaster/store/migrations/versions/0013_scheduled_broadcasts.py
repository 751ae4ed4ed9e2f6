"""Scheduled broadcasts: the time a broadcast is to be sent at, the lease of the replica firing
it, and an index of the scheduled ones by that time (the due scan reads its head).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None
kind = "expand"

_SCHEDULED = "state = 6"


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("schedule_time", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("fire_lease_expiry", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_index(
        "ix_broadcasts_due",
        "broadcasts",
        ["schedule_time"],
        sqlite_where=sa.text(_SCHEDULED),
        postgresql_where=sa.text(_SCHEDULED),
    )


def downgrade() -> None:
    op.drop_index("ix_broadcasts_due", table_name="broadcasts")
    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_column("fire_lease_expiry")
        batch.drop_column("schedule_time")
