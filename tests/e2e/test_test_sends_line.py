"""Test sends end to end: a real `broadcaster serve` over gRPC, the LINE emulator as the channel,
and the emulator's own records as the judge of who received what.

A test send reaches exactly the named contacts (a push each), leaves the draft, its deliveries
and the Message Center as they were, is recorded and listed, counts against the channel's
quota as LINE counts it, and is refused with a QuotaFailure when too little is left."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from broadcaster_line_emulator import Exchange
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import event_service_pb2 as epb
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.sending_rig import A, Api, Servers, merchant, quota_failure, reach

R = bpb.TestSendRecipient


@pytest.fixture
def api(own_database: str, emulator: EmulatorThread, tmp_path: Path) -> Iterator[Api]:
    servers = Servers(own_database, emulator, tmp_path)
    yield servers.start()
    servers.stop_all()


class Pushes:
    """Every push request of one channel, as the emulator saw it: (recipient, status)."""

    def __init__(self, emulator: EmulatorThread, channel_id: str) -> None:
        self._emulator, self._channel_id = emulator, channel_id
        self._seen: list[tuple[str, int | None]] = []
        self._other: list[str] = []
        emulator.call(emulator.emulator.add_observer, self)

    def __call__(self, exchange: Exchange) -> None:
        if exchange.channel_id != self._channel_id:
            return
        if exchange.endpoint == "push":
            self._seen.append((json.loads(exchange.body)["to"], exchange.status))
        elif exchange.endpoint in ("multicast", "broadcast"):
            self._other.append(exchange.endpoint)

    def seen(self) -> tuple[list[tuple[str, int | None]], list[str]]:
        return self._emulator.call(lambda: (sorted(self._seen), list(self._other)))

    def close(self) -> None:
        self._emulator.call(self._emulator.emulator.remove_observer, self)


def _fields(error: grpc.RpcError) -> list[str]:
    assert isinstance(error, grpc.Call)
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return [v.field for v in bad.field_violations]
    return []


def _send_test(api: Api, name: str, contacts: list[str], request_id: str = "") -> bpb.TestSend:
    return api.broadcasts.SendTestBroadcast(
        bpb.SendTestBroadcastRequest(name=name, contacts=contacts, request_id=request_id),
        metadata=A,
    )


def test_a_test_send_reaches_only_the_named_contacts_and_counts_nothing_else(
    emulator: EmulatorThread, api: Api
) -> None:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=20, quota=5)
    parent = merchant()
    followers = emulator.call(emu.follower_ids, account)
    # One the service knows to have blocked the account (as LINE does), before it connected:
    # the follower sync connecting starts does not list them.
    emulator.call(emu.block, account, followers[5])
    made = api.connect(parent, account)
    bad = "U-not-a-line-user-id"
    people = api.import_contacts(made.name, [*followers[:5], *followers[6:], bad])
    by_id = {c.external_id: c for c in people}
    [blocked] = api.contacts.BatchCreateContacts(
        cpb.BatchCreateContactsRequest(
            parent=made.name,
            contacts=[cpb.Contact(external_id=followers[5], follower_state=cpb.Contact.BLOCKED)],
        ),
        metadata=A,
    ).contacts
    assert blocked.follower_state == cpb.Contact.BLOCKED
    draft = api.draft(parent, made.name, "Test me first")
    pushes = Pushes(emulator, account.channel_id)
    try:
        named = [by_id[followers[3]].name, by_id[followers[0]].name, blocked.name, by_id[bad].name]
        sent = _send_test(api, draft.name, named, "try-1")
        seen, other = pushes.seen()
    finally:
        pushes.close()

    assert [(r.contact, r.outcome, r.reason) for r in sent.recipients] == [
        (named[0], R.SENT, ""),
        (named[1], R.SENT, ""),
        (named[2], R.SKIPPED, "CONTACT_BLOCKED"),
        (named[3], R.FAILED, "INVALID_RECIPIENT"),
    ]
    assert sent.name.startswith(f"{draft.name}/testSends/")
    # At LINE: a push each to the three it tried, two delivered, nothing else sent.
    assert seen == sorted([(followers[3], 200), (followers[0], 200), (bad, 400)])
    assert other == []
    got = reach(emulator, account)
    assert (got.deliveries, got.reached_ids) == (2, frozenset({followers[0], followers[3]}))
    assert emulator.call(lambda: account.quota.usage) == 2  # LINE counted two messages

    # The draft is as it was: no counters, deliveries or Message Center events.
    now = api.get(draft.name)
    assert now.state == bpb.Broadcast.DRAFT
    assert now.counters == bpb.BroadcastCounters()
    assert now.update_time == draft.update_time
    assert api.deliveries(draft.name) == []
    events = api.events.ListEvents(epb.ListEventsRequest(parent=parent), metadata=A)
    assert list(events.events) == []

    # Recorded and listed; the same request again sends nothing more.
    listed = api.broadcasts.ListTestSends(bpb.ListTestSendsRequest(parent=draft.name), metadata=A)
    assert list(listed.test_sends) == [sent] and listed.next_page_token == ""
    assert _send_test(api, draft.name, named, "try-1") == sent
    assert reach(emulator, account).deliveries == 2

    # Quota: 3 left, so 4 contacts to send to are refused whole, with the numbers.
    more = [by_id[f].name for f in followers[10:14]]
    with pytest.raises(grpc.RpcError) as e:
        _send_test(api, draft.name, more)
    code, reason, info, violations = quota_failure(e.value)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "QUOTA_EXCEEDED")
    assert (info["recipients"], info["quota_remaining"]) == ("4", "3")
    assert [v.subject for v in violations] == [made.name]
    assert reach(emulator, account).deliveries == 2


def test_bad_requests_name_the_contact_and_send_nothing(emulator: EmulatorThread, api: Api) -> None:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=12)
    other_account = emulator.call(emu.add_account, tier="verified", followers=1)
    parent, stranger = merchant(), merchant()
    made = api.connect(parent, account)
    theirs = api.connect(stranger, other_account)
    followers = emulator.call(emu.follower_ids, account)
    mine = [c.name for c in api.import_contacts(made.name, followers)]
    [foreign] = api.import_contacts(theirs.name, emulator.call(emu.follower_ids, other_account))
    draft = api.draft(parent, made.name, "Not for them")

    cases = [
        ([mine[0], mine[1], mine[2], foreign.name], ["contacts[3]"]),  # another merchant's
        ([mine[0], mine[0]], ["contacts[1]"]),  # a repeat
        ([mine[0], f"{made.name}/contacts/nosuch"], ["contacts[1]"]),  # not on the channel
        (mine[:11], ["contacts"]),  # more than 10
        ([], ["contacts"]),
    ]
    for contacts, fields in cases:
        with pytest.raises(grpc.RpcError) as e:
            _send_test(api, draft.name, contacts)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, contacts
        assert _fields(e.value) == fields
    # Another merchant's caller cannot see the draft at all.
    with pytest.raises(grpc.RpcError) as e:
        _send_test(api, draft.name.replace(parent, stranger), [foreign.name])
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    # A broadcast no longer a draft.
    api.send(draft.name)
    with pytest.raises(grpc.RpcError) as e:
        _send_test(api, draft.name, [mine[0]])
    _, reason, _, _ = quota_failure(e.value)
    assert (e.value.code(), reason) == (grpc.StatusCode.FAILED_PRECONDITION, "BROADCAST_NOT_DRAFT")
    api.finished(draft.name)
    assert reach(emulator, account).deliveries == 12  # the broadcast's own, one each
