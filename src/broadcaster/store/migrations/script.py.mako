"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}
# "expand" (only adds: the version before runs on the schema it leaves) or "contract" (removes,
# renames or changes what an earlier version uses; with `compatible_with = "<revision>"`, the
# release at that revision, which no longer uses it, still runs): docs/operations.md, "Upgrade".
kind = "expand"


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
