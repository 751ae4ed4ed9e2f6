"""The recipient snapshot ("Snapshot first" in docs/architecture.md): when Send is accepted,
the audience's reachable contacts are numbered and split into batches, each batch written with
its recipients (store.batch_recipients) in one set-based statement; nothing is sent before this
commits. A broadcast of 100,000 recipients writes 200 rows.

Recipients come from the authoritative join of contacts and group members (not the derived
group_contacts table), and are numbered by contact id so the batches are stable.

With a recipient limit (`cap`), they are numbered instead by most recent interaction (never
interacted last), ties by contact id, in the same statement: the first `cap` are the recipients
(in batches) and the rest are written as NOT_SENT_LIMIT deliveries, after them and in no batch,
so ListDeliveries names them and a resend (unsent_only) goes to them like to any other
recipient never attempted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from broadcaster.domain.deliveries import UNREACHED, DeliveryOutcome
from broadcaster.domain.model import FollowerState
from broadcaster.store import audience, batch_recipients, bulk
from broadcaster.store.audience import Counts
from broadcaster.store.clock import to_us

SORT_MEMORY = "32MB"  # PostgreSQL's work_mem for a large snapshot's transaction
# Past this many recipients a snapshot's numbering and grouping outgrow PostgreSQL's default
# work_mem (4 MB, about 60 bytes a recipient) and are given SORT_MEMORY; smaller ones, most
# broadcasts, spare the statement that sets it.
SORT_SPILL = 50_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    recipients: int
    opted_out: int  # matched but left out: opted out
    unreachable: int  # matched but left out: blocked the account
    batches: int
    left_out_by_limit: int = 0  # reachable, but past the recipient limit


def _source(since: int | None, group: str | None, resend_of: str | None) -> str:
    """FROM … WHERE … of the audience's contacts (as `c`)."""
    if resend_of is not None:
        # A resend: the recipients the source broadcast did not reach, as they are now, and
        # only those still contacts of this broadcast's channel (a resend cannot change channel,
        # but the snapshot does not rely on that). Driven from the source's deliveries, joining
        # contacts by key: a planner without statistics for a fresh deliveries table otherwise
        # scans the channel's contacts once per delivery.
        unreached = ", ".join(str(int(o)) for o in UNREACHED)
        return (
            "FROM deliveries d JOIN contacts c ON c.id = d.contact_id"
            f" WHERE d.broadcast_id = :source AND d.outcome IN ({unreached}) AND d.outcome <> 0"
            " AND c.merchant_id = :m AND c.channel_id = :ch"
        )
    where = "c.merchant_id = :m AND c.channel_id = :ch"
    if since is not None:
        where += " AND c.last_interaction_time >= :since"
    if group is not None:
        where += (
            " AND c.customer_id IN"
            " (SELECT g.customer_id FROM customer_group_members g WHERE g.group_id = :group)"
        )
    return f"FROM contacts c WHERE {where}"


def _count(conn: Connection, source: str, params: Mapping[str, object]) -> Counts:
    blocked = int(FollowerState.BLOCKED)
    matched, opted_out, unreachable = conn.execute(
        bulk.statement(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN c.opted_out THEN 1 ELSE 0 END), 0),"
            f" COALESCE(SUM(CASE WHEN NOT c.opted_out AND c.follower_state = {blocked}"
            f" THEN 1 ELSE 0 END), 0) {source}"
        ),
        params,
    ).one()
    return Counts(int(matched), int(opted_out), int(unreachable))


def count_resend(conn: Connection, merchant: str, channel: str, source: str) -> Counts:
    """A resend's audience as the snapshot will see it: the contacts of `channel` the source
    broadcast did not reach, as they are now."""
    params = {"source": source, "m": merchant, "ch": channel}
    return _count(conn, _source(None, None, source), params)


