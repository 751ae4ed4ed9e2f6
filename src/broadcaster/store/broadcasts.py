"""Broadcasts: drafts and their lifecycle columns."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    Select,
    TextClause,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.sql.compiler import SQLCompiler

from broadcaster.domain import lifecycle
from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.broadcasts import (
    Broadcast,
    BroadcastState,
    Counters,
    Estimate,
    ListFilter,
    ListOrder,
    RecipientLimit,
)
from broadcaster.domain.errors import FieldViolation, InvalidArgument
from broadcaster.domain.lifecycle import Transition
from broadcaster.domain.paging import INT64_MAX, Page
from broadcaster.domain.reasons import Reason
from broadcaster.domain.statistics import summary_of
from broadcaster.store import bulk, events
from broadcaster.store.bubbles import decode_messages, encode_messages
from broadcaster.store.clock import from_us, maybe_from_us, to_us
from broadcaster.store.tables import broadcast_statistics as st
from broadcaster.store.tables import broadcasts as t
from broadcaster.store.tables import channels

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


def _encode_limit(limit: RecipientLimit | None) -> int | None:
    """The recipient_limit column: NULL none, 0 the remaining quota, else max_recipients."""
    if limit is None:
        return None
    return 0 if limit.max_recipients is None else limit.max_recipients


def _decode_limit(value: int | None) -> RecipientLimit | None:
    if value is None:
        return None
    return RecipientLimit(value or None)


def encode_estimate(e: Estimate) -> str:
    data = {f: getattr(e, f) for f in Estimate.__dataclass_fields__}
    data["estimate_time"] = to_us(e.estimate_time)
    if e.followers_sync_time is not None:
        data["followers_sync_time"] = to_us(e.followers_sync_time)
    return json.dumps(data)


def _decode_estimate(raw: str | None) -> Estimate | None:
    if raw is None:
        return None
    data = json.loads(raw)
    data["estimate_time"] = from_us(data["estimate_time"])
    if data.get("followers_sync_time") is not None:  # absent from estimates stored before
        data["followers_sync_time"] = from_us(data["followers_sync_time"])
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
    t.c.recipient_limit,
    t.c.left_out_by_limit,
    t.c.schedule_time,
    t.c.notification_disabled,
    # The statistics summary (an outer join: a broadcast not sent has no statistics row).
    st.c.unavailable_reason,
    st.c.fetch_time,
    st.c.unique_impressions,
    st.c.unique_clicks,
)
# Broadcasts with their statistics: a primary-key probe per broadcast read, no query per row.
_FROM = t.outerjoin(st, st.c.broadcast_id == t.c.id)


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
        recipient_limit,
        left_out_by_limit,
        schedule_time,
        notification_disabled,
        unavailable_reason,
        fetch_time,
        unique_impressions,
        unique_clicks,
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
        counters=Counters(total, sent, failed, excluded, left_out_by_limit),
        send_estimate=_decode_estimate(send_estimate),
        failure_reason=failure_reason,
        copied_from=copied_from,
        resend_of=resend_of,
        send_time=maybe_from_us(send_time),
        complete_time=maybe_from_us(complete_time),
        recipient_limit=_decode_limit(recipient_limit),
        schedule_time=maybe_from_us(schedule_time),
        notification_disabled=bool(notification_disabled),
        statistics=summary_of(
            sent,
            unavailable_reason or "",
            unique_impressions,
            unique_clicks,
            maybe_from_us(fetch_time),
        ),
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
            notification_disabled=b.notification_disabled,
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
_GET = (
    select(*_COLUMNS)
    .select_from(_FROM)
    .where(t.c.merchant_id == bindparam("m"), t.c.id == bindparam("id"))
)
_GET_FOR_UPDATE = _GET.with_for_update(of=t)


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


def get_many(
    conn: Connection, keys: Sequence[tuple[str, str]], *, lock: bool = False
) -> list[Broadcast]:
    """The broadcasts (merchant, id) that exist, in id order (the order rows are locked in when
    `lock`, so two callers never wait on each other crosswise): one statement for all."""
    if not keys:
        return []
    ids = sorted({b for _, b in keys})
    query = select(*_COLUMNS).select_from(_FROM).where(t.c.id.in_(ids)).order_by(t.c.id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=t)
    wanted = set(keys)
    found = (_broadcast(tuple(r)) for r in conn.execute(query))
    return [b for b in found if (b.merchant, b.id) in wanted]


# The schedule_time order's key: the schedule time, unscheduled broadcasts last (INT64_MAX
# spelled out, not bound: the expression must read as ix_broadcasts_merchant_schedule's).
_SCHEDULE_KEY: ColumnElement[Any] = func.coalesce(t.c.schedule_time, literal_column(str(INT64_MAX)))

# Each order's key (None: the id alone) and direction. Keys are never NULL, so a page resumes
# after (key, id) with one row-value comparison; ix_broadcasts_merchant_send and _schedule serve
# them.
_ORDERS: dict[ListOrder, tuple[ColumnElement[Any] | None, bool]] = {
    ListOrder.CREATE_TIME_DESC: (None, True),
    # (-1 spelled out, not bound: the expression must read as the index's)
    ListOrder.SEND_TIME_DESC: (func.coalesce(t.c.send_time, literal_column("-1")), True),
    ListOrder.SCHEDULE_TIME_ASC: (_SCHEDULE_KEY, False),
}


@functools.cache
def _list_statement(filters: tuple[bool, ...], order: ListOrder, after: bool) -> Select[Any]:
    by_state, by_name, by_channel, by_type, sent_after, sent_before = filters
    key, descending = _ORDERS[order]
    query = (
        select(*_COLUMNS, key if key is not None else t.c.id)
        .select_from(_FROM)
        .where(t.c.merchant_id == bindparam("m"))
    )
    if by_state:
        query = query.where(t.c.state == bindparam("state"))
    if by_name:
        query = query.where(t.c.display_name_folded.like(bindparam("pattern"), escape="/"))
    if by_channel:
        query = query.where(t.c.channel_id == bindparam("channel"))
    if by_type:
        of_type = select(channels.c.id).where(
            channels.c.merchant_id == bindparam("m"), channels.c.type == bindparam("type")
        )
        query = query.where(t.c.channel_id.in_(of_type))
    if sent_after:
        query = query.where(t.c.send_time >= bindparam("sent_after"))
    if sent_before:
        query = query.where(t.c.send_time < bindparam("sent_before"))
    if key is None:
        if after:
            query = query.where(t.c.id < bindparam("after"))
        return query.order_by(t.c.id.desc()).limit(bindparam("limit"))
    if after:
        resume = tuple_(key, t.c.id)
        mark = tuple_(bindparam("after_key"), bindparam("after"))
        query = query.where(resume < mark if descending else resume > mark)
    if descending:
        return query.order_by(key.desc(), t.c.id.desc()).limit(bindparam("limit"))
    return query.order_by(key.asc(), t.c.id.asc()).limit(bindparam("limit"))


def _like_pattern(text: str) -> str:
    """`%text%` for LIKE … ESCAPE '/', with the text's own wildcards taken literally."""
    escaped = text.casefold().replace("/", "//").replace("%", "/%").replace("_", "/_")
    return f"%{escaped}%"


