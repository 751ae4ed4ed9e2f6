"""A broadcast from draft to SENT through the client, on the LINE channel and its emulator."""

from __future__ import annotations

import time
import uuid
from typing import Any

import grpc
import pytest
from client_live import Live
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from broadcaster_client import BroadcasterError, Client, paginate
from broadcaster_client.v1 import broadcast_service_pb2 as bpb
from broadcaster_client.v1 import channel_service_pb2 as cpb
from broadcaster_client.v1 import contact_service_pb2 as ctpb
from broadcaster_client.v1 import customer_group_service_pb2 as gpb
from broadcaster_client.v1 import event_service_pb2 as epb

FOLLOWERS = 12
MEMBERS = 8  # followers linked to a customer of the group


def _connect_line(client: Client, parent: str, account: dict[str, Any]) -> cpb.Channel:
    return client.channels.CreateChannel(
        cpb.CreateChannelRequest(
            parent=parent,
            channel=cpb.Channel(
                type="line",
                credentials={
                    "channel_access_token": account["accessToken"],
                    "channel_secret": account["channelSecret"],
                },
            ),
            request_id=f"connect-{uuid.uuid4().hex}",
        )
    )


def _synced(client: Client, channel: str) -> None:
    client.channels.SyncContacts(cpb.SyncContactsRequest(name=channel))
    deadline = time.monotonic() + 60
    while True:
        sync = client.channels.GetChannel(cpb.GetChannelRequest(name=channel)).last_sync
        if sync.state == cpb.ContactSync.SUCCEEDED:
            return
        assert sync.state != cpb.ContactSync.FAILED, sync
        assert time.monotonic() < deadline, f"sync not done: {sync}"
        time.sleep(0.1)


def _draft(channel: str, group: str, text: str) -> bpb.Broadcast:
    return bpb.Broadcast(
        display_name="Spring sale",
        channel=channel,
        audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS, customer_groups=[group]),
        messages=[bpb.BroadcastMessage(text=bpb.TextContent(text=text))],
    )


def _until_done(client: Client, name: str, timeout: float = 60) -> bpb.Broadcast:
    deadline = time.monotonic() + timeout
    while True:
        broadcast = client.broadcasts.GetBroadcast(bpb.GetBroadcastRequest(name=name))
        going = (bpb.Broadcast.DRAFT, bpb.Broadcast.SENDING, bpb.Broadcast.SCHEDULED)
        if broadcast.state not in going:
            return broadcast
        assert time.monotonic() < deadline, f"still sending: {broadcast}"
        time.sleep(0.1)


@pytest.fixture
def shop(live: Live, client: Client, merchant: str) -> dict[str, Any]:
    """A verified LINE account with FOLLOWERS followers, synced; MEMBERS of them linked to
    customers of a group."""
    account = live.line_account(tier="verified", followers=FOLLOWERS)
    channel = _connect_line(client, merchant, account)
    _synced(client, channel.name)
    contacts = list(
        paginate(
            client.contacts.ListContacts,
            ctpb.ListContactsRequest(parent=channel.name, page_size=5),
            lambda page: page.contacts,
        )
    )
    assert len(contacts) == FOLLOWERS
    for n, contact in enumerate(contacts[:MEMBERS]):
        client.contacts.UpdateContact(
            ctpb.UpdateContactRequest(
                contact=ctpb.Contact(name=contact.name, customer_id=f"cust-{n}"),
                update_mask=FieldMask(paths=["customer_id"]),
            )
        )
    group = client.customer_groups.CreateCustomerGroup(
        gpb.CreateCustomerGroupRequest(
            parent=merchant,
            customer_group=gpb.CustomerGroup(display_name="VIP customers"),
            request_id=f"vip-{uuid.uuid4().hex}",
        )
    )
    added = client.customer_groups.AddCustomerGroupMembers(
        gpb.AddCustomerGroupMembersRequest(
            customer_group=group.name, customer_ids=[f"cust-{n}" for n in range(MEMBERS)]
        )
    )
    assert added.member_count == MEMBERS
    return {"parent": merchant, "channel": channel, "group": group.name, "account": account}