def take(
    conn: Connection,
    *,
    merchant: str,
    channel: str,
    broadcast: str,
    since: datetime | None,
    group: str | None,
    batch_size: int,
    now: datetime,
    resend_of: str | None = None,
    cap: int | None = None,
    prepared: Prepared | None = None,
) -> Snapshot:
    """Write the batches of `broadcast`, each with its recipients; returns what was fixed. A
    resend (`resend_of`) goes to the source's unreached recipients instead of the audience;
    `cap` (a recipient limit) takes at most that many, most recent interaction first.
    `prepared`: the recipients as `prepare` numbered them, used if it was made for this very
    audience and batch size (else they are numbered here)."""
    since_us = None if since is None else to_us(since)
    if (
        prepared is not None
        and resend_of is None
        and cap is None
        and prepared.made_for == (merchant, channel, since_us, group, batch_size)
    ):
        return _write_prepared(conn, broadcast, prepared, to_us(now))
    params = {
        "m": merchant,
        "ch": channel,
        "since": since_us,
        "group": group,
        "b": broadcast,
        "source": resend_of,
        "size": batch_size,
        "cap": cap,
    }
    counted, reachable = _audience(conn, params, since, group, resend_of)
    if conn.dialect.name == "sqlite":
        ordered = (
            "SELECT c.id, c.external_id, c.has_conversation"
            f" {reachable} ORDER BY {_order(cap is not None)}"
        )
        _write_in_order(conn, ordered, cap is not None, params, to_us(now))
    else:
        numbered = (
            "SELECT CAST(:b AS VARCHAR) AS b, CAST(:ch AS VARCHAR) AS ch,"
            " CAST(:size AS BIGINT) AS size, CAST(:cap AS BIGINT) AS cap,"
            " row_number() OVER w - 1 AS n,"
            " (row_number() OVER w - 1) / CAST(:size AS BIGINT) AS k,"
            f" c.id AS id, c.external_id AS external_id, c.has_conversation AS talked {reachable}"
            f" WINDOW w AS (ORDER BY {_order(cap is not None)})"
        )
        written = _write(
            conn, numbered, _ONE_TARGET, cap is not None, params, to_us(now), _reachable(counted)
        )
        if written is not None:  # the batches the statement wrote, as it returned them
            batches, total = written
            return Snapshot(total, counted.opted_out, counted.unreachable, batches)
    capped = [broadcast] if cap is not None else []
    return _fixed(conn, [broadcast], {broadcast: counted}, capped)[broadcast]


def _audience(
    conn: Connection,
    params: Mapping[str, object],
    since: datetime | None,
    group: str | None,
    resend_of: str | None,
) -> tuple[Counts, str]:
    """The audience of a snapshot counted, and the FROM … WHERE … of its reachable contacts
    (as `c`); `params` holds its m, ch, since (µs), group and source."""
    source = _source(None if since is None else to_us(since), group, resend_of)
    if resend_of is None and group is None:
        # The channel's counts, kept by triggers in the transactions that change its contacts
        # (store.audience): a few hundred rows read rather than every contact's row. The
        # snapshot of 1,000,000 contacts took 0.68-0.70 s instead of 0.80-0.81 on SQLite, and
        # 1.20-1.21 s instead of 1.31-1.34 on PostgreSQL. (A customer group's counts there are
        # of the derived group_contacts: a group's audience is counted from its members.)
        counted = audience.count(conn, str(params["m"]), str(params["ch"]), since, None)
    else:
        counted = _count(conn, source, params)
    blocked = int(FollowerState.BLOCKED)
    return counted, f"{source} AND NOT c.opted_out AND c.follower_state <> {blocked}"


# SQLite: a Send's recipients numbered and batched ahead of the transaction that writes them.
#
# That transaction holds the one writer, and every channel's claims and recordings wait for
# it: numbering 100,000 recipients and building their batches' arrays kept it 0.11 s a Send
# while eight channels sent (0.06 s alone). A reader does that part instead, beside the
# writer (a read sees the database as of its start, and SQLite lets a reading connection write
# its own temporary tables); the writer only inserts the batches' rows (4 ms for 100,000).
#
# The recipients are then those of a moment before the Send's transaction. A contact that
# opts out, blocks the account or leaves the group in between is still sent to, as if the
# change had come just after the Send: the transactions that change contacts and groups read
# no batch, so the outcome is one a Send made at that moment would have had. Who had a
# conversation may be out of date too, which recording corrects (store.events).
#
# Only a plain audience is prepared: a recipient limit writes the recipients past it as rows
# of their own, and a resend's audience is another broadcast's deliveries.


