"""On SQLite, a batch's recipients move to a table of their own (`batch_recipients`), written
once by the snapshot, so that leasing and closing a batch rewrite a narrow `batches` row: SQLite
writes an updated row whole, out-of-line pages and all, and the two JSON arrays (about 37 kB)
made each claim and each close write ten pages instead of one. PostgreSQL keeps them on the
batch row, whose updates leave out-of-line values where they are.

A contract migration on SQLite: the release before it reads the arrays on the batch row, and
would take a batch without them for one of the earliest layout, whose recipients are rows of
`deliveries`. On PostgreSQL nothing changes, so it is an expand one there.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None
kind = {"sqlite": "contract", "postgresql": "expand"}

_ARRAYS = "contact_ids, external_ids, talked"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        "batch_recipients",
        sa.Column("broadcast_id", sa.String(32), primary_key=True),
        sa.Column("batch", sa.Integer(), primary_key=True),
        sa.Column("contact_ids", sa.Text(), nullable=False),
        sa.Column("external_ids", sa.Text(), nullable=False),
        sa.Column("talked", sa.Text(), nullable=True),
    )
    op.execute(
        f"INSERT INTO batch_recipients (broadcast_id, batch, {_ARRAYS})"
        f" SELECT broadcast_id, batch, {_ARRAYS} FROM batches WHERE contact_ids IS NOT NULL"
    )
    op.execute(
        "UPDATE batches SET contact_ids = NULL, external_ids = NULL, talked = NULL"
        " WHERE contact_ids IS NOT NULL"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "UPDATE batches SET (contact_ids, external_ids, talked) = (SELECT contact_ids,"
        " external_ids, talked FROM batch_recipients l WHERE l.broadcast_id ="
        " batches.broadcast_id AND l.batch = batches.batch)"
        " WHERE EXISTS (SELECT 1 FROM batch_recipients l WHERE l.broadcast_id ="
        " batches.broadcast_id AND l.batch = batches.batch)"
    )
    op.drop_table("batch_recipients")
