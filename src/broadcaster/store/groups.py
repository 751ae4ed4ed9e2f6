"""Customer groups and their members."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Row, delete, func, insert, select, text, update

from broadcaster.domain import lifecycle
from broadcaster.domain.lifecycle import Transition
from broadcaster.domain.model import CustomerGroup
from broadcaster.domain.paging import Page
from broadcaster.store import bulk
from broadcaster.store.clock import from_us, to_us
from broadcaster.store.tables import broadcasts, group_contacts
from broadcaster.store.tables import customer_group_members as members
from broadcaster.store.tables import customer_groups as groups

# States of a broadcast whose audience is still to be resolved: those Send may start from.
# Drafts and scheduled broadcasts: they read the group when they are sent.
UNSENT = lifecycle.sources(Transition.SEND) | lifecycle.sources(Transition.FIRE)


def _group(row: Row[tuple[object, ...]]) -> CustomerGroup:
    m = row._mapping
    return CustomerGroup(
        merchant=m["merchant_id"],
        id=m["id"],
        display_name=m["display_name"],
        description=m["description"],
        member_count=m["member_count"],
        create_time=from_us(m["create_time"]),
        update_time=from_us(m["update_time"]),
    )


def create(
    conn: Connection,
    merchant: str,
    group_id: str,
    display_name: str,
    description: str,
    now: datetime,
) -> CustomerGroup:
    now_us = to_us(now)
    conn.execute(
        insert(groups).values(
            id=group_id,
            merchant_id=merchant,
            display_name=display_name,
            display_name_folded=display_name.casefold(),
            description=description,
            member_count=0,
            create_time=now_us,
            update_time=now_us,
        )
    )
    found = get(conn, merchant, group_id)
    assert found is not None
    return found


def get(
    conn: Connection, merchant: str, group_id: str, *, lock: bool = False, share: bool = False
) -> CustomerGroup | None:
    """The group; `lock` locks its row for an update, `share` keeps it from being deleted
    until the transaction ends (PostgreSQL; SQLite writes one transaction at a time)."""
    query = select(groups).where(groups.c.merchant_id == merchant, groups.c.id == group_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()
    elif share and conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True, key_share=True)
    row = conn.execute(query).first()
    return None if row is None else _group(row)


def existing(conn: Connection, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the groups (merchant, id) exist, each kept from being deleted until the
    transaction ends (as `get` with `share`): one statement for all."""
    if not keys:
        return set()
    query = select(groups.c.merchant_id, groups.c.id).where(
        groups.c.id.in_(sorted({g for _, g in keys}))
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True, key_share=True)
    return {(m, g) for m, g in conn.execute(query)} & keys


def list_page(conn: Connection, merchant: str, contains: str, page: Page) -> list[CustomerGroup]:
    """Newest first; `page.size + 1` rows so the caller knows whether another page follows."""
    query = select(groups).where(groups.c.merchant_id == merchant)
    if contains:
        query = query.where(
            groups.c.display_name_folded.contains(contains.casefold(), autoescape=True)
        )
    if page.after is not None:
        query = query.where(groups.c.id < page.after)
    rows = conn.execute(query.order_by(groups.c.id.desc()).limit(page.size + 1))
    return [_group(r) for r in rows]


def rename(
    conn: Connection,
    group: CustomerGroup,
    display_name: str,
    description: str,
    now: datetime,
) -> CustomerGroup:
    """New display name and description (the caller passes the current value of one it keeps)."""
    conn.execute(
        update(groups)
        .where(groups.c.id == group.id)
        .values(
            display_name=display_name,
            display_name_folded=display_name.casefold(),
            description=description,
            update_time=to_us(now),
        )
    )
    found = get(conn, group.merchant, group.id)
    assert found is not None
    return found


