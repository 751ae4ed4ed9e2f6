"""The migrations build exactly the schema the tables declare, on both backends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from broadcaster.domain.audience import InteractionWindow
from broadcaster.domain.deliveries import START, DeliveryOutcome, EventKind
from broadcaster.domain.errors import InvalidArgument
from broadcaster.domain.model import FollowerState
from broadcaster.services.idempotent import earlier_result, request_fingerprint
from broadcaster.store import audience, deliveries, events, idempotency, migrate
from broadcaster.store.database import Database
from broadcaster.store.tables import SQLITE_ONLY, metadata
from tests.conftest import BACKENDS
from tests.databases import fresh_database
from tests.integration.test_audience import NOW, _brute, _group_rows, _regroup, seed_people


def test_migrated_schema_matches_tables(db: Database) -> None:
    assert migrate.current_revision(db.engine) == migrate.head_revision(db.engine)
    with db.engine.connect() as conn:
        left_out = SQLITE_ONLY if conn.dialect.name != "sqlite" else frozenset()

        def kept(item: Any, name: str | None, kind: str, *_: Any) -> bool:
            table = item if kind == "table" else getattr(item, "table", None)
            return getattr(table, "name", name) not in left_out

        context = MigrationContext.configure(conn, opts={"include_object": kept})
        diff = compare_metadata(context, metadata)
    assert diff == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_sent_deliveries_and_their_events_survive_0008(backend: str, tmp_path: Path) -> None:
    """A database that recorded a batch the earlier way (SENT rows, an event row per recipient
    and kind) reads the same deliveries and events after the upgrade to delivered ranges."""
    with fresh_database(backend, tmp_path) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine, "0007")
        with db.writing() as conn:
            for seq, contact in enumerate(["c0", "c1", "c2"]):
                # c1 was refused; c0 and c2 were sent, and c0's conversation was created.
                outcome = 2 if contact == "c1" else 1
                conn.execute(
                    text("INSERT INTO deliveries VALUES ('b1', :seq, :c, :e, :o, '')"),
                    {"seq": seq, "c": contact, "e": f"U{contact}", "o": outcome},
                )
            conn.execute(
                text("INSERT INTO batches VALUES ('b1', 0, 'ch', 'key', 0, 3, 1, 1, 0, 0, '', 0)")
            )
            for contact, kind in [("c0", 2), ("c0", 1), ("c2", 1)]:
                conn.execute(
                    text(
                        "INSERT INTO events (merchant_id, channel_id, contact_id, broadcast_id,"
                        " kind, create_time) VALUES ('m', 'ch', :c, 'b1', :k, 5)"
                    ),
                    {"c": contact, "k": kind},
                )
            conn.execute(text("INSERT INTO conversations VALUES ('c0')"))
        migrate.upgrade(db.engine)
        with db.reading() as conn:
            found = events.after(conn, "m", START, 100)
            listed = deliveries.page(conn, "b1", None, None, 100)
        db.close()
    assert [(e.kind, e.contact) for e in found] == [
        (EventKind.CONVERSATION_CREATED, "c0"),
        (EventKind.BROADCAST_MESSAGE, "c0"),
        (EventKind.BROADCAST_MESSAGE, "c2"),
    ]
    assert [d.outcome for d in listed] == [
        DeliveryOutcome.SENT,
        DeliveryOutcome.FAILED,
        DeliveryOutcome.SENT,
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_request_ids_recorded_before_0009_still_answer(backend: str, tmp_path: Path) -> None:
    """A request id kept before requests were fingerprinted reads after the upgrade with no
    fingerprint: it answers with its first result, and a Send of another broadcast with it is
    refused (its result names the broadcast it sent)."""
    with fresh_database(backend, tmp_path) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine, "0008")
        with db.writing() as conn:
            conn.execute(
                text(
                    "INSERT INTO idempotent_requests VALUES"
                    " ('m', 'SendBroadcast', 'r1', 'merchants/m/broadcasts/b1', 5)"
                )
            )
        migrate.upgrade(db.engine)
        with db.reading() as conn:
            earlier = idempotency.recall(conn, "m", "SendBroadcast", "r1")
        db.close()
    assert earlier == idempotency.Earlier("merchants/m/broadcasts/b1", None)
    same = request_fingerprint("SendBroadcast", "merchants/m/broadcasts/b1")
    assert earlier_result(earlier, "SendBroadcast", same, target="merchants/m/broadcasts/b1") == (
        "merchants/m/broadcasts/b1"
    )
    with pytest.raises(InvalidArgument) as e:
        other = request_fingerprint("SendBroadcast", "merchants/m/broadcasts/b2")
        earlier_result(earlier, "SendBroadcast", other, target="merchants/m/broadcasts/b2")
    assert e.value.reason == "REQUEST_ID_REUSED"


@pytest.mark.parametrize("backend", BACKENDS)
def test_contacts_known_before_0010_are_counted(backend: str, tmp_path: Path) -> None:
    """Contacts and group members stored before the audience counters existed are counted by
    the upgrade, and estimates read the same numbers as the rules give."""
    people = [
        {"hours_ago": hours, "opted_out": n % 3 == 0, "state": state, "customer": customer}
        for n, (hours, state, customer) in enumerate(
            [
                (None, FollowerState.FOLLOWING, "cust-0"),
                (1, FollowerState.BLOCKED, "cust-1"),
                (20, FollowerState.FOLLOWING, None),
                (30, FollowerState.BLOCKED, "cust-0"),
                (24 * 8, FollowerState.FOLLOWING, "cust-2"),
                (24 * 200, FollowerState.BLOCKED, None),
                (24 * 399, FollowerState.UNKNOWN, "cust-1"),
            ]
        )
    ]
    members = {"cust-0", "cust-1"}
    with fresh_database(backend, tmp_path) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine, "0009")
        with db.writing() as conn:
            group_id = seed_people(conn, "m", "ch", people, members)
        migrate.upgrade(db.engine)
        with db.reading() as conn:
            got = {
                (window, group): audience.count(
                    conn, "m", "ch", None if window.value is None else NOW - window.value, group
                )
                for window in InteractionWindow
                for group in (None, group_id)
            }
        db.close()
    for (window, group), counts in got.items():
        expected = _brute(people, window, None if group is None else members)
        assert (counts.matched, counts.opted_out, counts.unreachable) == expected


@pytest.mark.parametrize("backend", BACKENDS)
def test_recipients_kept_on_batches_go_back_to_rows_on_downgrade(
    backend: str, tmp_path: Path
) -> None:
    """0023 keeps a batch's recipients on the batch; going back below it writes them as the
    delivery rows the earlier layout reads, each once, refused ones keeping their outcome, and
    an open batch reopens in the earlier layout's state."""
    from alembic import command
    from sqlalchemy import insert

    from broadcaster.domain.ids import new_id
    from broadcaster.store import snapshot
    from broadcaster.store.tables import deliveries as delivery_rows

    with fresh_database(backend, tmp_path) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine)
        broadcast = new_id()
        with db.writing() as conn:
            seed_people(conn, "m", "ch", [_person(n) for n in range(7)], None)
            snapshot.take(
                conn, merchant="m", channel="ch", broadcast=broadcast, since=None,
                group=None, batch_size=3, now=NOW,
            )  # fmt: skip
            before = deliveries.page(conn, broadcast, None, None, 100)
            conn.execute(text("UPDATE batches SET state = 1 WHERE batch = 0"))
            refused = before[4]
            conn.execute(
                insert(delivery_rows).values(
                    broadcast_id=broadcast, seq=4, contact_id=refused.contact,
                    external_id=refused.external_id, outcome=int(DeliveryOutcome.FAILED),
                    reason="INVALID_RECIPIENT",
                )
            )  # fmt: skip
        command.downgrade(migrate.alembic_config(db.engine), "0022")
        with db.reading() as conn:
            rows = conn.execute(
                text("SELECT seq, contact_id, outcome FROM deliveries ORDER BY seq")
            ).all()
            states = conn.execute(text("SELECT batch, state FROM batches ORDER BY batch")).all()
        db.close()
    assert [(r.seq, r.contact_id) for r in rows] == [(d.seq, d.contact) for d in before]
    assert [r.outcome for r in rows] == [0, 0, 0, 0, int(DeliveryOutcome.FAILED), 0, 0]
    assert [tuple(s) for s in states] == [(0, 1), (1, 0), (2, 0)]


