"""The LINE channel end to end: a real server over gRPC, the LINE emulator, signed webhooks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest

from broadcaster.v1 import channel_service_pb2 as pb
from broadcaster.v1 import channel_service_pb2_grpc as pb_grpc
from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import contact_service_pb2_grpc as cpb_grpc
from tests.e2e import server as live
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.server import ADMIN, auth, failure

A = auth(ADMIN)


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorThread]:
    running = EmulatorThread()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def line_server(
    database_url: str, emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[live.Server]:
    log = tmp_path_factory.mktemp("line-server") / "serve.log"
    running = live.start(
        database_url,
        log,
        extra_env={"BROADCASTER_PLUGINS": "line", "BROADCASTER_LINE_API_BASE": emulator.base_url},
    )
    yield running
    assert running.stop() == 0, log.read_text()
    logged = log.read_text()
    for account in emulator.call(lambda: list(emulator.emulator.accounts)):
        assert account.access_token not in logged and account.channel_secret not in logged


@pytest.fixture(scope="session")
def line_channel(line_server: live.Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(line_server.target) as ch:
        yield ch


def _connect(line_channel: grpc.Channel, parent: str, account: Any, **override: str) -> pb.Channel:
    credentials = {
        "channel_access_token": account.access_token,
        "channel_secret": account.channel_secret,
        **override,
    }
    return pb_grpc.ChannelServiceStub(line_channel).CreateChannel(
        pb.CreateChannelRequest(
            parent=parent, channel=pb.Channel(type="line", credentials=credentials)
        ),
        metadata=A,
    )


def _merchant() -> str:
    return f"merchants/m-{uuid.uuid4().hex[:12]}"


def _contacts(line_channel: grpc.Channel, parent: str) -> dict[str, cpb.Contact]:
    stub = cpb_grpc.ContactServiceStub(line_channel)
    out, token = {}, ""
    while True:
        page = stub.ListContacts(
            cpb.ListContactsRequest(parent=parent, page_size=1000, page_token=token), metadata=A
        )
        out.update({c.external_id: c for c in page.contacts})
        token = page.next_page_token
        if not token:
            return out


def test_connect_tiers_and_quota(emulator: EmulatorThread, line_channel: grpc.Channel) -> None:
    emu = emulator.emulator
    verified = emulator.call(emu.add_account, tier="verified", quota=10_000)
    premium = emulator.call(emu.add_account, tier="premium")
    standard = emulator.call(emu.add_account, tier="none")
    parent = _merchant()
    assert _connect(line_channel, parent, verified).tier == pb.Channel.VERIFIED
    assert _connect(line_channel, parent, premium).tier == pb.Channel.PREMIUM
    made = _connect(line_channel, parent, standard)
    assert made.tier == pb.Channel.STANDARD
    assert made.display_name == standard.display_name and made.handle == standard.basic_id
    assert made.capabilities.max_recipients_per_request == 500

    with pytest.raises(grpc.RpcError) as e:
        _connect(line_channel, parent, verified, channel_access_token="not-a-valid-token")
    f = failure(e.value)
    assert (f.code, f.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHANNEL_CREDENTIALS_INVALID",
    )

    channels = pb_grpc.ChannelServiceStub(line_channel)
    verified_name = (
        channels.ListChannels(pb.ListChannelsRequest(parent=parent), metadata=A).channels[-1].name
    )
    quota = channels.GetChannelQuota(
        pb.GetChannelQuotaRequest(name=f"{verified_name}/quota"), metadata=A
    )
    assert (quota.limited, quota.limit, quota.used, quota.remaining) == (True, 10_000, 0, 10_000)


def _wait(
    channels: pb_grpc.ChannelServiceStub, name: str, done: Any, timeout: float = 120
) -> pb.ContactSync:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sync = channels.GetChannel(pb.GetChannelRequest(name=name), metadata=A).last_sync
        if done(sync):
            return sync
        time.sleep(0.1)
    raise AssertionError(f"sync of {name} not done: {sync}")


def test_sync_hundred_thousand_followers(
    emulator: EmulatorThread, line_channel: grpc.Channel
) -> None:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=100_000)
    made = _connect(line_channel, _merchant(), account)
    channels = pb_grpc.ChannelServiceStub(line_channel)
    channels.SyncContacts(pb.SyncContactsRequest(name=made.name), metadata=A)
    sync = _wait(channels, made.name, lambda s: s.followers_complete)
    assert sync.contacts_synced == 100_000 and sync.contacts_created == 100_000
    contacts = _contacts(line_channel, made.name)
    followers = set(emulator.call(emu.follower_ids, account))
    assert set(contacts) == followers
    assert all(c.follower_state == cpb.Contact.FOLLOWING for c in contacts.values())
    # Profiles follow at LINE's profile rate; some have arrived already.
    sync = _wait(channels, made.name, lambda s: s.profiles_fetched > 0)
    assert sync.state in (pb.ContactSync.RUNNING, pb.ContactSync.SUCCEEDED)
    channels.DeleteChannel(pb.DeleteChannelRequest(name=made.name), metadata=A)


def test_small_sync_completes_with_profiles_and_standard_is_skipped(
    emulator: EmulatorThread, line_channel: grpc.Channel
) -> None:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=1500)
    made = _connect(line_channel, _merchant(), account)
    channels = pb_grpc.ChannelServiceStub(line_channel)
    channels.SyncContacts(pb.SyncContactsRequest(name=made.name), metadata=A)
    sync = _wait(channels, made.name, lambda s: s.state != pb.ContactSync.RUNNING)
    assert sync.state == pb.ContactSync.SUCCEEDED and sync.profiles_fetched == 1500
    assert all(c.display_name for c in _contacts(line_channel, made.name).values())

    standard = emulator.call(emu.add_account, tier="none", followers=10)
    made = _connect(line_channel, _merchant(), standard)
    channels.SyncContacts(pb.SyncContactsRequest(name=made.name), metadata=A)
    sync = _wait(channels, made.name, lambda s: s.state != pb.ContactSync.RUNNING)
    assert sync.state == pb.ContactSync.SKIPPED and "webhook" in sync.message


def test_thousand_signed_webhook_events(
    emulator: EmulatorThread, line_server: live.Server, line_channel: grpc.Channel
) -> None:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="none")
    made = _connect(line_channel, _merchant(), account)
    url = f"http://127.0.0.1:{line_server.http_port}{made.webhook_path}"
    base = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
    users = [f"U{n:032x}" for n in range(200)]

    events: list[dict[str, Any]] = []
    expected_last: dict[str, int] = {}
    expected_state: dict[str, int] = {}
    factory = emu.events
    for n in range(1000):
        user = users[n % 200]
        ts = base + n * 1000
        kind = (n + n // 200) % 5  # each user gets every kind, in a different order
        if kind == 0:
            event = emulator.call(factory.follow, user, timestamp_ms=ts)
            expected_state[user], expected_last[user] = cpb.Contact.FOLLOWING, ts
        elif kind == 1:
            event = emulator.call(factory.unfollow, user, timestamp_ms=ts)
            expected_state[user] = cpb.Contact.BLOCKED
        elif kind in (2, 3):
            event = emulator.call(factory.text_message, user, f"hello {n}", timestamp_ms=ts)
            expected_last[user] = ts
        else:
            event = emulator.call(factory.postback, user, f"data={n}", timestamp_ms=ts)
            expected_last[user] = ts
        events.append(event)
    # 100 redeliveries of earlier events arrive late, mixed in.
    redelivered = [emulator.call(factory.redelivered, events[n]) for n in range(0, 1000, 10)]
    stream = events[:500] + redelivered + events[500:]

    sender = emulator.call(emu.webhook_sender, account)
    results = emulator.run(sender.post_batches(url, stream, batch_size=10, concurrency=8))
    assert all(r.status == 200 for r in results)
    forged = emulator.call(factory.follow, "U" + "f" * 32, timestamp_ms=base)
    bad = emulator.run(sender.post(url, [forged], bad_signature=True))
    assert bad.status == 401
    assert emulator.run(sender.connectivity_check(url)).status == 200

    contacts = _contacts(line_channel, made.name)
    assert set(contacts) == set(users)  # the forged follower is not a contact
    for user in users:
        c = contacts[user]
        assert c.follower_state == expected_state[user], user
        assert c.last_interaction_time.ToMilliseconds() == expected_last[user], user


def test_seed_flow_up_to_sending(
    emulator: EmulatorThread, line_server: live.Server, line_channel: grpc.Channel
) -> None:
    """The help-center flow on LINE: connect, sync, draft, "X match, Y expected", quota,
    search, copy, edit, delete; "All LINE contacts" refused for a non-verified account."""
    from google.protobuf.field_mask_pb2 import FieldMask

    from broadcaster.v1 import broadcast_service_pb2 as bpb
    from broadcaster.v1 import broadcast_service_pb2_grpc as bpb_grpc

    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=300, quota=1000)
    parent = _merchant()
    made = _connect(line_channel, parent, account)
    channels = pb_grpc.ChannelServiceStub(line_channel)
    channels.SyncContacts(pb.SyncContactsRequest(name=made.name), metadata=A)
    _wait(channels, made.name, lambda s: s.state == pb.ContactSync.SUCCEEDED)

    # Twenty followers message the shop through LINE; two of them later block it.
    followers = emulator.call(emu.follower_ids, account)
    url = f"http://127.0.0.1:{line_server.http_port}{made.webhook_path}"
    sender = emulator.call(emu.webhook_sender, account)
    chats = [emulator.call(emu.events.text_message, u, "hi") for u in followers[:20]]
    assert all(r.status == 200 for r in emulator.run(sender.post_batches(url, chats, 5)))
    blocks = [emulator.call(emu.events.unfollow, u) for u in followers[:2]]
    assert emulator.run(sender.post(url, blocks)).status == 200

    stub = bpb_grpc.BroadcastServiceStub(line_channel)
    week = bpb.Audience(last_interaction=bpb.Audience.LAST_7_DAYS)
    draft = stub.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=parent,
            broadcast=bpb.Broadcast(
                display_name="Year-end sale",
                channel=made.name,
                audience=week,
                messages=[
                    bpb.BroadcastMessage(text=bpb.TextContent(text="30% off everything 🎉")),
                    bpb.BroadcastMessage(
                        image=bpb.ImageContent(
                            original_content_uri="https://shop.example/sale.jpg",
                            preview_image_uri="https://shop.example/sale-small.jpg",
                        )
                    ),
                ],
            ),
        ),
        metadata=A,
    )
    est = stub.EstimateAudience(
        bpb.EstimateAudienceRequest(parent=parent, name=draft.name), metadata=A
    )
    assert (est.matched, est.unreachable, est.expected_recipients) == (20, 2, 18)
    assert (est.quota_limited, est.quota_remaining, est.exceeds_quota) == (True, 1000, False)
    everyone = stub.EstimateAudience(
        bpb.EstimateAudienceRequest(
            parent=parent,
            channel=made.name,
            audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
        ),
        metadata=A,
    )
    assert (everyone.matched, everyone.expected_recipients) == (300, 298)

    found = stub.ListBroadcasts(
        bpb.ListBroadcastsRequest(parent=parent, display_name_contains="year-END"), metadata=A
    )
    assert [b.name for b in found.broadcasts] == [draft.name]
    copy = stub.CopyBroadcast(bpb.CopyBroadcastRequest(name=draft.name), metadata=A)
    edited = stub.UpdateBroadcast(
        bpb.UpdateBroadcastRequest(
            broadcast=bpb.Broadcast(name=copy.name, display_name="Year-end sale, reminder"),
            update_mask=FieldMask(paths=["display_name"]),
        ),
        metadata=A,
    )
    assert edited.display_name == "Year-end sale, reminder" and edited.messages == draft.messages
    too_long = bpb.Broadcast(
        name=copy.name, messages=[bpb.BroadcastMessage(text=bpb.TextContent(text="😀" * 2501))]
    )
    with pytest.raises(grpc.RpcError) as e:
        stub.UpdateBroadcast(
            bpb.UpdateBroadcastRequest(
                broadcast=too_long, update_mask=FieldMask(paths=["messages"])
            ),
            metadata=A,
        )
    assert failure(e.value).fields == ["broadcast.messages[0].text"]  # 5,002 UTF-16 units
    stub.DeleteBroadcast(bpb.DeleteBroadcastRequest(name=copy.name), metadata=A)

    standard = _connect(line_channel, parent, emulator.call(emu.add_account, tier="none"))
    with pytest.raises(grpc.RpcError) as e:
        stub.CreateBroadcast(
            bpb.CreateBroadcastRequest(
                parent=parent,
                broadcast=bpb.Broadcast(
                    display_name="Everyone",
                    channel=standard.name,
                    audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                    messages=[bpb.BroadcastMessage(text=bpb.TextContent(text="hello"))],
                ),
            ),
            metadata=A,
        )
    f = failure(e.value)
    assert (f.code, f.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "AUDIENCE_NOT_ELIGIBLE")
    assert "verified" in f.message.lower()
