"""Audience counts against a brute-force reading of the audience rules
(docs/architecture.md), for random contact sets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, delete, text

from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import (
    AccountTier,
    ContactChange,
    ContactFilter,
    ContactImport,
    FollowerState,
)
from broadcaster.domain.paging import Page
from broadcaster.store import audience, channel_contacts, channels, contacts, groups
from broadcaster.store.channel_contacts import ContactNews
from broadcaster.store.clock import from_us, to_us
from broadcaster.store.database import Database
from broadcaster.store.tables import contacts as contact_rows

# Mid-day, so that windows start part-way through a day: counts add whole days from the
# counters and read the first, partial day from the index.
NOW = datetime(2026, 6, 1, 13, 37, tzinfo=UTC)
CUSTOMERS = [f"cust-{n}" for n in range(6)]

_contact = st.fixed_dictionaries(
    {
        "hours_ago": st.one_of(st.none(), st.integers(0, 24 * 400)),
        "opted_out": st.booleans(),
        "state": st.sampled_from(list(FollowerState)),
        "customer": st.one_of(st.none(), st.sampled_from(CUSTOMERS)),
    }
)


def _brute(
    people: list[dict], window: InteractionWindow, members: set[str] | None
) -> tuple[int, int, int]:  # type: ignore[type-arg]
    matched = []
    for p in people:
        if window.value is not None and (
            p["hours_ago"] is None or timedelta(hours=p["hours_ago"]) > window.value
        ):
            continue
        if members is not None and p["customer"] not in members:
            continue
        matched.append(p)
    opted = [p for p in matched if p["opted_out"]]
    blocked = [p for p in matched if not p["opted_out"] and p["state"] == FollowerState.BLOCKED]
    return len(matched), len(opted), len(blocked)


def seed_people(
    conn: Connection,
    merchant: str,
    channel: str,
    people: list[dict],  # type: ignore[type-arg]
    members: set[str] | None,
) -> str | None:
    """A channel holding `people` as contacts (U0, U1, …) and, unless `members` is None, a
    customer group of those customers; returns the group's id."""
    channels.create(
        conn,
        merchant,
        channel,
        "fake",
        (AccountTier.VERIFIED, channel, "", "", ""),
        "x",
        from_us(1),
    )
    if people:
        items = [
            ContactImport(
                external_id=f"U{n}",
                display_name="",
                picture_uri="",
                follower_state=p["state"],
                last_interaction_time=None
                if p["hours_ago"] is None
                else NOW - timedelta(hours=p["hours_ago"]),
                opted_out=p["opted_out"],
                customer_id=p["customer"],
                observe_time=NOW,
            )
            for n, p in enumerate(people)
        ]
        contacts.merge(conn, merchant, channel, items, NOW)
    if members is None:
        return None
    group = groups.create(conn, merchant, new_id(), "g", "", from_us(1))
    if members:
        groups.add_members(conn, group, sorted(members), from_us(1))
    return group.id


# Changes after the contacts are known: (contact index, new customer link, opt-out, hours ago of
# a new interaction, new follower state). They go through the same paths as UpdateContact and
# webhooks, so the group table's triggers are exercised too.
_change = st.tuples(
    st.integers(0, 39),
    st.one_of(st.none(), st.sampled_from(CUSTOMERS)),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 24 * 400)),
    st.sampled_from([FollowerState.FOLLOWING, FollowerState.BLOCKED]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    people=st.lists(_contact, max_size=40),
    window=st.sampled_from(list(InteractionWindow)),
    members=st.one_of(st.none(), st.sets(st.sampled_from(CUSTOMERS))),
    changes=st.lists(_change, max_size=8),
    removed=st.sets(st.sampled_from(CUSTOMERS), max_size=2),
    added=st.sets(st.sampled_from(CUSTOMERS), max_size=2),
)
async def test_counts_match_the_rules(
    db: Database,
    merchant: str,
    people: list[dict],  # type: ignore[type-arg]
    window: InteractionWindow,
    members: set[str] | None,
    changes: list[tuple[int, str | None, bool, int | None, FollowerState]],
    removed: set[str],
    added: set[str],
) -> None:
    channel = new_id()

    def seed(conn) -> str | None:  # type: ignore[no-untyped-def]
        return seed_people(conn, merchant, channel, people, members)

    def change(conn) -> None:  # type: ignore[no-untyped-def]
        stored = {
            c.external_id: c
            for c in contacts.list_page(conn, merchant, channel, ContactFilter(), Page(100, None))
        }
        for index, customer, opted, hours_ago, state in changes:
            if index >= len(people):
                continue
            p = people[index]
            contact_id = stored[f"U{index}"].id
            edit = ContactChange(
                opted_out=opted, customer_id=customer, clear_customer=customer is None
            )
            contacts.change(conn, merchant, channel, contact_id, edit, from_us(2))
            p["opted_out"], p["customer"] = opted, customer
            if hours_ago is not None:
                ts = to_us(NOW - timedelta(hours=hours_ago))
                news = ContactNews(f"U{index}", from_us(ts), state, from_us(ts), False)
                channel_contacts.record_news(conn, merchant, channel, [news], from_us(2))
                if p["hours_ago"] is None or hours_ago < p["hours_ago"]:
                    p["hours_ago"] = hours_ago
                # Imported contacts start with state time 0; news applies when not older.
                if ts >= p.setdefault("state_time", 0):
                    p["state"], p["state_time"] = state, ts
        if group_id is not None:
            group = groups.get(conn, merchant, group_id)
            assert group is not None
            if removed:
                groups.remove_members(conn, group, sorted(removed), from_us(3))
            if added:
                groups.add_members(conn, group, sorted(added), from_us(4))

    group_id = await db.write(seed)
    await db.write(change)
    if members is not None:
        members = members - removed | added
    since = None if window.value is None else NOW - window.value
    got = await db.read(audience.count, merchant, channel, since, group_id)
    assert (got.matched, got.opted_out, got.unreachable) == _brute(people, window, members)
    everyone = await db.read(audience.count, merchant, channel, since, None)
    assert (everyone.matched, everyone.opted_out, everyone.unreachable) == _brute(
        people, window, None
    )
    assert await db.read(_counters, channel) == await db.read(_recount, channel)


