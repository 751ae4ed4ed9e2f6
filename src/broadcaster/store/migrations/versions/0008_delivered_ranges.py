"""Delivered batches recorded as ranges: the outbox holds one row per accepted batch (its
delivered recipients are the batch's deliveries still unresolved individually), a delivery's
SENT is implied by its accepted batch, a conversation names the delivery that created it, and
the outcome index covers only deliveries resolved one by one.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None
# Contract: it drops events and renames conversations, which the versions before read.
kind = "contract"

_PENDING, _SENT = 0, 1  # delivery outcomes
_BROADCAST_MESSAGE, _CONVERSATION_CREATED = 1, 2  # event kinds before this revision


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("broadcast_id", sa.String(32), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbox_merchant", "outbox", ["merchant_id", "seq"])
    # Each recipient event recorded so far becomes a range of one, in the same order.
    op.execute(
        "INSERT INTO outbox (merchant_id, channel_id, broadcast_id, first_seq, last_seq,"
        " create_time) SELECT e.merchant_id, e.channel_id, e.broadcast_id, d.seq, d.seq,"
        " e.create_time FROM events e JOIN deliveries d ON d.broadcast_id = e.broadcast_id"
        f" AND d.contact_id = e.contact_id WHERE e.kind = {_BROADCAST_MESSAGE} ORDER BY e.seq"
    )
    op.create_table(
        "conversations_opened",
        sa.Column("contact_id", sa.String(32), primary_key=True),
        sa.Column("broadcast_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )
    op.execute(
        "INSERT INTO conversations_opened (contact_id, broadcast_id, seq)"
        " SELECT v.contact_id, e.broadcast_id, d.seq FROM conversations v"
        f" JOIN events e ON e.contact_id = v.contact_id AND e.kind = {_CONVERSATION_CREATED}"
        " JOIN deliveries d ON d.broadcast_id = e.broadcast_id AND d.contact_id = v.contact_id"
    )
    op.drop_table("conversations")
    op.rename_table("conversations_opened", "conversations")
    op.drop_index("ix_events_merchant", "events")
    op.drop_table("events")
    op.execute(f"UPDATE deliveries SET outcome = {_PENDING} WHERE outcome = {_SENT}")
    op.drop_index("ix_deliveries_outcome", "deliveries")
    op.create_index(
        "ix_deliveries_resolved",
        "deliveries",
        ["broadcast_id", "outcome", "seq"],
        sqlite_where=sa.text("outcome <> 0"),
        postgresql_where=sa.text("outcome <> 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_resolved", "deliveries")
    op.create_index("ix_deliveries_outcome", "deliveries", ["broadcast_id", "outcome", "seq"])
    op.execute(
        f"UPDATE deliveries SET outcome = {_SENT} WHERE outcome = {_PENDING} AND EXISTS"
        " (SELECT 1 FROM batches b WHERE b.broadcast_id = deliveries.broadcast_id"
        " AND deliveries.seq BETWEEN b.first_seq AND b.first_seq + b.size - 1 AND b.state = 1)"
    )
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("contact_id", sa.String(32), nullable=False),
        sa.Column("broadcast_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("create_time", sa.BigInteger(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_merchant", "events", ["merchant_id", "seq"])
    op.execute(
        "INSERT INTO events (merchant_id, channel_id, contact_id, broadcast_id, kind, create_time)"
        " SELECT o.merchant_id, o.channel_id, d.contact_id, o.broadcast_id, k.kind,"
        " o.create_time FROM outbox o JOIN deliveries d ON d.broadcast_id = o.broadcast_id"
        f" AND d.seq BETWEEN o.first_seq AND o.last_seq AND d.outcome = {_SENT}"
        f" JOIN (SELECT {_CONVERSATION_CREATED} AS kind UNION ALL SELECT {_BROADCAST_MESSAGE})"
        " k ON k.kind = 1 OR EXISTS (SELECT 1 FROM conversations v WHERE v.contact_id ="
        " d.contact_id AND v.broadcast_id = d.broadcast_id AND v.seq = d.seq)"
        " ORDER BY o.seq, d.seq, k.kind DESC"
    )
    op.drop_index("ix_outbox_merchant", "outbox")
    op.drop_table("outbox")
    op.create_table("conversations_plain", sa.Column("contact_id", sa.String(32), primary_key=True))
    op.execute("INSERT INTO conversations_plain (contact_id) SELECT contact_id FROM conversations")
    op.drop_table("conversations")
    op.rename_table("conversations_plain", "conversations")