@dataclass(frozen=True, slots=True)
class Prepared:
    """A Send's recipients numbered and batched by `prepare`, for `take` to write."""

    made_for: tuple[str, str, int | None, str | None, int]  # merchant, channel, since, group, size
    counted: Counts
    # Each batch: (number, contact ids, external ids, talked), the arrays as stored.
    batches: tuple[tuple[int, str, str, str | None], ...]


def prepares(dialect: str) -> bool:
    """Whether a Send's snapshot is prepared by a reader on this database (`prepare`)."""
    return dialect == "sqlite"


def prepare(
    conn: Connection,
    *,
    merchant: str,
    channel: str,
    since: datetime | None,
    group: str | None,
    batch_size: int,
) -> Prepared:
    """In a read transaction: the audience's reachable contacts numbered and batched as `take`
    would, for `take` to write (SQLite)."""
    since_us = None if since is None else to_us(since)
    params = {
        "m": merchant,
        "ch": channel,
        "since": since_us,
        "group": group,
        "b": "",
        "source": None,
        "size": batch_size,
        "cap": None,
    }
    counted, reachable = _audience(conn, params, since, group, None)
    ordered = f"SELECT c.id, c.external_id, c.has_conversation {reachable} ORDER BY {_order(False)}"
    _number(conn, ordered, params)
    found = conn.execute(bulk.statement(_NUMBERED_BATCHES), params).all()
    # The pages of the numbering and of the contacts read go back: this connection is one of
    # the pool's readers, and each Send read on another would otherwise keep its own (peak RSS
    # of eight Sends of 100,000 at once: 360-366 MB against 396-403).
    conn.exec_driver_sql(f"DELETE FROM {_NUMBERED}")
    conn.exec_driver_sql("PRAGMA shrink_memory")
    return Prepared(
        made_for=(merchant, channel, since_us, group, batch_size),
        counted=counted,
        batches=tuple((int(v), ids, externals, talked) for _, v, ids, externals, talked in found),
    )


def _write_prepared(conn: Connection, broadcast: str, prepared: Prepared, now_us: int) -> Snapshot:
    """`take` of a prepared snapshot: its batches' rows inserted, nothing read again."""
    if prepared.batches:
        conn.execute(
            text(
                "INSERT INTO batch_recipients (broadcast_id, batch, contact_ids, external_ids,"
                " talked) VALUES (:b, :v, :ids, :externals, :talked)"
            ),
            [
                {"b": broadcast, "v": v, "ids": ids, "externals": externals, "talked": talked}
                for v, ids, externals, talked in prepared.batches
            ],
        )
        size = prepared.made_for[4]
        conn.execute(
            bulk.statement(_batches_made(_ONE_TARGET)),
            {"b": broadcast, "ch": prepared.made_for[1], "size": size, "now": now_us},
        )
    return _fixed(conn, [broadcast], {broadcast: prepared.counted}, [])[broadcast]


def _reachable(counted: Counts) -> int:
    """How many of an audience counted the snapshot numbers (before any recipient limit)."""
    return counted.matched - counted.opted_out - counted.unreachable


def _order(capped: bool) -> str:
    """The order recipients are numbered in: by contact id, or with a limit by most recent
    interaction (never interacted last), ties by contact id."""
    return "c.last_interaction_time DESC NULLS LAST, c.id" if capped else "c.id"


# A batch's own columns, as the snapshot writes them (and on PostgreSQL its arrays after them).
_BATCH_COLUMNS = (
    "broadcast_id, batch, channel_id, idempotency_key, first_seq, size, state, attempts,"
    " due_time, first_attempt_time, lease_owner, lease_expiry"
)
# The one broadcast of a Send's snapshot as `_write`'s table of targets.
_ONE_TARGET = "(SELECT CAST(:b AS VARCHAR) AS b, CAST(:ch AS VARCHAR) AS ch, :size AS size) s"


