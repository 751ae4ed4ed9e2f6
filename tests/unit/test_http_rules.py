"""Every RPC carries a google.api.http rule (AIP-127) whose path variables and body name fields
of its request message, so a gateway can expose REST/JSON without hand-written routes."""

from __future__ import annotations

import re

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor

from broadcaster.v1 import (
    broadcast_service_pb2,
    channel_service_pb2,
    contact_service_pb2,
    customer_group_service_pb2,
    event_service_pb2,
)

MODULES = (
    broadcast_service_pb2,
    channel_service_pb2,
    contact_service_pb2,
    customer_group_service_pb2,
    event_service_pb2,
)
METHODS = [
    m for module in MODULES for s in module.DESCRIPTOR.services_by_name.values() for m in s.methods
]


def _rule(method: MethodDescriptor) -> http_pb2.HttpRule:
    options = method.GetOptions()
    assert options.HasExtension(annotations_pb2.http), f"{method.full_name} has no http rule"
    return options.Extensions[annotations_pb2.http]


def _has_field(message: Descriptor, path: str) -> bool:
    for part in path.split("."):
        field = message.fields_by_name.get(part)
        if field is None:
            return False
        if field.message_type is not None:
            message = field.message_type
    return True


@pytest.mark.parametrize("method", METHODS, ids=[m.full_name for m in METHODS])
def test_rule_matches_the_request(method: MethodDescriptor) -> None:
    rule = _rule(method)
    verb = rule.WhichOneof("pattern")
    assert verb in {"get", "post", "patch", "delete", "put"}
    path = getattr(rule, verb)
    assert path.startswith("/v1/")
    for variable in re.findall(r"\{([^}=]+)", path):
        assert _has_field(method.input_type, variable), f"{method.full_name}: {{{variable}}}"
    if verb in {"get", "delete"}:
        assert rule.body == ""
    elif rule.body != "*":
        assert _has_field(method.input_type, rule.body), f"{method.full_name}: body {rule.body}"
    custom = re.search(r":([a-zA-Z]+)$", path)
    if custom:  # custom methods (AIP-136): a lowerCamel verb; POST, or GET when read-only
        assert custom.group(1)[0].islower()
        assert verb == "post" or (verb == "get" and method.name.startswith(("Watch", "Search")))


def test_every_served_service_is_checked() -> None:
    from broadcaster.api.server import SERVICE_NAMES

    checked = {
        s.full_name for module in MODULES for s in module.DESCRIPTOR.services_by_name.values()
    }
    assert checked == set(SERVICE_NAMES)
