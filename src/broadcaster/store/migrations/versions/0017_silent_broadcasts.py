"""Silent sends: a broadcast's `notification_disabled` option.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as b:
        b.add_column(
            sa.Column(
                "notification_disabled", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("broadcasts") as b:
        b.drop_column("notification_disabled")