def _write(
    conn: Connection,
    numbered: str,
    targets: str,
    capped: bool,
    params: Mapping[str, object],
    now_us: int,
    reachable: int,
) -> tuple[int, int] | None:
    """Write the batches of the recipients `numbered` selects (b, ch, size, cap, n, id,
    external_id, talked: `n` numbers each broadcast's from 0; for the one broadcast of a Send,
    `_ONE_TARGET`, also `k`, the batch it falls in; `targets`, the broadcasts as a table `s` of
    (b, ch, size)), each batch with its recipients
    (batch k holds n in [k*size, (k+1)*size)), those of them who had a conversation and a fresh
    idempotency key; those numbered past `cap` become NOT_SENT_LIMIT deliveries, after the last
    batch and in none. One statement on PostgreSQL (the numbering is read once); on SQLite
    (broadcasts fired together: a Send's is `_write_in_order`), whose one writer keeps the
    contacts still between them, up to three: the recipients go to rows of their own
    (store.batch_recipients), then the batches are made from those.

    `reachable`: how many the audiences counted reachable (the sort's size, SORT_SPILL).

    Returns (batches, recipients) as written for a Send's snapshot on PostgreSQL without a
    limit, which its statement returns; None otherwise (`_fixed` reads them back)."""
    dialect = conn.dialect.name
    if dialect == "postgresql" and reachable > SORT_SPILL:
        # Numbering and grouping 100,000 recipients sorts about 6 MB: past the default
        # work_mem (4 MB) both spill to disk (EXPLAIN ANALYZE: "external merge"); in memory the
        # snapshot of 100,000 takes 0.12 s instead of 0.15. For this transaction only.
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{SORT_MEMORY}'")
    arrays = (
        f"{batch_recipients.aggregate(dialect, 'r.id')},"
        f" {batch_recipients.aggregate(dialect, 'r.external_id')},"
        f" {batch_recipients.talked(dialect)}"
    )
    kept = " WHERE r.n < r.cap" if capped else ""
    if dialect == "postgresql":
        if targets is _ONE_TARGET:
            # Grouped by the batch alone, a number the numbering computed: PostgreSQL hashes
            # the rows into their batches as they come, in order (or, for a small estimate,
            # sorts them by that number, finding them in order already). Grouped by
            # (broadcast, channel, size, batch) it sorted them first, comparing the two strings
            # of every row: 100,000 recipients took 190 ms instead of 120, 1,000,000 took
            # 2.0-2.3 s instead of 1.4-1.7.
            b, k, ch, size = "CAST(:b AS VARCHAR)", "r.k", "CAST(:ch AS VARCHAR)", ":size"
            group = "r.k"
        else:
            # Broadcasts fired together: their rows come ordered by broadcast, then number,
            # and are sorted by both (a sort that finds them in order keeps it).
            b, k, ch, size = "r.b", "r.n / r.size", "r.ch", "r.size"
            group = f"r.b, r.ch, r.size, {k}"
        batches = (
            f"INSERT INTO batches ({_BATCH_COLUMNS}, contact_ids, external_ids, talked)"
            f" SELECT {b}, {k}, {ch}, {batch_recipients.new_key(dialect)},"
            f" {k} * CAST({size} AS BIGINT), COUNT(*), {batch_recipients.OPEN}, 0, :now, NULL,"
            f" '', 0, {arrays} FROM {{r}} r{kept} GROUP BY {group}"
        )
    else:
        recipients = (
            "INSERT INTO batch_recipients (broadcast_id, batch, contact_ids, external_ids, talked)"
            f" SELECT r.b, r.n / r.size, {arrays} FROM {{r}} r{kept} GROUP BY r.b, r.n / r.size"
        )
        made = _batches_made(targets)
    left_out = (
        "INSERT INTO deliveries (broadcast_id, seq, contact_id, external_id, outcome, reason)"
        f" SELECT r.b, r.n, r.id, r.external_id, {int(DeliveryOutcome.NOT_SENT_LIMIT)}, ''"
        " FROM {r} r WHERE r.n >= r.cap"
    )
    args = {**params, "now": now_us}
    if dialect == "postgresql":
        statement = batches.format(r=f"({numbered})")
        if capped:
            statement = (
                f"WITH r AS ({numbered}), left_out AS ({left_out.format(r='r')})"
                f" {batches.format(r='r')}"
            )
        elif targets is _ONE_TARGET:
            # What it wrote comes back from the statement itself, not read back by another.
            wrote = conn.execute(
                bulk.statement(
                    f"WITH made AS ({statement} RETURNING size)"
                    " SELECT COUNT(*), COALESCE(SUM(made.size), 0) FROM made"
                ),
                args,
            ).one()
            return int(wrote[0]), int(wrote[1])
        conn.execute(bulk.statement(statement), args)
        return None
    if capped:
        conn.execute(bulk.statement(left_out.format(r=f"({numbered})")), args)
    conn.execute(bulk.statement(recipients.format(r=f"({numbered})")), args)
    conn.execute(bulk.statement(made), args)
    return None


