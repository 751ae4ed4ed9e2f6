"""On PostgreSQL, `group_contacts` follows `contacts` by one trigger per statement instead of one
per row.

Before, every linked contact a statement wrote ran the row trigger, whose own delete or insert
into `group_contacts` ran the statement trigger of `audience_counts` again: one counter upsert
per row, all on the channel's few counter rows. Each such update of a row the transaction has
already updated leaves one more row version for the next to walk past, so a statement's cost
grew with the square of its linked contacts: 100,000 linked contacts took 76.6 s to insert,
375 s for an UPDATE naming their follower state and 81.4 s to delete, holding the channel's
counters all the while. Now each statement's transition tables give the group rows in one
statement per kind of change, each looking its rows up by index as the row triggers did, and
the counters move once per statement: 3.1 s, 2.4 s (2.7-4.5 s where every state changes) and
0.3 s.

An UPDATE trigger cannot both name its columns and read transition tables, so the new one runs
on every UPDATE of `contacts` and looks first whether any row it saw is linked to a customer;
of those, only rows whose customer or counted columns changed touch `group_contacts`, and a
row that keeps its customer has its group rows updated in place rather than deleted and
inserted again. A one-row UPDATE of a linked contact that changes none of them costs about
50 µs more than before (it ran no trigger at all).

SQLite has no statement triggers, and updates a row in place; its row triggers stay.

An expand migration: the same rows, kept the same way; every release reads them alike.

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None
kind = "expand"

_COLUMNS = "group_id, contact_id, channel_id, last_interaction_time, opted_out, follower_state"
_COUNTED = "last_interaction_time, opted_out, follower_state"
# The rows a statement touched, as an array its statements look up by index, a row at a time as
# the row triggers did: a join of the transition table would let the planner read the whole
# table instead, as it does for a few hundred rows when the table's statistics lag its growth
# (each 500-contact chunk of a deleted channel read all of `group_contacts`).
_ANY = "ANY (ARRAY(SELECT {}))"


def _linked(rows: str) -> str:
    """The group rows of `rows` (a transition table, or a join naming it `n`): one per group of
    the contact's merchant holding its customer, in key order."""
    return (
        f"INSERT INTO group_contacts ({_COLUMNS}) SELECT m.group_id, n.id, n.channel_id,"
        " n.last_interaction_time, n.opted_out, n.follower_state"
        f" FROM {rows} JOIN customer_group_members m ON m.customer_id = n.customer_id"
        " JOIN customer_groups g ON g.id = m.group_id AND g.merchant_id = n.merchant_id"
        f" WHERE m.customer_id = {_ANY.format(f'n.customer_id FROM {rows}')}"
        " ORDER BY m.group_id, n.id ON CONFLICT DO NOTHING"
    )


