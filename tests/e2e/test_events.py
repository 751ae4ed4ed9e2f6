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
from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import broadcast_service_pb2_grpc as bpb_grpc
from broadcaster.v1 import channel_service_pb2 as cpb
from broadcaster.v1 import channel_service_pb2_grpc as cpb_grpc
from broadcaster.v1 import event_service_pb2 as pb
from broadcaster.v1 import event_service_pb2_grpc as pb_grpc
from tests.e2e.server import ADMIN, BETA, auth, connect_fake, failure
from tests.e2e.test_channels import _wait_sync
from tests.e2e.test_operations import _draft

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


# -- broadcast lifecycle events -------------------------------------------------------------------

LIFECYCLE = [
    pb.Event.BROADCAST_SENDING,
    pb.Event.BROADCAST_SENT,
    pb.Event.BROADCAST_FAILED,
    pb.Event.BROADCAST_CANCELLED,
    pb.Event.BROADCAST_SCHEDULED,
    pb.Event.BROADCAST_UNSCHEDULED,
]


def _sent_and_cancelled(channel: grpc.Channel, parent: str) -> tuple[str, str]:
    """A broadcast sent to 300 contacts (6 batches of 50, 0.1 s each), and one cancelled while
    sending; returns their names once both are done."""
    made = connect_fake(channel, parent, tier="verified", followers="300", send_delay_ms="100")
    channels = cpb_grpc.ChannelServiceStub(channel)
    channels.SyncContacts(cpb.SyncContactsRequest(name=made.name), metadata=A)
    _wait_sync(channels, made.name)
    broadcasts = bpb_grpc.BroadcastServiceStub(channel)
    names = []
    for title in ("Sent", "Cancelled"):
        draft = broadcasts.CreateBroadcast(
            bpb.CreateBroadcastRequest(
                parent=parent, broadcast=_draft(made.name, title, bpb.Audience.ALL_CONTACTS)
            ),
            metadata=A,
        )
        broadcasts.SendBroadcast(bpb.SendBroadcastRequest(name=draft.name), metadata=A)
        names.append(draft.name)
    broadcasts.CancelBroadcast(bpb.CancelBroadcastRequest(name=names[1]), metadata=A)
    deadline = time.monotonic() + 60
    while (
        broadcasts.GetBroadcast(bpb.GetBroadcastRequest(name=names[0]), metadata=A).state
        == bpb.Broadcast.SENDING
    ):
        assert time.monotonic() < deadline, "the broadcast was not sent"
        time.sleep(0.05)
    return names[0], names[1]