def _person(n: int) -> dict[str, object]:
    return {"hours_ago": 1, "opted_out": False, "state": FollowerState.FOLLOWING, "customer": None}


@pytest.mark.parametrize("backend", BACKENDS)
def test_recipients_on_the_batch_row_move_apart_on_sqlite_with_0025(
    backend: str, tmp_path: Path
) -> None:
    """A batch written at 0024 holds its recipients on its row. After 0025 they are read (and
    claimed) as before; on SQLite they now live in `batch_recipients`, the batch row without
    them, and going back below 0025 puts them on the row again."""
    from datetime import timedelta

    from alembic import command
    from sqlalchemy import insert

    from broadcaster.domain.lifecycle import BroadcastState
    from broadcaster.store import dispatch

    with fresh_database(backend, tmp_path) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine, "0024")
        with db.writing() as conn:
            conn.execute(
                insert(metadata.tables["channels"]).values(
                    id="ch", merchant_id="m", type="line", state=1, tier=0, account_id="a",
                    create_time=0, update_time=0,
                )
            )  # fmt: skip
            conn.execute(
                insert(metadata.tables["broadcasts"]).values(
                    id="b1", merchant_id="m", channel_id="ch", display_name="sale",
                    display_name_folded="sale", state=int(BroadcastState.SENDING),
                    interaction_window=0, messages="[]", total=3, sent=0, failed=0, excluded=0,
                    open_batches=1, create_time=0, update_time=0,
                )
            )  # fmt: skip
            conn.execute(
                text(
                    "INSERT INTO batches (broadcast_id, batch, channel_id, idempotency_key,"
                    " first_seq, size, state, attempts, due_time, lease_owner, lease_expiry,"
                    " contact_ids, external_ids, talked) VALUES ('b1', 0, 'ch', 'k0', 0, 3, 2, 0,"
                    " 0, '', 0, :contacts, :externals, '[1]')"
                ),
                {"contacts": '["c0","c1","c2"]', "externals": '["U0","U1","U2"]'},
            )
        migrate.upgrade(db.engine)
        with db.writing() as conn:
            on_row = conn.execute(text("SELECT contact_ids FROM batches")).scalar()
            listed = deliveries.page(conn, "b1", None, None, 10)
            claimed = dispatch.claim(
                conn, channel="ch", owner="me", lease_until=NOW + timedelta(seconds=30),
                now=NOW, limit=5,
            )  # fmt: skip
            closed = dispatch._close_batches(conn, [("b1", 0)])
        assert [(d.seq, d.contact, d.external_id) for d in listed] == [
            (0, "c0", "U0"),
            (1, "c1", "U1"),
            (2, "c2", "U2"),
        ]
        assert [(c.recipients, c.talked) for c in claimed] == [(("U0", "U1", "U2"), (1,))]
        assert closed == {("b1", 0)}
        assert (on_row is None) == (backend == "sqlite")
        command.downgrade(migrate.alembic_config(db.engine), "0024")
        with db.reading() as conn:
            back = conn.execute(text("SELECT external_ids, talked FROM batches")).one()
        db.close()
    assert tuple(back) == ('["U0","U1","U2"]', "[1]")


