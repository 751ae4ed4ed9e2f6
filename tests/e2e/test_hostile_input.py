"""The hostile caller: requests built to exhaust, crash or confuse a real server.

Each test sends what an attacker (or a careless client) would, over gRPC, and checks that the
answer is a status with an ErrorInfo, never UNKNOWN or INTERNAL, and that the server refuses
before doing the work: an unauthenticated call is never parsed, a request is measured and its
items counted before it is decoded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Callable

import grpc
import pytest

from broadcaster.v1 import broadcast_service_pb2 as pb
from broadcaster.v1 import broadcast_service_pb2_grpc as pb_grpc
from broadcaster.v1 import channel_service_pb2 as chpb
from broadcaster.v1 import channel_service_pb2_grpc as chpb_grpc
from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import customer_group_service_pb2 as gpb
from broadcaster.v1 import event_service_pb2 as epb
from tests.e2e import server as live
from tests.e2e.server import ADMIN, auth, connect_fake, failure

A = auth(ADMIN)
BATCH_CREATE = "/broadcaster.v1.ContactService/BatchCreateContacts"
GET_CONTACT = "/broadcaster.v1.ContactService/GetContact"


def _raw(channel: grpc.Channel, method: str) -> Callable[..., bytes]:
    """A stub that sends bytes as they are and returns the answer's bytes."""
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


def _refused(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def _merchant() -> str:
    return f"merchants/m-{uuid.uuid4().hex[:12]}"


# --- an unauthenticated caller is refused before its request is read -------------------------


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ((), "TOKEN_MISSING"),
        ((("authorization", "Basic abc"),), "TOKEN_MALFORMED"),
        (auth("not-a-token-this-server-knows"), "TOKEN_UNKNOWN"),
    ],
)
def test_an_unauthenticated_request_is_never_parsed(
    channel: grpc.Channel, metadata: tuple[tuple[str, str], ...], reason: str
) -> None:
    # 16 MB that are not a protobuf message: parsing them would fail, so the answer shows the
    # token was checked first.
    junk = b"\xff" * (16 * 1024 * 1024)
    f = failure(_refused(lambda: _raw(channel, BATCH_CREATE)(junk, metadata=metadata, timeout=30)))
    assert (f.code, f.reason, f.domain) == (grpc.StatusCode.UNAUTHENTICATED, reason, "broadcaster")


