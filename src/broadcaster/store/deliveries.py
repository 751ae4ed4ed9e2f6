"""Reading a broadcast's deliveries: what became of each recipient.

A delivery stored PENDING is "as its batch" (see tables.DeliveryRow): SENT once its batch is
done, PENDING while the batch is open. Filtering on either is driven from the broadcast's
batches in that state; every other outcome is stored on the delivery itself.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from broadcaster.domain.deliveries import Delivery, DeliveryOutcome
from broadcaster.store.dispatch import DONE, OPEN

_AS_BATCH = int(DeliveryOutcome.PENDING)
_BY_BATCH = {DeliveryOutcome.PENDING: OPEN, DeliveryOutcome.SENT: DONE}


def page(
    conn: Connection,
    broadcast: str,
    outcome: DeliveryOutcome | None,
    after: int | None,
    limit: int,
) -> list[Delivery]:
    """Up to `limit` deliveries after seq `after`, in seq order; index ranges either way."""
    params = {"b": broadcast, "after": -1 if after is None else after, "limit": limit}
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
