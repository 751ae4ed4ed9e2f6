"""The migrations build exactly the schema the tables declare, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from broadcaster.domain.deliveries import START, DeliveryOutcome, EventKind
from broadcaster.domain.errors import InvalidArgument
from broadcaster.services.idempotent import earlier_result, request_fingerprint
from broadcaster.store import deliveries, events, idempotency, migrate
from broadcaster.store.database import Database
from broadcaster.store.tables import metadata
from tests.conftest import BACKENDS
from tests.databases import fresh_database


def test_migrated_schema_matches_tables(db: Database) -> None:
    assert migrate.current_revision(db.engine) == migrate.head_revision(db.engine)
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
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
