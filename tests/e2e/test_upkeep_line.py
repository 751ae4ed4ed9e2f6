"""A hands-off LINE channel against the emulator: connecting starts the follower sync by itself,
the scheduled re-sync (every 2 s here) picks up new followers and unfollows, the estimate says
whether the follower list is complete, and the channel's health is listed."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import broadcast_service_pb2_grpc as bpb_grpc
from broadcaster.v1 import channel_service_pb2 as pb
from broadcaster.v1 import channel_service_pb2_grpc as pb_grpc
from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import contact_service_pb2_grpc as cpb_grpc
from broadcaster.v1 import event_service_pb2 as epb
from broadcaster.v1 import event_service_pb2_grpc as epb_grpc
from tests.e2e import server as live
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.server import ADMIN, auth

A = auth(ADMIN)
INTERVAL = 2


@pytest.fixture(scope="module")
def upkeep_channel(
    own_database: str, emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[grpc.Channel]:
    """A LINE server on a database of this module's own: the session's fake-channel server
    would otherwise claim the LINE channels' due re-syncs too, and, lacking the LINE plugin,
    hold them for a claim's minute."""
    log = tmp_path_factory.mktemp("upkeep-server") / "serve.log"
    with socket.socket() as probe:  # a free port, known before the server starts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = live.start(
        own_database,
        log,
        extra_env={
            "BROADCASTER_PLUGINS": "line",
            "BROADCASTER_LINE_API_BASE": emulator.base_url,
            "BROADCASTER_FOLLOWER_SYNC_INTERVAL": str(INTERVAL),
            "BROADCASTER_HTTP_LISTEN": f"127.0.0.1:{port}",
            "BROADCASTER_PUBLIC_URL": f"http://127.0.0.1:{port}/",
        },
    )
    with grpc.insecure_channel(running.target) as ch:
        yield ch
    assert running.stop() == 0, log.read_text()


def _connect(ch: grpc.Channel, parent: str, account: Any) -> pb.Channel:
    return pb_grpc.ChannelServiceStub(ch).CreateChannel(
        pb.CreateChannelRequest(
            parent=parent,
            channel=pb.Channel(
                type="line",
                credentials={
                    "channel_access_token": account.access_token,
                    "channel_secret": account.channel_secret,
                },
            ),
            request_id=f"connect-{account.channel_id}",
        ),
        metadata=A,
    )


def _until(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _contacts(ch: grpc.Channel, parent: str) -> dict[str, cpb.Contact]:
    stub = cpb_grpc.ContactServiceStub(ch)
    page = stub.ListContacts(cpb.ListContactsRequest(parent=parent, page_size=1000), metadata=A)
    return {c.external_id: c for c in page.contacts}


def test_connect_once_and_the_follower_list_keeps_itself_current(
    emulator: EmulatorThread, upkeep_channel: grpc.Channel
) -> None:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=40)
    parent = f"merchants/m-{uuid.uuid4().hex[:12]}"
    channels = pb_grpc.ChannelServiceStub(upkeep_channel)
    made = _connect(upkeep_channel, parent, account)
    # The webhook was set through LINE and LINE's test reached the service.
    assert made.webhook_url.endswith(made.webhook_path)
    assert made.webhook.state == pb.WebhookStatus.VERIFIED, made.webhook
    assert made.webhook.endpoint == made.webhook_url and made.webhook.HasField("test_time")
    assert emulator.call(lambda: account.webhook_endpoint) == made.webhook_url
    # The sync started by itself: no SyncContacts call.
    assert made.last_sync.state in (pb.ContactSync.RUNNING, pb.ContactSync.SUCCEEDED)
    assert made.follower_sync.HasField("next_sync_time")
    first = _until(
        lambda: (
            (
                c := channels.GetChannel(pb.GetChannelRequest(name=made.name), metadata=A)
            ).last_sync.state
            == pb.ContactSync.SUCCEEDED
            and c
        )
    )
    assert first.follower_sync.complete and first.follower_sync.HasField("sync_time")
    assert set(_contacts(upkeep_channel, made.name)) == set(
        emulator.call(emu.follower_ids, account)
    )
    # A repeated CreateChannel returns the channel; it starts no second sync.
    assert _connect(upkeep_channel, parent, account).name == made.name

    stub = bpb_grpc.BroadcastServiceStub(upkeep_channel)
    everyone = bpb.EstimateAudienceRequest(
        parent=parent,
        channel=made.name,
        audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
    )
    estimate = stub.EstimateAudience(everyone, metadata=A)
    assert (estimate.matched, estimate.followers_complete) == (40, True)
    assert estimate.followers_sync_time == first.follower_sync.sync_time

    # Between re-syncs a follower arrives and another blocks the account, and no webhook tells.
    newcomer = emulator.call(emu.add_follower, account).user_id
    leaver = emulator.call(emu.follower_ids, account)[0]
    emulator.call(emu.block, account, leaver)
    first_run = first.last_sync.start_time

    def resynced() -> bool:
        c = channels.GetChannel(pb.GetChannelRequest(name=made.name), metadata=A)
        s = c.last_sync
        return s.start_time != first_run and s.state == pb.ContactSync.SUCCEEDED

    _until(resynced)
    contacts = _contacts(upkeep_channel, made.name)
    assert contacts[newcomer].follower_state == cpb.Contact.FOLLOWING
    assert contacts[leaver].follower_state == cpb.Contact.BLOCKED
    estimate = stub.EstimateAudience(everyone, metadata=A)
    assert (estimate.matched, estimate.expected_recipients) == (41, 40)
    assert estimate.followers_complete

    # A webhook event reaches the service: the channel shows when it last heard from LINE.
    sender = emulator.call(emu.webhook_sender, account)
    chat = emulator.call(emu.events.text_message, newcomer, "hello")
    assert emulator.run(sender.post(made.webhook_url, [chat])).status == 200
    heard = channels.GetChannel(pb.GetChannelRequest(name=made.name), metadata=A)
    assert heard.webhook.HasField("last_event_time")

    healthy = channels.ListChannels(
        pb.ListChannelsRequest(parent=parent, needs_attention=True), metadata=A
    )
    assert list(healthy.channels) == []