_CONVERSATIONS = [("c0", "b1", 0), ("c1", "b1", 1), ("c9", "b2", 7)]


def _conversations_through(
    backend: str, tmp_path: Path, before: str, shape: Callable[[Connection], Any]
) -> tuple[list[tuple[Any, ...]], Any, list[tuple[Any, ...]], Any]:
    """`conversations` rows written at revision `before`, then the database migrated to the
    head and back down to `before`: the rows and `shape` of the table at the head, then back
    at `before`. At the head, the table's key must still refuse a second conversation for a
    contact."""
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    everything = text("SELECT * FROM conversations ORDER BY contact_id")
    with fresh_database(backend, tmp_path) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine, before)
        insert = text("INSERT INTO conversations VALUES (:c, :b, :s)")
        with db.writing() as conn:
            conn.execute(insert, [{"c": c, "b": b, "s": q} for c, b, q in _CONVERSATIONS])
        migrate.upgrade(db.engine)
        with db.reading() as conn:
            after, shape_after = [tuple(r) for r in conn.execute(everything)], shape(conn)
        with pytest.raises(IntegrityError), db.writing() as conn:
            conn.execute(insert, {"c": "c1", "b": "b3", "s": 2})
        command.downgrade(migrate.alembic_config(db.engine), before)
        with db.reading() as conn:
            back, shape_back = [tuple(r) for r in conn.execute(everything)], shape(conn)
        db.close()
    return after, shape_after, back, shape_back


