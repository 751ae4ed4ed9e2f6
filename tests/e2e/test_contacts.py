"""Contacts over a real gRPC channel: import 10,000, page, link to customers, opt out."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from broadcaster.v1 import contact_service_pb2 as pb
from tests.e2e.server import ADMIN, auth, connect_fake, failure

A = auth(ADMIN)


def test_contacts_end_to_end(channel, contacts) -> None:  # type: ignore[no-untyped-def]
    parent = connect_fake(channel, f"merchants/m-{uuid.uuid4().hex[:12]}").name
    batch = [
        pb.Contact(
            external_id=f"U{n:032x}",
            display_name=f"Person {n}",
            follower_state=pb.Contact.FOLLOWING,
            last_interaction_time=Timestamp(seconds=1_700_000_000 + n),
        )
        for n in range(10_000)
    ]
    made = contacts.BatchCreateContacts(
        pb.BatchCreateContactsRequest(parent=parent, contacts=batch), metadata=A
    )
    assert made.created_count == 10_000 and len(made.contacts) == 10_000
    assert made.contacts[42].external_id == f"U{42:032x}"

    names, token = [], ""
    while True:
        page = contacts.ListContacts(
            pb.ListContactsRequest(parent=parent, page_size=1000, page_token=token), metadata=A
        )
        names += [c.name for c in page.contacts]
        token = page.next_page_token
        if not token:
            break
    assert len(names) == len(set(names)) == 10_000

    for c in made.contacts[:25]:
        contacts.UpdateContact(
            pb.UpdateContactRequest(
                contact=pb.Contact(name=c.name, customer_id="customer-7"),
                update_mask=FieldMask(paths=["customer_id"]),
            ),
            metadata=A,
        )
    linked = contacts.ListContacts(
        pb.ListContactsRequest(parent=parent, customer_id="customer-7"), metadata=A
    )
    assert len(linked.contacts) == 25

    opted = contacts.UpdateContact(
        pb.UpdateContactRequest(
            contact=pb.Contact(name=made.contacts[0].name, opted_out=True),
            update_mask=FieldMask(paths=["opted_out"]),
        ),
        metadata=A,
    )
    assert opted.opted_out and opted.customer_id == "customer-7"
    out = contacts.ListContacts(pb.ListContactsRequest(parent=parent, opted_out=True), metadata=A)
    assert [c.name for c in out.contacts] == [made.contacts[0].name]
    # A later import with an older interaction time does not move it back nor clear the opt-out.
    (merged,) = contacts.BatchCreateContacts(
        pb.BatchCreateContactsRequest(
            parent=parent,
            contacts=[
                pb.Contact(
                    external_id=made.contacts[0].external_id,
                    last_interaction_time=Timestamp(seconds=1),
                )
            ],
        ),
        metadata=A,
    ).contacts
    assert merged.opted_out and merged.last_interaction_time.seconds == 1_700_000_000
    assert contacts.GetContact(pb.GetContactRequest(name=merged.name), metadata=A) == merged

    recent = contacts.ListContacts(
        pb.ListContactsRequest(
            parent=parent, last_interaction_after=Timestamp(seconds=1_700_000_000 + 9_990)
        ),
        metadata=A,
    )
    assert len(recent.contacts) == 10


def test_unknown_update_mask_path_is_named(contacts) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        contacts.UpdateContact(
            pb.UpdateContactRequest(
                contact=pb.Contact(name="merchants/m1/channels/c/contacts/k"),
                update_mask=FieldMask(paths=["display_name"]),
            ),
            metadata=A,
        )
    f = failure(e.value)
    assert (f.code, f.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["update_mask"])


def test_import_into_unknown_channel_is_not_found(contacts) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        contacts.BatchCreateContacts(
            pb.BatchCreateContactsRequest(
                parent="merchants/m1/channels/nope", contacts=[pb.Contact(external_id="U1")]
            ),
            metadata=A,
        )
    f = failure(e.value)
    assert (f.code, f.reason) == (grpc.StatusCode.NOT_FOUND, "CHANNEL_NOT_FOUND")


def test_absurd_timestamp_is_a_field_violation(contacts) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as e:
        contacts.BatchCreateContacts(
            pb.BatchCreateContactsRequest(
                parent="merchants/m1/channels/c",
                contacts=[
                    pb.Contact(external_id="U1", last_interaction_time=Timestamp(seconds=2**62))
                ],
            ),
            metadata=A,
        )
    f = failure(e.value)
    assert f.fields == ["contacts[0].last_interaction_time"]
