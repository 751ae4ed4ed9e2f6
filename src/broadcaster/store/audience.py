"""Audience counts in one statement per estimate (the rules: docs/architecture.md, "Audience
rules").

matched: contacts of the channel meeting the window (and the group); of those, opted out; of the
rest, unreachable (blocked). Expected recipients = matched - opted out - unreachable.

audience_counts holds, per channel (and per customer group on a channel), how many contacts last
interacted on each day, kept by triggers on contacts and group_contacts. A count adds up the
window's whole days there (a few hundred rows for a year) and reads only the window's first,
partial day from the covering index of contacts (or group_contacts): its cost no longer grows
with the channel, whatever the window.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, and_, bindparam, case, func, select, true

from broadcaster.domain.model import FollowerState
from broadcaster.store.broadcasts import _fetch
from broadcaster.store.clock import to_us
from broadcaster.store.tables import audience_counts, contacts, group_contacts

DAY_US = 86_400_000_000  # audience_counts.day is last_interaction_time // DAY_US


@dataclass(frozen=True, slots=True)
class Counts:
    matched: int
    opted_out: int
    unreachable: int


def _sum(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(column), 0)


@functools.cache
def _statement(by_group: bool, windowed: bool) -> Select[Any]:
    """Built once (building a statement costs more than running it); see store.broadcasts."""
    a = audience_counts
    days = [a.c.channel_id == bindparam("ch"), a.c.group_id == bindparam("g")]
    if windowed:
        days.append(a.c.day >= bindparam("first_day"))
    counted = select(
        _sum(a.c.contacts).label("n"), _sum(a.c.opted_out).label("o"), _sum(a.c.blocked).label("b")
    ).where(*days)
    if not windowed:
        return counted
    # The rest of the window: from `since` to the end of its day, read from the index.
    t = group_contacts if by_group else contacts
    scope = (
        and_(t.c.group_id == bindparam("g"), t.c.channel_id == bindparam("ch"))
        if by_group
        else and_(t.c.merchant_id == bindparam("m"), t.c.channel_id == bindparam("ch"))
    )
    last = t.c.last_interaction_time
    blocked = and_(t.c.follower_state == int(FollowerState.BLOCKED), t.c.opted_out.is_(False))
    partial = select(
        func.count().label("n"),
        _sum(case((t.c.opted_out.is_(True), 1), else_=0)).label("o"),
        _sum(case((blocked, 1), else_=0)).label("b"),
    ).where(scope, last >= bindparam("since"), last < bindparam("until"))
    whole, part = counted.subquery(), partial.subquery()
    return select(whole.c.n + part.c.n, whole.c.o + part.c.o, whole.c.b + part.c.b).select_from(
        whole.join(part, true())
    )


def count(
    conn: Connection, merchant: str, channel: str, since: datetime | None, group: str | None
) -> Counts:
    """`since`: earliest last interaction, None for all contacts; `group`: group id."""
    params: dict[str, Any] = {"ch": channel, "g": group or ""}
    if group is None:
        params["m"] = merchant
    if since is not None:
        since_us = to_us(since)
        first_whole_day = since_us // DAY_US + 1
        params.update(first_day=first_whole_day, since=since_us, until=first_whole_day * DAY_US)
    statement = _statement(group is not None, since is not None)
    n, o, b = _fetch(conn, statement, params)[0]
    return Counts(int(n), int(o), int(b))
