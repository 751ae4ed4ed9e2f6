"""The recipient snapshot: exactly the reachable contacts of the audience, numbered without
gaps in contact-id order, cut into batches that cover them once, each with its own key."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text, update

from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.deliveries import DeliveryOutcome
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import FollowerState
from broadcaster.store import batch_recipients, snapshot
from broadcaster.store.clock import to_us
from broadcaster.store.database import Database
from broadcaster.store.tables import batches, contacts
from tests.integration.recipients_rig import every_delivery, resolve
from tests.integration.test_audience import CUSTOMERS, NOW, _brute, _contact, seed_people


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    people=st.lists(_contact, max_size=40),
    window=st.sampled_from(list(InteractionWindow)),
    members=st.one_of(st.none(), st.sets(st.sampled_from(CUSTOMERS))),
    batch_size=st.integers(1, 7),
)
async def test_snapshot_fixes_the_reachable_audience(
    db: Database,
    merchant: str,
    people: list[dict],  # type: ignore[type-arg]
    window: InteractionWindow,
    members: set[str] | None,
    batch_size: int,
) -> None:
    channel, broadcast = new_id(), new_id()

    def seed_and_snapshot(conn):  # type: ignore[no-untyped-def]
        group_id = seed_people(conn, merchant, channel, people, members)
        _some_talked(conn, channel, len(people))
        since = None if window.value is None else NOW - window.value
        return snapshot.take(
            conn,
            merchant=merchant,
            channel=channel,
            broadcast=broadcast,
            since=since,
            group=group_id,
            batch_size=batch_size,
            now=NOW,
        )

    taken = await db.write(seed_and_snapshot)
    matched, opted_out, unreachable = _brute(people, window, members)
    assert (taken.opted_out, taken.unreachable) == (opted_out, unreachable)
    assert taken.recipients == matched - opted_out - unreachable

    def read(conn):  # type: ignore[no-untyped-def]
        rows = every_delivery(conn, broadcast)
        cut = conn.execute(
            select(batches).where(batches.c.broadcast_id == broadcast).order_by(batches.c.batch)
        ).all()
        return rows, cut, sorted(s for seqs in _noted(conn, broadcast).values() for s in seqs)

    rows, cut, talked = await db.read(read)
    # The seqs noted as having had a conversation are exactly those recipients'.
    assert talked == [r.seq for r in rows if r.external_id in _talking(len(people))]
    expected = sorted(
        f"U{n}" for n, p in enumerate(people) if _brute([p], window, members) == (1, 0, 0)
    )
    assert sorted(r.external_id for r in rows) == expected
    assert [r.seq for r in rows] == list(range(len(rows)))
    # Batches are cut in contact id order (within one, recipients come in any order).
    by_id = sorted(r.contact for r in rows)
    assert all(
        sorted(r.contact for r in rows[b.first_seq : b.first_seq + b.size])
        == by_id[b.first_seq : b.first_seq + b.size]
        for b in cut
    )
    assert all(r.outcome is DeliveryOutcome.PENDING for r in rows)
    covered = [s for b in cut for s in range(b.first_seq, b.first_seq + b.size)]
    assert covered == list(range(len(rows))) and len(cut) == taken.batches
    assert all(1 <= b.size <= batch_size for b in cut)
    keys = [b.idempotency_key for b in cut]
    assert len(set(keys)) == len(keys) and all(uuid.UUID(k) for k in keys)
    assert all(b.due_time == to_us(NOW) and b.attempts == 0 for b in cut)


_recent = st.fixed_dictionaries(
    {  # few distinct times, so that ties are common
        "hours_ago": st.one_of(st.none(), st.integers(0, 3)),
        "opted_out": st.booleans(),
        "state": st.sampled_from(list(FollowerState)),
        "customer": st.none(),
    }
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(people=st.lists(_recent, max_size=30), cap=st.integers(1, 35), batch_size=st.integers(1, 7))
async def test_a_capped_snapshot_takes_the_most_recent_and_leaves_out_the_rest(
    db: Database,
    merchant: str,
    people: list[dict],  # type: ignore[type-arg]
    cap: int,
    batch_size: int,
) -> None:
    """Recipients numbered by most recent interaction (never interacted last), ties by contact
    id; the first `cap` in batches, the rest NOT_SENT_LIMIT and in none."""
    channel, broadcast = new_id(), new_id()

    def seed_and_snapshot(conn):  # type: ignore[no-untyped-def]
        seed_people(conn, merchant, channel, people, None)
        return snapshot.take(
            conn, merchant=merchant, channel=channel, broadcast=broadcast, since=None,
            group=None, batch_size=batch_size, now=NOW, cap=cap,
        )  # fmt: skip

    taken = await db.write(seed_and_snapshot)

    def read(conn):  # type: ignore[no-untyped-def]
        c = contacts.c
        reachable = conn.execute(
            select(c.id, c.last_interaction_time).where(
                c.channel_id == channel,
                c.opted_out.is_(False),
                c.follower_state != int(FollowerState.BLOCKED),
            )
        ).all()
        rows = every_delivery(conn, broadcast)
        cut = conn.execute(select(batches).where(batches.c.broadcast_id == broadcast)).all()
        return reachable, rows, cut

    reachable, rows, cut = await db.read(read)
    expected = sorted(
        reachable,
        key=lambda r: (r.last_interaction_time is None, -(r.last_interaction_time or 0), r.id),
    )
    sent = min(cap, len(expected))
    assert (taken.recipients, taken.left_out_by_limit) == (sent, len(expected) - sent)
    # The batches take the most recent first (within one, in any order); the rest follow.
    assert [r.seq for r in rows] == list(range(len(rows)))
    assert all(
        sorted(r.contact for r in rows[b.first_seq : b.first_seq + b.size])
        == sorted(r.id for r in expected[b.first_seq : b.first_seq + b.size])
        for b in cut
    )
    assert [r.contact for r in rows[sent:]] == [r.id for r in expected[sent:]]
    assert [r.outcome for r in rows] == [DeliveryOutcome.PENDING] * sent + [
        DeliveryOutcome.NOT_SENT_LIMIT
    ] * (len(rows) - sent)
    covered = sorted(s for b in cut for s in range(b.first_seq, b.first_seq + b.size))
    assert covered == list(range(sent)) and len(cut) == taken.batches


_target = st.tuples(
    st.sampled_from(list(InteractionWindow)),
    st.booleans(),  # to the customer group
    st.one_of(st.none(), st.integers(0, 12)),  # a recipient limit
    st.integers(1, 7),  # batch size
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    people=st.lists(_contact, max_size=30),
    members=st.sets(st.sampled_from(CUSTOMERS)),
    wanted=st.lists(_target, min_size=1, max_size=5),
    resend=st.booleans(),
)
async def test_many_snapshots_at_once_fix_what_each_alone_would(
    db: Database,
    merchant: str,
    people: list[dict],  # type: ignore[type-arg]
    members: set[str],
    wanted: list[tuple[InteractionWindow, bool, int | None, int]],
    resend: bool,
) -> None:
    """take_many (scheduled broadcasts due together) writes for each broadcast exactly the
    deliveries and batches take writes for it alone, whatever mix of windows, groups, limits,
    batch sizes and resends it is given."""
    channel, source = new_id(), new_id()

    def both(conn):  # type: ignore[no-untyped-def]
        group = seed_people(conn, merchant, channel, people, members)
        _some_talked(conn, channel, len(people))
        if resend:  # a source broadcast, none of whose recipients were reached
            snapshot.take(
                conn,
                merchant=merchant,
                channel=channel,
                broadcast=source,
                since=None,
                group=None,
                batch_size=3,
                now=NOW,
            )
            stopped = [d.seq for d in every_delivery(conn, source)]
            resolve(conn, source, stopped, DeliveryOutcome.NOT_SENT_STOPPED)
        targets, alone = [], []
        for window, grouped, cap, size in wanted + ([(None, False, None, 2)] if resend else []):
            many, one = new_id(), new_id()
            since = None if window is None or window.value is None else NOW - window.value
            common = {
                "merchant": merchant,
                "channel": channel,
                "since": since,
                "group": group if grouped else None,
                "batch_size": size,
                "cap": cap,
                "resend_of": source if window is None else None,
            }
            targets.append(snapshot.Target(broadcast=many, **common))
            alone.append((one, snapshot.take(conn, broadcast=one, now=NOW, **common)))
        taken = snapshot.take_many(conn, targets, snapshot.count_many(conn, targets), NOW)
        return [
            ((taken[t.broadcast], _written(conn, t.broadcast)), (fixed, _written(conn, one)))
            for t, (one, fixed) in zip(targets, alone, strict=True)
        ]

    for many, alone in await db.write(both):
        assert many == alone


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    people=st.lists(_contact, max_size=30),
    members=st.one_of(st.none(), st.sets(st.sampled_from(CUSTOMERS))),
    window=st.sampled_from(list(InteractionWindow)),
    prepared_for=st.sampled_from(list(InteractionWindow)),
    batch_size=st.integers(1, 7),
)
async def test_a_prepared_snapshot_writes_what_take_alone_writes(
    db: Database,
    merchant: str,
    people: list[dict],  # type: ignore[type-arg]
    members: set[str] | None,
    window: InteractionWindow,
    prepared_for: InteractionWindow,
    batch_size: int,
) -> None:
    """SQLite: recipients numbered and batched by a reader ahead of the Send's transaction
    (prepare) are written as take numbers them itself; prepared for another audience (here
    another window), they are not used, and take numbers this one's."""
    if not snapshot.prepares(db.dialect):
        pytest.skip("PostgreSQL numbers a Send's recipients in its one statement")
    channel, prepared_one, alone = new_id(), new_id(), new_id()

    def since(w: InteractionWindow):  # type: ignore[no-untyped-def]
        return None if w.value is None else NOW - w.value

    def seed(conn):  # type: ignore[no-untyped-def]
        group = seed_people(conn, merchant, channel, people, members)
        _some_talked(conn, channel, len(people))
        return group

    group = await db.write(seed)
    prepared = await db.read(
        snapshot.prepare,
        merchant=merchant,
        channel=channel,
        since=since(prepared_for),
        group=group,
        batch_size=batch_size,
    )
    common = {"merchant": merchant, "channel": channel, "group": group, "now": NOW}

    def both(conn):  # type: ignore[no-untyped-def]
        common["since"] = since(window)
        common["batch_size"] = batch_size
        with_it = snapshot.take(conn, broadcast=prepared_one, prepared=prepared, **common)
        itself = snapshot.take(conn, broadcast=alone, **common)
        return (with_it, _written(conn, prepared_one)), (itself, _written(conn, alone))

    with_prepared, taken_alone = await db.write(both)
    assert with_prepared == taken_alone
    matched, opted_out, unreachable = _brute(people, window, members)
    assert with_prepared[0].recipients == matched - opted_out - unreachable