def _batches_made(targets: str) -> str:
    """SQLite: INSERT the batches of the broadcasts `targets` (a table `s` of (b, ch, size))
    from their rows of `batch_recipients`."""
    return (
        f"INSERT INTO batches ({_BATCH_COLUMNS})"
        f" SELECT a.broadcast_id, a.batch, s.ch, {batch_recipients.new_key('sqlite')},"
        f" a.batch * s.size, json_array_length(a.contact_ids), {batch_recipients.OPEN}, 0,"
        f" :now, NULL, '', 0 FROM {targets} JOIN batch_recipients a ON a.broadcast_id = s.b"
    )


# SQLite numbers one broadcast's recipients by inserting them, in order, into this table of
# its writer connection: its rowid (`n`, from 1) is then seq + 1, and each batch's arrays are a
# rowid range read. A window function (row_number) numbering 100,000 recipients buffered them
# all in a table of its own and then sorted them again to group them: 0.17 s alone, against
# 0.07 s this way.
_NUMBERED = "temp.snapshot_recipients"


def _write_in_order(
    conn: Connection, ordered: str, capped: bool, params: Mapping[str, object], now_us: int
) -> None:
    """`_write` for one broadcast on SQLite: `ordered` selects (id, external_id,
    has_conversation) of its recipients in seq order."""
    args = {**params, "now": now_us}
    _number(conn, ordered, args)
    if capped:
        conn.execute(
            bulk.statement(
                "INSERT INTO deliveries (broadcast_id, seq, contact_id, external_id, outcome,"
                f" reason) SELECT :b, n - 1, id, external_id,"
                f" {int(DeliveryOutcome.NOT_SENT_LIMIT)}, '' FROM {_NUMBERED} WHERE n > :cap"
            ),
            args,
        )
    conn.execute(
        bulk.statement(
            "INSERT INTO batch_recipients (broadcast_id, batch, contact_ids, external_ids, talked)"
            f" {_NUMBERED_BATCHES}"
        ),
        args,
    )
    conn.execute(bulk.statement(_batches_made(_ONE_TARGET)), args)
    conn.exec_driver_sql(f"DELETE FROM {_NUMBERED}")


def _number(conn: Connection, ordered: str, args: Mapping[str, object]) -> None:
    """SQLite: the recipients `ordered` selects (id, external_id, has_conversation), numbered
    in order into this connection's `_NUMBERED` table."""
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {_NUMBERED}"
        " (n INTEGER PRIMARY KEY, id TEXT, external_id TEXT, talked BOOLEAN)"
    )
    conn.exec_driver_sql(f"DELETE FROM {_NUMBERED}")
    conn.execute(
        bulk.statement(f"INSERT INTO {_NUMBERED} (id, external_id, talked) {ordered}"), args
    )