def _resume(order: ListOrder, after: str) -> dict[str, Any]:
    """The position a page token carries: an id, or `key:id` for an order by time."""
    if _ORDERS[order][0] is None:
        return {"after": after}
    key, _, last = after.partition(":")
    if not (key.lstrip("-").isdigit() and len(key) < 21 and last):
        raise InvalidArgument(
            [FieldViolation("page_token", "is not a token this service issued")],
            reason=Reason.INVALID_PAGE_TOKEN,
        )
    return {"after_key": int(key), "after": last}


def list_page(
    conn: Connection, merchant: str, f: ListFilter, page: Page
) -> list[tuple[Broadcast, str]]:
    """Up to `page.size + 1` broadcasts with each one's page position (for the next token)."""
    filters = (
        f.state is not None,
        bool(f.contains),
        f.channel is not None,
        bool(f.channel_type),
        f.sent_after is not None,
        f.sent_before is not None,
    )
    query = _list_statement(filters, f.order, page.after is not None)
    params: dict[str, Any] = {"m": merchant, "limit": page.size + 1}
    if f.state is not None:
        params["state"] = int(f.state)
    if f.contains:
        params["pattern"] = _like_pattern(f.contains)
    if f.channel is not None:
        params["channel"] = f.channel
    if f.channel_type:
        params["type"] = f.channel_type
    if f.sent_after is not None:
        params["sent_after"] = to_us(f.sent_after)
    if f.sent_before is not None:
        params["sent_before"] = to_us(f.sent_before)
    if page.after is not None:
        params.update(_resume(f.order, page.after))
    ordered = _ORDERS[f.order][0] is not None
    n = len(_COLUMNS)
    return [
        (_broadcast(tuple(r[:n])), f"{r[n]}:{r[1]}" if ordered else r[1])
        for r in _fetch(conn, query, params)
    ]


@dataclass(frozen=True, slots=True)
class Start:
    """A broadcast whose recipients were just fixed, to start (see `start_many`)."""

    broadcast: str
    total: int
    excluded: int
    batches: int
    estimate: Estimate
    limit: RecipientLimit | None = None
    left_out_by_limit: int = 0


def set_trace_parent(conn: Connection, broadcast: str, trace_parent: str) -> None:
    """Keep the W3C traceparent of the traced call that starts (or schedules) the broadcast:
    its batches' spans continue that trace."""
    conn.execute(update(t).where(t.c.id == broadcast).values(trace_parent=trace_parent))


