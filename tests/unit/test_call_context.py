"""What the call guard puts in the log context: a request id, and the resource every RPC names."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pool, message_factory

from broadcaster.api.guard import resource_of
from broadcaster.api.server import SERVICE_NAMES
from broadcaster.logs import new_request_id

METHODS = [
    method
    for service in SERVICE_NAMES
    for method in descriptor_pool.Default().FindServiceByName(service).methods
]


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_every_rpc_names_the_resource_it_acts_on(method: Any) -> None:
    request = message_factory.GetMessageClass(method.input_type)()
    assert resource_of(request) == ""  # nothing set: nothing claimed
    name = "merchants/m1/things/t1"
    fields = method.input_type.fields_by_name
    if "name" in fields or "parent" in fields:
        setattr(request, "name" if "name" in fields else "parent", name)
    else:
        first = method.input_type.fields[0]
        if first.message_type is None:
            setattr(request, first.name, name)
        else:
            getattr(request, first.name).name = name
    assert resource_of(request) == name


def test_an_inline_estimate_names_its_merchant() -> None:
    from broadcaster.v1 import broadcast_service_pb2 as pb

    request = pb.EstimateAudienceRequest(parent="merchants/m1", channel="merchants/m1/channels/c")
    assert resource_of(request) == "merchants/m1"


@pytest.mark.parametrize(
    ("given", "kept"),
    [("req-1", True), ("x" * 128, True), ("x" * 129, False), ("a\nb", False), ("", False)],
)
def test_request_ids_are_the_callers_when_sensible(given: str, kept: bool) -> None:
    made = new_request_id(given)
    assert (made == given) is kept
    assert made.isprintable() and 0 < len(made) <= 128
