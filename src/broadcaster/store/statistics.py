"""Broadcast statistics at rest: the row written when a broadcast's first batch is accepted,
the collector's claims and pacing, the figures as last read, and the reads of the API.

A claim is one transaction of two statements. The first takes the channels whose pace allows a
read now and that have a broadcast due (`statistics_pacing.next_time`, moved one `step` on:
the channel's ceiling holds across replicas, each claim being one read); on PostgreSQL with
`FOR UPDATE SKIP LOCKED`, so replicas claiming at once take different channels, and on SQLite
the one writer serialises claims. The second leases the most overdue due broadcast of each of
those channels. A claim moves the broadcast's `next_fetch_time` to its lease's expiry: a replica
that dies holding it leaves it to come due again then, and nothing else needs sweeping.

Per-bubble and per-URL figures are JSON (`details`): lists of objects whose absent or null
figures are withheld ones; the summary figures have columns of their own for lists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text

from broadcaster.domain.reasons import Reason
from broadcaster.domain.statistics import (
    BubbleStatistics,
    ChannelStatistics,
    Statistics,
    UrlStatistics,
    whole_reason,
)
from broadcaster.store import bulk
from broadcaster.store.clock import from_us, maybe_from_us, to_us


@dataclass(frozen=True, slots=True)
class Tag:
    """What an accepted batch says of its broadcast's statistics: the unit it was counted
    under ("" when its channel keeps none), why it went out without it ("" when it did not),
    when the figures are first read, the pace of reads of its channel (µs apart), and whether
    it is the first of its broadcast the sending run had accepted (`first`: the broadcast's
    row is written if it is not there yet, as by its batch 0 or its completion; else a
    broadcast whose batch 0 was not accepted and that never completes, failing, would have
    none, and its figures would never be read)."""

    unit: str = ""
    unavailable: str = ""
    first_fetch: datetime | None = None
    step_us: int = 0
    first: bool = False


@dataclass(frozen=True, slots=True)
class Noted:
    """Accepted batches of one broadcast, recorded together (`noted`): what they said of its
    statistics, and whether they hold its first accepted batch or it just completed (`first`)."""

    broadcast: str
    channel: str
    tags: Sequence[Tag]
    first: bool


def noted(conn: Connection, accepted: Sequence[Noted], now: datetime) -> None:
    """Accepted batches of these broadcasts were recorded: each one's statistics row is written
    once (when `first`), and a reason a batch went out without the unit is kept, the first
    one, ending the collection (the figures would count only some of its recipients); the
    pace of reads of each channel reporting is set. Two statements for every broadcast of a
    group commit together (a group of thirty-two channels' first batches had taken 64), none
    when nothing applies. Rows are written in key order, as concurrent group commits then lock
    them in the same order."""
    rows: list[list[Any]] = []
    pacing: dict[str, int] = {}
    for a in accepted:
        reason = next((t.unavailable for t in a.tags if t.unavailable), "")
        if not (a.first or reason):
            continue
        tag = a.tags[0]
        reporting = bool(tag.unit)
        stored_reason = reason or ("" if reporting else Reason.STATISTICS_NOT_SUPPORTED)
        due = tag.first_fetch if reporting and not stored_reason else None
        rows.append(
            [a.broadcast, a.channel, tag.unit, stored_reason, None if due is None else to_us(due)]
        )
        if due is not None:
            pacing[a.channel] = max(1, tag.step_us)
    if rows:
        rows.sort()
        c = [bulk.json_text(conn, i) for i in range(5)]
        conn.execute(
            bulk.statement(
                "INSERT INTO broadcast_statistics (broadcast_id, channel_id, unit,"
                f" unavailable_reason, send_time, next_fetch_time) SELECT {c[0]}, {c[1]}, {c[2]},"
                f" {c[3]}, :now, CAST({c[4]} AS BIGINT) FROM {bulk.json_table(conn, 'rows')}"
                " WHERE true ON CONFLICT (broadcast_id) DO UPDATE"
                " SET unavailable_reason = excluded.unavailable_reason, next_fetch_time = NULL,"
                " lease_owner = '', lease_expiry = 0"
                " WHERE broadcast_statistics.unavailable_reason = ''"
                " AND excluded.unavailable_reason <> ''"
            ),
            {"rows": bulk.json_param(rows), "now": to_us(now)},
        )
    if pacing:
        c = [bulk.json_text(conn, i) for i in range(2)]
        conn.execute(
            bulk.statement(
                "INSERT INTO statistics_pacing (channel_id, next_time, step)"
                f" SELECT {c[0]}, 0, CAST({c[1]} AS BIGINT) FROM {bulk.json_table(conn, 'rows')}"
                " WHERE true ON CONFLICT (channel_id) DO UPDATE SET step = excluded.step"
                " WHERE statistics_pacing.step <> excluded.step"
            ),
            {"rows": bulk.json_param(sorted([ch, step] for ch, step in pacing.items()))},
        )


@dataclass(frozen=True, slots=True)
class Claimed:
    broadcast: str
    channel: str
    unit: str
    send_time: datetime
    failures: int


def claim(
    conn: Connection, *, owner: str, now: datetime, lease_until: datetime, limit: int
) -> list[Claimed]:
    """Up to `limit` due broadcasts, at most one per channel whose pace allows a read now;
    each channel's next read moves one step on."""
    now_us, until_us = to_us(now), to_us(lease_until)
    lock = " FOR UPDATE SKIP LOCKED" if conn.dialect.name == "postgresql" else ""
    # The channels are chosen once, in a CTE: as a plain `IN (subquery)`, PostgreSQL may run a
    # locking subquery again for each row it updates, skipping the rows the runs before it
    # locked, and so take every due channel whatever the limit.
    channels = [
        str(r[0])
        for r in conn.execute(
            text(
                "WITH due AS (SELECT p.channel_id FROM statistics_pacing p"
                " WHERE p.next_time <= :now AND EXISTS (SELECT 1 FROM broadcast_statistics s"
                " WHERE s.channel_id = p.channel_id AND s.next_fetch_time <= :now)"
                f" ORDER BY p.next_time LIMIT :limit{lock})"
                " UPDATE statistics_pacing SET next_time = :now + step"
                " WHERE channel_id IN (SELECT channel_id FROM due) RETURNING channel_id"
            ),
            {"now": now_us, "limit": limit},
        )
    ]
    if not channels:
        return []
    rows = conn.execute(
        text(
            "UPDATE broadcast_statistics SET lease_owner = :o, lease_expiry = :until,"
            " next_fetch_time = :until WHERE broadcast_id IN ("
            "SELECT (SELECT s.broadcast_id FROM broadcast_statistics s"
            " WHERE s.channel_id = p.channel_id AND s.next_fetch_time <= :now"
            " ORDER BY s.next_fetch_time LIMIT 1)"
            " FROM statistics_pacing p WHERE p.channel_id IN :chs)"
            " RETURNING broadcast_id, channel_id, unit, send_time, failures"
        ).bindparams(bindparam("chs", expanding=True)),
        {"o": owner, "until": until_us, "now": now_us, "chs": channels},
    ).all()
    return [
        Claimed(str(r[0]), str(r[1]), str(r[2]), from_us(int(r[3])), int(r[4]))
        for r in sorted(rows, key=lambda r: str(r[0]))
    ]


def next_due(conn: Connection) -> datetime | None:
    """When a claim may next find work: per channel, its earliest due broadcast or its next
    allowed read, whichever is later; the earliest of those. None when nothing is to be read.
    One probe of ix_broadcast_statistics_due per channel with statistics."""
    row = conn.execute(
        text(
            "SELECT MIN(CASE WHEN p.next_time > d.due THEN p.next_time ELSE d.due END) FROM ("
            "SELECT p.channel_id, (SELECT MIN(s.next_fetch_time) FROM broadcast_statistics s"
            " WHERE s.channel_id = p.channel_id AND s.next_fetch_time IS NOT NULL) AS due"
            " FROM statistics_pacing p) d JOIN statistics_pacing p ON p.channel_id = d.channel_id"
            " WHERE d.due IS NOT NULL"
        )
    ).scalar()
    return None if row is None else from_us(int(row))


def encode_details(f: ChannelStatistics) -> str:
    def clean(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if v is not None}

    return json.dumps(
        {
            "bubbles": [
                clean(
                    {
                        "seq": b.seq,
                        "impressions": b.impressions,
                        "media_plays": b.media_plays,
                        "unique_media_plays": b.unique_media_plays,
                        "completed": b.unique_media_plays_completed,
                    }
                )
                for b in f.bubbles
            ],
            "urls": [
                clean(
                    {
                        "seq": u.seq,
                        "url": u.url,
                        "clicks": u.clicks,
                        "unique_clicks": u.unique_clicks,
                    }
                )
                for u in f.urls
            ],
        },
        separators=(",", ":"),
    )


def decode_details(
    raw: str | None,
) -> tuple[tuple[BubbleStatistics, ...], tuple[UrlStatistics, ...]]:
    if not raw:
        return (), ()
    d = json.loads(raw)
    bubbles = tuple(
        BubbleStatistics(
            seq=b["seq"],
            impressions=b.get("impressions"),
            media_plays=b.get("media_plays"),
            unique_media_plays=b.get("unique_media_plays"),
            unique_media_plays_completed=b.get("completed"),
        )
        for b in d.get("bubbles", ())
    )
    urls = tuple(
        UrlStatistics(
            seq=u["seq"],
            url=u["url"],
            clicks=u.get("clicks"),
            unique_clicks=u.get("unique_clicks"),
        )
        for u in d.get("urls", ())
    )
    return bubbles, urls


# The reads of a broadcast end: one that never had figures says why (none will come).
_ENDED = (
    f"unavailable_reason = CASE WHEN fetch_time IS NULL AND unavailable_reason = ''"
    f" THEN '{Reason.STATISTICS_NOT_COLLECTED}' ELSE unavailable_reason END"
)


def record_figures(
    conn: Connection,
    c: Claimed,
    owner: str,
    figures: ChannelStatistics | None,
    now: datetime,
    next_fetch: datetime | None,
) -> bool:
    """A read under `owner`'s claim: the figures (None: the channel has none yet; those read
    before stay) and when to read next (None: no more; a broadcast that never had figures is
    then STATISTICS_NOT_COLLECTED). False if the claim was lost."""
    values: dict[str, Any] = {
        "b": c.broadcast,
        "o": owner,
        "next": None if next_fetch is None else to_us(next_fetch),
    }
    sets = "next_fetch_time = :next, lease_owner = '', lease_expiry = 0, failures = 0"
    if figures is not None:
        sets += (
            ", fetch_time = :now, unique_impressions = :imp, unique_clicks = :clk,"
            " unique_media_plays = :mp, details = :details"
        )
        values |= {
            "now": to_us(now),
            "imp": figures.unique_impressions,
            "clk": figures.unique_clicks,
            "mp": figures.unique_media_plays,
            "details": encode_details(figures),
        }
    elif next_fetch is None:
        sets += ", " + _ENDED
    done = conn.execute(
        text(
            f"UPDATE broadcast_statistics SET {sets} WHERE broadcast_id = :b AND lease_owner = :o"
        ),
        values,
    ).rowcount
    return bool(done)


def record_failure(
    conn: Connection,
    c: Claimed,
    owner: str,
    retry_at: datetime,
    *,
    pause_channel: bool,
    give_up: bool = False,
) -> bool:
    """A read failed: try again at `retry_at`, or never (`give_up`: the figures read before
    stay, and a broadcast without any is STATISTICS_NOT_COLLECTED); `pause_channel`: the
    channel is unreachable or refuses reads for now, so none of its broadcasts is read before
    `retry_at` either."""
    then = f"NULL, {_ENDED}" if give_up else ":at"
    done = conn.execute(
        text(
            f"UPDATE broadcast_statistics SET next_fetch_time = {then}, lease_owner = '',"
            " lease_expiry = 0, failures = failures + 1"
            " WHERE broadcast_id = :b AND lease_owner = :o"
        ),
        {"b": c.broadcast, "o": owner, "at": to_us(retry_at)},
    ).rowcount
    if pause_channel:
        conn.execute(
            text(
                "UPDATE statistics_pacing SET next_time = :at"
                " WHERE channel_id = :ch AND next_time < :at"
            ),
            {"ch": c.channel, "at": to_us(retry_at)},
        )
    return bool(done)


def stop(conn: Connection, c: Claimed, owner: str) -> None:
    """No more reads of this broadcast (its channel is gone or no longer reports them): the
    figures read before stay, and one without any is STATISTICS_NOT_COLLECTED."""
    conn.execute(
        text(
            "UPDATE broadcast_statistics SET next_fetch_time = NULL, lease_owner = '',"
            f" lease_expiry = 0, {_ENDED} WHERE broadcast_id = :b AND lease_owner = :o"
        ),
        {"b": c.broadcast, "o": owner},
    )


def release(conn: Connection, claims: Sequence[Claimed], owner: str, now: datetime) -> None:
    """This replica stops: its claims not yet read are due again now, for another replica."""
    if not claims:
        return
    conn.execute(
        text(
            "UPDATE broadcast_statistics SET next_fetch_time = :now, lease_owner = '',"
            " lease_expiry = 0 WHERE broadcast_id IN :b AND lease_owner = :o"
        ).bindparams(bindparam("b", expanding=True)),
        {"b": [c.broadcast for c in claims], "o": owner, "now": to_us(now)},
    )


_GET = (
    "SELECT br.sent, s.unavailable_reason, s.fetch_time, s.unique_impressions,"
    " s.unique_clicks, s.unique_media_plays, s.details"
    " FROM broadcasts br LEFT JOIN broadcast_statistics s ON s.broadcast_id = br.id"
    " WHERE br.merchant_id = :m AND br.id = :b"
)


def get(conn: Connection, merchant: str, broadcast: str) -> Statistics | None:
    """The broadcast's statistics as last read; None when the merchant has no such broadcast."""
    row = conn.execute(text(_GET), {"m": merchant, "b": broadcast}).first()
    if row is None:
        return None
    sent, stored, fetched, imp, clk, plays, details = row
    figures = None
    if fetched is not None:
        bubbles, urls = decode_details(details)
        figures = ChannelStatistics(imp, clk, plays, bubbles, urls)
    return Statistics(
        delivered=int(sent),
        figures=figures,
        fetch_time=maybe_from_us(fetched),
        unavailable_reason=whole_reason(stored or "", figures),
    )
