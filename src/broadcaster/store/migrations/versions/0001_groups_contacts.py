"""Customer groups, their members, contacts and idempotent requests.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None
# Contract: the first schema, on which no earlier version runs.
kind = "contract"


def _time(name: str, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "customer_groups",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("display_name_folded", sa.String(1024), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("member_count", sa.BigInteger(), nullable=False),
        _time("create_time"),
        _time("update_time"),
    )
    op.create_index("ix_customer_groups_merchant_id", "customer_groups", ["merchant_id", "id"])
    op.create_table(
        "customer_group_members",
        sa.Column("group_id", sa.String(32), primary_key=True),
        sa.Column("customer_id", sa.String(128), primary_key=True),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("merchant_id", sa.String(64), nullable=False),
        sa.Column("channel_id", sa.String(64), nullable=False),
        sa.Column("external_id", sa.String(128), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("picture_uri", sa.String(2000), nullable=False),
        sa.Column("follower_state", sa.SmallInteger(), nullable=False),
        _time("last_interaction_time", nullable=True),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=True),
        sa.Column("has_conversation", sa.Boolean(), nullable=False),
        _time("observe_time"),
        _time("create_time"),
        _time("update_time"),
        sa.UniqueConstraint(
            "merchant_id", "channel_id", "external_id", name="uq_contacts_external"
        ),
    )
    op.create_index("ix_contacts_channel_id", "contacts", ["merchant_id", "channel_id", "id"])
    op.create_index(
        "ix_contacts_customer", "contacts", ["merchant_id", "channel_id", "customer_id"]
    )
    op.create_table(
        "idempotent_requests",
        sa.Column("merchant_id", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("resource_name", sa.String(512), nullable=False),
        _time("create_time"),
    )


def downgrade() -> None:
    op.drop_table("idempotent_requests")
    op.drop_index("ix_contacts_customer", "contacts")
    op.drop_index("ix_contacts_channel_id", "contacts")
    op.drop_table("contacts")
    op.drop_table("customer_group_members")
    op.drop_index("ix_customer_groups_merchant_id", "customer_groups")
    op.drop_table("customer_groups")
