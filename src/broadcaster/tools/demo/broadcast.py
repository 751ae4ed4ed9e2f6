"""Steps 4 to 6 of the demo: audience estimates, a test send to one contact, the broadcast sent
with a live progress bar, a follow-up scheduled, the broadcast list, and the Message Center
events the send recorded."""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from broadcaster_client import paginate
from broadcaster_client.v1 import broadcast_service_pb2 as bpb
from broadcaster_client.v1 import channel_service_pb2 as cpb
from broadcaster_client.v1 import contact_service_pb2 as kpb
from broadcaster_client.v1 import event_service_pb2 as epb
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from broadcaster.tools import console
from broadcaster.tools.demo.shop import CALL_TIMEOUT, POLL_SECONDS, Shop
from broadcaster.tools.demo.story import indent
from broadcaster.tools.progress import Progress, table

IMAGE = "https://cdn.example.com/demo/summer-sale.jpg"
IMAGE_PREVIEW = "https://cdn.example.com/demo/summer-sale-preview.jpg"
TEXT = (
    "Summer sale starts today: 30% off everything in the shop until Sunday. "
    "Show this message at the counter or use code SUMMER30 online."
)
SHOP = "https://shop.example.com"
PRODUCTS = (("Linen shirt", "¥3,900"), ("Straw hat", "¥2,400"), ("Canvas tote", "¥1,800"))


def _product_card(name: str, price: str, n: int) -> dict[str, Any]:
    """One bubble of the card carousel: picture, name and price, and a Buy button."""
    return {
        "type": "bubble",
        "hero": {
            "type": "image",
            "url": f"https://cdn.example.com/demo/product-{n}.jpg",
            "size": "full",
            "aspectMode": "cover",
        },
        "body": {
            "type": "box",
            "layout": "vertical",
            "contents": [
                {"type": "text", "text": name, "weight": "bold", "size": "lg"},
                {"type": "text", "text": f"{price} → 30% off", "color": "#888888"},
            ],
        },
        "footer": {
            "type": "box",
            "layout": "vertical",
            "contents": [
                {
                    "type": "button",
                    "style": "primary",
                    "action": {"type": "uri", "label": "Buy", "uri": f"{SHOP}/p/{n}"},
                }
            ],
        },
    }


def card_carousel() -> bpb.BroadcastMessage:
    """A card-type message: a LINE flex carousel of the sale's products, as a channel-native
    bubble (the channel declares `channel_native`; its plugin checks and previews it)."""
    payload = Struct()
    payload.update(
        {
            "type": "flex",
            "altText": "Summer sale picks",
            "contents": {
                "type": "carousel",
                "contents": [_product_card(n, p, i) for i, (n, p) in enumerate(PRODUCTS, 1)],
            },
        }
    )
    return bpb.BroadcastMessage(channel_native=payload)


@dataclass(frozen=True)
class Audience:
    label: str
    window: bpb.Audience.InteractionWindow.ValueType
    group: str = ""  # a customer group's name, or "" for all customers


def estimates(shop: Shop, channel: cpb.Channel, audiences: Sequence[Audience]) -> None:
    api, story = shop.client, shop.story
    rows = []
    for a in audiences:
        e = api.broadcasts.EstimateAudience(
            bpb.EstimateAudienceRequest(
                parent=shop.merchant,
                channel=channel.name,
                audience=bpb.Audience(
                    last_interaction=a.window, customer_groups=[a.group] if a.group else []
                ),
            ),
            timeout=CALL_TIMEOUT,
        )
        if not e.eligible:
            expected = f"not eligible: {e.ineligible_reason}"
        else:
            expected = f"{e.expected_recipients:,}"
        rows.append([a.label, f"{e.matched:,}", f"{e.opted_out:,}", f"{e.unreachable:,}", expected])
    quota = api.channels.GetChannelQuota(
        cpb.GetChannelQuotaRequest(name=f"{channel.name}/quota"), timeout=CALL_TIMEOUT
    )
    story.step("audience estimates (what the draft form shows):")
    story.say("")
    headers = ["AUDIENCE", "MATCH", "OPTED OUT", "UNREACHABLE", "EXPECTED TO RECEIVE"]
    story.say(indent(table(headers, rows, limits=[0, 0, 0, 0, 0])))
    remaining = f"{quota.remaining:,} of {quota.limit:,}" if quota.limited else "unlimited"
    story.say(f"  message quota left this month: {remaining}")
    story.say("")


def send(shop: Shop, channel: cpb.Channel) -> bpb.Broadcast:
    broadcasts = shop.client.broadcasts
    draft = broadcasts.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=shop.merchant,
            broadcast=bpb.Broadcast(
                display_name="Summer sale: 30% off",
                channel=channel.name,
                audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                messages=[
                    bpb.BroadcastMessage(text=bpb.TextContent(text=TEXT)),
                    bpb.BroadcastMessage(
                        image=bpb.ImageContent(
                            original_content_uri=IMAGE, preview_image_uri=IMAGE_PREVIEW
                        )
                    ),
                    card_carousel(),
                ],
            ),
            request_id="demo-summer-sale",
        ),
        timeout=CALL_TIMEOUT,
    )
    test_send(shop, channel, draft)
    b = broadcasts.SendBroadcast(
        bpb.SendBroadcastRequest(name=draft.name, request_id="demo-summer-sale-send"),
        timeout=CALL_TIMEOUT,
    )
    shop.story.step(
        f"sending {b.display_name!r} ({' · '.join(b.previews)}) to "
        f"{b.counters.total:,} recipients: {b.name}"
    )
    progress = Progress(shop.story.out)
    started = time.monotonic()
    request = bpb.GetBroadcastRequest(name=b.name)
    b = console.follow_broadcast(
        b,
        lambda: broadcasts.GetBroadcast(request, timeout=CALL_TIMEOUT),
        progress,
        POLL_SECONDS,
    )
    c = b.counters
    seconds = time.monotonic() - started
    summary = (
        f"broadcast {bpb.Broadcast.State.Name(b.state)}: {c.sent:,} / {c.total:,} sent, "
        f"{c.failed:,} failed, in {seconds:.1f}s"
    )
    if b.failure_reason:
        summary += f" ({b.failure_reason})"
    progress.finish(shop.story.stamp(summary))
    return b


