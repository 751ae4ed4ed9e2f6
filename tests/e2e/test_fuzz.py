"""Arbitrary requests at every method: no input a client can send yields UNKNOWN or INTERNAL, and
every error carries an ErrorInfo in the `broadcaster` domain."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broadcaster.api.server import SERVICE_NAMES
from broadcaster.v1 import (
    broadcast_service_pb2,
    channel_service_pb2,
    contact_service_pb2,
    customer_group_service_pb2,
    event_service_pb2,
)
from tests.e2e.server import ADMIN, auth, failure

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


def _is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
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
        if _is_map(field):
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
