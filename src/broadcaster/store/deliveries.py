"""Reading a broadcast's deliveries: what became of each recipient.

A recipient without an outcome of its own is "as its batch" (store.batch_recipients): SENT once
its batch is done, PENDING while the batch is open. Reading them, or filtering on either, is
driven from the broadcast's batches (in that state); every other outcome is stored on a
delivery row of its own, read by itself when filtered on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from broadcaster.domain.deliveries import Delivery, DeliveryOutcome
from broadcaster.store import batch_recipients
from broadcaster.store.batch_recipients import DONE, OPEN_ROWS

_AS_BATCH = int(DeliveryOutcome.PENDING)
_BY_BATCH = {DeliveryOutcome.PENDING: OPEN_ROWS, DeliveryOutcome.SENT: DONE}


def page(
    conn: Connection,
    broadcast: str,
    outcome: DeliveryOutcome | None,
    after: int | None,
    limit: int,
) -> list[Delivery]:
    """Up to `limit` deliveries after seq `after`, in seq order; index ranges either way."""
    start = -1 if after is None else after
    params = {"b": broadcast, "after": start, "limit": limit}
    if outcome is None or outcome in _BY_BATCH:
        batches, arrays = batch_recipients.with_arrays(conn.dialect.name)
        first = conn.execute(
            text(
                f"SELECT b.size, {arrays}.contact_ids IS NOT NULL FROM {batches}"
                " WHERE b.broadcast_id = :b AND b.batch = 0"
            ),
            params,
        ).first()
        if first is not None and first[1]:
            return _from_batches(conn, broadcast, outcome, start, limit, int(first[0]))
    if outcome in _BY_BATCH:
        rows = conn.execute(
            text(
                "SELECT d.seq, d.contact_id, d.external_id, d.reason, b.request_id FROM batches b"
                " JOIN deliveries d ON d.broadcast_id = b.broadcast_id"
                " AND d.seq BETWEEN b.first_seq AND b.first_seq + b.size - 1"
                " AND d.outcome = :as_batch AND d.seq > :after"
                " WHERE b.broadcast_id = :b AND b.state = :state"
                " AND b.first_seq + b.size - 1 > :after ORDER BY b.batch, d.seq LIMIT :limit"
            ),
            {**params, "as_batch": _AS_BATCH, "state": _BY_BATCH[outcome]},
        )
        return [
            Delivery(int(r.seq), r.contact_id, r.external_id, outcome, r.reason, r.request_id)
            for r in rows
        ]
    # `outcome <> 0` spelled out, so the partial index of resolved deliveries serves the filter.
    where = "" if outcome is None else " AND outcome = :o AND outcome <> 0"
    stored_rows = conn.execute(
        text(
            "SELECT seq, contact_id, external_id, outcome, reason FROM deliveries"
            f" WHERE broadcast_id = :b AND seq > :after{where} ORDER BY seq LIMIT :limit"
        ),
        {**params, "o": None if outcome is None else int(outcome)},
    ).all()
    pending = [int(r.seq) for r in stored_rows if r.outcome == _AS_BATCH]
    size, done = _done_batches(conn, broadcast, pending)
    out = []
    for r in stored_rows:
        stored, request_id = DeliveryOutcome(r.outcome), ""
        if stored is DeliveryOutcome.PENDING and r.seq // size in done:
            stored, request_id = DeliveryOutcome.SENT, done[r.seq // size]
        out.append(Delivery(int(r.seq), r.contact_id, r.external_id, stored, r.reason, request_id))
    return out


def _done_batches(conn: Connection, broadcast: str, seqs: list[int]) -> tuple[int, dict[int, str]]:
    """The broadcast's batch size and which of the batches holding `seqs` are done, with the
    channel's request ids. Batch k holds seq [k*size, (k+1)*size), size being batch 0's (the
    snapshot numbers them so)."""
    if not seqs:
        return 0, {}
    size = int(
        conn.execute(
            text("SELECT size FROM batches WHERE broadcast_id = :b AND batch = 0"), {"b": broadcast}
        ).scalar_one()
    )
    rows = conn.execute(
        text(
            "SELECT batch, request_id FROM batches WHERE broadcast_id = :b AND state = :done"
            " AND batch BETWEEN :lo AND :hi"
        ),
        {"b": broadcast, "done": DONE, "lo": min(seqs) // size, "hi": max(seqs) // size},
    )
    return size, {int(n): str(r) for (n, r) in rows}


def _from_batches(
    conn: Connection,
    broadcast: str,
    outcome: DeliveryOutcome | None,
    after: int,
    limit: int,
    size: int,
) -> list[Delivery]:
    """`page` of a broadcast whose recipients are kept on its batches (each `size` but the
    last): a few batches at a time (of the state `outcome` names, if any), each recipient as
    its batch unless it has a delivery row of its own; then, unfiltered, the rows past the
    last batch (recipients a limit left out)."""
    state = ""
    if outcome is DeliveryOutcome.PENDING:
        state = f" AND b.{batch_recipients.IS_OPEN}"
    elif outcome is DeliveryOutcome.SENT:
        state = f" AND b.state = {DONE}"
    source, arrays = batch_recipients.with_arrays(conn.dialect.name)
    step = limit // size + 2
    out: list[Delivery] = []
    number = (after + 1) // size
    end = 0
    while len(out) < limit:
        batches = conn.execute(
            text(
                "SELECT b.batch, b.first_seq, b.size, b.state, b.request_id,"
                f" {arrays}.contact_ids, {arrays}.external_ids FROM {source}"
                f" WHERE b.broadcast_id = :b AND b.batch >= :n{state} ORDER BY b.batch LIMIT :step"
            ),
            {"b": broadcast, "n": number, "step": step},
        ).all()
        if not batches:
            break
        lo, hi = int(batches[0].first_seq), int(batches[-1].first_seq) + int(batches[-1].size) - 1
        own = _own_rows(conn, broadcast, max(lo, after + 1), hi)
        for b in batches:
            done = int(b.state) == DONE
            first = int(b.first_seq)
            end = max(end, first + int(b.size))
            stored = zip(
                batch_recipients.decode(b.contact_ids),
                batch_recipients.decode(b.external_ids),
                strict=True,
            )
            for i, (contact, external) in enumerate(stored):
                seq = first + i
                if seq <= after:
                    continue
                row = own.get(seq)
                if row is not None:
                    if outcome is None:
                        out.append(row)
                elif done:
                    out.append(Delivery(seq, contact, external, DeliveryOutcome.SENT, "",
                                        b.request_id))  # fmt: skip
                else:
                    out.append(Delivery(seq, contact, external, DeliveryOutcome.PENDING, ""))
        number = int(batches[-1].batch) + 1
        if len(batches) < step:
            break
    del out[limit:]
    if outcome is None and len(out) < limit:
        # Past the last batch: the recipients a limit left out, rows of their own.
        if not end:
            end = int(
                conn.execute(
                    text(
                        "SELECT COALESCE(MAX(first_seq + size), 0) FROM batches"
                        " WHERE broadcast_id = :b"
                    ),
                    {"b": broadcast},
                ).scalar_one()
            )
        past = _own_rows(conn, broadcast, max(end, after + 1), None, limit - len(out))
        out.extend(past.values())
    return out


def _own_rows(
    conn: Connection, broadcast: str, lo: int, hi: int | None, limit: int | None = None
) -> dict[int, Delivery]:
    """The delivery rows of the broadcast with seq from `lo` (to `hi`), by seq."""
    params: dict[str, Any] = {"b": broadcast, "lo": lo, "hi": hi, "limit": limit}
    where = "" if hi is None else " AND seq <= :hi"
    tail = "" if limit is None else " LIMIT :limit"
    rows = conn.execute(
        text(
            "SELECT seq, contact_id, external_id, outcome, reason FROM deliveries"
            f" WHERE broadcast_id = :b AND seq >= :lo{where} ORDER BY seq{tail}"
        ),
        params,
    )
    return {
        int(r.seq): Delivery(
            int(r.seq), r.contact_id, r.external_id, DeliveryOutcome(r.outcome), r.reason
        )
        for r in rows
    }
