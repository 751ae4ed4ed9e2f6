"""Reading a broadcast's deliveries: what became of each recipient."""

from __future__ import annotations

from sqlalchemy import Connection, text

from broadcaster.domain.deliveries import Delivery, DeliveryOutcome


def page(
    conn: Connection,
    broadcast: str,
    outcome: DeliveryOutcome | None,
    after: int | None,
    limit: int,
) -> list[Delivery]:
    """Up to `limit` deliveries after seq `after`, in seq order; one index range either way."""
    where = "broadcast_id = :b"
    if outcome is not None:
        where += " AND outcome = :o"
    if after is not None:
        where += " AND seq > :after"
    rows = conn.execute(
        text(
            "SELECT seq, contact_id, external_id, outcome, reason FROM deliveries"
            f" WHERE {where} ORDER BY seq LIMIT :limit"
        ),
        {"b": broadcast, "o": None if outcome is None else int(outcome), "after": after,
         "limit": limit},
    )  # fmt: skip
    return [
        Delivery(int(r.seq), r.contact_id, r.external_id, DeliveryOutcome(r.outcome), r.reason)
        for r in rows
    ]
