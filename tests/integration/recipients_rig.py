"""Reading and resolving a broadcast's recipients in tests, whichever way they are stored
(store.batch_recipients): through the store's own read of deliveries."""

from __future__ import annotations

from sqlalchemy import Connection, insert

from broadcaster.domain.deliveries import Delivery, DeliveryOutcome
from broadcaster.store import deliveries as delivery_repo
from broadcaster.store.tables import deliveries


def every_delivery(conn: Connection, broadcast: str) -> list[Delivery]:
    """All of the broadcast's deliveries, in seq order, as ListDeliveries reads them."""
    return delivery_repo.page(conn, broadcast, None, None, 10**9)


def resolve(
    conn: Connection, broadcast: str, seqs: list[int], outcome: DeliveryOutcome, reason: str = ""
) -> None:
    """Give these recipients `outcome` of their own, as the dispatcher does for one refused."""
    if not seqs:
        return
    found = {d.seq: d for d in every_delivery(conn, broadcast)}
    conn.execute(
        insert(deliveries),
        [
            {
                "broadcast_id": broadcast,
                "seq": s,
                "contact_id": found[s].contact,
                "external_id": found[s].external_id,
                "outcome": int(outcome),
                "reason": reason,
            }
            for s in seqs
        ],
    )
