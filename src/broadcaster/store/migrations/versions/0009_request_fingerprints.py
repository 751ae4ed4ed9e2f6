"""Request ids bound to their request: each remembered request id keeps a fingerprint of the
request it was first used for, so the id reused for a different request can be refused. Rows
from before keep no fingerprint and answer as they did.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    with op.batch_alter_table("idempotent_requests") as batch:
        batch.add_column(sa.Column("request_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("idempotent_requests") as batch:
        batch.drop_column("request_hash")