@pytest.mark.parametrize(
    ("people", "batch_size", "memory"),
    [
        (6_000, 50, "64kB"),  # sorted by batch number, the sort spilling to disk
        (100_000, 500, "4MB"),  # hashed by batch number, the hash table spilling to disk
    ],
)
async def test_batches_keep_the_numbering_order_when_their_grouping_spills_to_disk(
    db: Database,
    merchant: str,
    monkeypatch: pytest.MonkeyPatch,
    people: int,
    batch_size: int,
    memory: str,
) -> None:
    """PostgreSQL groups a Send's numbered recipients into batches by the batch number, each
    batch taking its rows in the order they come (a hash on the number, or for a small
    estimate a sort by it). With so little memory that either spills to disk (PostgreSQL's
    plans for these two sizes), each batch still holds its recipients in the numbering's
    order, and the seqs noted as having had a conversation are those recipients' (a
    recipient's seq is its place in its batch)."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite cuts a Send's batches from rows numbered in a table of their own")
    monkeypatch.setattr(snapshot, "SORT_MEMORY", memory)
    monkeypatch.setattr(snapshot, "SORT_SPILL", 0)  # the memory is set whatever the size
    channel, broadcast = new_id(), new_id()

    def seed_and_snapshot(conn):  # type: ignore[no-untyped-def]
        conn.execute(
            text(
                "INSERT INTO contacts (id, merchant_id, channel_id, external_id, display_name,"
                " picture_uri, follower_state, last_interaction_time, opted_out, customer_id,"
                " has_conversation, observe_time, create_time, update_time)"
                " SELECT :ch || lpad(CAST(i AS TEXT), 6, '0'), :m, :ch, 'U' || i, '', '',"
                f" {int(FollowerState.FOLLOWING)}, NULL, false, NULL, i % 3 = 0, 0, 0, 0"
                " FROM generate_series(0, :n - 1) AS i"
            ),
            {"m": merchant, "ch": channel, "n": people},
        )
        conn.execute(text("ANALYZE contacts"))
        taken = snapshot.take(
            conn,
            merchant=merchant,
            channel=channel,
            broadcast=broadcast,
            since=None,
            group=None,
            batch_size=batch_size,
            now=NOW,
        )
        return taken, every_delivery(conn, broadcast), _noted(conn, broadcast)

    taken, rows, noted = await db.write(seed_and_snapshot)
    assert taken.recipients == people and taken.batches == people // batch_size
    assert [r.external_id for r in rows] == [f"U{i}" for i in range(people)]
    assert sorted(s for seqs in noted.values() for s in seqs) == list(range(0, people, 3))


@pytest.mark.parametrize(("spill", "memory"), [(4, "32MB"), (5, None)])
async def test_only_a_snapshot_past_the_spill_size_sets_its_sort_memory(
    db: Database, merchant: str, monkeypatch: pytest.MonkeyPatch, spill: int, memory: str | None
) -> None:
    """A Send's snapshot on PostgreSQL gives its transaction SORT_MEMORY only when the audience
    counted more reachable recipients than SORT_SPILL; a smaller one keeps the server's."""
    if db.dialect != "postgresql":
        pytest.skip("work_mem is PostgreSQL's")
    monkeypatch.setattr(snapshot, "SORT_SPILL", spill)
    channel = new_id()
    people = [
        {"hours_ago": None, "opted_out": False, "state": FollowerState.FOLLOWING, "customer": None}
        for _ in range(5)
    ]

    def seed_and_snapshot(conn):  # type: ignore[no-untyped-def]
        default = conn.execute(text("SHOW work_mem")).scalar_one()
        seed_people(conn, merchant, channel, people, None)
        taken = snapshot.take(
            conn,
            merchant=merchant,
            channel=channel,
            broadcast=new_id(),
            since=None,
            group=None,
            batch_size=2,
            now=NOW,
        )
        return default, taken, conn.execute(text("SHOW work_mem")).scalar_one()

    default, taken, after = await db.write(seed_and_snapshot)
    assert (taken.recipients, taken.batches) == (5, 3)
    assert after == (memory or default)