def test_draft_estimate_send_watch(live: Live, client: Client, shop: dict[str, Any]) -> None:
    parent, channel = shop["parent"], shop["channel"]
    draft = client.broadcasts.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=parent,
            broadcast=_draft(channel.name, shop["group"], "20% off this week"),
            request_id=f"draft-{uuid.uuid4().hex}",
        )
    )
    assert draft.state == bpb.Broadcast.DRAFT

    estimate = client.broadcasts.EstimateAudience(
        bpb.EstimateAudienceRequest(parent=parent, name=draft.name)
    )
    assert (estimate.eligible, estimate.matched, estimate.expected_recipients) == (
        True,
        MEMBERS,
        MEMBERS,
    )

    send = bpb.SendBroadcastRequest(name=draft.name, request_id=f"send-{uuid.uuid4().hex}")
    sending = client.broadcasts.SendBroadcast(send)
    assert sending.state in (bpb.Broadcast.SENDING, bpb.Broadcast.SENT)
    assert sending.counters.total == MEMBERS
    # The same request id returns the first result and sends nothing twice.
    assert client.broadcasts.SendBroadcast(send).name == draft.name

    done = _until_done(client, draft.name)
    assert done.state == bpb.Broadcast.SENT, done
    assert (done.counters.total, done.counters.sent, done.counters.failed) == (MEMBERS, MEMBERS, 0)

    deliveries = list(
        paginate(
            client.broadcasts.ListDeliveries,
            bpb.ListDeliveriesRequest(parent=draft.name, page_size=3),
            lambda page: page.deliveries,
        )
    )
    assert len(deliveries) == MEMBERS
    assert {d.outcome for d in deliveries} == {bpb.Delivery.SENT}
    assert all(d.request_id for d in deliveries)  # the channel's id, to trace a message

    # Its statistics: the singleton under the broadcast. None are read yet (the first read is an
    # hour after the send), so every figure is unset (never 0) and a reason says why.
    stats = client.broadcasts.GetBroadcastStatistics(
        bpb.GetBroadcastStatisticsRequest(name=f"{draft.name}/statistics")
    )
    assert (stats.name, stats.delivered) == (f"{draft.name}/statistics", MEMBERS)
    assert not stats.HasField("unique_impressions") and not stats.HasField("open_rate")
    assert stats.unavailable_reason in ("STATISTICS_NOT_YET", "STATISTICS_NOT_SUPPORTED")
    assert done.statistics_summary.unavailable_reason == stats.unavailable_reason

    summary = live.emulator(
        "GET", f"/_emulator/accounts/{shop['account']['channelId']}/deliveries/summary"
    )
    assert (summary["usersReached"], summary["usersReachedMoreThanOnce"]) == (MEMBERS, 0)

    # The Message Center events of this broadcast, streamed from the start; stop once all came.
    stream = client.events.WatchEvents(epb.WatchEventsRequest(parent=parent), timeout=30)
    reached: set[str] = set()
    for event in stream:
        if event.kind == epb.Event.BROADCAST_MESSAGE and event.broadcast == draft.name:
            reached.add(event.contact)
        if len(reached) == MEMBERS:
            stream.cancel()
            break
    assert {d.contact for d in deliveries} == reached

    # The same events, many to a message.
    batches = client.events.WatchEventBatches(
        epb.WatchEventBatchesRequest(parent=parent), timeout=30
    )
    in_batches: set[str] = set()
    for batch in batches:
        assert batch.events
        in_batches.update(
            event.contact
            for event in batch.events
            if event.kind == epb.Event.BROADCAST_MESSAGE and event.broadcast == draft.name
        )
        if len(in_batches) == MEMBERS:
            batches.cancel()
            break
    assert in_batches == reached

    # Only the broadcast's lifecycle, filtered by the server: sending, then sent with its counters.
    steps = client.events.ListEvents(
        epb.ListEventsRequest(
            parent=parent,
            broadcast=draft.name,
            kinds=[epb.Event.BROADCAST_SENDING, epb.Event.BROADCAST_SENT],
        )
    )
    assert [e.kind for e in steps.events] == [epb.Event.BROADCAST_SENDING, epb.Event.BROADCAST_SENT]
    assert steps.events[-1].counters.sent == MEMBERS and not steps.events[-1].contact

    # A sent broadcast is no draft any more.
    with pytest.raises(BroadcasterError) as e:
        client.broadcasts.DeleteBroadcast(bpb.DeleteBroadcastRequest(name=draft.name))
    assert (e.value.code(), e.value.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "BROADCAST_NOT_DRAFT",
    )