# Batch v holds n in [v*size + 1, v*size + size], up to the last kept (the cap, if any).
_KEPT = f"(SELECT MIN(MAX(n), COALESCE(:cap, MAX(n))) FROM {_NUMBERED})"
_PART = f"FROM {_NUMBERED} WHERE n BETWEEN k.v * :size + 1 AND MIN(k.v * :size + :size, {_KEPT})"
# Each batch of the numbered recipients: (broadcast, batch, contact ids, external ids, talked).
_NUMBERED_BATCHES = (
    f"WITH RECURSIVE k(v) AS (SELECT 0 WHERE {_KEPT} > 0"
    f" UNION ALL SELECT v + 1 FROM k WHERE (v + 1) * :size < {_KEPT})"
    f" SELECT :b, k.v, (SELECT json_group_array(id) {_PART}),"
    f" (SELECT json_group_array(external_id) {_PART}),"
    f" (SELECT json_group_array(n - 1) FILTER (WHERE talked) {_PART}) FROM k"
)


def _fixed(
    conn: Connection,
    broadcasts: Sequence[str],
    counted: Mapping[str, Counts],
    capped: Sequence[str],
) -> dict[str, Snapshot]:
    """What `_write` fixed for each broadcast, read back (contacts may have changed since they
    were counted): its recipients and batches, and how many its limit left out (`capped`: the
    broadcasts with a recipient limit; only they can leave anyone out, so only their deliveries
    are counted, and a Send without a limit makes one statement fewer)."""
    ids = bulk.strings_param(conn, list(broadcasts))
    written = {b: (0, 0) for b in broadcasts}
    found = conn.execute(
        bulk.statement(
            "SELECT broadcast_id, COUNT(*), COALESCE(SUM(size), 0) FROM batches"
            f" WHERE {bulk.in_strings(conn, 'broadcast_id', 'ids')} GROUP BY broadcast_id"
        ),
        {"ids": ids},
    )
    written.update({b: (int(n), int(total)) for b, n, total in found})
    limited = int(DeliveryOutcome.NOT_SENT_LIMIT)
    left_out = dict.fromkeys(broadcasts, 0)
    if capped:
        found = conn.execute(
            bulk.statement(
                f"SELECT broadcast_id, COUNT(*) FROM deliveries WHERE outcome = {limited}"
                f" AND outcome <> 0 AND {bulk.in_strings(conn, 'broadcast_id', 'ids')}"
                " GROUP BY broadcast_id"
            ),
            {"ids": bulk.strings_param(conn, list(capped))},
        )
        left_out.update({b: int(n) for b, n in found})
    fixed = {}
    for b in broadcasts:
        batches, total = written[b]
        c = counted.get(b, Counts(0, 0, 0))
        fixed[b] = Snapshot(total, c.opted_out, c.unreachable, batches, left_out[b])
    return fixed


# Many broadcasts at once: scheduled broadcasts due at the same moment start together, a few
# statements for all of them instead of a few each.


@dataclass(frozen=True, slots=True)
class Target:
    """One broadcast whose recipients `take_many` fixes: its audience (or, for a resend, the
    source broadcast whose unreached recipients it goes to) and how it is batched."""

    broadcast: str
    merchant: str
    channel: str
    since: datetime | None
    group: str | None
    batch_size: int
    resend_of: str | None = None
    cap: int | None = None  # a recipient limit, resolved: at most this many

    @property
    def shape(self) -> tuple[bool, bool, bool]:
        """Which criteria its statement joins on: targets of one shape share a statement."""
        if self.resend_of is not None:
            return (False, False, True)
        return (self.since is not None, self.group is not None, False)


def _targets(conn: Connection, targets: Sequence[Target]) -> tuple[str, str]:
    """(SQL for the targets as a table `s` (b, m, ch, since, grp, src, cap, size), its
    parameter)."""
    c = [bulk.json_text(conn, i) for i in range(8)]
    table = (
        f"(SELECT {c[0]} AS b, {c[1]} AS m, {c[2]} AS ch, CAST({c[3]} AS BIGINT) AS since,"
        f" {c[4]} AS grp, {c[5]} AS src, CAST({c[6]} AS BIGINT) AS cap,"
        f" CAST({c[7]} AS BIGINT) AS size FROM {bulk.json_table(conn, 'targets')}) s"
    )
    rows = [
        [
            t.broadcast,
            t.merchant,
            t.channel,
            None if t.since is None else to_us(t.since),
            t.group,
            t.resend_of,
            t.cap,
            t.batch_size,
        ]
        for t in targets
    ]
    return table, bulk.json_param(rows)


