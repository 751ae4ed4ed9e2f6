"""Arbitrary requests at every method: no input a client can send yields UNKNOWN or INTERNAL, and
every error carries an ErrorInfo in the `broadcaster` domain: well-formed messages with any
values, raw bytes that may not be a message at all, and page tokens signed with the server's own
key (so only the bounds on what a token carries stand between it and the database)."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcaster.api.server import SERVICE_NAMES
from broadcaster.config import Config
from broadcaster.domain.paging import PageTokens, fingerprint
from broadcaster.v1 import (
    broadcast_service_pb2,
    channel_service_pb2,
    contact_service_pb2,
    customer_group_service_pb2,
    event_service_pb2,
)
from tests.e2e.server import ADMIN, SECRET_KEY, auth, connect_fake, failure

# Text that is sometimes a well-formed resource name, so the fuzz gets past parsing too.
_names = st.sampled_from(
    [
        "merchants/m-fuzz",
        "merchants/m-fuzz/customerGroups/01m89dj9r8q1y8bghvhveac0sb",
        "merchants/m-fuzz/channels/line",
        "merchants/m-fuzz/channels/line/contacts/01m89dj9r8q1y8bghvhveac0sb",
        "merchants/other/customerGroups/x",
        "*",
        "opted_out",
        "customer_id",
        "fake",
        "token",
        "account",
        "tier",
        "merchants/m-fuzz/channels/line/quota",
        "merchants/m-fuzz/broadcasts/01m89dj9r8q1y8bghvhveac0sb",
    ]
)
# Long values built cheaply, so the fuzz reaches every length limit without huge draws.
_long = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["x", "é", "😀", " "]),
    st.sampled_from([129, 257, 1025, 5001]),
)
_text = st.one_of(_names, st.text(max_size=100), _long)

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: _text,
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_ENUM: st.integers(-5, 10),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=True, allow_infinity=True),
}


# A google.protobuf.Struct (a channel-native bubble): JSON objects, with keys and values a
# channel's format uses so the fuzz reaches its checks, not only "unknown type".
_json_keys = st.sampled_from(
    ["type", "altText", "contents", "template", "actions", "text", "layout", "url", "baseSize"]
) | st.text(max_size=10)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False)
    | _text
    | st.sampled_from(
        ["flex", "bubble", "carousel", "box", "template", "imagemap", "buttons", "text", "uri"]
    )
)
_STRUCT = st.dictionaries(
    _json_keys,
    st.recursive(
        _json_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_json_keys, inner, max_size=3),
        max_leaves=10,
    ),
    max_size=5,
)


def _is_struct(field: FieldDescriptor) -> bool:
    return (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and field.message_type.full_name == "google.protobuf.Struct"
    )


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if _is_struct(field):
        return _STRUCT
    if _is_map(field):
        key, value = (
            field.message_type.fields_by_name["key"],
            field.message_type.fields_by_name["value"],
        )
        return st.dictionaries(_SCALARS[key.type], _SCALARS[value.type], max_size=4)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        inner = _message(field.message_type, depth + 1)
    else:
        inner = _SCALARS[field.type]
    if field.is_repeated:
        return st.lists(inner, max_size=4)
    return inner


@st.composite
def _build(draw: st.DrawFn, descriptor: Descriptor, depth: int) -> Message:
    message = GetMessageClass(descriptor)()
    if depth > 3:
        return message
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        value = draw(_field(field, depth))
        if _is_map(field) or _is_struct(field):
            getattr(message, field.name).update(value)
        elif field.is_repeated:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in value:
                    getattr(message, field.name).add().CopyFrom(item)
            else:
                getattr(message, field.name).extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(value)
        else:
            setattr(message, field.name, value)
    return message


def _message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    return _build(descriptor, depth)


def _methods() -> list[tuple[str, Any]]:
    found = []
    served = set()
    for module in (
        broadcast_service_pb2,
        channel_service_pb2,
        customer_group_service_pb2,
        contact_service_pb2,
        event_service_pb2,
    ):
        for service in module.DESCRIPTOR.services_by_name.values():
            assert service.full_name in SERVICE_NAMES
            served.add(service.full_name)
            for method in service.methods:
                found.append((f"/{service.full_name}/{method.name}", method))
    assert served == set(SERVICE_NAMES), "a service is missing from the fuzz"
    return found


@pytest.mark.parametrize(("path", "method"), _methods(), ids=[p for p, _ in _methods()])
def test_no_request_breaks_a_method(channel: grpc.Channel, path: str, method: Any) -> None:
    response_class = GetMessageClass(method.output_type)
    streaming = method.server_streaming
    factory = channel.unary_stream if streaming else channel.unary_unary
    stub = factory(
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )

    def call(request: Message) -> None:
        if not streaming:
            stub(request, metadata=auth(ADMIN), timeout=30)
            return
        # A watch runs until its caller stops: a short deadline ends the good ones.
        try:
            for _ in stub(request, metadata=auth(ADMIN), timeout=0.3):
                pass
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    @given(request=_message(method.input_type))
    def check(request: Message) -> None:
        try:
            call(request)
        except grpc.RpcError as e:
            f = failure(e)
            assert f.code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), f
            assert f.domain == "broadcaster" and f.reason, f
            if f.code == grpc.StatusCode.INVALID_ARGUMENT:
                assert f.fields, f

    check()


# --- raw bytes: what a client that skips protobuf (or an attacker) sends -----------------------

# Bytes that are sometimes a valid request with something after it, sometimes noise.
_raw_bytes = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda head, tail: head + tail, st.binary(max_size=64), st.binary(max_size=8)),
    st.builds(lambda tag, n: bytes([tag]) * n, st.integers(0, 255), st.integers(1, 4096)),
)


@pytest.mark.parametrize(("path", "method"), _methods(), ids=[p for p, _ in _methods()])
def test_no_bytes_break_a_method(channel: grpc.Channel, path: str, method: Any) -> None:
    streaming = method.server_streaming
    factory = channel.unary_stream if streaming else channel.unary_unary
    stub = factory(path, request_serializer=None, response_deserializer=None)

    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(raw=_raw_bytes)
    def check(raw: bytes) -> None:
        try:
            if streaming:
                for _ in stub(raw, metadata=auth(ADMIN), timeout=0.3):
                    pass
            else:
                stub(raw, metadata=auth(ADMIN), timeout=30)
        except grpc.RpcError as e:
            if streaming and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return
            f = failure(e)
            assert f.code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), f
            assert f.domain == "broadcaster" and f.reason, f

    check()


# --- page tokens signed with the server's own key: only the bounds stand between them and SQL --

_BOUNDARIES = [
    -(2**63) - 1,
    -(2**63),
    -(2**31) - 1,
    -1,
    0,
    1,
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    10**30 - 1,
]
_ints = st.sampled_from([str(n) for n in _BOUNDARIES])
_afters = st.one_of(
    _ints,
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", _ints, _ints, _ints),
    st.sampled_from(["", "\x00", "01m89dj9r8q1y8bghvhveac0sb", "zzzzzzzzzzzzzzzzzzzzzzzzzz", "%"]),
    st.text(max_size=80),
)


def _signed_tokens() -> PageTokens:
    config = Config.from_env(
        {"BROADCASTER_SECRET_KEY": SECRET_KEY, "BROADCASTER_DATABASE_URL": "sqlite://"}
    )
    return PageTokens(config.page_token_key())


def test_page_tokens_with_valid_check_values_never_break_a_list(channel: grpc.Channel) -> None:
    from broadcaster.domain.model import ContactFilter
    from broadcaster.v1 import broadcast_service_pb2_grpc as bgrpc
    from broadcaster.v1 import channel_service_pb2_grpc as chgrpc
    from broadcaster.v1 import contact_service_pb2_grpc as cgrpc
    from broadcaster.v1 import customer_group_service_pb2_grpc as ggrpc
    from broadcaster.v1 import event_service_pb2_grpc as egrpc

    tokens = _signed_tokens()
    # Resources that exist, so every list reaches its query.
    merchant = f"merchants/m-{uuid.uuid4().hex[:12]}"
    line = connect_fake(channel, merchant).name
    broadcast = (
        bgrpc.BroadcastServiceStub(channel)
        .CreateBroadcast(
            broadcast_service_pb2.CreateBroadcastRequest(
                parent=merchant,
                broadcast=broadcast_service_pb2.Broadcast(
                    display_name="fuzz",
                    channel=line,
                    audience=broadcast_service_pb2.Audience(
                        last_interaction=broadcast_service_pb2.Audience.LAST_7_DAYS
                    ),
                    messages=[
                        broadcast_service_pb2.BroadcastMessage(
                            text=broadcast_service_pb2.TextContent(text="hi")
                        )
                    ],
                ),
            ),
            metadata=auth(ADMIN),
        )
        .name
    )
    b, p = broadcast_service_pb2, fingerprint
    lists: list[tuple[str, Any]] = [
        (
            p(merchant, "broadcasts", "", 0),
            lambda t: bgrpc.BroadcastServiceStub(channel).ListBroadcasts(
                b.ListBroadcastsRequest(parent=merchant, page_token=t), metadata=auth(ADMIN)
            ),
        ),
        (
            p(broadcast, None),
            lambda t: bgrpc.BroadcastServiceStub(channel).ListDeliveries(
                b.ListDeliveriesRequest(parent=broadcast, page_token=t), metadata=auth(ADMIN)
            ),
        ),
        (
            p(merchant, "channels"),
            lambda t: chgrpc.ChannelServiceStub(channel).ListChannels(
                channel_service_pb2.ListChannelsRequest(parent=merchant, page_token=t),
                metadata=auth(ADMIN),
            ),
        ),
        (
            p(merchant, "groups", ""),
            lambda t: ggrpc.CustomerGroupServiceStub(channel).ListCustomerGroups(
                customer_group_service_pb2.ListCustomerGroupsRequest(parent=merchant, page_token=t),
                metadata=auth(ADMIN),
            ),
        ),
        (
            p("contacts", line, ContactFilter(None, None, None)),
            lambda t: cgrpc.ContactServiceStub(channel).ListContacts(
                contact_service_pb2.ListContactsRequest(parent=line, page_token=t),
                metadata=auth(ADMIN),
            ),
        ),
        (
            p(merchant, "events", ""),
            lambda t: egrpc.EventServiceStub(channel).ListEvents(
                event_service_pb2.ListEventsRequest(parent=merchant, page_token=t),
                metadata=auth(ADMIN),
            ),
        ),
    ]

    @settings(
        max_examples=120,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(which=st.integers(0, len(lists) - 1), after=_afters)
    def check(which: int, after: str) -> None:
        query, call = lists[which]
        try:
            call(tokens.encode(after, query))
        except grpc.RpcError as e:
            f = failure(e)
            assert f.code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), f
            assert f.domain == "broadcaster" and f.reason, f
            if f.code == grpc.StatusCode.INVALID_ARGUMENT:
                assert f.fields, f

    check()
