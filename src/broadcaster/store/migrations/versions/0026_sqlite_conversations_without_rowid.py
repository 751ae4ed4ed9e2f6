"""On SQLite, `conversations` keeps its rows in the b-tree of its key (WITHOUT ROWID) instead
of in a table b-tree beside a separate index of the key. Recording a delivered batch inserts a
row per recipient whose conversation it created, the one write per recipient left in recording:
one b-tree to insert into, not two, fewer pages written at each commit and checkpoint. Alone,
600,000 such rows inserted 1,000 and 500 a statement (eight and 32 merchants taking turns)
took 1.35-1.43 and 1.52-1.57 µs a row, against 1.49-1.76 and 1.73-1.79 before.

An expand migration: the table keeps its name, columns and key, so every release reads and
writes it alike. PostgreSQL has no such choice; nothing changes there.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    _rebuild(with_rowid=False)


def downgrade() -> None:
    _rebuild(with_rowid=True)


def _rebuild(*, with_rowid: bool) -> None:
    """SQLite: `conversations` written again, its rows as they are, with or without rowids."""
    if op.get_bind().dialect.name != "sqlite":
        return
    op.create_table(
        "conversations_rebuilt",
        sa.Column("contact_id", sa.String(32), primary_key=True),
        sa.Column("broadcast_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sqlite_with_rowid=with_rowid,
    )
    op.execute(
        "INSERT INTO conversations_rebuilt (contact_id, broadcast_id, seq)"
        " SELECT contact_id, broadcast_id, seq FROM conversations"
    )
    op.drop_table("conversations")
    op.rename_table("conversations_rebuilt", "conversations")