def test_send_over_quota_is_refused_with_quota_failure(
    live: Live, client: Client, merchant: str
) -> None:
    account = live.line_account(tier="verified", followers=5, quota=3)
    channel = _connect_line(client, merchant, account)
    _synced(client, channel.name)
    draft = client.broadcasts.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=merchant,
            broadcast=bpb.Broadcast(
                display_name="Too many",
                channel=channel.name,
                audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                messages=[bpb.BroadcastMessage(text=bpb.TextContent(text="hi"))],
            ),
        )
    )
    estimate = client.broadcasts.EstimateAudience(
        bpb.EstimateAudienceRequest(parent=merchant, name=draft.name)
    )
    assert (estimate.expected_recipients, estimate.quota_remaining, estimate.exceeds_quota) == (
        5,
        3,
        True,
    )
    with pytest.raises(BroadcasterError) as e:
        client.broadcasts.SendBroadcast(bpb.SendBroadcastRequest(name=draft.name))
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.value.reason == "QUOTA_EXCEEDED"
    assert e.value.quota_violations and e.value.quota_violations[0].description
    still = client.broadcasts.GetBroadcast(bpb.GetBroadcastRequest(name=draft.name))
    assert still.state == bpb.Broadcast.DRAFT


def test_a_test_send_goes_to_the_named_contacts_only(
    live: Live, client: Client, shop: dict[str, Any]
) -> None:
    parent, channel = shop["parent"], shop["channel"]
    draft = client.broadcasts.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=parent, broadcast=_draft(channel.name, shop["group"], "Preview")
        )
    )
    contacts = client.contacts.ListContacts(
        ctpb.ListContactsRequest(parent=channel.name, page_size=2)
    ).contacts
    named = [c.name for c in contacts]
    request = bpb.SendTestBroadcastRequest(
        name=draft.name, contacts=named, request_id=f"test-{uuid.uuid4().hex}"
    )
    sent = client.broadcasts.SendTestBroadcast(request)
    assert [(r.contact, r.outcome) for r in sent.recipients] == [
        (n, bpb.TestSendRecipient.SENT) for n in named
    ]
    assert client.broadcasts.SendTestBroadcast(request) == sent  # the same request id
    listed = list(
        paginate(
            client.broadcasts.ListTestSends,
            bpb.ListTestSendsRequest(parent=draft.name, page_size=1),
            lambda page: page.test_sends,
        )
    )
    assert listed == [sent]
    summary = live.emulator(
        "GET", f"/_emulator/accounts/{shop['account']['channelId']}/deliveries/summary"
    )
    assert (summary["usersReached"], summary["usersReachedMoreThanOnce"]) == (2, 0)
    again = client.broadcasts.GetBroadcast(bpb.GetBroadcastRequest(name=draft.name))
    assert (again.state, again.counters.total) == (bpb.Broadcast.DRAFT, 0)
    with pytest.raises(BroadcasterError) as e:
        client.broadcasts.SendTestBroadcast(
            bpb.SendTestBroadcastRequest(name=draft.name, contacts=[named[0], named[0]])
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.fields == ["contacts[1]"]


def test_send_up_to_the_remaining_quota(live: Live, client: Client, merchant: str) -> None:
    """At the LINE emulator: a Send limited to the remaining quota reaches exactly that many,
    the first in recipient order; the rest are NOT_SENT_LIMIT, counted, and resendable."""
    account = live.line_account(tier="verified", followers=5, quota=3)
    channel = _connect_line(client, merchant, account)
    _synced(client, channel.name)
    draft = client.broadcasts.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=merchant,
            broadcast=bpb.Broadcast(
                display_name="Up to the quota",
                channel=channel.name,
                audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                messages=[bpb.BroadcastMessage(text=bpb.TextContent(text="hi"))],
            ),
        )
    )
    limit = bpb.RecipientLimit(remaining_quota=True)
    estimate = client.broadcasts.EstimateAudience(
        bpb.EstimateAudienceRequest(parent=merchant, name=draft.name, recipient_limit=limit)
    )
    assert (estimate.expected_recipients, estimate.capped_recipients) == (5, 3)
    assert (estimate.left_out_by_limit, estimate.exceeds_quota) == (2, False)
    sent = client.broadcasts.SendBroadcast(
        bpb.SendBroadcastRequest(name=draft.name, recipient_limit=limit)
    )
    assert sent.recipient_limit == limit
    assert (sent.counters.total, sent.counters.left_out_by_limit) == (3, 2)
    done = _until_done(client, draft.name)
    assert done.state == bpb.Broadcast.SENT and done.counters.sent == 3
    deliveries = list(
        client.broadcasts.ListDeliveries(
            bpb.ListDeliveriesRequest(parent=draft.name, page_size=10)
        ).deliveries
    )
    assert [d.outcome for d in deliveries] == [bpb.Delivery.SENT] * 3 + [
        bpb.Delivery.NOT_SENT_LIMIT
    ] * 2
    reached = [
        len(live.emulator("GET", f"/_emulator/accounts/{account['channelId']}/deliveries"
                          f"?userId={d.external_id}"))
        for d in deliveries
    ]  # fmt: skip
    assert reached == [1, 1, 1, 0, 0]
    resend = client.broadcasts.CopyBroadcast(
        bpb.CopyBroadcastRequest(name=draft.name, unsent_only=True)
    )
    again = client.broadcasts.EstimateAudience(
        bpb.EstimateAudienceRequest(parent=merchant, name=resend.name)
    )
    assert again.expected_recipients == 2  # the two left out