def _targets_source(table: str, shape: tuple[bool, bool, bool]) -> str:
    """FROM … of each target's audience contacts (`c`), joined to the target (`s`): `_source`
    for many broadcasts. One statement per shape keeps every join condition plain, so each can
    use its index (an `OR` per criterion would read the channel's every contact)."""
    since, group, resend = shape
    if resend:
        unreached = ", ".join(str(int(o)) for o in UNREACHED)
        return (
            f"FROM {table} JOIN deliveries d ON d.broadcast_id = s.src"
            f" AND d.outcome IN ({unreached}) AND d.outcome <> 0"
            " JOIN contacts c ON c.id = d.contact_id AND c.merchant_id = s.m"
            " AND c.channel_id = s.ch"
        )
    on = "c.merchant_id = s.m AND c.channel_id = s.ch"
    if since:
        on += " AND c.last_interaction_time >= s.since"
    if group:
        on += (
            " AND c.customer_id IN"
            " (SELECT g.customer_id FROM customer_group_members g WHERE g.group_id = s.grp)"
        )
    return f"FROM {table} JOIN contacts c ON {on}"


def _by_shape(targets: Sequence[Target]) -> dict[tuple[bool, bool, bool], list[Target]]:
    shapes: dict[tuple[bool, bool, bool], list[Target]] = {}
    for t in targets:
        shapes.setdefault(t.shape, []).append(t)
    return shapes


def count_many(conn: Connection, targets: Sequence[Target]) -> dict[str, Counts]:
    """Each target's audience counted as `take_many` will see it: matched, opted out,
    unreachable; one statement per shape of target."""
    blocked = int(FollowerState.BLOCKED)
    counted = {t.broadcast: Counts(0, 0, 0) for t in targets}
    for shape, some in _by_shape(targets).items():
        table, param = _targets(conn, some)
        found = conn.execute(
            bulk.statement(
                "SELECT s.b, COUNT(*), COALESCE(SUM(CASE WHEN c.opted_out THEN 1 ELSE 0 END), 0),"
                f" COALESCE(SUM(CASE WHEN NOT c.opted_out AND c.follower_state = {blocked}"
                f" THEN 1 ELSE 0 END), 0) {_targets_source(table, shape)} GROUP BY s.b"
            ),
            {"targets": param},
        )
        for b, matched, opted_out, unreachable in found:
            counted[b] = Counts(int(matched), int(opted_out), int(unreachable))
    return counted


def take_many(
    conn: Connection, targets: Sequence[Target], counted: Mapping[str, Counts], now: datetime
) -> dict[str, Snapshot]:
    """`take` for many broadcasts: the batches of every target, with their recipients, in one
    statement per shape (numbered per broadcast as `take` numbers them). `counted`: their
    counts from `count_many`, in this transaction."""
    blocked = int(FollowerState.BLOCKED)
    for shape, some in _by_shape(targets).items():
        for capped in (False, True):
            chosen = [t for t in some if (t.cap is not None) == capped]
            if not chosen:
                continue
            table, param = _targets(conn, chosen)
            source = _targets_source(table, shape)
            numbered = (
                "SELECT s.b AS b, s.ch AS ch, s.size AS size, s.cap AS cap,"
                f" row_number() OVER (PARTITION BY s.b ORDER BY {_order(capped)}) - 1 AS n,"
                " c.id AS id, c.external_id AS external_id, c.has_conversation AS talked"
                f" {source}"
                f" WHERE NOT c.opted_out AND c.follower_state <> {blocked}"
            )
            many = sum(_reachable(counted[t.broadcast]) for t in chosen)
            _write(conn, numbered, table, capped, {"targets": param}, to_us(now), many)
    limited = [t.broadcast for t in targets if t.cap is not None]
    return _fixed(conn, [t.broadcast for t in targets], counted, limited)
