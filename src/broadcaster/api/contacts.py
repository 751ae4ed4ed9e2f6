"""ContactService over gRPC: adapts protos to the application service."""

from __future__ import annotations

from typing import Any

import grpc

from broadcaster.api import convert
from broadcaster.api.guard import caller
from broadcaster.api.timestamps import EPOCH, optional_datetime
from broadcaster.domain.errors import Violations, collect
from broadcaster.domain.model import ContactFilter, ContactImport
from broadcaster.services.contacts import Contacts
from broadcaster.services.offload import off_loop
from broadcaster.v1 import contact_service_pb2 as pb
from broadcaster.v1 import contact_service_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]
# Batches this large are converted in a worker thread: 10,000 contacts take the event loop's
# thread for a few hundred milliseconds each way.
OFF_LOOP_ITEMS = 500


def _import(v: Violations, i: int, c: pb.Contact) -> ContactImport | None:
    f = f"contacts[{i}]"
    state = collect(v, lambda: convert.follower_state(c.follower_state, f"{f}.follower_state"))
    last = collect(
        v,
        lambda: optional_datetime(c, "last_interaction_time", f"{f}.last_interaction_time"),
    )
    observed = collect(v, lambda: optional_datetime(c, "observe_time", f"{f}.observe_time"))
    if state is None:
        return None
    return ContactImport(
        external_id=c.external_id,
        display_name=c.display_name,
        picture_uri=c.picture_uri,
        follower_state=state,
        last_interaction_time=last,
        opted_out=c.opted_out,
        customer_id=c.customer_id or None,
        observe_time=observed or EPOCH,
    )


def _imports(request: pb.BatchCreateContactsRequest) -> list[ContactImport]:
    v = Violations()
    items = [_import(v, i, c) for i, c in enumerate(request.contacts)]
    v.raise_if_any()
    return [i for i in items if i is not None]


class ContactServicer(pb_grpc.ContactServiceServicer):
    def __init__(self, contacts: Contacts) -> None:
        self._contacts = contacts

    async def ListContacts(
        self, request: pb.ListContactsRequest, context: Context
    ) -> pb.ListContactsResponse:
        where = ContactFilter(
            opted_out=request.opted_out if request.HasField("opted_out") else None,
            customer_id=request.customer_id or None,
            last_interaction_after=optional_datetime(
                request, "last_interaction_after", "last_interaction_after"
            ),
        )
        found, token = await self._contacts.list_page(
            caller(), request.parent, request.page_size, request.page_token, where
        )
        return pb.ListContactsResponse(
            contacts=[convert.contact(c) for c in found], next_page_token=token
        )

    async def GetContact(self, request: pb.GetContactRequest, context: Context) -> pb.Contact:
        return convert.contact(await self._contacts.get(caller(), request.name))

    async def UpdateContact(self, request: pb.UpdateContactRequest, context: Context) -> pb.Contact:
        c = request.contact
        updated = await self._contacts.update(
            caller(), c.name, list(request.update_mask.paths), c.opted_out, c.customer_id
        )
        return convert.contact(updated)

    async def BatchCreateContacts(
        self, request: pb.BatchCreateContactsRequest, context: Context
    ) -> pb.BatchCreateContactsResponse:
        large = len(request.contacts) > OFF_LOOP_ITEMS
        items = await off_loop(_imports, request) if large else _imports(request)
        stored, created = await self._contacts.batch_create(caller(), request.parent, items)

        def answer() -> pb.BatchCreateContactsResponse:
            return pb.BatchCreateContactsResponse(
                contacts=[convert.contact(c) for c in stored], created_count=created
            )

        return await off_loop(answer) if large else answer()
