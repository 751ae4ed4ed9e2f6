"""Step 3 of the demo: contacts linked to the shop's customers, two customer groups, opt-outs."""

from __future__ import annotations

from broadcaster_client.v1 import channel_service_pb2 as cpb
from broadcaster_client.v1 import contact_service_pb2 as kpb
from broadcaster_client.v1 import customer_group_service_pb2 as gpb
from google.protobuf import field_mask_pb2

from broadcaster.tools.demo.shop import CALL_TIMEOUT, Shop

# Shares of the friends, chosen to give every audience in the estimate something to show.
CUSTOMERS = 0.4  # linked to a shop customer (another service imports the link)
OPTED_OUT = 0.02  # of the customers: turned notifications off in the shop
VIP = 0.1  # of the customers
REPEAT_BUYERS = 0.4  # of the customers
OPT_OUTS_BY_UPDATE = 20
IMPORT_CHUNK = 10_000  # BatchCreateContacts' maximum


def customers(
    shop: Shop, channel: cpb.Channel, followers: list[str]
) -> tuple[gpb.CustomerGroup, gpb.CustomerGroup]:
    rng, api = shop.rng, shop.client
    linked = rng.sample(followers, int(len(followers) * CUSTOMERS))
    customer_of = {user: f"cust-{n:06d}" for n, user in enumerate(linked, start=1)}
    # Customers who turned notifications off in the shop: most are in the import below,
    # a few change their preference afterwards (one UpdateContact each).
    opting = rng.sample(linked, int(len(linked) * OPTED_OUT))
    updating = set(opting[: min(OPT_OUTS_BY_UPDATE, len(opting))])
    imported_opted_out = set(opting) - updating
    contacts: list[kpb.Contact] = []
    for lo in range(0, len(linked), IMPORT_CHUNK):
        # What the shop knows (customers who logged in with LINE), merged by LINE user id.
        request = kpb.BatchCreateContactsRequest(
            parent=channel.name,
            contacts=[
                kpb.Contact(
                    external_id=user,
                    follower_state=kpb.Contact.FOLLOWING,
                    customer_id=customer_of[user],
                    opted_out=user in imported_opted_out,
                )
                for user in linked[lo : lo + IMPORT_CHUNK]
            ],
        )
        reply = shop.idempotent(api.contacts.BatchCreateContacts, request)
        contacts.extend(c for c in reply.contacts if c.external_id in updating)
    customer_ids = list(customer_of.values())

    def group(name: str, description: str, share: float) -> gpb.CustomerGroup:
        made = api.customer_groups.CreateCustomerGroup(
            gpb.CreateCustomerGroupRequest(
                parent=shop.merchant,
                customer_group=gpb.CustomerGroup(display_name=name, description=description),
                request_id=f"demo-group-{name.lower().replace(' ', '-')}",
            ),
            timeout=CALL_TIMEOUT,
        )
        members = rng.sample(customer_ids, max(1, int(len(customer_ids) * share)))
        added = shop.idempotent(
            api.customer_groups.AddCustomerGroupMembers,
            gpb.AddCustomerGroupMembersRequest(customer_group=made.name, customer_ids=members),
        )
        made.member_count = added.member_count
        return made

    vip = group("VIP", "Spent over 50,000 this year", VIP)
    repeat = group("Repeat buyers", "Two orders or more", REPEAT_BUYERS)

    # The shop's preference page reports each change as it happens.
    mask = field_mask_pb2.FieldMask(paths=["opted_out"])
    for contact in contacts:
        shop.idempotent(
            api.contacts.UpdateContact,
            kpb.UpdateContactRequest(
                contact=kpb.Contact(name=contact.name, opted_out=True), update_mask=mask
            ),
        )
    shop.story.step(
        f"{len(linked):,} contacts linked to shop customers; customer groups "
        f"{vip.display_name!r} ({vip.member_count:,}) and {repeat.display_name!r} "
        f"({repeat.member_count:,}); {len(opting):,} customers opted out of notifications "
        f"({len(contacts)} of them just now)"
    )
    return vip, repeat