def _written(conn, broadcast: str):  # type: ignore[no-untyped-def]
    """A broadcast's batches (without the keys), each with its recipients and their outcomes in
    seq order and the seqs noted as having had a conversation, and the recipients after its
    last batch."""
    rows = every_delivery(conn, broadcast)
    cut = conn.execute(
        select(batches.c.batch, batches.c.first_seq, batches.c.size, batches.c.channel_id)
        .where(batches.c.broadcast_id == broadcast)
        .order_by(batches.c.batch)
    ).all()
    noted = _noted(conn, broadcast)
    end = max((b.first_seq + b.size for b in cut), default=0)
    return [
        (
            *b,
            [(r.contact, r.outcome) for r in rows[b.first_seq : b.first_seq + b.size]],
            noted[b.batch],
        )
        for b in cut
    ], [(r.seq, r.contact, r.outcome) for r in rows[end:]]


def _talking(people: int) -> list[str]:
    """The contacts (external ids) `_some_talked` gives a conversation: every third."""
    return [f"U{n}" for n in range(0, people, 3)]


def _some_talked(conn, channel: str, people: int) -> None:  # type: ignore[no-untyped-def]
    """Give every third of the channel's `people` contacts a conversation."""
    if people:
        conn.execute(
            update(contacts)
            .where(contacts.c.channel_id == channel, contacts.c.external_id.in_(_talking(people)))
            .values(has_conversation=True)
        )


def _noted(conn, broadcast: str) -> dict[int, list[int]]:  # type: ignore[no-untyped-def]
    """Per batch, the seqs the snapshot noted as having had a conversation, read where the
    dialect keeps them."""
    source, arrays = batch_recipients.with_arrays(conn.dialect.name)
    found = conn.execute(
        text(f"SELECT b.batch, {arrays}.talked FROM {source} WHERE b.broadcast_id = :b"),
        {"b": broadcast},
    )
    return {int(batch): json.loads(talked) for batch, talked in found}
