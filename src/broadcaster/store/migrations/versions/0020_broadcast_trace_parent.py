"""Broadcasts keep the W3C traceparent of the call that started them (tracing).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    # Nullable, no default: adding it rewrites no row, and a version that does not know it
    # runs on beside one that does.
    op.add_column("broadcasts", sa.Column("trace_parent", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("broadcasts", "trace_parent")