def test_send(shop: Shop, channel: cpb.Channel, draft: bpb.Broadcast) -> None:
    """The draft sent first to one contact (the shop owner's own phone, say): nothing else of the
    draft changes."""
    first = shop.client.contacts.ListContacts(
        kpb.ListContactsRequest(parent=channel.name, page_size=1), timeout=CALL_TIMEOUT
    ).contacts[0]
    tried = shop.client.broadcasts.SendTestBroadcast(
        bpb.SendTestBroadcastRequest(
            name=draft.name, contacts=[first.name], request_id="demo-summer-sale-test"
        ),
        timeout=CALL_TIMEOUT,
    )
    outcomes = ", ".join(
        f"{r.contact.rsplit('/', 1)[-1]}: {bpb.TestSendRecipient.Outcome.Name(r.outcome)}"
        for r in tried.recipients
    )
    shop.story.step(f"test send of the draft to one contact first ({outcomes}); still a draft")


def copy_as_draft(shop: Shop, sent: bpb.Broadcast) -> bpb.Broadcast:
    """A follow-up draft, so the list shows more than one state."""
    return shop.client.broadcasts.CopyBroadcast(
        bpb.CopyBroadcastRequest(name=sent.name, request_id="demo-summer-sale-copy"),
        timeout=CALL_TIMEOUT,
    )


def schedule(shop: Shop, draft: bpb.Broadcast) -> bpb.Broadcast:
    """The follow-up scheduled for this hour tomorrow: the list shows it as upcoming."""
    when = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    at = Timestamp()
    at.FromDatetime(when)
    scheduled = shop.client.broadcasts.ScheduleBroadcast(
        bpb.ScheduleBroadcastRequest(
            name=draft.name, schedule_time=at, request_id="demo-follow-up-schedule"
        ),
        timeout=CALL_TIMEOUT,
    )
    state = bpb.Broadcast.State.Name(scheduled.state)
    local = when.astimezone()  # as the list shows times
    shop.story.step(f"the follow-up scheduled for {local:%Y-%m-%d %H:%M}: {state}")
    return scheduled


def unschedule(shop: Shop, scheduled: bpb.Broadcast) -> None:
    """Back to a draft: the demo leaves nothing to be sent later from its database."""
    draft = shop.client.broadcasts.UnscheduleBroadcast(
        bpb.UnscheduleBroadcastRequest(name=scheduled.name, request_id="demo-follow-up-back"),
        timeout=CALL_TIMEOUT,
    )
    state = bpb.Broadcast.State.Name(draft.state)
    shop.story.step(f"the follow-up unscheduled again: {state}, nothing left to send later")


STATISTICS_WAIT = 20.0  # seconds to wait for the first read of a broadcast's statistics


def statistics(shop: Shop, sent: bpb.Broadcast) -> bpb.BroadcastStatistics:
    """How the broadcast did, once the service has read its figures from LINE (a second after
    it was sent, in the demo): people who opened it and who clicked, as counts and rates."""
    request = bpb.GetBroadcastStatisticsRequest(name=f"{sent.name}/statistics")
    deadline = time.monotonic() + STATISTICS_WAIT
    while True:
        s = shop.client.broadcasts.GetBroadcastStatistics(request, timeout=CALL_TIMEOUT)
        if s.HasField("fetch_time") or s.unavailable_reason not in ("", "STATISTICS_NOT_YET"):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    if s.unavailable_reason:
        shop.story.step(f"statistics of the broadcast: none yet ({s.unavailable_reason})")
        return s
    opened = f"{s.open_rate:.0%}" if s.HasField("open_rate") else "withheld"
    clicked = f"{s.click_rate:.0%}" if s.HasField("click_rate") else "withheld"
    shop.story.step(
        f"statistics of the broadcast, read from LINE: of {s.delivered:,} delivered, "
        f"opened {opened}, clicked {clicked} "
        f"(`broadcaster broadcasts stats` shows them per bubble and per link)"
    )
    return s


def broadcast_list(shop: Shop) -> None:
    """The merchant's broadcasts, as `broadcaster broadcasts list` shows them."""
    shop.story.step("the broadcast list (as the admin UI shows it):")
    shop.story.say("")
    listing = argparse.Namespace(
        merchant=shop.merchant,
        name_contains="",
        state=None,
        limit=10,
        channel="",
        channel_type="",
        sent_after=None,
        sent_before=None,
        order_by="",
    )
    listed = io.StringIO()
    console.list_broadcasts(console.Calls(shop.client, CALL_TIMEOUT), listing, listed)
    shop.story.say(indent(listed.getvalue()))
    shop.story.say("")


def events(shop: Shop, broadcast: str) -> tuple[int, int]:
    """Message Center events of `broadcast`: messages and conversations it created."""
    messages = conversations = 0
    every = paginate(
        lambda r: shop.client.events.ListEvents(r, timeout=CALL_TIMEOUT),
        epb.ListEventsRequest(parent=shop.merchant, page_size=1000, broadcast=broadcast),
        lambda page: page.events,
    )
    for e in every:
        if e.kind == epb.Event.BROADCAST_MESSAGE:
            messages += 1
        elif e.kind == epb.Event.CONVERSATION_CREATED:
            conversations += 1
    return messages, conversations
