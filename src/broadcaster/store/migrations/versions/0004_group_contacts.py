"""group_contacts (contacts of a customer group, for audience counts) and its triggers;
indexes for audience exclusions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None
kind = "expand"

_COLUMNS = "group_id, contact_id, channel_id, last_interaction_time, opted_out, follower_state"
# The groups of the contact's merchant that hold its customer.
_FROM_MEMBERS = (
    "SELECT m.group_id, NEW.id, NEW.channel_id, NEW.last_interaction_time, NEW.opted_out,"
    " NEW.follower_state FROM customer_group_members m JOIN customer_groups g ON g.id = m.group_id"
    " WHERE m.customer_id = NEW.customer_id AND g.merchant_id = NEW.merchant_id"
)
_WATCHED = "customer_id, last_interaction_time, opted_out, follower_state"

_SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER group_contacts_on_insert AFTER INSERT ON contacts
    WHEN NEW.customer_id IS NOT NULL BEGIN
      INSERT OR IGNORE INTO group_contacts ({_COLUMNS}) {_FROM_MEMBERS};
    END""",
    f"""CREATE TRIGGER group_contacts_on_update AFTER UPDATE OF {_WATCHED} ON contacts
    WHEN OLD.customer_id IS NOT NULL OR NEW.customer_id IS NOT NULL BEGIN
      DELETE FROM group_contacts WHERE contact_id = OLD.id;
      INSERT OR IGNORE INTO group_contacts ({_COLUMNS}) {_FROM_MEMBERS};
    END""",
    """CREATE TRIGGER group_contacts_on_delete AFTER DELETE ON contacts
    WHEN OLD.customer_id IS NOT NULL BEGIN
      DELETE FROM group_contacts WHERE contact_id = OLD.id;
    END""",
]

_PG_FUNCTION = f"""
CREATE FUNCTION broadcaster_group_contacts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    DELETE FROM group_contacts WHERE contact_id = OLD.id;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.customer_id IS NOT NULL THEN
    INSERT INTO group_contacts ({_COLUMNS}) {_FROM_MEMBERS} ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END $$"""
_PG_TRIGGERS = [
    """CREATE TRIGGER group_contacts_on_insert AFTER INSERT ON contacts FOR EACH ROW
    WHEN (NEW.customer_id IS NOT NULL) EXECUTE FUNCTION broadcaster_group_contacts()""",
    f"""CREATE TRIGGER group_contacts_on_update AFTER UPDATE OF {_WATCHED} ON contacts
    FOR EACH ROW WHEN (OLD.customer_id IS NOT NULL OR NEW.customer_id IS NOT NULL)
    EXECUTE FUNCTION broadcaster_group_contacts()""",
    """CREATE TRIGGER group_contacts_on_delete AFTER DELETE ON contacts FOR EACH ROW
    WHEN (OLD.customer_id IS NOT NULL) EXECUTE FUNCTION broadcaster_group_contacts()""",
]


def upgrade() -> None:
    op.create_table(
        "group_contacts",
        sa.Column("group_id", sa.String(32), primary_key=True),
        sa.Column("contact_id", sa.String(32), primary_key=True),
        sa.Column("channel_id", sa.String(32), nullable=False),
        sa.Column("last_interaction_time", sa.BigInteger(), nullable=True),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("follower_state", sa.SmallInteger(), nullable=False),
    )
    op.create_index(
        "ix_group_contacts_audience",
        "group_contacts",
        ["group_id", "channel_id", "last_interaction_time", "opted_out", "follower_state"],
    )
    op.create_index("ix_group_contacts_contact", "group_contacts", ["contact_id"])
    op.create_index(
        "ix_customer_group_members_customer", "customer_group_members", ["customer_id", "group_id"]
    )
    op.create_index("ix_contacts_merchant_customer", "contacts", ["merchant_id", "customer_id"])
    op.create_index(
        "ix_contacts_opted_out",
        "contacts",
        ["merchant_id", "channel_id", "opted_out", "last_interaction_time"],
    )
    op.create_index(
        "ix_contacts_state",
        "contacts",
        ["merchant_id", "channel_id", "follower_state", "opted_out", "last_interaction_time"],
    )
    # Contacts linked before this revision, into their groups.
    op.execute(
        f"INSERT INTO group_contacts ({_COLUMNS}) SELECT m.group_id, c.id, c.channel_id,"
        " c.last_interaction_time, c.opted_out, c.follower_state FROM contacts c"
        " JOIN customer_group_members m ON m.customer_id = c.customer_id"
        " JOIN customer_groups g ON g.id = m.group_id AND g.merchant_id = c.merchant_id"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        triggers = _PG_TRIGGERS
    else:
        triggers = _SQLITE_TRIGGERS
    for trigger in triggers:
        op.execute(trigger)


def downgrade() -> None:
    for name in (
        "group_contacts_on_insert",
        "group_contacts_on_update",
        "group_contacts_on_delete",
    ):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER {name} ON contacts")
        else:
            op.execute(f"DROP TRIGGER {name}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION broadcaster_group_contacts()")
    op.drop_index("ix_contacts_state", "contacts")
    op.drop_index("ix_contacts_opted_out", "contacts")
    op.drop_index("ix_contacts_merchant_customer", "contacts")
    op.drop_index("ix_customer_group_members_customer", "customer_group_members")
    op.drop_index("ix_group_contacts_contact", "group_contacts")
    op.drop_index("ix_group_contacts_audience", "group_contacts")
    op.drop_table("group_contacts")
