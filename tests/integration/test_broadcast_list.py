"""ListBroadcasts' filters (channel, channel type, send time range) and orders (create time,
send time, schedule time), paged on both databases: every page size walks the same list as one
big page, and a token is good only for the list it came from."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.broadcasts import Broadcast, BroadcastState
from broadcaster.domain.errors import InvalidArgument
from broadcaster.domain.ids import new_id
from broadcaster.domain.messages import TextMessage
from broadcaster.domain.model import AccountTier
from broadcaster.services.broadcasts import Broadcasts, ListQuery
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.store import broadcasts as repo
from broadcaster.store import channels
from broadcaster.store.clock import from_us, to_us
from broadcaster.store.tables import broadcasts as table
from tests.integration.test_audience import NOW


async def _seed(ctx: ServiceContext, merchant: str) -> tuple[dict[str, Broadcast], str, str]:
    """Twelve broadcasts on a fake and a line channel; eight sent, some at the same moment.
    Returns them by id, and the two channel ids."""
    fake, line = new_id(), new_id()
    for channel_id, kind in ((fake, "fake"), (line, "line")):
        account = (AccountTier.VERIFIED, f"acct-{channel_id}", "Shop", "@shop", "")
        await ctx.db.write(channels.create, merchant, channel_id, kind, account, "s", from_us(1))
    made: dict[str, Broadcast] = {}
    for n in range(12):
        b = Broadcast(
            merchant=merchant,
            id=new_id(),
            display_name=f"B{n}",
            channel=fake if n % 3 else line,
            audience=Audience(InteractionWindow.ALL_CONTACTS),
            messages=(TextMessage("hi"),),
            state=BroadcastState.DRAFT,
            group_name="",
            create_time=NOW,
            update_time=NOW,
        )
        await ctx.db.write(repo.create, b)
        if n < 8:  # sent in an order unlike creation, two pairs at one moment
            sent = NOW + timedelta(hours=[5, 1, 7, 1, 3, 6, 3, 2][n])

            def send(conn, b=b, sent=sent):  # type: ignore[no-untyped-def]
                conn.execute(
                    update(table)
                    .where(table.c.id == b.id)
                    .values(state=int(BroadcastState.SENT), send_time=to_us(sent))
                )

            await ctx.db.write(send)
        made[b.id] = (await ctx.db.read(repo.get, merchant, b.id)) or b
    return made, fake, line


async def _walk(service: Broadcasts, parent: str, size: int, query: ListQuery) -> list[str]:
    ids: list[str] = []
    token = ""
    while True:
        page, token = await service.list_page(LOCAL, parent, size, token, query)
        assert len(page) <= size
        ids += [b.id for b in page]
        if not token:
            return ids


async def test_filters_and_orders_page_like_one_list(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    made, fake, line = await _seed(ctx, merchant)
    service = Broadcasts(ctx, hub)
    parent = f"merchants/{merchant}"
    everyone = list(made.values())
    newest_first = sorted(made, reverse=True)

    def by_send(items: list[Broadcast]) -> list[str]:
        # Last sent first, unsent last; ties newest first.
        ordered = sorted(items, key=lambda b: b.id, reverse=True)
        ordered.sort(key=lambda b: -1 if b.send_time is None else to_us(b.send_time), reverse=True)
        return [b.id for b in ordered]

    after, before = NOW + timedelta(hours=2), NOW + timedelta(hours=6)
    cases: list[tuple[ListQuery, list[str]]] = [
        (ListQuery(), newest_first),
        (ListQuery(order_by="create_time desc"), newest_first),
        (ListQuery(order_by="send_time desc"), by_send(everyone)),
        (ListQuery(order_by="  SEND_TIME   DESC "), by_send(everyone)),
        # Nothing is scheduled yet: oldest first.
        (ListQuery(order_by="schedule_time asc"), sorted(made)),
        (
            ListQuery(channel=f"{parent}/channels/{fake}"),
            [i for i in newest_first if made[i].channel == fake],
        ),
        (ListQuery(channel_type="line"), [i for i in newest_first if made[i].channel == line]),
        (ListQuery(channel_type="other"), []),
        (
            ListQuery(sent_after=after, sent_before=before, order_by="send_time desc"),
            by_send([b for b in everyone if b.send_time and after <= b.send_time < before]),
        ),
        (
            ListQuery(channel_type="fake", sent_after=after, order_by="send_time desc"),
            by_send(
                [b for b in everyone if b.channel == fake and b.send_time and b.send_time >= after]
            ),
        ),
        (
            ListQuery(state=BroadcastState.DRAFT, order_by="send_time desc"),
            [i for i in newest_first if made[i].state is BroadcastState.DRAFT],
        ),
    ]
    for query, expected in cases:
        for size in (1, 2, 5, 1000):
            assert await _walk(service, parent, size, query) == expected, (query, size)


async def test_a_token_is_bound_to_its_filters_and_order(
    ctx: ServiceContext, hub: ChannelHub, merchant: str
) -> None:
    _, fake, _ = await _seed(ctx, merchant)
    service = Broadcasts(ctx, hub)
    parent = f"merchants/{merchant}"
    first = ListQuery(order_by="send_time desc", channel_type="fake")
    _, token = await service.list_page(LOCAL, parent, 2, "", first)
    assert token
    for other in (
        ListQuery(order_by="send_time desc"),
        ListQuery(channel_type="fake"),
        ListQuery(order_by="schedule_time asc", channel_type="fake"),
        ListQuery(order_by="send_time desc", channel_type="fake", sent_after=NOW),
        ListQuery(
            order_by="send_time desc", channel_type="fake", channel=f"{parent}/channels/{fake}"
        ),
    ):
        with pytest.raises(InvalidArgument) as e:
            await service.list_page(LOCAL, parent, 2, token, other)
        assert e.value.reason == "INVALID_PAGE_TOKEN"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (ListQuery(order_by="name asc"), "order_by"),
        (ListQuery(order_by="send_time"), "order_by"),
        (ListQuery(channel="merchants/other/channels/c1"), "channel"),
        (ListQuery(channel="nonsense"), "channel"),
        (ListQuery(channel_type="has space"), "channel_type"),
        (ListQuery(sent_after=NOW, sent_before=NOW), "send_time_before"),
    ],
)
async def test_bad_filters_are_refused_with_their_field(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, query: ListQuery, field: str
) -> None:
    with pytest.raises(InvalidArgument) as e:
        await Broadcasts(ctx, hub).list_page(LOCAL, f"merchants/{merchant}", 0, "", query)
    assert [v.field for v in e.value.violations] == [field]