def test_a_standard_account_says_its_list_is_incomplete(
    emulator: EmulatorThread, upkeep_channel: grpc.Channel
) -> None:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="none", followers=5)
    parent = f"merchants/m-{uuid.uuid4().hex[:12]}"
    made = _connect(upkeep_channel, parent, account)
    channels = pb_grpc.ChannelServiceStub(upkeep_channel)
    done = _until(
        lambda: (
            (
                c := channels.GetChannel(pb.GetChannelRequest(name=made.name), metadata=A)
            ).last_sync.state
            == pb.ContactSync.SKIPPED
            and c
        )
    )
    assert not done.follower_sync.complete and not done.health.needs_attention
    estimate = bpb_grpc.BroadcastServiceStub(upkeep_channel).EstimateAudience(
        bpb.EstimateAudienceRequest(
            parent=parent,
            channel=made.name,
            audience=bpb.Audience(last_interaction=bpb.Audience.LAST_7_DAYS),
        ),
        metadata=A,
    )
    assert not estimate.followers_complete and not estimate.HasField("followers_sync_time")


def test_refused_credentials_show_on_health_with_an_event(
    emulator: EmulatorThread, upkeep_channel: grpc.Channel
) -> None:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=3, quota=100)
    parent = f"merchants/m-{uuid.uuid4().hex[:12]}"
    made = _connect(upkeep_channel, parent, account)
    channels = pb_grpc.ChannelServiceStub(upkeep_channel)
    quota = channels.GetChannelQuota(
        pb.GetChannelQuotaRequest(name=f"{made.name}/quota"), metadata=A
    )
    assert quota.limit == 100
    read = channels.GetChannel(pb.GetChannelRequest(name=made.name), metadata=A)
    assert (read.quota.limit, read.quota.used) == (100, 0) and read.HasField("quota_time")

    emulator.call(emu.rotate_token, account)  # a new token is issued in LINE's console
    with pytest.raises(grpc.RpcError):
        channels.GetChannelQuota(pb.GetChannelQuotaRequest(name=f"{made.name}/quota"), metadata=A)
    listed = channels.ListChannels(
        pb.ListChannelsRequest(parent=parent, needs_attention=True), metadata=A
    )
    assert [c.name for c in listed.channels] == [made.name]
    (sick,) = listed.channels
    assert [i.kind for i in sick.health.issues][:1] == [pb.ChannelIssue.CREDENTIALS_REFUSED]
    assert sick.health.needs_attention and sick.health.HasField("since")
    events = epb_grpc.EventServiceStub(upkeep_channel).ListEvents(
        epb.ListEventsRequest(parent=parent, kinds=[epb.Event.CHANNEL_UNHEALTHY]), metadata=A
    )
    assert [(e.channel, e.broadcast, e.failure_reason) for e in events.events] == [
        (made.name, "", "CREDENTIALS_REFUSED")
    ]
