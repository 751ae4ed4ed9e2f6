"""The recipient snapshot of a Send over 1,000,000 contacts.

    ./dev run python -m bench.snapshot [--backend sqlite|postgresql|both] [--smoke]

Seeds a channel with 1,000,000 contacts (as bench.estimate_audience does: 3% opted out, 5%
blocked) and times `store.snapshot.take` for "all contacts": one INSERT … SELECT numbering every
reachable contact and writing the batches of 500, each with its recipients and its idempotency
key, in one transaction. Target: <= 3 s on SQLite, <= 5 s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.estimate_audience import seed_contacts
from bench.results import record
from bench.settle import settle
from broadcaster.store import migrate, snapshot
from broadcaster.store.clock import to_us
from broadcaster.store.database import Database
from tests.databases import fresh_database


def run(backend: str, contacts: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
        db = Database.from_url(url)
        migrate.upgrade(db.engine)
        now = datetime.now(UTC)
        with db.writing() as conn:
            seed_contacts(conn, "bench", "ch", contacts, to_us(now))
        settle(db)
        started = time.perf_counter()
        with db.writing() as conn:
            taken = snapshot.take(
                conn,
                merchant="bench",
                channel="ch",
                broadcast="b1",
                since=None,
                group=None,
                batch_size=500,
                now=now,
            )
        took = time.perf_counter() - started
        db.close()
    print(
        f"{backend}: snapshot of {contacts:,} contacts: {taken.recipients:,} recipients in "
        f"{taken.batches:,} batches ({taken.opted_out:,} opted out, {taken.unreachable:,} "
        f"unreachable) in {took:.2f} s"
    )
    record(
        "snapshot",
        backend,
        f"{took:.2f} s",
        seconds=took,
        contacts=contacts,
        recipients=taken.recipients,
        batches=taken.batches,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="20,000 contacts (CI)")
    args = parser.parse_args()
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, 20_000 if args.smoke else 1_000_000)


if __name__ == "__main__":
    main()
