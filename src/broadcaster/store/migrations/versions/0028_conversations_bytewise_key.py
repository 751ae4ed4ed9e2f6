"""On PostgreSQL, `conversations` keys its rows by contact id compared byte by byte (collation
"C"), and the recipients an outbox row names (`outbox.opened`) are compressed with lz4.

Recording a first broadcast inserts a conversation per recipient, and that insert is most of
the database's work of sending. A profile of the server while eight merchants each sent to
100,000 followers (perf, every backend) put 38 % of its CPU in inserting into the key's
index, 11 % of it comparing ids through the database's collation (`bttextcmp`, `strcoll`),
and 4 % in compressing `outbox.opened` with pglz, the default. Contact ids are ASCII, so byte
order is the order any collation gives them and equality is the same; comparing them as bytes
skips the locale's comparison for each step down the index. A comparison with another id
column takes the key's collation (a column's own collation wins over the database's default),
so every look-up by contact still uses the index.

An expand migration: the same rows and the same key; every release reads and writes them
alike. Changing the key's collation rebuilds its index (not the table), holding the table
meanwhile: 0.43 s for 1,000,000 rows here. The compression applies to rows written from then
on. SQLite compares text as bytes already; nothing changes there.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None
kind = "expand"
# Whether this PostgreSQL server can compress with lz4 (version 14 on, built with it).
_LZ4 = (
    "SELECT COALESCE(bool_or('lz4' = ANY(enumvals)), false) FROM pg_settings"
    " WHERE name = 'default_toast_compression'"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute('ALTER TABLE conversations ALTER COLUMN contact_id TYPE VARCHAR(32) COLLATE "C"')
    if bind.execute(sa.text(_LZ4)).scalar():
        op.execute("ALTER TABLE outbox ALTER COLUMN opened SET COMPRESSION lz4")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute(
        'ALTER TABLE conversations ALTER COLUMN contact_id TYPE VARCHAR(32) COLLATE "default"'
    )
    if bind.execute(sa.text(_LZ4)).scalar():
        op.execute("ALTER TABLE outbox ALTER COLUMN opened SET COMPRESSION default")
