"""Broadcast lifecycle events in the Message Center outbox: a row of a lifecycle kind names no
recipients and carries the broadcast's counters (and failure reason) when it was written. Rows
of a kind and rows of a broadcast are found by index, so readers filtering on them do not read
every recipient row.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None
# Contract: lifecycle rows in the outbox, which the versions before would read as batches
# delivered.
kind = "contract"


def upgrade() -> None:
    # Without defaults but `kind`'s: PostgreSQL adds them without rewriting the table.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("kind", sa.SmallInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("total", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("sent", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("failed", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("excluded", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("failure_reason", sa.String(64), nullable=True))
    op.create_index(
        "ix_outbox_lifecycle",
        "outbox",
        ["merchant_id", "seq"],
        sqlite_where=sa.text("kind <> 0"),
        postgresql_where=sa.text("kind <> 0"),
    )
    op.create_index("ix_outbox_broadcast", "outbox", ["broadcast_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_outbox_broadcast", table_name="outbox")
    op.drop_index("ix_outbox_lifecycle", table_name="outbox")
    op.execute("DELETE FROM outbox WHERE kind <> 0")
    with op.batch_alter_table("outbox") as batch:
        for column in ("failure_reason", "excluded", "failed", "sent", "total", "kind"):
            batch.drop_column(column)
