"""WatchEvents over gRPC: a consumer that disconnects and resumes from its last cursor sees
every event exactly once, including events recorded while it was away; cursors are private to
their merchant; a merchant's streams are capped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from sqlalchemy import update

from broadcaster.domain.ids import new_id
from broadcaster.domain.model import AccountTier, ContactImport, FollowerState
from broadcaster.store import channels, contacts, events, snapshot
from broadcaster.store.clock import from_us
from broadcaster.store.database import Database
from broadcaster.store.tables import batches
from broadcaster.v1 import event_service_pb2 as pb
from broadcaster.v1 import event_service_pb2_grpc as pb_grpc
from tests.e2e.server import ADMIN, auth, failure

A = auth(ADMIN)


@pytest.fixture(scope="module")
def direct(database_url: str) -> Iterator[Database]:
    """The server's database, written directly: sending is not reachable over the API yet."""
    db = Database.from_url(database_url, threads=1)
    yield db
    db.close()


def _deliver(db: Database, merchant: str, people: int) -> None:
    """Record `people` delivered recipients of a new broadcast, in batches of 10."""
    channel, broadcast = new_id(), new_id()
    with db.writing() as conn:
        channels.create(
            conn,
            merchant,
            channel,
            "fake",
            (AccountTier.VERIFIED, channel, "", "", ""),
            "x",
            from_us(1),
        )
        items = [
            ContactImport(
                f"U{n:04d}", "", "", FollowerState.FOLLOWING, None, False, None, from_us(1)
            )
            for n in range(people)
        ]
        contacts.merge(conn, merchant, channel, items, from_us(1))
        snapshot.take(
            conn, merchant=merchant, channel=channel, broadcast=broadcast, since=None,
            group=None, batch_size=10, now=from_us(1),
        )  # fmt: skip
        conn.execute(update(batches).where(batches.c.broadcast_id == broadcast).values(state=1))
    for lo in range(0, people, 10):
        with db.writing() as conn:
            events.record_delivered(
                conn, merchant=merchant, channel=channel, broadcast=broadcast,
                spans=[(lo, lo + 9)], now=2,
            )  # fmt: skip


def _watch(stub: pb_grpc.EventServiceStub, parent: str, cursor: str, take: int) -> list[pb.Event]:
    got: list[pb.Event] = []
    stream = stub.WatchEvents(pb.WatchEventsRequest(parent=parent, after_cursor=cursor), metadata=A)
    for event in stream:
        got.append(event)
        if len(got) == take:
            stream.cancel()  # the consumer goes away mid-stream
            break
    return got


def test_watch_resumes_without_gaps_or_repeats(channel: grpc.Channel, direct: Database) -> None:
    merchant = f"m-{uuid.uuid4().hex[:12]}"
    parent = f"merchants/{merchant}"
    stub = pb_grpc.EventServiceStub(channel)
    _deliver(direct, merchant, 30)  # 60 events: conversation created + message, per contact

    first = _watch(stub, parent, "", 25)
    _deliver(direct, merchant, 20)  # 40 more while the consumer is away
    rest = _watch(stub, parent, first[-1].cursor, 75)
    seen = [(e.kind, e.contact, e.broadcast) for e in first + rest]
    assert len(seen) == 100 and len(set(seen)) == 100
    listed = stub.ListEvents(pb.ListEventsRequest(parent=parent, page_size=1000), metadata=A)
    assert [e.cursor for e in listed.events] == [e.cursor for e in first + rest]
    with pytest.raises(grpc.RpcError) as e:
        _watch(stub, parent, "not-a-cursor", 1)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_cursor_works_only_for_its_merchant(channel: grpc.Channel, direct: Database) -> None:
    """Cursors are encrypted per merchant: another merchant's (which would otherwise show how
    much the first sends) and a changed one are refused."""
    mine, theirs = (f"m-{uuid.uuid4().hex[:12]}" for _ in range(2))
    stub = pb_grpc.EventServiceStub(channel)
    _deliver(direct, mine, 10)
    _deliver(direct, theirs, 10)
    cursor = _watch(stub, f"merchants/{theirs}", "", 3)[-1].cursor
    changed = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    for parent, bad in ((f"merchants/{mine}", cursor), (f"merchants/{theirs}", changed)):
        with pytest.raises(grpc.RpcError) as e:
            stub.ListEvents(pb.ListEventsRequest(parent=parent, after_cursor=bad), metadata=A)
        assert failure(e.value).reason == "INVALID_CURSOR"
    rest = stub.ListEvents(
        pb.ListEventsRequest(parent=f"merchants/{theirs}", after_cursor=cursor), metadata=A
    )
    assert len(rest.events) == 17


def test_a_merchants_watch_streams_are_capped(channel: grpc.Channel, direct: Database) -> None:
    """The default allows 16 at once on a server; the 17th is RESOURCE_EXHAUSTED with its
    reason, and closing one makes room."""
    merchant = f"m-{uuid.uuid4().hex[:12]}"
    parent = f"merchants/{merchant}"
    stub = pb_grpc.EventServiceStub(channel)
    _deliver(direct, merchant, 10)
    request = pb.WatchEventsRequest(parent=parent)
    held = [stub.WatchEvents(request, metadata=A) for _ in range(16)]
    try:
        for stream in held:
            next(stream)  # the stream is open on the server
        with pytest.raises(grpc.RpcError) as e:
            next(stub.WatchEvents(request, metadata=A))
        refused = failure(e.value)
        assert refused.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert refused.reason == "TOO_MANY_STREAMS" and refused.domain == "broadcaster"
        held.pop().cancel()
        deadline = time.monotonic() + 30
        while True:  # the server learns of the cancellation shortly after
            again = stub.WatchEvents(request, metadata=A)
            try:
                next(again)
                again.cancel()
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        for stream in held:
            stream.cancel()


def test_watch_in_batches_gives_the_same_stream(channel: grpc.Channel, direct: Database) -> None:
    """WatchEventBatches: the same events and cursors as WatchEvents, many per message, and
    new ones as they are recorded."""
    merchant = f"m-{uuid.uuid4().hex[:12]}"
    parent = f"merchants/{merchant}"
    stub = pb_grpc.EventServiceStub(channel)
    _deliver(direct, merchant, 30)
    stream = stub.WatchEventBatches(pb.WatchEventBatchesRequest(parent=parent), metadata=A)
    got: list[pb.Event] = list(next(stream).events)
    assert len(got) == 60
    _deliver(direct, merchant, 20)
    while len(got) < 100:
        got += next(stream).events
    stream.cancel()
    listed = stub.ListEvents(pb.ListEventsRequest(parent=parent, page_size=1000), metadata=A)
    assert [e.cursor for e in got] == [e.cursor for e in listed.events]
    resumed = stub.WatchEventBatches(
        pb.WatchEventBatchesRequest(parent=parent, after_cursor=got[89].cursor), metadata=A
    )
    assert [e.cursor for e in next(resumed).events] == [e.cursor for e in got[90:]]
    resumed.cancel()
