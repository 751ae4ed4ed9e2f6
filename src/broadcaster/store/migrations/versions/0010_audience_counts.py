"""audience_counts: contacts per channel (and per customer group) by day of last interaction,
kept by triggers on contacts and group_contacts, so audience counts add up a few hundred rows
instead of reading every contact of the channel.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None
kind = "expand"

DAY_US = 86_400_000_000
NEVER = -(2**31)  # the day of contacts who never interacted: before any real day
_BLOCKED = 2  # FollowerState.BLOCKED

_COLUMNS = "channel_id, group_id, day, contacts, opted_out, blocked"
_ADD = (
    "ON CONFLICT (channel_id, group_id, day) DO UPDATE SET"
    " contacts = audience_counts.contacts + excluded.contacts,"
    " opted_out = audience_counts.opted_out + excluded.opted_out,"
    " blocked = audience_counts.blocked + excluded.blocked"
)
# The tables whose rows are counted, and the group each row counts in ('' for the channel).
_COUNTED = {"contacts": "''", "group_contacts": "{row}.group_id"}


def _day(row: str) -> str:
    return f"COALESCE({row}.last_interaction_time / {DAY_US}, {NEVER})"


def _opted(row: str) -> str:
    return f"CASE WHEN {row}.opted_out THEN 1 ELSE 0 END"


def _blocked(row: str) -> str:
    return f"CASE WHEN {row}.follower_state = {_BLOCKED} AND NOT {row}.opted_out THEN 1 ELSE 0 END"


def _counted(table: str, row: str, sign: str) -> str:
    """The counted columns of one row, with `sign` ('' or '-')."""
    group = _COUNTED[table].format(row=row)
    return (
        f"{row}.channel_id AS c, {group} AS g, {_day(row)} AS d, {sign}1 AS n,"
        f" {sign}{_opted(row)} AS o, {sign}{_blocked(row)} AS b"
    )


def _sqlite_triggers(table: str) -> list[str]:
    # SELECT rather than VALUES, for the column names; WHERE true tells SQLite's parser that
    # ON CONFLICT starts the upsert, not a join constraint.
    add = f"INSERT INTO audience_counts ({_COLUMNS}) SELECT {_counted(table, 'NEW', '')}"
    add += f" WHERE true {_ADD};"
    sub = f"INSERT INTO audience_counts ({_COLUMNS}) SELECT {_counted(table, 'OLD', '-')}"
    sub += f" WHERE true {_ADD};"
    group = _COUNTED[table]
    moved = " OR ".join(
        f"{expr.format(row='OLD')} IS NOT {expr.format(row='NEW')}"
        for expr in ("{row}.channel_id", group, _day("{row}"), _opted("{row}"), _blocked("{row}"))
    )
    watched = "channel_id, last_interaction_time, opted_out, follower_state"
    if table == "group_contacts":
        watched += ", group_id"
    return [
        f"CREATE TRIGGER audience_counts_{table}_insert AFTER INSERT ON {table} BEGIN {add} END",
        f"CREATE TRIGGER audience_counts_{table}_update AFTER UPDATE OF {watched} ON {table}"
        f" WHEN {moved} BEGIN {sub} {add} END",
        f"CREATE TRIGGER audience_counts_{table}_delete AFTER DELETE ON {table} BEGIN {sub} END",
    ]


# PostgreSQL: one statement-level trigger per table and operation, reading the statement's
# transition tables, so a bulk upsert of contacts adds one aggregate per statement rather than
# one counter update per row; the rows are upserted in key order, so concurrent writers take
# the counters' row locks in the same order.
_PG_OPERATIONS = {
    "insert": ("INSERT", "REFERENCING NEW TABLE AS new_rows", ("new_rows",)),
    "update": (
        "UPDATE",
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        ("new_rows", "old_rows"),
    ),
    "delete": ("DELETE", "REFERENCING OLD TABLE AS old_rows", ("old_rows",)),
}


def _pg_function(table: str, operation: str) -> str:
    _, _, sources = _PG_OPERATIONS[operation]
    parts = " UNION ALL ".join(
        f"SELECT {_counted(table, source, '-' if source == 'old_rows' else '')} FROM {source}"
        for source in sources
    )
    return f"""
CREATE FUNCTION broadcaster_audience_counts_{table}_{operation}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO audience_counts ({_COLUMNS})
  SELECT c, g, d, sum(n), sum(o), sum(b) FROM ({parts}) AS change
  GROUP BY c, g, d HAVING sum(n) <> 0 OR sum(o) <> 0 OR sum(b) <> 0 ORDER BY c, g, d
  {_ADD};
  RETURN NULL;
END $$"""


def _pg_trigger(table: str, operation: str) -> str:
    event, referencing, _ = _PG_OPERATIONS[operation]
    return (
        f"CREATE TRIGGER audience_counts_{table}_{operation} AFTER {event} ON {table}"
        f" {referencing} FOR EACH STATEMENT"
        f" EXECUTE FUNCTION broadcaster_audience_counts_{table}_{operation}()"
    )


def upgrade() -> None:
    op.create_table(
        "audience_counts",
        sa.Column("channel_id", sa.String(64), primary_key=True),
        sa.Column("group_id", sa.String(32), primary_key=True),
        sa.Column("day", sa.BigInteger(), primary_key=True),
        sa.Column("contacts", sa.BigInteger(), nullable=False),
        sa.Column("opted_out", sa.BigInteger(), nullable=False),
        sa.Column("blocked", sa.BigInteger(), nullable=False),
    )
    # Contacts known before this revision: counted once, then kept by the triggers.
    for table in _COUNTED:
        op.execute(
            f"INSERT INTO audience_counts ({_COLUMNS})"
            f" SELECT c, g, d, sum(n), sum(o), sum(b)"
            f" FROM (SELECT {_counted(table, table, '')} FROM {table}) AS counted"
            " GROUP BY c, g, d"
        )
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in _COUNTED:
        if postgresql:
            for operation in _PG_OPERATIONS:
                op.execute(_pg_function(table, operation))
                op.execute(_pg_trigger(table, operation))
        else:
            for trigger in _sqlite_triggers(table):
                op.execute(trigger)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in _COUNTED:
        for operation in _PG_OPERATIONS:
            name = f"audience_counts_{table}_{operation}"
            if postgresql:
                op.execute(f"DROP TRIGGER {name} ON {table}")
                op.execute(f"DROP FUNCTION broadcaster_{name}()")
            else:
                op.execute(f"DROP TRIGGER {name}")
    op.drop_table("audience_counts")