def test_schedule_unschedule_and_fire(live: Live, client: Client, merchant: str) -> None:
    account = live.line_account(tier="verified", followers=4)
    channel = _connect_line(client, merchant, account)
    _synced(client, channel.name)

    def draft() -> bpb.Broadcast:
        return client.broadcasts.CreateBroadcast(
            bpb.CreateBroadcastRequest(
                parent=merchant,
                broadcast=bpb.Broadcast(
                    display_name="Later",
                    channel=channel.name,
                    audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                    messages=[bpb.BroadcastMessage(text=bpb.TextContent(text="hi"))],
                ),
            )
        )

    def at(seconds: float) -> Timestamp:
        when = Timestamp()
        when.FromMicroseconds(time.time_ns() // 1000 + int(seconds * 1e6))  # kept to the µs
        return when

    first = draft()
    with pytest.raises(BroadcasterError) as e:
        client.broadcasts.ScheduleBroadcast(
            bpb.ScheduleBroadcastRequest(name=first.name, schedule_time=at(-5))
        )
    assert (e.value.code(), e.value.reason) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "SCHEDULE_TIME_PAST",
    )
    request = bpb.ScheduleBroadcastRequest(
        name=first.name, schedule_time=at(3600), request_id=f"s-{uuid.uuid4().hex}"
    )
    scheduled = client.broadcasts.ScheduleBroadcast(request)
    assert scheduled.state == bpb.Broadcast.SCHEDULED
    assert scheduled.schedule_time == request.schedule_time
    assert client.broadcasts.ScheduleBroadcast(request) == scheduled  # the same request id
    unscheduled = client.broadcasts.UnscheduleBroadcast(
        bpb.UnscheduleBroadcastRequest(name=first.name)
    )
    assert unscheduled.state == bpb.Broadcast.DRAFT and not unscheduled.HasField("schedule_time")

    when = at(2)
    client.broadcasts.ScheduleBroadcast(
        bpb.ScheduleBroadcastRequest(name=first.name, schedule_time=when)
    )
    second = draft()
    client.broadcasts.ScheduleBroadcast(
        bpb.ScheduleBroadcastRequest(name=second.name, schedule_time=at(3600))
    )
    cancelled = client.broadcasts.CancelBroadcast(bpb.CancelBroadcastRequest(name=second.name))
    assert cancelled.state == bpb.Broadcast.CANCELLED

    done = _until_done(client, first.name)
    assert done.state == bpb.Broadcast.SENT and done.counters.sent == 4
    assert done.send_time.ToNanoseconds() >= when.ToNanoseconds()


