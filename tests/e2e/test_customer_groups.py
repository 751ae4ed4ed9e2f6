"""Customer groups over a real gRPC channel."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2

from broadcaster.v1 import customer_group_service_pb2 as pb
from tests.e2e.server import ADMIN, auth, failure

A = auth(ADMIN)


def _merchant() -> str:
    return f"merchants/m-{uuid.uuid4().hex[:12]}"


def test_groups_end_to_end(groups) -> None:  # type: ignore[no-untyped-def]
    parent = _merchant()
    vip = groups.CreateCustomerGroup(
        pb.CreateCustomerGroupRequest(
            parent=parent,
            customer_group=pb.CustomerGroup(display_name="VIP customers", description="top"),
            request_id="create-vip",
        ),
        metadata=A,
    )
    assert vip.name.startswith(f"{parent}/customerGroups/") and vip.member_count == 0
    replay = groups.CreateCustomerGroup(
        pb.CreateCustomerGroupRequest(
            parent=parent,
            customer_group=pb.CustomerGroup(display_name="VIP customers", description="top"),
            request_id="create-vip",
        ),
        metadata=A,
    )
    assert replay == vip
    with pytest.raises(grpc.RpcError) as reused:  # the id again, for another group
        groups.CreateCustomerGroup(
            pb.CreateCustomerGroupRequest(
                parent=parent,
                customer_group=pb.CustomerGroup(display_name="other"),
                request_id="create-vip",
            ),
            metadata=A,
        )
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for name in ("Newsletter", "vip lapsed", "Staff"):
        groups.CreateCustomerGroup(
            pb.CreateCustomerGroupRequest(
                parent=parent, customer_group=pb.CustomerGroup(display_name=name)
            ),
            metadata=A,
        )

    ids = [f"customer-{n}" for n in range(100_000)]
    added = groups.AddCustomerGroupMembers(
        pb.AddCustomerGroupMembersRequest(customer_group=vip.name, customer_ids=ids), metadata=A
    )
    assert (added.added_count, added.member_count) == (100_000, 100_000)
    again = groups.AddCustomerGroupMembers(
        pb.AddCustomerGroupMembersRequest(customer_group=vip.name, customer_ids=[*ids[:5], "new"]),
        metadata=A,
    )
    assert (again.added_count, again.member_count) == (1, 100_001)
    removed = groups.RemoveCustomerGroupMembers(
        pb.RemoveCustomerGroupMembersRequest(customer_group=vip.name, customer_ids=["new", "x"]),
        metadata=A,
    )
    assert (removed.removed_count, removed.member_count) == (1, 100_000)
    got = groups.GetCustomerGroup(pb.GetCustomerGroupRequest(name=vip.name), metadata=A)
    assert got.member_count == 100_000 and got.create_time == vip.create_time

    found = groups.ListCustomerGroups(
        pb.ListCustomerGroupsRequest(parent=parent, display_name_contains="VIP"), metadata=A
    )
    assert [g.display_name for g in found.customer_groups] == ["vip lapsed", "VIP customers"]

    first = groups.ListCustomerGroups(
        pb.ListCustomerGroupsRequest(parent=parent, page_size=3), metadata=A
    )
    assert [g.display_name for g in first.customer_groups] == ["Staff", "vip lapsed", "Newsletter"]
    rest = groups.ListCustomerGroups(
        pb.ListCustomerGroupsRequest(parent=parent, page_size=3, page_token=first.next_page_token),
        metadata=A,
    )
    assert [g.display_name for g in rest.customer_groups] == ["VIP customers"]
    assert rest.next_page_token == ""

    renamed = groups.UpdateCustomerGroup(
        pb.UpdateCustomerGroupRequest(
            customer_group=pb.CustomerGroup(name=vip.name, description="spent over 10k"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        ),
        metadata=A,
    )
    assert (renamed.display_name, renamed.description) == ("VIP customers", "spent over 10k")
    members = groups.ListCustomerGroupMembers(
        pb.ListCustomerGroupMembersRequest(customer_group=vip.name, page_size=3), metadata=A
    )
    assert [m.customer_id for m in members.members] == sorted(ids)[:3]
    more = groups.ListCustomerGroupMembers(
        pb.ListCustomerGroupMembersRequest(
            customer_group=vip.name, page_size=3, page_token=members.next_page_token
        ),
        metadata=A,
    )
    assert [m.customer_id for m in more.members] == sorted(ids)[3:6]

    groups.DeleteCustomerGroup(pb.DeleteCustomerGroupRequest(name=vip.name), metadata=A)
    with pytest.raises(grpc.RpcError) as e:
        groups.GetCustomerGroup(pb.GetCustomerGroupRequest(name=vip.name), metadata=A)
    f = failure(e.value)
    assert (f.code, f.reason, f.domain) == (
        grpc.StatusCode.NOT_FOUND,
        "CUSTOMER_GROUP_NOT_FOUND",
        "broadcaster",
    )


@pytest.mark.parametrize(
    ("request_", "fields", "reason"),
    [
        (
            pb.CreateCustomerGroupRequest(parent="merchants/m1", customer_group=pb.CustomerGroup()),
            ["customer_group.display_name"],
            "INVALID_ARGUMENT",
        ),
        (
            pb.CreateCustomerGroupRequest(
                parent="merchants/m1", customer_group=pb.CustomerGroup(display_name="x" * 257)
            ),
            ["customer_group.display_name"],
            "INVALID_ARGUMENT",
        ),
        (
            pb.CreateCustomerGroupRequest(
                parent="shops/m1", customer_group=pb.CustomerGroup(display_name="ok")
            ),
            ["parent"],
            "INVALID_ARGUMENT",
        ),
        (
            pb.ListCustomerGroupsRequest(parent="merchants/m1", page_size=-1),
            ["page_size"],
            "INVALID_ARGUMENT",
        ),
        (
            pb.ListCustomerGroupsRequest(parent="merchants/m1", page_token="garbage!"),
            ["page_token"],
            "INVALID_PAGE_TOKEN",
        ),
        (pb.GetCustomerGroupRequest(name="merchants/m1/groups/g"), ["name"], "INVALID_ARGUMENT"),
        (
            pb.UpdateCustomerGroupRequest(
                customer_group=pb.CustomerGroup(name="merchants/m1/customerGroups/g"),
                update_mask=field_mask_pb2.FieldMask(paths=["member_count"]),
            ),
            ["update_mask"],
            "INVALID_ARGUMENT",
        ),
        (
            pb.ListCustomerGroupMembersRequest(
                customer_group="merchants/m1/customerGroups/g", page_token="garbage!"
            ),
            ["page_token"],
            "INVALID_PAGE_TOKEN",
        ),
        (
            pb.AddCustomerGroupMembersRequest(
                customer_group="merchants/m1/customerGroups/g", customer_ids=["ok", "has space", ""]
            ),
            ["customer_ids[1]", "customer_ids[2]"],
            "INVALID_ARGUMENT",
        ),
    ],
)
def test_bad_input_is_invalid_argument_naming_fields(groups, request_, fields, reason) -> None:  # type: ignore[no-untyped-def]
    method = getattr(groups, type(request_).__name__.removesuffix("Request"))
    with pytest.raises(grpc.RpcError) as e:
        method(request_, metadata=A)
    f = failure(e.value)
    assert f.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (f.reason, f.domain, f.fields) == (reason, "broadcaster", fields)
