"""Broadcasts: drafts and their lifecycle columns."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Dialect,
    Select,
    Update,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.sql.compiler import SQLCompiler

from broadcaster.domain import lifecycle
from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.broadcasts import Broadcast, BroadcastState, Counters, Estimate
from broadcaster.domain.lifecycle import Transition
from broadcaster.domain.messages import ImageMessage, Message, TextMessage
from broadcaster.domain.paging import Page
from broadcaster.store.clock import from_us, maybe_from_us, to_us
from broadcaster.store.tables import broadcasts as t

# How the interaction_window column stores each window (fixed: stored rows keep them).
_WINDOW_CODES = {
    InteractionWindow.LAST_24_HOURS: 1,
    InteractionWindow.LAST_72_HOURS: 2,
    InteractionWindow.LAST_7_DAYS: 3,
    InteractionWindow.LAST_30_DAYS: 4,
    InteractionWindow.LAST_365_DAYS: 5,
    InteractionWindow.ALL_CONTACTS: 6,
}
_WINDOWS = {n: w for w, n in _WINDOW_CODES.items()}


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


# The columns a Broadcast is made of, in the order `_broadcast` unpacks them.
_COLUMNS = (
    t.c.merchant_id,
    t.c.id,
    t.c.display_name,
    t.c.channel_id,
    t.c.interaction_window,
    t.c.customer_group_id,
    t.c.messages,
    t.c.state,
    t.c.group_name,
    t.c.create_time,
    t.c.update_time,
    t.c.total,
    t.c.sent,
    t.c.failed,
    t.c.excluded,
    t.c.send_estimate,
    t.c.failure_reason,
    t.c.copied_from,
    t.c.resend_of,
    t.c.send_time,
    t.c.complete_time,
    t.c.schedule_time,
)


@functools.lru_cache(maxsize=4096)
def _broadcast(row: tuple[Any, ...]) -> Broadcast:
    """The broadcast a row of `_COLUMNS` holds. Cached by the whole row (any change to it is a
    miss): list pages read the same rows again and again, the values are frozen, and building
    one costs several times more than hashing the row."""
    (
        merchant,
        broadcast_id,
        display_name,
        channel,
        window,
        group,
        messages,
        state,
        group_name,
        create_time,
        update_time,
        total,
        sent,
        failed,
        excluded,
        send_estimate,
        failure_reason,
        copied_from,
        resend_of,
        send_time,
        complete_time,
        schedule_time,
    ) = row
    return Broadcast(
        merchant=merchant,
        id=broadcast_id,
        display_name=display_name,
        channel=channel,
        audience=Audience(_WINDOWS[window], group),
        messages=decode_messages(messages),
        state=BroadcastState(state),
        group_name=group_name,
        create_time=from_us(create_time),
        update_time=from_us(update_time),
        counters=Counters(total, sent, failed, excluded),
        send_estimate=_decode_estimate(send_estimate),
        failure_reason=failure_reason,
        copied_from=copied_from,
        resend_of=resend_of,
        send_time=maybe_from_us(send_time),
        complete_time=maybe_from_us(complete_time),
        schedule_time=maybe_from_us(schedule_time),
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
            interaction_window=_WINDOW_CODES[b.audience.window],
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


# Reads of broadcasts (GetBroadcast, ListBroadcasts) are the API's busiest. Their statements are
# built once (building a SQLAlchemy statement costs more than running it on SQLite), compiled
# once per dialect, and run on the driver's own cursor: SQLAlchemy's execution and result
# handling cost several times the query itself on SQLite, and a quarter of the read on
# PostgreSQL. A read that locks rows (on a write path) goes through SQLAlchemy, whose errors the
# deadlock retry of Database.write recognises.
_GET = select(*_COLUMNS).where(t.c.merchant_id == bindparam("m"), t.c.id == bindparam("id"))
_GET_FOR_UPDATE = _GET.with_for_update()


@functools.lru_cache(maxsize=64)
def _compiled(statement: Select[Any], dialect: Dialect) -> SQLCompiler:
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    return compiled


def _fetch(conn: Connection, statement: Select[Any], params: dict[str, Any]) -> Sequence[Any]:
    """The rows of a read-only statement, as tuples, from the connection's DBAPI cursor."""
    compiled = _compiled(statement, conn.dialect)
    values = compiled.construct_params(params)  # with those the statement binds itself
    args: Any = values
    if compiled.positional:  # SQLite's `?`, where psycopg takes them by name
        args = [values[name] for name in compiled.positiontup or ()]
    cursor = conn.connection.cursor()
    try:
        cursor.execute(compiled.string, args)
        return cursor.fetchall()
    except Exception:
        # Run it again through SQLAlchemy, for its error handling: a connection the server
        # dropped then invalidates the pool (the call fails once, the next ones reconnect), and
        # the error raised is SQLAlchemy's, as on every other path.
        return conn.execute(statement, params).all()
    finally:
        cursor.close()


