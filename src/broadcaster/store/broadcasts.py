"""Broadcasts: drafts and their lifecycle columns."""

from __future__ import annotations

import functools
import json
from typing import Any

from sqlalchemy import Connection, Row, Select, bindparam, delete, insert, select, update

from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.broadcasts import Broadcast, BroadcastState, Counters, Estimate
from broadcaster.domain.messages import ImageMessage, Message, TextMessage
from broadcaster.domain.paging import Page
from broadcaster.store.clock import from_us, maybe_from_us, to_us
from broadcaster.store.tables import broadcasts as t

# Audience.InteractionWindow's numbers in the API, stored as they are.
WINDOW_NUMBERS = {
    InteractionWindow.LAST_24_HOURS: 1,
    InteractionWindow.LAST_72_HOURS: 2,
    InteractionWindow.LAST_7_DAYS: 3,
    InteractionWindow.LAST_30_DAYS: 4,
    InteractionWindow.LAST_365_DAYS: 5,
    InteractionWindow.ALL_CONTACTS: 6,
}
WINDOWS = {n: w for w, n in WINDOW_NUMBERS.items()}


def encode_messages(messages: tuple[Message, ...]) -> str:
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, TextMessage):
            out.append({"text": m.text})
        else:
            out.append({"image": [m.original_content_url, m.preview_image_url]})
    return json.dumps(out, ensure_ascii=False)


@functools.lru_cache(maxsize=4096)
def decode_messages(raw: str) -> tuple[Message, ...]:
    """Cached: list pages decode the same bubbles again and again (the values are frozen)."""
    return tuple(
        TextMessage(m["text"]) if "text" in m else ImageMessage(*m["image"])
        for m in json.loads(raw)
    )


def encode_estimate(e: Estimate) -> str:
    data = {f: getattr(e, f) for f in Estimate.__dataclass_fields__}
    data["estimate_time"] = to_us(e.estimate_time)
    return json.dumps(data)


def _decode_estimate(raw: str | None) -> Estimate | None:
    if raw is None:
        return None
    data = json.loads(raw)
    data["estimate_time"] = from_us(data["estimate_time"])
    return Estimate(**data)


def _broadcast(row: Row[tuple[object, ...]]) -> Broadcast:
    m = row._mapping
    return Broadcast(
        merchant=m["merchant_id"],
        id=m["id"],
        display_name=m["display_name"],
        channel=m["channel_id"],
        audience=Audience(WINDOWS[m["interaction_window"]], m["customer_group_id"]),
        messages=decode_messages(m["messages"]),
        state=BroadcastState(m["state"]),
        group_name=m["group_name"],
        create_time=from_us(m["create_time"]),
        update_time=from_us(m["update_time"]),
        counters=Counters(m["total"], m["sent"], m["failed"], m["excluded"]),
        send_estimate=_decode_estimate(m["send_estimate"]),
        failure_reason=m["failure_reason"],
        copied_from=m["copied_from"],
        resend_of=m["resend_of"],
        send_time=maybe_from_us(m["send_time"]),
        complete_time=maybe_from_us(m["complete_time"]),
    )


def create(conn: Connection, b: Broadcast) -> Broadcast:
    conn.execute(
        insert(t).values(
            id=b.id,
            merchant_id=b.merchant,
            channel_id=b.channel,
            display_name=b.display_name,
            display_name_folded=b.display_name.casefold(),
            state=int(b.state),
            interaction_window=WINDOW_NUMBERS[b.audience.window],
            customer_group_id=b.audience.customer_group,
            group_name=b.group_name,
            messages=encode_messages(b.messages),
            total=0,
            sent=0,
            failed=0,
            excluded=0,
            failure_reason="",
            copied_from=b.copied_from,
            resend_of=b.resend_of,
            create_time=to_us(b.create_time),
            update_time=to_us(b.update_time),
        )
    )
    found = get(conn, b.merchant, b.id)
    assert found is not None
    return found


# Reads of the broadcast list are the API's busiest: their statements are built once (building a
# SQLAlchemy statement costs more than running it on SQLite).
_GET = select(t).where(t.c.merchant_id == bindparam("m"), t.c.id == bindparam("id"))
_GET_FOR_UPDATE = _GET.with_for_update()


def get(
    conn: Connection, merchant: str, broadcast_id: str, *, lock: bool = False
) -> Broadcast | None:
    query = _GET_FOR_UPDATE if lock and conn.dialect.name == "postgresql" else _GET
    row = conn.execute(query, {"m": merchant, "id": broadcast_id}).first()
    return None if row is None else _broadcast(row)


@functools.cache
def _list_statement(by_state: bool, by_name: bool, after: bool) -> Select[Any]:
    query = select(t).where(t.c.merchant_id == bindparam("m"))
    if by_state:
        query = query.where(t.c.state == bindparam("state"))
    if by_name:
        query = query.where(t.c.display_name_folded.like(bindparam("pattern"), escape="/"))
    if after:
        query = query.where(t.c.id < bindparam("after"))
    return query.order_by(t.c.id.desc()).limit(bindparam("limit"))


def _like_pattern(text: str) -> str:
    """`%text%` for LIKE … ESCAPE '/', with the text's own wildcards taken literally."""
    escaped = text.casefold().replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


def list_page(
    conn: Connection, merchant: str, contains: str, state: BroadcastState | None, page: Page
) -> list[Broadcast]:
    query = _list_statement(state is not None, bool(contains), page.after is not None)
    params: dict[str, Any] = {"m": merchant, "limit": page.size + 1}
    if state is not None:
        params["state"] = int(state)
    if contains:
        params["pattern"] = _like_pattern(contains)
    if page.after is not None:
        params["after"] = page.after
    return [_broadcast(r) for r in conn.execute(query, params)]


def start_sending(
    conn: Connection,
    b: Broadcast,
    *,
    total: int,
    excluded: int,
    batches: int,
    estimate: Estimate,
    now: int,
) -> Broadcast:
    """The draft becomes SENDING with its recipients fixed (or SENT at once when none)."""
    state = BroadcastState.SENDING if batches else BroadcastState.SENT
    conn.execute(
        update(t)
        .where(t.c.id == b.id, t.c.state == int(BroadcastState.DRAFT))
        .values(
            state=int(state),
            total=total,
            excluded=excluded,
            open_batches=batches,
            send_estimate=encode_estimate(estimate),
            send_time=now,
            update_time=now,
            complete_time=None if batches else now,
        )
    )
    found = get(conn, b.merchant, b.id)
    assert found is not None
    return found


def save_draft(conn: Connection, b: Broadcast) -> Broadcast:
    """Write a draft's editable fields (only while it is still a draft)."""
    conn.execute(
        update(t)
        .where(t.c.id == b.id, t.c.state == int(BroadcastState.DRAFT))
        .values(
            display_name=b.display_name,
            display_name_folded=b.display_name.casefold(),
            channel_id=b.channel,
            interaction_window=WINDOW_NUMBERS[b.audience.window],
            customer_group_id=b.audience.customer_group,
            group_name=b.group_name,
            messages=encode_messages(b.messages),
            resend_of=b.resend_of,
            update_time=to_us(b.update_time),
        )
    )
    found = get(conn, b.merchant, b.id)
    assert found is not None
    return found


def delete_draft(conn: Connection, merchant: str, broadcast_id: str) -> bool:
    done = conn.execute(
        delete(t).where(
            t.c.merchant_id == merchant,
            t.c.id == broadcast_id,
            t.c.state == int(BroadcastState.DRAFT),
        )
    )
    return done.rowcount == 1
