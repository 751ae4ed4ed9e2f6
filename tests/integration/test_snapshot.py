"""The recipient snapshot: exactly the reachable contacts of the audience, numbered without
gaps in contact-id order, cut into batches that cover them once, each with its own key."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.ids import new_id
from broadcaster.store import snapshot
from broadcaster.store.clock import to_us
from broadcaster.store.database import Database
from broadcaster.store.tables import batches, deliveries
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
        rows = conn.execute(
            select(deliveries)
            .where(deliveries.c.broadcast_id == broadcast)
            .order_by(deliveries.c.seq)
        ).all()
        cut = conn.execute(
            select(batches).where(batches.c.broadcast_id == broadcast).order_by(batches.c.batch)
        ).all()
        return rows, cut

    rows, cut = await db.read(read)
    expected = sorted(
        f"U{n}" for n, p in enumerate(people) if _brute([p], window, members) == (1, 0, 0)
    )
    assert sorted(r.external_id for r in rows) == expected
    assert [r.seq for r in rows] == list(range(len(rows)))
    assert [r.contact_id for r in rows] == sorted(r.contact_id for r in rows)
    assert all(r.outcome == 0 for r in rows)
    covered = [s for b in cut for s in range(b.first_seq, b.first_seq + b.size)]
    assert covered == list(range(len(rows))) and len(cut) == taken.batches
    assert all(1 <= b.size <= batch_size for b in cut)
    keys = [b.idempotency_key for b in cut]
    assert len(set(keys)) == len(keys) and all(uuid.UUID(k) for k in keys)
    assert all(b.due_time == to_us(NOW) and b.attempts == 0 for b in cut)
