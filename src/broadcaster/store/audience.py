"""Audience counts in one statement per estimate, reading only index ranges (the rules:
docs/architecture.md, "Audience rules").

matched: contacts of the channel meeting the window (and the group); of those, opted out; of the
rest, unreachable (blocked). Expected recipients = matched - opted out - unreachable.

Exclusions are small, so each has its own index range. `matched` is counted directly while the
window holds fewer than CAP contacts (a capped index range), and otherwise as everyone minus the
complement (interacted before the window, or never): whichever side is small, the statement
reads little more than that side.
With a group, the counts read group_contacts (the group's contacts, kept by triggers) instead of
joining every member to the contacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    and_,
    case,
    func,
    literal,
    select,
)

from broadcaster.domain.model import FollowerState
from broadcaster.store.clock import to_us
from broadcaster.store.tables import contacts, group_contacts

CAP = 100_000


@dataclass(frozen=True, slots=True)
class Counts:
    matched: int
    opted_out: int
    unreachable: int


def _count(t: Table, scope: ColumnElement[bool], *conditions: ColumnElement[bool]) -> Select[Any]:
    return select(func.count()).select_from(t).where(scope, *conditions)


def _capped(
    t: Table, scope: ColumnElement[bool], condition: ColumnElement[bool], cap: int
) -> Select[Any]:
    rows = select(literal(1).label("one")).select_from(t).where(scope, condition).limit(cap)
    return select(func.count()).select_from(rows.subquery())


def count(
    conn: Connection,
    merchant: str,
    channel: str,
    since: datetime | None,
    group: str | None,
    cap: int = CAP,
) -> Counts:
    """`since`: earliest last interaction, None for all contacts; `group`: group id.
    `cap` is CAP except in tests, which lower it to take the complement path."""
    since_us = None if since is None else to_us(since)
    t = contacts if group is None else group_contacts
    scope = (
        and_(t.c.merchant_id == merchant, t.c.channel_id == channel)
        if group is None
        else and_(t.c.group_id == group, t.c.channel_id == channel)
    )
    last = t.c.last_interaction_time
    in_window = [] if since_us is None else [last >= since_us]
    everyone = _count(t, scope).scalar_subquery()
    matched: ColumnElement[Any]
    if since_us is None:
        matched = everyone
    else:
        # Subqueries in CASE branches run only when their branch is taken, on both databases.
        direct = _capped(t, scope, last >= since_us, cap).scalar_subquery()
        before = _count(t, scope, last < since_us).scalar_subquery()
        never = _count(t, scope, last.is_(None)).scalar_subquery()
        matched = case((direct < cap, direct), else_=everyone - before - never)
    opted = _count(t, scope, t.c.opted_out.is_(True), *in_window).scalar_subquery()
    blocked = _count(
        t,
        scope,
        t.c.follower_state == int(FollowerState.BLOCKED),
        t.c.opted_out.is_(False),
        *in_window,
    ).scalar_subquery()
    total, opted_out, unreachable = conn.execute(select(matched, opted, blocked)).one()
    return Counts(int(total), int(opted_out), int(unreachable))
