"""Tokens, merchant scopes and the loopback rule, over a real gRPC channel."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import customer_group_service_pb2 as pb
from tests.e2e.server import ALPHA, BETA, SECRET_KEY, auth, connect_fake, failure


def test_missing_and_unknown_tokens_are_unauthenticated(groups) -> None:  # type: ignore[no-untyped-def]
    request = pb.ListCustomerGroupsRequest(parent="merchants/m-alpha")
    for metadata, reason in [
        ((), "TOKEN_MISSING"),
        ((("authorization", "Basic abc"),), "TOKEN_MALFORMED"),
        (auth("not-a-token-we-know-0000"), "TOKEN_UNKNOWN"),
    ]:
        with pytest.raises(grpc.RpcError) as e:
            groups.ListCustomerGroups(request, metadata=metadata)
        f = failure(e.value)
        assert (f.code, f.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)


def test_other_merchants_resources_do_not_exist(channel, groups, contacts) -> None:  # type: ignore[no-untyped-def]
    beta_group = groups.CreateCustomerGroup(
        pb.CreateCustomerGroupRequest(
            parent="merchants/m-beta", customer_group=pb.CustomerGroup(display_name="beta only")
        ),
        metadata=auth(BETA),
    )
    alpha_group_name = beta_group.name.replace("m-beta", "m-alpha")
    beta_channel = connect_fake(channel, "merchants/m-beta", BETA)
    (beta_contact,) = contacts.BatchCreateContacts(
        cpb.BatchCreateContactsRequest(
            parent=beta_channel.name, contacts=[cpb.Contact(external_id="Ubeta")]
        ),
        metadata=auth(BETA),
    ).contacts

    def code_and_reason(call, request) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
        with pytest.raises(grpc.RpcError) as e:
            call(request, metadata=auth(ALPHA))
        f = failure(e.value)
        return f.code, f.reason

    missing = (grpc.StatusCode.NOT_FOUND, "CUSTOMER_GROUP_NOT_FOUND")
    assert (
        code_and_reason(groups.GetCustomerGroup, pb.GetCustomerGroupRequest(name=beta_group.name))
        == missing
    )
    # Exactly as a group that does not exist under alpha's own merchant.
    assert (
        code_and_reason(groups.GetCustomerGroup, pb.GetCustomerGroupRequest(name=alpha_group_name))
        == missing
    )
    assert (
        code_and_reason(
            groups.DeleteCustomerGroup, pb.DeleteCustomerGroupRequest(name=beta_group.name)
        )
        == missing
    )
    assert (
        code_and_reason(
            groups.AddCustomerGroupMembers,
            pb.AddCustomerGroupMembersRequest(customer_group=beta_group.name, customer_ids=["x"]),
        )
        == missing
    )
    assert code_and_reason(
        groups.ListCustomerGroups, pb.ListCustomerGroupsRequest(parent="merchants/m-beta")
    ) == (grpc.StatusCode.NOT_FOUND, "MERCHANT_NOT_FOUND")
    assert code_and_reason(contacts.GetContact, cpb.GetContactRequest(name=beta_contact.name)) == (
        grpc.StatusCode.NOT_FOUND,
        "CONTACT_NOT_FOUND",
    )
    assert code_and_reason(
        contacts.ListContacts, cpb.ListContactsRequest(parent=beta_channel.name)
    ) == (grpc.StatusCode.NOT_FOUND, "MERCHANT_NOT_FOUND")
    # Alpha's own lists never show beta's resources.
    own = groups.ListCustomerGroups(
        pb.ListCustomerGroupsRequest(parent="merchants/m-alpha"), metadata=auth(ALPHA)
    )
    assert beta_group.name not in [g.name for g in own.customer_groups]
    # Beta still sees its group.
    assert groups.GetCustomerGroup(
        pb.GetCustomerGroupRequest(name=beta_group.name), metadata=auth(BETA)
    ) == groups.GetCustomerGroup(
        pb.GetCustomerGroupRequest(name=beta_group.name), metadata=auth(BETA)
    )


def test_without_tokens_only_loopback_is_allowed(database_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "broadcaster.cli", "serve", "--grpc-listen", "0.0.0.0:0"],
        env={
            "BROADCASTER_DATABASE_URL": database_url,
            "BROADCASTER_SECRET_KEY": SECRET_KEY,
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "no BROADCASTER_AUTH_TOKENS are configured" in done.stderr