_DAY = f"COALESCE(last_interaction_time / {audience.DAY_US}, -2147483648)"
_FLAGS = (
    "count(*), sum(CASE WHEN opted_out THEN 1 ELSE 0 END),"
    f" sum(CASE WHEN follower_state = {int(FollowerState.BLOCKED)} AND NOT opted_out"
    " THEN 1 ELSE 0 END)"
)


def _counters(conn: Connection, channel: str) -> set[tuple[str, int, int, int, int]]:
    """The channel's counters, without days that count nobody any more."""
    rows = conn.execute(
        text(
            "SELECT group_id, day, contacts, opted_out, blocked FROM audience_counts"
            " WHERE channel_id = :ch AND (contacts <> 0 OR opted_out <> 0 OR blocked <> 0)"
        ),
        {"ch": channel},
    )
    return {(g, int(d), int(n), int(o), int(b)) for g, d, n, o, b in rows}


def _recount(conn: Connection, channel: str) -> set[tuple[str, int, int, int, int]]:
    """The same counters, counted afresh from contacts and group_contacts."""
    rows = conn.execute(
        text(
            f"SELECT '', {_DAY}, {_FLAGS} FROM contacts WHERE channel_id = :ch GROUP BY 2"
            f" UNION ALL SELECT group_id, {_DAY}, {_FLAGS} FROM group_contacts"
            " WHERE channel_id = :ch GROUP BY 1, 2"
        ),
        {"ch": channel},
    )
    return {(g, int(d), int(n), int(o), int(b)) for g, d, n, o, b in rows}


# Bulk statements on contacts: an import, a follower list page, followers found gone, a delete.
# Each is one statement over many rows, so the derived rows are kept by whatever triggers fire
# for the statement (per row on SQLite, per statement on PostgreSQL).
_bulk = st.lists(
    st.tuples(
        st.sampled_from(["merge", "followers", "unlisted", "delete", "members"]),
        st.sets(st.integers(0, 39), max_size=40),
        st.one_of(st.none(), st.sampled_from(CUSTOMERS)),
        st.booleans(),
        st.sampled_from(list(FollowerState)),
    ),
    max_size=5,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    people=st.lists(_contact, min_size=1, max_size=40),
    members=st.sets(st.sampled_from(CUSTOMERS)),
    steps=_bulk,
)
async def test_group_rows_and_counters_follow_bulk_statements(
    db: Database,
    merchant: str,
    people: list[dict],  # type: ignore[type-arg]
    members: set[str],
    steps: list[tuple[str, set[int], str | None, bool, FollowerState]],
) -> None:
    channel = new_id()

    def run(conn) -> None:  # type: ignore[no-untyped-def]
        group_id = seed_people(conn, merchant, channel, people, members)
        assert group_id is not None
        for n, (kind, chosen, customer, flag, state) in enumerate(steps, start=1):
            ids = sorted(f"U{i}" for i in chosen if i < len(people))
            at = NOW + timedelta(minutes=n)
            if kind == "merge":  # a newer import: links to another customer, opts out
                items = [
                    ContactImport(
                        external_id=external_id,
                        display_name="",
                        picture_uri="",
                        follower_state=state,
                        last_interaction_time=at,
                        opted_out=flag,
                        customer_id=customer,
                        observe_time=at,
                    )
                    for external_id in ids
                ]
                contacts.merge(conn, merchant, channel, items, at)
            elif kind == "followers":
                listed = [(external_id, "", "") for external_id in ids]
                channel_contacts.record_followers(conn, merchant, channel, n, listed, at)
            elif kind == "unlisted":
                channel_contacts.mark_unlisted_blocked(conn, merchant, channel, n, at, at)
            elif kind == "delete":
                rows = contact_rows.c
                conn.execute(
                    delete(contact_rows).where(
                        rows.channel_id == channel, rows.external_id.in_(ids)
                    )
                )
            else:
                group = groups.get(conn, merchant, group_id)
                assert group is not None
                change = groups.add_members if flag else groups.remove_members
                change(conn, group, [customer or CUSTOMERS[0]], from_us(to_us(at)))

    await db.write(run)
    assert await db.read(_group_rows, channel) == await db.read(_regroup, channel)
    assert await db.read(_counters, channel) == await db.read(_recount, channel)


