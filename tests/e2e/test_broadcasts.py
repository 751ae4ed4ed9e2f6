"""Broadcast drafts and audience estimates over gRPC, with the test-only channel."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from broadcaster.v1 import broadcast_service_pb2 as pb
from broadcaster.v1 import broadcast_service_pb2_grpc as pb_grpc
from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import contact_service_pb2_grpc as cpb_grpc
from broadcaster.v1 import customer_group_service_pb2 as gpb
from broadcaster.v1 import customer_group_service_pb2_grpc as gpb_grpc
from tests.e2e.server import ADMIN, auth, connect_fake, failure

A = auth(ADMIN)
W = pb.Audience


def _ts(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


@pytest.fixture
def shop(channel: grpc.Channel) -> dict[str, str]:
    """A merchant with a verified fake channel, 100 contacts and a group of 30 customers."""
    parent = f"merchants/m-{uuid.uuid4().hex[:12]}"
    made = connect_fake(channel, parent, tier="verified", quota="80")
    now = datetime.now(UTC)
    people = []
    for n in range(100):
        people.append(
            cpb.Contact(
                external_id=f"user-{n}",
                # 0..99 days ago: 7 within 7 days (0..6), 30 within 30 days.
                last_interaction_time=_ts(now - timedelta(days=n, minutes=1)),
                opted_out=n % 10 == 0,
                follower_state=cpb.Contact.BLOCKED if n % 10 == 1 else cpb.Contact.FOLLOWING,
                customer_id=f"cust-{n}",
            )
        )
    people.append(cpb.Contact(external_id="never", customer_id="cust-never"))
    cpb_grpc.ContactServiceStub(channel).BatchCreateContacts(
        cpb.BatchCreateContactsRequest(parent=made.name, contacts=people), metadata=A
    )
    groups = gpb_grpc.CustomerGroupServiceStub(channel)
    vip = groups.CreateCustomerGroup(
        gpb.CreateCustomerGroupRequest(
            parent=parent, customer_group=gpb.CustomerGroup(display_name="VIP customers")
        ),
        metadata=A,
    )
    groups.AddCustomerGroupMembers(
        gpb.AddCustomerGroupMembersRequest(
            customer_group=vip.name, customer_ids=[f"cust-{n}" for n in range(30)] + ["cust-never"]
        ),
        metadata=A,
    )
    return {"parent": parent, "channel": made.name, "group": vip.name}


def _draft(shop: dict[str, str], name: str = "Spring sale", **audience: object) -> pb.Broadcast:
    return pb.Broadcast(
        display_name=name,
        channel=shop["channel"],
        audience=pb.Audience(**({"last_interaction": W.LAST_7_DAYS} | audience)),  # type: ignore[arg-type]
        messages=[pb.BroadcastMessage(text=pb.TextContent(text="20% off this week"))],
    )


def test_draft_estimate_search_copy_edit_delete(
    channel: grpc.Channel, shop: dict[str, str]
) -> None:
    stub = pb_grpc.BroadcastServiceStub(channel)
    parent = shop["parent"]
    draft = stub.CreateBroadcast(
        pb.CreateBroadcastRequest(parent=parent, broadcast=_draft(shop), request_id="r1"),
        metadata=A,
    )
    assert draft.state == pb.Broadcast.DRAFT
    assert draft.target_summary == "Interacted in the last 7 days · All customers"
    again = stub.CreateBroadcast(
        pb.CreateBroadcastRequest(parent=parent, broadcast=_draft(shop), request_id="r1"),
        metadata=A,
    )
    assert again.name == draft.name
    with pytest.raises(grpc.RpcError) as reused:  # the id again, for another draft
        stub.CreateBroadcast(
            pb.CreateBroadcastRequest(parent=parent, broadcast=_draft(shop, "x"), request_id="r1"),
            metadata=A,
        )
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    est = stub.EstimateAudience(
        pb.EstimateAudienceRequest(parent=parent, name=draft.name), metadata=A
    )
    # Days 0..6: user-0 opted out, user-1 blocked.
    assert (est.matched, est.opted_out, est.unreachable, est.expected_recipients) == (7, 1, 1, 5)
    assert (est.quota_limited, est.quota_remaining, est.exceeds_quota) == (True, 80, False)
    assert est.eligible

    everyone = stub.EstimateAudience(
        pb.EstimateAudienceRequest(
            parent=parent,
            channel=shop["channel"],
            audience=pb.Audience(last_interaction=W.ALL_CONTACTS),
        ),
        metadata=A,
    )
    assert (everyone.matched, everyone.opted_out, everyone.unreachable) == (101, 10, 10)
    assert everyone.expected_recipients == 81 and everyone.exceeds_quota
    vip = stub.EstimateAudience(
        pb.EstimateAudienceRequest(
            parent=parent,
            channel=shop["channel"],
            audience=pb.Audience(last_interaction=W.LAST_30_DAYS, customer_groups=[shop["group"]]),
        ),
        metadata=A,
    )
    assert (vip.matched, vip.opted_out, vip.unreachable) == (30, 3, 3)

    stub.CreateBroadcast(
        pb.CreateBroadcastRequest(
            parent=parent,
            broadcast=_draft(
                shop,
                "會員限定 VIP",
                last_interaction=W.LAST_30_DAYS,
                customer_groups=[shop["group"]],
            ),
        ),
        metadata=A,
    )
    found = stub.ListBroadcasts(
        pb.ListBroadcastsRequest(parent=parent, display_name_contains="vip"), metadata=A
    )
    assert [b.display_name for b in found.broadcasts] == ["會員限定 VIP"]
    assert found.broadcasts[0].target_summary == "Interacted in the last 30 days · VIP customers"
    found = stub.ListBroadcasts(
        pb.ListBroadcastsRequest(parent=parent, display_name_contains="會員"), metadata=A
    )
    assert len(found.broadcasts) == 1
    drafts = stub.ListBroadcasts(
        pb.ListBroadcastsRequest(parent=parent, state=pb.Broadcast.DRAFT), metadata=A
    )
    assert [b.display_name for b in drafts.broadcasts] == ["會員限定 VIP", "Spring sale"]
    assert not stub.ListBroadcasts(
        pb.ListBroadcastsRequest(parent=parent, state=pb.Broadcast.SENT), metadata=A
    ).broadcasts

    copy = stub.CopyBroadcast(pb.CopyBroadcastRequest(name=draft.name), metadata=A)
    assert copy.display_name == "Copy of Spring sale" and copy.copied_from == draft.name
    assert copy.messages == draft.messages and copy.audience == draft.audience
    edited = stub.UpdateBroadcast(
        pb.UpdateBroadcastRequest(
            broadcast=pb.Broadcast(
                name=copy.name,
                display_name="Spring sale, second wave",
                messages=[
                    pb.BroadcastMessage(text=pb.TextContent(text="Last days!")),
                    pb.BroadcastMessage(text=pb.TextContent(text="See you")),
                ],
            ),
            update_mask=FieldMask(paths=["display_name", "messages"]),
        ),
        metadata=A,
    )
    assert edited.display_name == "Spring sale, second wave" and len(edited.messages) == 2
    assert edited.audience == draft.audience
    stub.DeleteBroadcast(pb.DeleteBroadcastRequest(name=copy.name), metadata=A)
    with pytest.raises(grpc.RpcError) as e:
        stub.GetBroadcast(pb.GetBroadcastRequest(name=copy.name), metadata=A)
    assert failure(e.value).reason == "BROADCAST_NOT_FOUND"


def test_refusals(channel: grpc.Channel, shop: dict[str, str]) -> None:
    stub = pb_grpc.BroadcastServiceStub(channel)
    parent = shop["parent"]

    def refusal(broadcast: pb.Broadcast) -> tuple[grpc.StatusCode, str, list[str]]:
        with pytest.raises(grpc.RpcError) as e:
            stub.CreateBroadcast(
                pb.CreateBroadcastRequest(parent=parent, broadcast=broadcast), metadata=A
            )
        f = failure(e.value)
        return f.code, f.reason, f.fields

    missing_channel = _draft(shop)
    missing_channel.channel = f"{parent}/channels/never-connected"
    assert refusal(missing_channel) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "CHANNEL_NOT_CONNECTED",
        [],
    )
    missing_group = _draft(shop, customer_groups=[f"{parent}/customerGroups/gone"])
    assert refusal(missing_group)[:2] == (grpc.StatusCode.NOT_FOUND, "CUSTOMER_GROUP_NOT_FOUND")
    two_groups = _draft(shop, customer_groups=[shop["group"], shop["group"]])
    assert refusal(two_groups) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        ["broadcast.audience.customer_groups"],
    )
    unknown_window = _draft(shop, last_interaction=99)
    assert refusal(unknown_window)[2] == ["broadcast.audience.last_interaction"]
    too_many = _draft(shop)
    too_many.messages.extend([too_many.messages[0]] * 3)  # the fake channel takes 3
    assert refusal(too_many)[2] == ["broadcast.messages"]
    too_long = _draft(shop)
    too_long.messages[0].text.text = "x" * 101
    assert refusal(too_long)[2] == ["broadcast.messages[0].text"]
    empty = _draft(shop, "")
    empty.messages.append(pb.BroadcastMessage())
    assert refusal(empty)[2] == ["broadcast.display_name", "broadcast.messages[1]"]

    standard = connect_fake(channel, parent, tier="standard")
    all_contacts = _draft(shop, last_interaction=W.ALL_CONTACTS)
    all_contacts.channel = standard.name
    assert refusal(all_contacts)[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "AUDIENCE_NOT_ELIGIBLE",
    )
    est = stub.EstimateAudience(
        pb.EstimateAudienceRequest(
            parent=parent,
            channel=standard.name,
            audience=pb.Audience(last_interaction=W.ALL_CONTACTS),
        ),
        metadata=A,
    )
    assert not est.eligible and est.ineligible_reason == "AUDIENCE_NOT_ELIGIBLE"
    assert est.ineligible_message


def test_a_capped_send_and_the_list_filters(channel: grpc.Channel, shop: dict[str, str]) -> None:
    """Over gRPC: the estimate's two figures, a capped Send taking the most recent first, the
    left-out recipients named NOT_SENT_LIMIT, refused limits, and the list's filters."""
    stub = pb_grpc.BroadcastServiceStub(channel)
    parent = shop["parent"]
    draft = stub.CreateBroadcast(
        pb.CreateBroadcastRequest(
            parent=parent, broadcast=_draft(shop, last_interaction=W.LAST_30_DAYS)
        ),
        metadata=A,
    )
    five = pb.RecipientLimit(max_recipients=5)
    estimate = stub.EstimateAudience(
        pb.EstimateAudienceRequest(parent=parent, name=draft.name, recipient_limit=five), metadata=A
    )
    # Within 30 days: 30 contacts, 3 opted out, 3 blocked.
    assert (estimate.expected_recipients, estimate.capped_recipients) == (24, 5)
    assert estimate.left_out_by_limit == 19 and not estimate.exceeds_quota
    for bad, field in (
        (pb.RecipientLimit(max_recipients=0), "recipient_limit.max_recipients"),
        (pb.RecipientLimit(max_recipients=-3), "recipient_limit.max_recipients"),
        (pb.RecipientLimit(max_recipients=10**12), "recipient_limit.max_recipients"),
        (pb.RecipientLimit(remaining_quota=False), "recipient_limit"),
    ):
        with pytest.raises(grpc.RpcError) as e:
            stub.SendBroadcast(
                pb.SendBroadcastRequest(name=draft.name, recipient_limit=bad), metadata=A
            )
        f = failure(e.value)
        assert (f.code, f.fields) == (grpc.StatusCode.INVALID_ARGUMENT, [field])
    sent = stub.SendBroadcast(
        pb.SendBroadcastRequest(name=draft.name, recipient_limit=five), metadata=A
    )
    assert sent.recipient_limit == five
    assert (sent.counters.total, sent.counters.left_out_by_limit) == (5, 19)
    listed = stub.ListDeliveries(
        pb.ListDeliveriesRequest(parent=draft.name, page_size=100), metadata=A
    ).deliveries
    # user-0 opted out and user-1 blocked; then by most recent interaction.
    recent = [f"user-{n}" for n in range(30) if n % 10 > 1]
    assert [d.external_id for d in listed] == recent
    assert [d.outcome == pb.Delivery.NOT_SENT_LIMIT for d in listed] == [False] * 5 + [True] * 19

    listing = stub.ListBroadcasts(
        pb.ListBroadcastsRequest(
            parent=parent, channel=shop["channel"], channel_type="fake", order_by="send_time desc"
        ),
        metadata=A,
    )
    assert [b.name for b in listing.broadcasts] == [draft.name]
    other_type = stub.ListBroadcasts(
        pb.ListBroadcastsRequest(parent=parent, channel_type="line"), metadata=A
    )
    assert list(other_type.broadcasts) == []
    with pytest.raises(grpc.RpcError) as e:
        stub.ListBroadcasts(
            pb.ListBroadcastsRequest(parent=parent, order_by="display_name"), metadata=A
        )
    assert failure(e.value).fields == ["order_by"]
