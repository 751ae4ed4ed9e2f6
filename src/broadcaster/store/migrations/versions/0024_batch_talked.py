"""Recipients who had a conversation, noted on their batch by the snapshot (`batches.talked`):
recording a delivered batch then opens conversations for the others without reading each
recipient's contact.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None
kind = "expand"


def upgrade() -> None:
    op.add_column("batches", sa.Column("talked", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as b:
        b.drop_column("talked")
