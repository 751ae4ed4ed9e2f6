"""The client's rich errors, token handling and paging, against a real server."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import grpc
import pytest
from client_live import OTHER, TOKEN, Live

from broadcaster_client import DOMAIN, BroadcasterError, Client, connect, pages, paginate
from broadcaster_client.v1 import broadcast_service_pb2 as bpb
from broadcaster_client.v1 import channel_service_pb2 as cpb
from broadcaster_client.v1 import customer_group_service_pb2 as gpb
from broadcaster_client.v1 import event_service_pb2 as epb


def _raises(call: Any) -> BroadcasterError:
    with pytest.raises(BroadcasterError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("first", ["broadcaster.v1", "broadcaster_client.v1"])
def test_server_and_client_stubs_share_one_process(first: str) -> None:
    """Same descriptors under two module paths: protobuf's pool accepts both, either order."""
    second = "broadcaster_client.v1" if first == "broadcaster.v1" else "broadcaster.v1"
    script = f"""
import importlib
a = importlib.import_module("{first}.broadcast_service_pb2")
b = importlib.import_module("{second}.broadcast_service_pb2")
importlib.import_module("{first}.broadcast_service_pb2_grpc")
importlib.import_module("{second}.broadcast_service_pb2_grpc")
assert a.Broadcast.DESCRIPTOR.full_name == "broadcaster.v1.Broadcast"
message = b.Broadcast(display_name="x")
assert a.Broadcast.FromString(message.SerializeToString()).display_name == "x"
"""
    subprocess.run([sys.executable, "-c", script], check=True)


def test_token_missing_and_unknown(live: Live) -> None:
    request = gpb.ListCustomerGroupsRequest(parent="merchants/m-any")
    with connect(live.target) as anonymous:
        e = _raises(lambda: anonymous.customer_groups.ListCustomerGroups(request))
    assert (e.code(), e.reason, e.domain) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_MISSING",
        DOMAIN,
    )
    assert isinstance(e, grpc.RpcError) and isinstance(e, grpc.Call)
    with connect(live.target, "not-a-configured-token-0000") as stranger:
        e = _raises(lambda: stranger.customer_groups.ListCustomerGroups(request))
    assert (e.code(), e.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_UNKNOWN")
    # A call's own authorization metadata wins over the client's token.
    with connect(live.target, TOKEN) as client:
        e = _raises(
            lambda: client.customer_groups.ListCustomerGroups(
                request, metadata=(("authorization", "Basic abc"),)
            )
        )
    assert e.reason == "TOKEN_MALFORMED"


def test_token_scoped_to_other_merchants(live: Live, merchant: str) -> None:
    with connect(live.target, OTHER) as other:
        e = _raises(
            lambda: other.customer_groups.CreateCustomerGroup(
                gpb.CreateCustomerGroupRequest(
                    parent=merchant, customer_group=gpb.CustomerGroup(display_name="x")
                )
            )
        )
    assert (e.code(), e.reason) == (grpc.StatusCode.NOT_FOUND, "MERCHANT_NOT_FOUND")


def test_bad_request_field_violations(client: Client, merchant: str) -> None:
    e = _raises(
        lambda: client.customer_groups.CreateCustomerGroup(
            gpb.CreateCustomerGroupRequest(parent=merchant, customer_group=gpb.CustomerGroup())
        )
    )
    assert (e.code(), e.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert "customer_group.display_name" in e.fields
    violation = e.field_violations[e.fields.index("customer_group.display_name")]
    assert violation.description
    assert str(e).startswith("INVALID_ARGUMENT INVALID_ARGUMENT: ")


def test_not_found_with_resource_info_from_every_call_style(client: Client, merchant: str) -> None:
    name = f"{merchant}/broadcasts/0000000000000"
    request = bpb.GetBroadcastRequest(name=name)
    for call in (
        lambda: client.broadcasts.GetBroadcast(request),
        lambda: client.broadcasts.GetBroadcast.with_call(request),
        lambda: client.broadcasts.GetBroadcast.future(request).result(),
    ):
        e = _raises(call)
        assert (e.code(), e.reason) == (grpc.StatusCode.NOT_FOUND, "BROADCAST_NOT_FOUND")
        assert e.resource_info is not None and e.resource_info.resource_name == name
    future = client.broadcasts.GetBroadcast.future(request)
    error = future.exception()
    assert isinstance(error, BroadcasterError) and error.reason == "BROADCAST_NOT_FOUND"
    # Raw stubs on the client's channel, converted by hand, give the same view.
    assert BroadcasterError.from_rpc_error(error) is error


def test_precondition_and_metadata(live: Live, client: Client, merchant: str) -> None:
    account = live.line_account(tier="none", followers=3)
    credentials = {
        "channel_access_token": account["accessToken"],
        "channel_secret": account["channelSecret"],
    }
    connect_request = cpb.CreateChannelRequest(
        parent=merchant, channel=cpb.Channel(type="line", credentials=credentials)
    )
    channel = client.channels.CreateChannel(connect_request)
    assert channel.tier == cpb.Channel.STANDARD

    e = _raises(lambda: client.channels.CreateChannel(connect_request))
    assert (e.code(), e.reason) == (grpc.StatusCode.ALREADY_EXISTS, "CHANNEL_ALREADY_CONNECTED")
    assert e.metadata["channel"] == channel.name

    draft = bpb.Broadcast(
        display_name="Everyone",
        channel=channel.name,
        audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
        messages=[bpb.BroadcastMessage(text=bpb.TextContent(text="hello"))],
    )
    e = _raises(
        lambda: client.broadcasts.CreateBroadcast(
            bpb.CreateBroadcastRequest(parent=merchant, broadcast=draft)
        )
    )
    assert (e.code(), e.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "AUDIENCE_NOT_ELIGIBLE")
    assert [v.type for v in e.precondition_violations] == ["AUDIENCE"]
    assert e.precondition_violations[0].description


def test_paginate_follows_page_tokens(client: Client, merchant: str) -> None:
    made = [
        client.customer_groups.CreateCustomerGroup(
            gpb.CreateCustomerGroupRequest(
                parent=merchant, customer_group=gpb.CustomerGroup(display_name=f"Group {n}")
            )
        ).name
        for n in range(7)
    ]
    request = gpb.ListCustomerGroupsRequest(parent=merchant, page_size=3)
    listed = list(
        paginate(client.customer_groups.ListCustomerGroups, request, lambda p: p.customer_groups)
    )
    assert [g.name for g in listed] == made[::-1]  # newest first
    assert [
        len(p.customer_groups) for p in pages(client.customer_groups.ListCustomerGroups, request)
    ] == [3, 3, 1]
    # Without `items`, the response's one repeated message field.
    assert [g.name for g in paginate(client.customer_groups.ListCustomerGroups, request)] == [
        g.name for g in listed
    ]
    assert request.page_token == ""  # the caller's request is left alone

    e = _raises(
        lambda: list(
            paginate(
                client.customer_groups.ListCustomerGroups,
                gpb.ListCustomerGroupsRequest(parent=merchant, page_token="forged"),
            )
        )
    )
    assert e.reason == "INVALID_PAGE_TOKEN"


def test_stream_errors_raise_while_iterating(client: Client, merchant: str) -> None:
    stream = client.events.WatchEvents(
        epb.WatchEventsRequest(parent=merchant, after_cursor="not-a-cursor"), timeout=10
    )
    e = _raises(lambda: next(iter(stream)))
    assert (e.code(), e.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CURSOR")