@pytest.mark.parametrize("backend", BACKENDS)
def test_conversations_keep_their_rows_through_0026(backend: str, tmp_path: Path) -> None:
    """0026 writes `conversations` again on SQLite, without rowids; its rows stay as they were,
    up and back down, and its key still refuses a second conversation for a contact."""

    def declared(conn: Connection) -> str:
        if backend != "sqlite":
            return ""
        return str(
            conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = 'conversations'")
            ).scalar()
        )

    after, shape, back, shape_back = _conversations_through(backend, tmp_path, "0025", declared)
    assert after == back == _CONVERSATIONS
    assert ("WITHOUT ROWID" in shape) == (backend == "sqlite")
    assert "WITHOUT ROWID" not in shape_back


@pytest.mark.parametrize("backend", BACKENDS)
def test_group_rows_follow_contacts_through_0027(backend: str, tmp_path: Path) -> None:
    """0027 keeps group rows on PostgreSQL by statement triggers instead of row triggers; the
    rows follow every change of a contact before, after, and back down again."""
    from alembic import command

    people = [
        {"hours_ago": None, "opted_out": False, "state": FollowerState.FOLLOWING, "customer": c}
        for c in ("a", "b", "c", None)
    ]
    changes = [
        "UPDATE contacts SET customer_id = CASE customer_id WHEN 'a' THEN 'b' WHEN 'b' THEN NULL"
        " ELSE 'a' END, opted_out = NOT opted_out",
        "UPDATE contacts SET follower_state = 2, last_interaction_time = 7",
        "DELETE FROM contacts WHERE customer_id = 'a'",
    ]
    found = []
    with fresh_database(backend, tmp_path) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine, "0026")
        with db.writing() as conn:
            seed_people(conn, "m", "ch", people, {"a", "b"})
        for step, change in enumerate(changes):
            if step == 1:
                migrate.upgrade(db.engine)
            if step == 2:
                command.downgrade(migrate.alembic_config(db.engine), "0026")
            with db.writing() as conn:
                conn.execute(text(change))
            with db.reading() as conn:
                found.append((_group_rows(conn, "ch"), _regroup(conn, "ch")))
        db.close()
    assert [len(rows) for rows, _ in found] == [3, 3, 1]
    assert all(rows == expected for rows, expected in found)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conversations_compare_ids_as_bytes_from_0028(backend: str, tmp_path: Path) -> None:
    """0028 keys `conversations` on PostgreSQL by ids compared as bytes, and compresses
    `outbox.opened` with lz4 where the server can; the rows stay, up and back down, the key
    still refuses a second conversation for a contact, and a contact's look-up by the id of
    another column (the database's collation) still finds its row."""
    declared = (
        "SELECT c.collname, a.attcompression FROM pg_attribute a"
        " LEFT JOIN pg_collation c ON c.oid = a.attcollation"
        " WHERE (a.attrelid, a.attname) IN"
        " (('conversations'::regclass, 'contact_id'), ('outbox'::regclass, 'opened'))"
        " ORDER BY a.attrelid = 'outbox'::regclass"
    )
    found = (
        "SELECT v.broadcast_id FROM (SELECT CAST('c9' AS VARCHAR) AS id) c"
        " JOIN conversations v ON v.contact_id = c.id"
    )

    def shape(conn: Connection) -> tuple[Any, ...]:
        by_id = conn.execute(text(found)).scalar()
        if backend != "postgresql":
            return (by_id, [], False)
        scripts = ScriptDirectory.from_config(migrate.alembic_config(conn.engine))
        migration = scripts.get_revision("0028")
        assert migration is not None
        can = bool(conn.execute(text(migration.module._LZ4)).scalar())
        return (by_id, [tuple(r) for r in conn.execute(text(declared))], can)

    after, shape_after, back, shape_back = _conversations_through(backend, tmp_path, "0027", shape)
    assert after == back == _CONVERSATIONS
    by_id, columns, can = shape_after
    assert by_id == shape_back[0] == "b2"
    if backend == "postgresql":
        assert columns == [("C", ""), ("default", "l" if can else "")]
        assert shape_back[1] == [("default", ""), ("default", "")]
