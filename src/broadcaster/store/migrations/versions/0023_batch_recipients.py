"""Recipients per batch: each batch keeps its recipients (`batches.contact_ids` and
`batches.external_ids`, JSON arrays), written by the snapshot instead of a `deliveries` row per
recipient; a partial index of open batches in turn order for the claim; and, on each Message
Center outbox row, the recipients whose conversation it created (`outbox.opened`).

Batches in this layout are open in a state of their own (2), which releases before it do not
claim; their own open batches (state 0, recipients as rows) are still read and sent.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None
kind = "expand"
# Whether this PostgreSQL server can compress with lz4 (version 14 on, built with it).
_LZ4 = (
    "SELECT COALESCE(bool_or('lz4' = ANY(enumvals)), false) FROM pg_settings"
    " WHERE name = 'default_toast_compression'"
)


def upgrade() -> None:
    op.add_column("batches", sa.Column("contact_ids", sa.Text(), nullable=True))
    op.add_column("batches", sa.Column("external_ids", sa.Text(), nullable=True))
    op.add_column("outbox", sa.Column("opened", sa.Text(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.execute(sa.text(_LZ4)).scalar():
        # The arrays (about 15 kB each) are compressed out of line; lz4 is several times
        # cheaper than the default pglz to write and to read, which every claim and feed read do.
        for column in ("contact_ids", "external_ids"):
            op.execute(f"ALTER TABLE batches ALTER COLUMN {column} SET COMPRESSION lz4")
    op.create_index(
        "ix_batches_open_turn",
        "batches",
        ["channel_id", "batch", "broadcast_id"],
        sqlite_where=sa.text("state <> 1"),
        postgresql_where=sa.text("state <> 1"),
    )


def downgrade() -> None:
    # Back to a row per recipient: each batch's recipients without a row of their own get one,
    # PENDING ("as its batch"), and its open batches take the earlier layout's open state.
    if op.get_bind().dialect.name == "postgresql":
        expand = (
            "CROSS JOIN LATERAL ROWS FROM (json_array_elements_text(CAST(b.contact_ids AS json)),"
            " json_array_elements_text(CAST(b.external_ids AS json)))"
            " WITH ORDINALITY AS e(contact_id, external_id, i)"
        )
        seq, contact, external = "b.first_seq + e.i - 1", "e.contact_id", "e.external_id"
    else:
        expand = "JOIN json_each(b.contact_ids) AS e"
        seq, contact = "b.first_seq + e.key", "e.value"
        external = "json_extract(b.external_ids, '$[' || e.key || ']')"
    op.execute(
        "INSERT INTO deliveries (broadcast_id, seq, contact_id, external_id, outcome, reason)"
        f" SELECT b.broadcast_id, {seq}, {contact}, {external}, 0, '' FROM batches b {expand}"
        " WHERE b.contact_ids IS NOT NULL AND NOT EXISTS (SELECT 1 FROM deliveries r"
        f" WHERE r.broadcast_id = b.broadcast_id AND r.seq = {seq})"
    )
    op.execute("UPDATE batches SET state = 0 WHERE state = 2")
    op.drop_index("ix_batches_open_turn", "batches")
    with op.batch_alter_table("outbox") as o:
        o.drop_column("opened")
    with op.batch_alter_table("batches") as b:
        b.drop_column("external_ids")
        b.drop_column("contact_ids")