@pytest.mark.postgres
async def test_one_statement_moves_the_counters_once(db: Database, merchant: str) -> None:
    """On PostgreSQL a statement over many linked contacts writes their group rows, and moves
    the channel's group counters, once, not once per contact: each counter update in a
    transaction that already updated the row leaves one more row version for the next to walk,
    so per-row updates made a statement's cost grow with the square of its contacts."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("statement triggers are PostgreSQL's")
    channel = new_id()
    people = [
        {"hours_ago": None, "opted_out": False, "state": FollowerState.FOLLOWING, "customer": c}
        for c in CUSTOMERS
    ] * 5

    def counted(conn: Connection, statement: Callable[[], object]) -> dict[str, int]:
        """How often the group rows' counter trigger ran for `statement`, by operation."""
        conn.execute(text("SET LOCAL track_functions = 'pl'"))
        before = _group_counter_calls(conn)
        statement()
        after = _group_counter_calls(conn).items()
        return {k: n - before.get(k, 0) for k, n in after if n > before.get(k, 0)}

    def run(conn: Connection) -> list[dict[str, int]]:
        group = groups.create(conn, merchant, new_id(), "g", "", from_us(1))
        groups.add_members(conn, group, CUSTOMERS, from_us(1))
        changes = [
            "UPDATE contacts SET update_time = update_time + 1 WHERE channel_id = :ch",
            "UPDATE contacts SET follower_state = 2, last_interaction_time = 1"
            " WHERE channel_id = :ch",
            "UPDATE contacts SET customer_id = NULL WHERE channel_id = :ch AND external_id < 'U2'",
            "DELETE FROM contacts WHERE channel_id = :ch",
        ]
        return [
            counted(conn, lambda: seed_people(conn, merchant, channel, people, None)),
            *(counted(conn, lambda s=s: conn.execute(text(s), {"ch": channel})) for s in changes),
        ]

    inserted, untouched, moved, unlinked, deleted = await db.write(run)
    assert (inserted, untouched, moved) == ({"insert": 1}, {}, {"update": 1})
    assert (unlinked, deleted) == ({"delete": 1}, {"delete": 1})


def _group_counter_calls(conn: Connection) -> dict[str, int]:
    """This transaction's runs so far of the trigger that counts group rows, by operation."""
    rows = conn.execute(
        text(
            "SELECT funcname, calls FROM pg_stat_xact_user_functions"
            " WHERE funcname LIKE 'broadcaster_audience_counts_group_contacts_%'"
        )
    )
    return {name.rsplit("_", 1)[1]: int(n) for name, n in rows}


def _group_rows(conn: Connection, channel: str) -> set[tuple[str, str, int | None, bool, int]]:
    rows = conn.execute(
        text(
            "SELECT group_id, contact_id, last_interaction_time, opted_out, follower_state"
            " FROM group_contacts WHERE channel_id = :ch"
        ),
        {"ch": channel},
    )
    return {(g, c, t, bool(o), int(s)) for g, c, t, o, s in rows}


def _regroup(conn: Connection, channel: str) -> set[tuple[str, str, int | None, bool, int]]:
    """The same rows, found afresh: each contact in each of its merchant's groups holding its
    customer."""
    rows = conn.execute(
        text(
            "SELECT m.group_id, c.id, c.last_interaction_time, c.opted_out, c.follower_state"
            " FROM contacts c JOIN customer_group_members m ON m.customer_id = c.customer_id"
            " JOIN customer_groups g ON g.id = m.group_id AND g.merchant_id = c.merchant_id"
            " WHERE c.channel_id = :ch"
        ),
        {"ch": channel},
    )
    return {(g, c, t, bool(o), int(s)) for g, c, t, o, s in rows}