def get(
    conn: Connection, merchant: str, broadcast_id: str, *, lock: bool = False
) -> Broadcast | None:
    params = {"m": merchant, "id": broadcast_id}
    if lock and conn.dialect.name == "postgresql":
        row = conn.execute(_GET_FOR_UPDATE, params).first()
        return None if row is None else _broadcast(tuple(row))
    rows = _fetch(conn, _GET, params)
    return _broadcast(tuple(rows[0])) if rows else None


@functools.cache
def _list_statement(by_state: bool, by_name: bool, after: bool) -> Select[Any]:
    query = select(*_COLUMNS).where(t.c.merchant_id == bindparam("m"))
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
    return [_broadcast(tuple(r)) for r in _fetch(conn, query, params)]


def start_sending(
    conn: Connection,
    b: Broadcast,
    *,
    total: int,
    excluded: int,
    batches: int,
    estimate: Estimate,
    now: datetime,
    scheduled: bool = False,
) -> Broadcast:
    """The draft (or the `scheduled` broadcast, at its time) becomes SENDING with its
    recipients fixed (or SENT at once when none)."""
    now_us = to_us(now)
    if scheduled:
        transition = Transition.FIRE if batches else Transition.FIRE_EMPTY
    else:
        transition = Transition.SEND if batches else Transition.SEND_EMPTY
    conn.execute(
        _start_statement(transition),
        {
            "b_id": b.id,
            "v_total": total,
            "v_excluded": excluded,
            "v_batches": batches,
            "v_estimate": encode_estimate(estimate),
            "v_now": now_us,
            "v_complete": None if batches else now_us,
        },
    )
    found = get(conn, b.merchant, b.id)
    assert found is not None
    return found


@functools.cache
def _start_statement(transition: Transition) -> Update:
    """start_sending's UPDATE for `transition`, built once (many scheduled broadcasts firing
    together start one after another)."""
    rule = lifecycle.TABLE[transition]
    return (
        update(t)
        .where(t.c.id == bindparam("b_id"), t.c.state.in_([int(s) for s in rule.sources]))
        .values(
            state=int(rule.target),
            total=bindparam("v_total"),
            excluded=bindparam("v_excluded"),
            open_batches=bindparam("v_batches"),
            send_estimate=bindparam("v_estimate"),
            send_time=bindparam("v_now"),
            update_time=bindparam("v_now"),
            complete_time=bindparam("v_complete"),
        )
    )


def schedule(conn: Connection, b: Broadcast, when: datetime, now: datetime) -> Broadcast | None:
    """The draft becomes SCHEDULED for `when`; None if its state does not allow it."""
    return _move(conn, b, Transition.SCHEDULE, now, schedule_time=to_us(when), fire_lease_expiry=0)


def unschedule(conn: Connection, b: Broadcast, now: datetime) -> Broadcast | None:
    """The scheduled broadcast becomes a draft again; None if its state does not allow it."""
    return _move(conn, b, Transition.UNSCHEDULE, now, schedule_time=None)


def _move(
    conn: Connection, b: Broadcast, transition: Transition, now: datetime, **values: Any
) -> Broadcast | None:
    rule = lifecycle.TABLE[transition]
    done = conn.execute(
        update(t)
        .where(t.c.id == b.id, t.c.state.in_([int(s) for s in rule.sources]))
        .values(state=int(rule.target), update_time=to_us(now), **values)
    )
    return get(conn, b.merchant, b.id) if done.rowcount == 1 else None


def save_draft(conn: Connection, b: Broadcast) -> Broadcast:
    """Write a draft's editable fields (only while it is still a draft)."""
    conn.execute(
        update(t)
        .where(t.c.id == b.id, t.c.state == int(BroadcastState.DRAFT))
        .values(
            display_name=b.display_name,
            display_name_folded=b.display_name.casefold(),
            channel_id=b.channel,
            interaction_window=_WINDOW_CODES[b.audience.window],
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