def start_sending(
    conn: Connection,
    b: Broadcast,
    *,
    total: int,
    excluded: int,
    left_out_by_limit: int = 0,
    limit: RecipientLimit | None = None,
    batches: int,
    estimate: Estimate,
    now: datetime,
    scheduled: bool = False,
) -> Broadcast:
    """The draft (or the `scheduled` broadcast, at its time) becomes SENDING with its
    recipients fixed (or SENT at once when none), with its lifecycle event."""
    start = Start(b.id, total, excluded, batches, estimate, limit, left_out_by_limit)
    start_many(conn, [start], now, scheduled=scheduled)
    found = get(conn, b.merchant, b.id)
    assert found is not None
    return found


# Transitions that leave batches to send: the broadcast is not complete yet.
_GOING = frozenset({Transition.SEND, Transition.FIRE})


def start_many(
    conn: Connection, starts: Sequence[Start], now: datetime, *, scheduled: bool = False
) -> None:
    """`start_sending` for many broadcasts (scheduled ones due together): one UPDATE per
    transition, sent as one batch of parameters, and their lifecycle events together."""
    now_us = to_us(now)
    by_transition: dict[Transition, list[Start]] = {}
    for s in starts:
        if scheduled:
            transition = Transition.FIRE if s.batches else Transition.FIRE_EMPTY
        else:
            transition = Transition.SEND if s.batches else Transition.SEND_EMPTY
        by_transition.setdefault(transition, []).append(s)
    for transition, some in by_transition.items():
        rows = [
            [
                s.broadcast,
                s.total,
                s.excluded,
                s.left_out_by_limit,
                _encode_limit(s.limit),
                s.batches,
                encode_estimate(s.estimate),
            ]
            for s in some
        ]
        moved = conn.execute(
            _start_statement(conn, transition),
            {
                "rows": bulk.json_param(rows),
                "now": now_us,
                "complete": None if transition in _GOING else now_us,
            },
        ).all()
        # Their state guards held: each was locked in this transaction in a state they allow.
        events.record_moved(conn, moved, transition, now_us)


def _start_statement(conn: Connection, transition: Transition) -> TextClause:
    """start_many's UPDATE for `transition`: one statement whatever the number of broadcasts,
    their values read from a JSON array (`:rows`)."""
    rule = lifecycle.TABLE[transition]
    sources = ", ".join(str(int(s)) for s in sorted(rule.sources))
    c = [bulk.json_text(conn, i) for i in range(7)]
    return bulk.statement(
        f"UPDATE broadcasts SET state = {int(rule.target)}, total = CAST(s.total AS BIGINT),"
        " excluded = CAST(s.excluded AS BIGINT), left_out_by_limit = CAST(s.left_out AS BIGINT),"
        " recipient_limit = CAST(s.recipient_limit AS BIGINT),"
        " open_batches = CAST(s.batches AS INTEGER), send_estimate = s.estimate,"
        " send_time = :now, update_time = :now, complete_time = :complete"
        f" FROM (SELECT {c[0]} AS id, {c[1]} AS total, {c[2]} AS excluded, {c[3]} AS left_out,"
        f" {c[4]} AS recipient_limit, {c[5]} AS batches, {c[6]} AS estimate"
        f" FROM {bulk.json_table(conn, 'rows')}) s"
        f" WHERE broadcasts.id = s.id AND broadcasts.state IN ({sources})"
        f" {events.moved_returning()}"
    )


def schedule(
    conn: Connection,
    b: Broadcast,
    when: datetime,
    now: datetime,
    limit: RecipientLimit | None = None,
) -> Broadcast | None:
    """The draft becomes SCHEDULED for `when`, to be sent up to `limit`; None if its state does
    not allow it."""
    return _move(
        conn,
        b,
        Transition.SCHEDULE,
        now,
        schedule_time=to_us(when),
        fire_lease_expiry=0,
        recipient_limit=_encode_limit(limit),
    )


def unschedule(conn: Connection, b: Broadcast, now: datetime) -> Broadcast | None:
    """The scheduled broadcast becomes a draft again; None if its state does not allow it."""
    return _move(conn, b, Transition.UNSCHEDULE, now, schedule_time=None, recipient_limit=None)


def _move(
    conn: Connection, b: Broadcast, transition: Transition, now: datetime, **values: Any
) -> Broadcast | None:
    rule = lifecycle.TABLE[transition]
    now_us = to_us(now)
    done = conn.execute(
        update(t)
        .where(t.c.id == b.id, t.c.state.in_([int(s) for s in rule.sources]))
        .values(state=int(rule.target), update_time=now_us, **values)
    )
    if done.rowcount != 1:
        return None
    events.record_transitions(conn, [b.id], transition, now_us)
    return get(conn, b.merchant, b.id)


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
            notification_disabled=b.notification_disabled,
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