def _card_carousel(alt_text: str | None) -> bpb.BroadcastMessage:
    """A LINE flex carousel of two product cards, as a channel-native bubble."""
    card = {
        "type": "bubble",
        "body": {
            "type": "box",
            "layout": "vertical",
            "contents": [{"type": "text", "text": "Linen shirt", "weight": "bold"}],
        },
        "footer": {
            "type": "box",
            "layout": "vertical",
            "contents": [
                {
                    "type": "button",
                    "action": {"type": "uri", "label": "Buy", "uri": "https://shop.example.com/1"},
                }
            ],
        },
    }
    flex: dict[str, Any] = {
        "type": "flex",
        "contents": {"type": "carousel", "contents": [card] * 2},
    }
    if alt_text is not None:
        flex["altText"] = alt_text
    payload = Struct()
    payload.update(flex)
    return bpb.BroadcastMessage(channel_native=payload)


def test_a_silent_sticker_and_card_carousel_reach_line_as_asked(
    live: Live, client: Client, shop: dict[str, Any]
) -> None:
    parent, channel = shop["parent"], shop["channel"]
    kinds = {k.kind for k in channel.capabilities.message_kinds}
    assert {"sticker", "channel_native"} <= kinds
    sticker = bpb.BroadcastMessage(sticker=bpb.StickerContent(package_id="446", sticker_id="1988"))
    draft = client.broadcasts.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=parent,
            broadcast=bpb.Broadcast(
                display_name="Cards",
                channel=channel.name,
                audience=bpb.Audience(
                    last_interaction=bpb.Audience.ALL_CONTACTS, customer_groups=[shop["group"]]
                ),
                messages=[sticker, _card_carousel("Summer picks")],
                notification_disabled=True,
            ),
        )
    )
    assert list(draft.previews) == ["[Sticker]", "[Card] Summer picks — 2 items"]
    assert draft.notification_disabled
    estimate = client.broadcasts.EstimateAudience(
        bpb.EstimateAudienceRequest(parent=parent, name=draft.name)
    )
    assert estimate.message_check == bpb.AudienceEstimate.MESSAGES_ACCEPTED  # LINE's own check

    client.broadcasts.SendBroadcast(bpb.SendBroadcastRequest(name=draft.name))
    assert _until_done(client, draft.name).state == bpb.Broadcast.SENT

    [delivery, *_] = client.broadcasts.ListDeliveries(
        bpb.ListDeliveriesRequest(parent=draft.name)
    ).deliveries
    account = shop["account"]["channelId"]
    received = live.emulator(
        "GET", f"/_emulator/accounts/{account}/deliveries?userId={delivery.external_id}"
    )
    [sent] = [r for r in received if r["endpoint"] == "multicast"]
    assert sent["messages"][0] == {"type": "sticker", "packageId": "446", "stickerId": "1988"}
    assert sent["messages"][1]["altText"] == "Summer picks"
    assert len(sent["messages"][1]["contents"]["contents"]) == 2


def test_a_card_without_alt_text_is_refused_naming_the_field(
    client: Client, shop: dict[str, Any]
) -> None:
    with pytest.raises(BroadcasterError) as e:
        client.broadcasts.CreateBroadcast(
            bpb.CreateBroadcastRequest(
                parent=shop["parent"],
                broadcast=bpb.Broadcast(
                    display_name="Cards",
                    channel=shop["channel"].name,
                    audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                    messages=[_card_carousel(None)],
                ),
            )
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.fields == ["broadcast.messages[0].channel_native.altText"]