def test_lifecycle_events_once_in_order_through_a_disconnect(channel: grpc.Channel) -> None:
    """A consumer of lifecycle events only, dropping its stream after the first and resuming
    from its cursor, sees each step once, in the stream's order (a broadcast's sending event
    before its recipients' events, its sent event after them), with the counters of the moment;
    filters by broadcast and kind read the same events, and other merchants see none of them."""
    parent = f"merchants/m-{uuid.uuid4().hex[:12]}"
    stub = pb_grpc.EventServiceStub(channel)
    watching = pb.WatchEventsRequest(parent=parent, kinds=LIFECYCLE)
    first = stub.WatchEvents(watching, metadata=A)
    sent, cancelled = _sent_and_cancelled(channel, parent)
    got = [next(first)]
    first.cancel()  # the consumer goes away, and comes back with its cursor
    watching.after_cursor = got[0].cursor
    again = stub.WatchEvents(watching, metadata=A, timeout=5)
    with pytest.raises(grpc.RpcError) as ended:
        for event in again:
            got.append(event)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    steps = [(e.broadcast, e.kind) for e in got]
    assert len(steps) == len(set(steps)) == 4, steps
    mine = [k for b, k in steps if b == sent]
    assert mine == [pb.Event.BROADCAST_SENDING, pb.Event.BROADCAST_SENT]
    assert [k for b, k in steps if b == cancelled] == [
        pb.Event.BROADCAST_SENDING,
        pb.Event.BROADCAST_CANCELLED,
    ]
    by_step = {(e.broadcast, e.kind): e for e in got}
    starting, done = (
        by_step[sent, pb.Event.BROADCAST_SENDING],
        by_step[sent, pb.Event.BROADCAST_SENT],
    )
    assert (starting.counters.total, starting.counters.sent) == (300, 0)
    assert (done.counters.total, done.counters.sent, done.counters.failed) == (300, 300, 0)
    assert all(e.contact == "" and e.failure_reason == "" for e in got)

    # The whole stream: the same lifecycle events, at the same cursors, around the recipients'.
    everything: list[pb.Event] = []
    token = ""
    while True:
        page = stub.ListEvents(
            pb.ListEventsRequest(parent=parent, page_size=1000, page_token=token), metadata=A
        )
        everything += page.events
        token = page.next_page_token
        if not token:
            break
    assert [e.cursor for e in everything if e.kind in LIFECYCLE] == [e.cursor for e in got]
    of_sent = [e.kind for e in everything if e.broadcast == sent]
    assert of_sent[0] == pb.Event.BROADCAST_SENDING and of_sent[-1] == pb.Event.BROADCAST_SENT
    assert of_sent.count(pb.Event.BROADCAST_MESSAGE) == 300

    # Filters: one broadcast's events, of some kinds.
    only = stub.ListEvents(
        pb.ListEventsRequest(parent=parent, broadcast=cancelled, kinds=LIFECYCLE), metadata=A
    )
    assert [(e.broadcast, e.kind) for e in only.events] == [
        (cancelled, pb.Event.BROADCAST_SENDING),
        (cancelled, pb.Event.BROADCAST_CANCELLED),
    ]
    messages = stub.ListEvents(
        pb.ListEventsRequest(
            parent=parent, broadcast=sent, kinds=[pb.Event.BROADCAST_MESSAGE], page_size=1000
        ),
        metadata=A,
    )
    assert len(messages.events) == 300
    assert {e.kind for e in messages.events} == {pb.Event.BROADCAST_MESSAGE}
    batches = stub.WatchEventBatches(
        pb.WatchEventBatchesRequest(parent=parent, kinds=[pb.Event.BROADCAST_SENT]), metadata=A
    )
    assert [e.cursor for e in next(batches).events] == [done.cursor]
    batches.cancel()

    # Another merchant: none of these events, and the broadcast is not found for it.
    theirs = pb_grpc.EventServiceStub(channel)
    beta = auth(BETA)
    probe = theirs.WatchEvents(
        pb.WatchEventsRequest(parent="merchants/m-beta", kinds=LIFECYCLE), metadata=beta, timeout=1
    )
    with pytest.raises(grpc.RpcError):
        for event in probe:
            assert event.broadcast.startswith("merchants/m-beta/"), event
    for request in (
        pb.ListEventsRequest(parent="merchants/m-beta", broadcast=sent),
        pb.ListEventsRequest(parent=parent, broadcast=sent),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            theirs.ListEvents(request, metadata=beta)
        assert refused.value.code() in (
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.PERMISSION_DENIED,
        )
    with pytest.raises(grpc.RpcError) as refused:
        theirs.ListEvents(
            pb.ListEventsRequest(parent="merchants/m-beta", broadcast=sent), metadata=beta
        )
    assert failure(refused.value).reason == "BROADCAST_NOT_FOUND"


def test_event_filters_are_validated(channel: grpc.Channel) -> None:
    parent = f"merchants/m-{uuid.uuid4().hex[:12]}"
    stub = pb_grpc.EventServiceStub(channel)
    for request, field in (
        (pb.ListEventsRequest(parent=parent, broadcast="broadcasts/x"), "broadcast"),
        (pb.ListEventsRequest(parent=parent, kinds=[pb.Event.BROADCAST_SENT, 99]), "kinds[1]"),
        (pb.ListEventsRequest(parent=parent, kinds=[0]), "kinds[0]"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListEvents(request, metadata=A)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert failure(refused.value).fields == [field]
    with pytest.raises(grpc.RpcError) as refused:
        next(stub.WatchEvents(pb.WatchEventsRequest(parent=parent, broadcast="x"), metadata=A))
    assert failure(refused.value).fields == ["broadcast"]
    missing = f"{parent}/broadcasts/nope"
    with pytest.raises(grpc.RpcError) as refused:
        stub.ListEvents(pb.ListEventsRequest(parent=parent, broadcast=missing), metadata=A)
    assert failure(refused.value).reason == "BROADCAST_NOT_FOUND"
