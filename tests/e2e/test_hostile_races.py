"""Lifecycle races and careless callers against a real `broadcaster serve` and the LINE emulator,
as they were reproduced (sizes scaled to CI): a channel deleted mid-send, a token revoked
mid-send, a resend moved to another channel, request ids reused for other requests, and a
customer group deleted under a draft.

The emulator is the judge of what went out: its observer sees every multicast request, so the
requests that reached LINE after DeleteChannel returned are counted exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from broadcaster_line_emulator import Faults
from google.protobuf import field_mask_pb2

from broadcaster.dispatch.engine import Settings
from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import channel_service_pb2 as pb
from broadcaster.v1 import customer_group_service_pb2 as gpb
from broadcaster.v1 import customer_group_service_pb2_grpc as gpb_grpc
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.sending_rig import (
    A,
    Api,
    MulticastRecorder,
    Servers,
    merchant,
    quota_failure,
    reach,
    wait_for,
)

MULTICAST = frozenset({"multicast"})
BATCH = 500  # LINE's multicast maximum
# The most sends unanswered per channel (192); 32 until the first answer.
IN_FLIGHT = Settings().in_flight
# Every multicast answer takes this long: 32 requests go before the first answer, so the call
# lands mid-send with requests on the wire.
LATENCY = 1.0


@pytest.fixture
def servers(own_database: str, emulator: EmulatorThread, tmp_path: Path) -> Iterator[Servers]:
    made = Servers(own_database, emulator, tmp_path)
    yield made
    made.stop_all()
    emulator.call(emulator.emulator.clear_faults)


def _sending_shop(
    emulator: EmulatorThread, api: Api, people: int, text: str
) -> tuple[object, str, str, list[str]]:
    """A verified account with `people` followers as contacts, a draft to all of them, and
    slow multicast answers: (account, parent, draft name, followers)."""
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=people)
    parent = merchant()
    made = api.connect(parent, account)
    followers: list[str] = emulator.call(emu.follower_ids, account)
    api.import_contacts(made.name, followers)
    emulator.call(emu.set_faults, Faults(latency=LATENCY, endpoints=MULTICAST), account)
    draft = api.draft(parent, made.name, text)
    return account, parent, draft.name, followers


def _outcomes(api: Api, name: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for d in api.deliveries(name):
        counts[d.outcome] = counts.get(d.outcome, 0) + 1
    return counts


def _error(e: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    code, reason, metadata, _ = quota_failure(e)  # code, ErrorInfo reason and metadata
    return code, reason, metadata


def test_delete_channel_mid_send_stops_its_requests(
    emulator: EmulatorThread, servers: Servers
) -> None:
    # 300 batches: more than the 4 answered before the delete, the requests in flight then and
    # those sent while DeleteChannel runs (after the first answer, the channel's bound in flight
    # grows to its rate x the answer time, so 200 go a second; on SQLite the delete holds the
    # writer, so no more than those claimed by then), so some recipients are left whatever the
    # speed.
    people = 150_000
    api = servers.start()
    account, _, name, _ = _sending_shop(
        emulator, api, people, "Deleted mid-send: nothing more may go"
    )
    channel = api.get(name).channel
    recorder = MulticastRecorder(emulator, account)  # type: ignore[arg-type]
    try:
        assert api.send(name).counters.total == people
        # Sending for real: some batches answered, more on the wire.
        wait_for("answered requests", lambda: len(recorder.attempts()) >= 4, every=0.005)
        api.channels.DeleteChannel(pb.DeleteChannelRequest(name=channel), metadata=A)
        answered_by_then = len(recorder.attempts())
        done = api.finished(name)
        requests = recorder.attempts()
    finally:
        recorder.close()

    # Only requests already on the wire when DeleteChannel returned reached LINE after it.
    on_the_wire = emulator.call(
        emulator.emulator.stats.most_in_progress, "multicast", account.channel_id
    )
    assert len(requests) - answered_by_then <= on_the_wire <= IN_FLIGHT
    assert all(a.status == 200 for a in requests)
    assert (done.state, done.failure_reason) == (bpb.Broadcast.FAILED, "CHANNEL_NOT_CONNECTED")
    got = reach(emulator, account)  # type: ignore[arg-type]
    assert got.more_than_once == 0 and got.users_reached < people
    c = done.counters
    assert (c.total, c.sent, c.failed) == (people, got.users_reached, 0)
    assert _outcomes(api, name) == {
        bpb.Delivery.SENT: got.users_reached,
        bpb.Delivery.NOT_SENT_STOPPED: people - got.users_reached,
    }
    # Their contacts are gone with the channel: no resend can be made on it.
    with pytest.raises(grpc.RpcError) as e:
        api.broadcasts.CopyBroadcast(
            bpb.CopyBroadcastRequest(name=name, unsent_only=True), metadata=A
        )
    assert _error(e.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "CHANNEL_NOT_CONNECTED")
    print(f"delete mid-send: {len(requests)} requests, {answered_by_then} answered at return")


def test_token_revoked_mid_send_fails_the_channel_and_its_resend_stays_put(
    emulator: EmulatorThread, servers: Servers
) -> None:
    people = 30_000
    emu = emulator.emulator
    api = servers.start()
    account, parent, name, _ = _sending_shop(emulator, api, people, "Token revoked mid-send")
    channel = api.get(name).channel
    refusals_before = emulator.call(emu.stats.count, "multicast", 401)
    recorder = MulticastRecorder(emulator, account)  # type: ignore[arg-type]
    try:
        api.send(name)
        wait_for("answered requests", lambda: len(recorder.attempts()) >= 4, every=0.005)
        emulator.call(emu.revoke_token, account)
        done = api.finished(name)
    finally:
        recorder.close()

    # LINE answers an unknown token without knowing the channel: count its 401s over all.
    refused = emulator.call(emu.stats.count, "multicast", 401) - refusals_before
    # Only requests already on the wire when the first 401 came back met it; nothing after.
    assert 1 <= refused <= IN_FLIGHT
    assert (done.state, done.failure_reason) == (
        bpb.Broadcast.FAILED,
        "CHANNEL_CREDENTIALS_INVALID",
    )
    got = reach(emulator, account)  # type: ignore[arg-type]
    assert got.more_than_once == 0
    assert (done.counters.sent, done.counters.failed) == (got.users_reached, 0)
    assert _outcomes(api, name) == {
        bpb.Delivery.SENT: got.users_reached,
        bpb.Delivery.NOT_SENT_STOPPED: people - got.users_reached,
    }
    state = api.channels.GetChannel(pb.GetChannelRequest(name=channel), metadata=A).state
    assert state == pb.Channel.CREDENTIALS_INVALID

    # The resend of the rest cannot move to another channel (whose account would receive
    # nothing of it: its contacts are other people).
    other_account = emulator.call(emu.add_account, tier="verified", followers=10)
    other = api.connect(parent, other_account)
    resend = api.broadcasts.CopyBroadcast(
        bpb.CopyBroadcastRequest(name=name, unsent_only=True), metadata=A
    )
    moved = bpb.Broadcast(name=resend.name, channel=other.name)
    with pytest.raises(grpc.RpcError) as e:
        api.broadcasts.UpdateBroadcast(
            bpb.UpdateBroadcastRequest(
                broadcast=moved, update_mask=field_mask_pb2.FieldMask(paths=["channel"])
            ),
            metadata=A,
        )
    assert _error(e.value)[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "RESEND_CHANNEL_FIXED")
    assert api.get(resend.name).channel == channel
    assert reach(emulator, other_account).sends == 0


def test_request_ids_are_bound_to_their_request(emulator: EmulatorThread, servers: Servers) -> None:
    emu = emulator.emulator
    api = servers.start()
    account = emulator.call(emu.add_account, tier="verified", followers=30)
    parent = merchant()
    made = api.connect(parent, account)
    api.import_contacts(made.name, emulator.call(emu.follower_ids, account))
    one, two = api.draft(parent, made.name, "One"), api.draft(parent, made.name, "Two")

    api.broadcasts.SendBroadcast(
        bpb.SendBroadcastRequest(name=one.name, request_id="r1"), metadata=A
    )
    with pytest.raises(grpc.RpcError) as e:
        api.broadcasts.SendBroadcast(
            bpb.SendBroadcastRequest(name=two.name, request_id="r1"), metadata=A
        )
    assert _error(e.value)[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_ID_REUSED")
    assert api.get(two.name).state == bpb.Broadcast.DRAFT
    retried = api.broadcasts.SendBroadcast(
        bpb.SendBroadcastRequest(name=one.name, request_id="r1"), metadata=A
    )
    assert retried.name == one.name and retried.state != bpb.Broadcast.DRAFT

    created = api.broadcasts.CreateBroadcast(
        bpb.CreateBroadcastRequest(parent=parent, broadcast=two, request_id="c1"), metadata=A
    )
    copied = api.broadcasts.CopyBroadcast(
        bpb.CopyBroadcastRequest(name=two.name, request_id="c1"), metadata=A
    )
    assert copied.name != created.name and copied.copied_from == two.name
    api.finished(one.name)
    assert reach(emulator, account).deliveries == 30  # draft one, once


def test_a_customer_group_used_by_a_draft_is_not_deleted(
    emulator: EmulatorThread, servers: Servers
) -> None:
    emu = emulator.emulator
    api = servers.start()
    groups = gpb_grpc.CustomerGroupServiceStub(api.channel)
    account = emulator.call(emu.add_account, tier="verified", followers=5)
    parent = merchant()
    made = api.connect(parent, account)
    group = groups.CreateCustomerGroup(
        gpb.CreateCustomerGroupRequest(
            parent=parent, customer_group=gpb.CustomerGroup(display_name="VIP")
        ),
        metadata=A,
    )
    draft = api.broadcasts.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=parent,
            broadcast=bpb.Broadcast(
                display_name="For VIPs",
                channel=made.name,
                audience=bpb.Audience(
                    last_interaction=bpb.Audience.ALL_CONTACTS, customer_groups=[group.name]
                ),
                messages=[bpb.BroadcastMessage(text=bpb.TextContent(text="hi"))],
            ),
        ),
        metadata=A,
    )
    with pytest.raises(grpc.RpcError) as e:
        groups.DeleteCustomerGroup(gpb.DeleteCustomerGroupRequest(name=group.name), metadata=A)
    code, reason, info = _error(e.value)
    assert (code, reason, info.get("broadcasts")) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CUSTOMER_GROUP_IN_USE",
        draft.name,
    )
    api.broadcasts.DeleteBroadcast(bpb.DeleteBroadcastRequest(name=draft.name), metadata=A)
    groups.DeleteCustomerGroup(gpb.DeleteCustomerGroupRequest(name=group.name), metadata=A)
