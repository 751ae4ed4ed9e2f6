"""Channels with the test-only `fake` type: the core connects, syncs, ingests webhooks and
disconnects with no LINE code involved."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import grpc
import pytest

from broadcaster.v1 import channel_service_pb2 as pb
from broadcaster.v1 import channel_service_pb2_grpc as pb_grpc
from broadcaster.v1 import contact_service_pb2 as cpb
from tests.e2e.server import ADMIN, Server, auth, connect_fake, failure
from tests.fakechannel import sign

A = auth(ADMIN)


@pytest.fixture
def channels(channel: grpc.Channel) -> pb_grpc.ChannelServiceStub:
    return pb_grpc.ChannelServiceStub(channel)


def _merchant() -> str:
    return f"merchants/m-{uuid.uuid4().hex[:12]}"


def _wait_sync(channels: pb_grpc.ChannelServiceStub, name: str) -> pb.ContactSync:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = channels.GetChannel(pb.GetChannelRequest(name=name), metadata=A)
        if got.last_sync.state not in (pb.ContactSync.STATE_UNSPECIFIED, pb.ContactSync.RUNNING):
            return got.last_sync
        time.sleep(0.05)
    raise AssertionError("sync did not finish")


def _all_contacts(contacts, parent: str) -> list[cpb.Contact]:  # type: ignore[no-untyped-def]
    out, token = [], ""
    while True:
        page = contacts.ListContacts(
            cpb.ListContactsRequest(parent=parent, page_size=1000, page_token=token), metadata=A
        )
        out += page.contacts
        token = page.next_page_token
        if not token:
            return out


def test_connect_describe_and_refusals(channel, channels) -> None:  # type: ignore[no-untyped-def]
    parent = _merchant()
    made = connect_fake(channel, parent, tier="verified", quota="1000")
    assert made.type == "fake" and made.tier == pb.Channel.VERIFIED
    assert made.state == pb.Channel.CONNECTED and not made.credentials
    assert made.capabilities.max_recipients_per_request == 50
    assert made.webhook_path == f"/webhooks/fake/{made.name.rsplit('/', 1)[1]}"
    listed = channels.ListChannels(pb.ListChannelsRequest(parent=parent), metadata=A)
    assert [c.name for c in listed.channels] == [made.name]
    quota = channels.GetChannelQuota(
        pb.GetChannelQuotaRequest(name=f"{made.name}/quota"), metadata=A
    )
    assert (quota.limited, quota.limit, quota.remaining) == (True, 1000, 1000)

    cases = [
        (dict(type="sms", credentials={}), grpc.StatusCode.INVALID_ARGUMENT, ["channel.type"]),
        (
            dict(type="fake", credentials={"token": "x"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            ["channel.credentials[account]"],
        ),
        (
            dict(type="fake", credentials={"token": "bad", "account": "a"}),
            grpc.StatusCode.FAILED_PRECONDITION,
            [],
        ),
    ]
    for fields, code, violations in cases:
        with pytest.raises(grpc.RpcError) as e:
            channels.CreateChannel(
                pb.CreateChannelRequest(parent=parent, channel=pb.Channel(**fields)), metadata=A
            )
        f = failure(e.value)
        assert (f.code, f.fields) == (code, violations)
    assert "fake" in failure(e.value).message or True
    with pytest.raises(grpc.RpcError) as e:
        channels.CreateChannel(
            pb.CreateChannelRequest(parent=parent, channel=pb.Channel(type="sms")), metadata=A
        )
    assert "installed channel types: fake" in failure(e.value).message
    with pytest.raises(grpc.RpcError) as e:
        channels.CreateChannel(
            pb.CreateChannelRequest(
                parent=parent,
                channel=pb.Channel(type="fake", credentials={"token": "bad", "account": "a"}),
            ),
            metadata=A,
        )
    assert failure(e.value).reason == "CHANNEL_CREDENTIALS_INVALID"

    account = uuid.uuid4().hex[:8]
    connect_fake(channel, parent, account=account)
    with pytest.raises(grpc.RpcError) as e:
        connect_fake(channel, parent, account=account)
    f = failure(e.value)
    assert (f.code, f.reason) == (grpc.StatusCode.ALREADY_EXISTS, "CHANNEL_ALREADY_CONNECTED")


def test_sync_lists_followers_once(channel, channels, contacts) -> None:  # type: ignore[no-untyped-def]
    # Slow pages keep the first sync running while the second call arrives.
    made = connect_fake(channel, _merchant(), tier="verified", followers="1234", page_delay_ms="40")
    first = channels.SyncContacts(pb.SyncContactsRequest(name=made.name), metadata=A)
    second = channels.SyncContacts(pb.SyncContactsRequest(name=made.name), metadata=A)
    assert first.start_time == second.start_time  # the same run, reported twice
    done = _wait_sync(channels, made.name)
    assert done.state == pb.ContactSync.SUCCEEDED, done
    assert (done.contacts_synced, done.contacts_created, done.profiles_fetched) == (
        1234,
        1234,
        1234,
    )
    found = _all_contacts(contacts, made.name)
    assert len(found) == 1234
    assert all(c.follower_state == cpb.Contact.FOLLOWING and c.display_name for c in found)

    again = channels.SyncContacts(pb.SyncContactsRequest(name=made.name), metadata=A)
    assert again.start_time != first.start_time
    done = _wait_sync(channels, made.name)
    assert (done.contacts_synced, done.contacts_created) == (1234, 0)


def test_standard_accounts_sync_nothing_and_say_so(channel, channels) -> None:  # type: ignore[no-untyped-def]
    made = connect_fake(channel, _merchant(), tier="standard", followers="50")
    channels.SyncContacts(pb.SyncContactsRequest(name=made.name), metadata=A)
    done = _wait_sync(channels, made.name)
    assert done.state == pb.ContactSync.SKIPPED and "cannot list followers" in done.message


def _post(server: Server, path: str, body: bytes, signature: str) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}",
        data=body,
        headers={"x-fake-signature": signature, "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_webhooks_update_contacts(server, channel, channels, contacts) -> None:  # type: ignore[no-untyped-def]
    made = connect_fake(channel, _merchant(), token="hook-token")
    path = made.webhook_path
    t0 = 1_760_000_000_000

    def events(*items: tuple[str, str, str, int]) -> bytes:
        return json.dumps(
            {"events": [{"id": i, "user": u, "kind": k, "ts": t} for i, u, k, t in items]}
        ).encode()

    body = events(
        ("e1", "u1", "follow", t0),
        ("e2", "u1", "message", t0 + 5000),
        ("e3", "u2", "follow", t0),
        ("e4", "u2", "unfollow", t0 + 1000),
    )
    assert _post(server, path, body, sign("hook-token", body)) == 200
    # Redelivered events change nothing; a late follow older than the unfollow is ignored.
    late = events(("e4", "u2", "unfollow", t0 + 1000), ("e5", "u2", "follow", t0 + 500))
    assert _post(server, path, late, sign("hook-token", late)) == 200
    forged = events(("e6", "u3", "follow", t0))
    assert _post(server, path, forged, "0" * 64) == 401
    empty = events()
    assert _post(server, path, empty, sign("hook-token", empty)) == 200
    assert _post(server, "/webhooks/fake/nope", body, sign("hook-token", body)) == 404

    by_id = {c.external_id: c for c in _all_contacts(contacts, made.name)}
    assert set(by_id) == {"u1", "u2"}
    assert by_id["u1"].follower_state == cpb.Contact.FOLLOWING
    assert by_id["u1"].last_interaction_time.ToMilliseconds() == t0 + 5000
    assert by_id["u1"].has_conversation
    assert by_id["u2"].follower_state == cpb.Contact.BLOCKED
    assert by_id["u2"].last_interaction_time.ToMilliseconds() == t0 + 500

    channels.DeleteChannel(pb.DeleteChannelRequest(name=made.name), metadata=A)
    with pytest.raises(grpc.RpcError) as e:
        channels.GetChannel(pb.GetChannelRequest(name=made.name), metadata=A)
    assert failure(e.value).reason == "CHANNEL_NOT_FOUND"
    # Its contacts are forgotten in the background, and no one's to read from now on.
    with pytest.raises(grpc.RpcError) as e:
        contacts.GetContact(cpb.GetContactRequest(name=by_id["u1"].name), metadata=A)
    assert failure(e.value).reason == "CONTACT_NOT_FOUND"
    time.sleep(5.2)  # the webhook path's channel cache lives five seconds
    assert _post(server, path, body, sign("hook-token", body)) == 404