# The rows of an UPDATE whose customer or a counted column moved, old (`o`) beside new (`n`);
# `_SAME`, `_GONE` and `_COME` below each take only linked ones.
_MOVED = (
    "FROM old_rows o JOIN new_rows n ON n.id = o.id"
    " WHERE (o.customer_id, o.last_interaction_time, o.opted_out, o.follower_state)"
    " IS DISTINCT FROM (n.customer_id, n.last_interaction_time, n.opted_out, n.follower_state)"
)
# Those of them that `{}` selects, narrowed to what group rows hold, as `n`, computed once: an
# UPDATE or DELETE joining the transition tables themselves would carry their whole (wide) rows
# through its sorts.
_PAIRS = (
    "WITH n AS MATERIALIZED (SELECT n.id, n.merchant_id, n.channel_id, n.customer_id,"
    f" n.last_interaction_time, n.opted_out, n.follower_state {_MOVED} AND {{}})"
)
_SAME = "o.customer_id = n.customer_id"
_GONE = "o.customer_id IS NOT NULL AND o.customer_id IS DISTINCT FROM n.customer_id"
_COME = "n.customer_id IS NOT NULL AND o.customer_id IS DISTINCT FROM n.customer_id"
_FUNCTIONS = {
    "insert": f"""
BEGIN
  IF EXISTS (SELECT 1 FROM new_rows WHERE customer_id IS NOT NULL) THEN
    {_linked("new_rows n")};
  END IF;""",
    "update": f"""
DECLARE
  same bigint;
  gone bigint;
  come bigint;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM new_rows WHERE customer_id IS NOT NULL)
     AND NOT EXISTS (SELECT 1 FROM old_rows WHERE customer_id IS NOT NULL) THEN
    RETURN NULL;
  END IF;
  SELECT count(*) FILTER (WHERE {_SAME}), count(*) FILTER (WHERE {_GONE}),
    count(*) FILTER (WHERE {_COME}) INTO same, gone, come {_MOVED};
  IF same > 0 THEN  -- the same customer: its group rows take the counted columns
    {_PAIRS.format(_SAME)} UPDATE group_contacts gc
    SET last_interaction_time = n.last_interaction_time, opted_out = n.opted_out,
      follower_state = n.follower_state
    FROM n WHERE gc.contact_id = n.id AND gc.contact_id = {_ANY.format("n.id FROM n")};
  END IF;
  IF gone > 0 THEN  -- linked to another customer, or to none: the old one's group rows go
    {_PAIRS.format(_GONE)} DELETE FROM group_contacts
    WHERE contact_id = {_ANY.format("n.id FROM n")};
  END IF;
  IF come > 0 THEN  -- and the new one's come
    {_PAIRS.format(_COME)} {_linked("n")};
  END IF;""",
    "delete": f"""
BEGIN
  IF EXISTS (SELECT 1 FROM old_rows WHERE customer_id IS NOT NULL) THEN
    DELETE FROM group_contacts
    WHERE contact_id = {_ANY.format("id FROM old_rows WHERE customer_id IS NOT NULL")};
  END IF;""",
}
_REFERENCING = {
    "insert": ("INSERT", "NEW TABLE AS new_rows"),
    "update": ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    "delete": ("DELETE", "OLD TABLE AS old_rows"),
}

# The row triggers this revision replaces, as revision 0004 made them.
_ROW_FUNCTION = f"""
CREATE FUNCTION broadcaster_group_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    DELETE FROM group_contacts WHERE contact_id = OLD.id;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.customer_id IS NOT NULL THEN
    INSERT INTO group_contacts ({_COLUMNS}) SELECT m.group_id, NEW.id, NEW.channel_id,
      NEW.last_interaction_time, NEW.opted_out, NEW.follower_state
    FROM customer_group_members m JOIN customer_groups g ON g.id = m.group_id
    WHERE m.customer_id = NEW.customer_id AND g.merchant_id = NEW.merchant_id
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END $$"""
_ROW_TRIGGERS = {
    "insert": "INSERT ON contacts FOR EACH ROW WHEN (NEW.customer_id IS NOT NULL)",
    "update": f"UPDATE OF customer_id, {_COUNTED} ON contacts FOR EACH ROW"
    " WHEN (OLD.customer_id IS NOT NULL OR NEW.customer_id IS NOT NULL)",
    "delete": "DELETE ON contacts FOR EACH ROW WHEN (OLD.customer_id IS NOT NULL)",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for operation in _ROW_TRIGGERS:
        op.execute(f"DROP TRIGGER group_contacts_on_{operation} ON contacts")
    op.execute("DROP FUNCTION broadcaster_group_contacts()")
    for operation, body in _FUNCTIONS.items():
        event, referencing = _REFERENCING[operation]
        op.execute(
            f"CREATE FUNCTION broadcaster_group_contacts_{operation}() RETURNS trigger"
            # Statements of many rows are estimated far above what they cost, and compiling
            # them costs more than running them.
            f" LANGUAGE plpgsql SET jit = off AS $${body}\n  RETURN NULL;\nEND $$"
        )
        op.execute(
            f"CREATE TRIGGER group_contacts_on_{operation} AFTER {event} ON contacts"
            f" REFERENCING {referencing} FOR EACH STATEMENT"
            f" EXECUTE FUNCTION broadcaster_group_contacts_{operation}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for operation in _FUNCTIONS:
        op.execute(f"DROP TRIGGER group_contacts_on_{operation} ON contacts")
        op.execute(f"DROP FUNCTION broadcaster_group_contacts_{operation}()")
    op.execute(_ROW_FUNCTION)
    for operation, when in _ROW_TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER group_contacts_on_{operation} AFTER {when}"
            " EXECUTE FUNCTION broadcaster_group_contacts()"
        )