def test_an_unauthenticated_flood_of_empty_contacts_is_refused(channel: grpc.Channel) -> None:
    flood = b"\x12\x00" * 4_000_000  # 4,000,000 empty contacts: 8 MB
    f = failure(_refused(lambda: _raw(channel, BATCH_CREATE)(flood, timeout=30)))
    assert (f.code, f.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


# --- limits on what a known caller may send ----------------------------------------------------


def test_items_are_counted_before_the_request_is_parsed(channel: grpc.Channel) -> None:
    too_many = cpb.BatchCreateContactsRequest(
        parent="merchants/m-x/channels/c", contacts=[cpb.Contact()] * 10_001
    ).SerializeToString()
    # A broken tail: a server that parsed first would answer that, not the count.
    f = failure(
        _refused(lambda: _raw(channel, BATCH_CREATE)(too_many + b"\xff", metadata=A, timeout=30))
    )
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f.fields == ["contacts"] and "10,000" in f.message


def test_bubbles_are_counted_before_the_broadcast_is_parsed(channel: grpc.Channel) -> None:
    many = pb.CreateBroadcastRequest(
        parent="merchants/m-x", broadcast=pb.Broadcast(messages=[pb.BroadcastMessage()] * 50_000)
    ).SerializeToString()
    create = _raw(channel, "/broadcaster.v1.BroadcastService/CreateBroadcast")
    f = failure(_refused(lambda: create(many + b"\xff", metadata=A, timeout=30)))
    assert (f.code, f.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["broadcast.messages"])


def test_a_million_empty_contacts_are_refused_by_count(channel: grpc.Channel) -> None:
    flood = b"\x12\x00" * 1_000_000
    f = failure(_refused(lambda: _raw(channel, BATCH_CREATE)(flood, metadata=A, timeout=30)))
    assert (f.code, f.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["contacts"])


def test_a_request_larger_than_its_method_takes_is_refused(channel: grpc.Channel) -> None:
    huge = cpb.GetContactRequest(name="x" * 100_000).SerializeToString()
    f = failure(_refused(lambda: _raw(channel, GET_CONTACT)(huge, metadata=A, timeout=30)))
    assert (f.code, f.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE")
    info = f.details[0]
    assert int(info.metadata["limit_bytes"]) < len(huge) == int(info.metadata["size_bytes"])


def test_a_maximum_contact_batch_is_accepted(channel: grpc.Channel, server: live.Server) -> None:
    made = connect_fake(channel, _merchant())
    contacts = [
        cpb.Contact(
            external_id=f"u{n:05d}" + "é" * 120,
            display_name="名" * 256,
            picture_uri="https://example.com/" + "p" * 1980,
            customer_id=f"c{n:05d}" + "😀" * 120,
        )
        for n in range(10_000)
    ]
    request = cpb.BatchCreateContactsRequest(parent=made.name, contacts=contacts)
    assert request.ByteSize() > 30 * 1024 * 1024  # parsed in a worker thread
    big = 64 * 1024 * 1024
    options = [("grpc.max_send_message_length", big), ("grpc.max_receive_message_length", big)]
    with grpc.insecure_channel(server.target, options=options) as wide:
        answer = cpb.BatchCreateContactsResponse.FromString(
            _raw(wide, BATCH_CREATE)(request.SerializeToString(), metadata=A, timeout=120)
        )
    assert answer.created_count == 10_000


@pytest.mark.parametrize(
    "junk",
    [b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05ab", b"\x0a\x02\xc3\x28", b"\x07"],
    ids=["bad-tag", "length-past-end", "truncated", "bad-utf8", "group-wire-type"],
)
def test_malformed_protobuf_is_invalid_argument(channel: grpc.Channel, junk: bytes) -> None:
    f = failure(_refused(lambda: _raw(channel, GET_CONTACT)(junk, metadata=A, timeout=30)))
    assert (f.code, f.reason, f.domain) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "MALFORMED_REQUEST",
        "broadcaster",
    )
    assert f.fields == ["request"]


# --- page tokens and cursors ------------------------------------------------------------------


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def _forged(after: str, query: str) -> str:
    raw = json.dumps({"a": after, "q": query}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture(scope="module")
def draft(channel: grpc.Channel) -> pb.Broadcast:
    made = connect_fake(channel, _merchant())
    return pb_grpc.BroadcastServiceStub(channel).CreateBroadcast(
        pb.CreateBroadcastRequest(
            parent=made.name.split("/channels/")[0],
            broadcast=pb.Broadcast(
                display_name="hostile",
                channel=made.name,
                audience=pb.Audience(last_interaction=pb.Audience.LAST_7_DAYS),
                messages=[pb.BroadcastMessage(text=pb.TextContent(text="hi"))],
            ),
        ),
        metadata=A,
    )


@pytest.mark.parametrize("after", ["9" * 30, "-1", "1" * 19, "\x00", "x" * 5000, "1e9"])
def test_a_forged_delivery_page_token_is_refused(
    channel: grpc.Channel, draft: pb.Broadcast, after: str
) -> None:
    # The check value is what the old tokens carried: a hash anyone can recompute.
    token = _forged(after, _fingerprint(draft.name, None))
    f = failure(
        _refused(
            lambda: pb_grpc.BroadcastServiceStub(channel).ListDeliveries(
                pb.ListDeliveriesRequest(parent=draft.name, page_token=token), metadata=A
            )
        )
    )
    assert (f.code, f.reason, f.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PAGE_TOKEN",
        ["page_token"],
    )


def test_forged_page_tokens_are_refused_on_every_list(
    channel: grpc.Channel, draft: pb.Broadcast
) -> None:
    from broadcaster.v1 import contact_service_pb2_grpc as cpb_grpc
    from broadcaster.v1 import customer_group_service_pb2_grpc as gpb_grpc
    from broadcaster.v1 import event_service_pb2_grpc as epb_grpc

    parent = draft.name.split("/broadcasts/")[0]
    token = _forged("\x00" + "9" * 30, "0" * 16)
    calls: list[Callable[[], object]] = [
        lambda: pb_grpc.BroadcastServiceStub(channel).ListBroadcasts(
            pb.ListBroadcastsRequest(parent=parent, page_token=token), metadata=A
        ),
        lambda: chpb_grpc.ChannelServiceStub(channel).ListChannels(
            chpb.ListChannelsRequest(parent=parent, page_token=token), metadata=A
        ),
        lambda: gpb_grpc.CustomerGroupServiceStub(channel).ListCustomerGroups(
            gpb.ListCustomerGroupsRequest(parent=parent, page_token=token), metadata=A
        ),
        lambda: cpb_grpc.ContactServiceStub(channel).ListContacts(
            cpb.ListContactsRequest(parent=draft.channel, page_token=token), metadata=A
        ),
        lambda: epb_grpc.EventServiceStub(channel).ListEvents(
            epb.ListEventsRequest(parent=parent, page_token=token), metadata=A
        ),
    ]
    for call in calls:
        f = failure(_refused(call))
        assert (f.code, f.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


@pytest.mark.parametrize(
    "cursor",
    [
        "9" * 30,
        base64.urlsafe_b64encode(b"ev" + b"9" * 30 + b".0.0").decode(),
        base64.urlsafe_b64encode(b"ev-1.0.0").decode(),
    ],
)
def test_an_event_cursor_out_of_range_is_refused(
    channel: grpc.Channel, draft: pb.Broadcast, cursor: str
) -> None:
    from broadcaster.v1 import event_service_pb2_grpc as epb_grpc

    parent = draft.name.split("/broadcasts/")[0]
    f = failure(
        _refused(
            lambda: epb_grpc.EventServiceStub(channel).ListEvents(
                epb.ListEventsRequest(parent=parent, after_cursor=cursor), metadata=A
            )
        )
    )
    assert (f.code, f.reason, f.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CURSOR",
        ["after_cursor"],
    )


def test_a_page_token_still_leads_to_the_next_page(channel: grpc.Channel) -> None:
    from broadcaster.v1 import customer_group_service_pb2_grpc as gpb_grpc

    stub = gpb_grpc.CustomerGroupServiceStub(channel)
    parent = _merchant()
    for n in range(3):
        stub.CreateCustomerGroup(
            gpb.CreateCustomerGroupRequest(
                parent=parent, customer_group=gpb.CustomerGroup(display_name=f"g{n}")
            ),
            metadata=A,
        )
    first = stub.ListCustomerGroups(
        gpb.ListCustomerGroupsRequest(parent=parent, page_size=2), metadata=A
    )
    rest = stub.ListCustomerGroups(
        gpb.ListCustomerGroupsRequest(parent=parent, page_size=2, page_token=first.next_page_token),
        metadata=A,
    )
    assert len(first.customer_groups) == 2 and len(rest.customer_groups) == 1
    # A token with one character of its check value changed is refused.
    token = first.next_page_token
    at = token.index(".") + 3
    tampered = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
    f = failure(
        _refused(
            lambda: stub.ListCustomerGroups(
                gpb.ListCustomerGroupsRequest(parent=parent, page_size=2, page_token=tampered),
                metadata=A,
            )
        )
    )
    assert f.reason == "INVALID_PAGE_TOKEN"


# --- credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["tok\r\nX-Injected: 1", "tok\n", "tok\x00en", "tok\x1b[0m", "\x85"]
)
def test_credentials_with_control_characters_are_refused(channel: grpc.Channel, bad: str) -> None:
    f = failure(_refused(lambda: connect_fake(channel, _merchant(), token=bad)))
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT
    assert f.fields == ["channel.credentials[token]"]


def test_open_methods_refuse_large_requests_unparsed(channel: grpc.Channel) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    check = _raw(channel, "/grpc.health.v1.Health/Check")
    large = health_pb2.HealthCheckRequest(service="x" * 100_000).SerializeToString()
    f = failure(_refused(lambda: check(large, timeout=30)))
    assert (f.code, f.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "REQUEST_TOO_LARGE")
    serving = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert serving.status == health_pb2.HealthCheckResponse.SERVING