def members_page(conn: Connection, group_id: str, page: Page) -> list[str]:
    """Customer ids in ascending order after `page.after`; `page.size + 1` of them so the caller
    knows whether another page follows (the primary key's order)."""
    query = select(members.c.customer_id).where(members.c.group_id == group_id)
    if page.after is not None:
        query = query.where(members.c.customer_id > page.after)
    rows = conn.execute(query.order_by(members.c.customer_id).limit(page.size + 1))
    return [str(r[0]) for r in rows]


def drafts_using(conn: Connection, merchant: str, group_id: str, limit: int) -> list[str]:
    """Ids of broadcasts still to be sent (drafts, scheduled ones) whose audience names the
    group."""
    rows = conn.execute(
        select(broadcasts.c.id)
        .where(
            broadcasts.c.merchant_id == merchant,
            broadcasts.c.customer_group_id == group_id,
            broadcasts.c.state.in_([int(s) for s in UNSENT]),
        )
        .order_by(broadcasts.c.id)
        .limit(limit)
    )
    return [str(r[0]) for r in rows]


def delete_group(conn: Connection, merchant: str, group_id: str) -> bool:
    gone = conn.execute(
        delete(groups).where(groups.c.merchant_id == merchant, groups.c.id == group_id)
    )
    if gone.rowcount == 0:
        return False
    conn.execute(delete(members).where(members.c.group_id == group_id))
    conn.execute(delete(group_contacts).where(group_contacts.c.group_id == group_id))
    return True


def _recount(conn: Connection, group_id: str, now: int) -> int:
    count = conn.execute(
        select(func.count()).select_from(members).where(members.c.group_id == group_id)
    ).scalar_one()
    conn.execute(
        update(groups).where(groups.c.id == group_id).values(member_count=count, update_time=now)
    )
    return int(count)


def add_members(
    conn: Connection, group: CustomerGroup, customer_ids: list[str], now: datetime
) -> int:
    """Insert the ids that are not members yet, in one statement; returns the new member count."""
    now_us = to_us(now)
    into, ignore = bulk.insert_ignore(conn)
    conn.execute(
        text(
            f"{into} customer_group_members (group_id, customer_id) "
            f"SELECT DISTINCT :group_id, {bulk.json_scalar_text(conn)} "
            f"FROM {bulk.json_table(conn, 'ids')} {ignore}"
        ),
        {"group_id": group.id, "ids": bulk.json_param(customer_ids)},
    )
    conn.execute(
        text(
            f"{into} group_contacts (group_id, contact_id, channel_id, last_interaction_time,"
            " opted_out, follower_state) SELECT :group_id, c.id, c.channel_id,"
            " c.last_interaction_time, c.opted_out, c.follower_state FROM contacts c"
            " WHERE c.merchant_id = :merchant AND "
            + bulk.in_strings(conn, "c.customer_id", "ids")
            + f" {ignore}"
        ),
        {
            "group_id": group.id,
            "merchant": group.merchant,
            "ids": bulk.strings_param(conn, customer_ids),
        },
    )
    return _recount(conn, group.id, now_us)


def remove_members(
    conn: Connection, group: CustomerGroup, customer_ids: list[str], now: datetime
) -> int:
    """Delete the given ids from the group, in one statement; returns the new member count."""
    now_us = to_us(now)
    conn.execute(
        text(
            "DELETE FROM customer_group_members WHERE group_id = :group_id AND "
            + bulk.in_strings(conn, "customer_id", "ids")
        ),
        {"group_id": group.id, "ids": bulk.strings_param(conn, customer_ids)},
    )
    conn.execute(
        text(
            "DELETE FROM group_contacts WHERE group_id = :group_id AND contact_id IN"
            " (SELECT c.id FROM contacts c WHERE c.merchant_id = :merchant AND "
            + bulk.in_strings(conn, "c.customer_id", "ids")
            + ")"
        ),
        {
            "group_id": group.id,
            "merchant": group.merchant,
            "ids": bulk.strings_param(conn, customer_ids),
        },
    )
    return _recount(conn, group.id, now_us)
