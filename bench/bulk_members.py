"""Bulk paths of the foundation: 100,000 group members in one call, 10,000 contacts per import.

Each round adds a new group's members, then imports 10,000 contacts linked to those customers
(each becomes a contact and a row of the group), then imports them again with a newer
interaction and opt-out (every contact and group row updated).

    ./dev run python bench/bulk_members.py [--backend sqlite|postgresql|both] [--smoke]

Runs through the application services (the same code the gRPC handlers call) against a fresh
database, and prints rows per second for each path.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for `tests` when run as a file

from bench.results import record
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.model import AccountTier, ContactImport, FollowerState
from broadcaster.services.contacts import Contacts
from broadcaster.services.context import ServiceContext
from broadcaster.services.customer_groups import CustomerGroups
from broadcaster.store import channels, migrate
from broadcaster.store.database import Database
from tests.databases import fresh_database


async def run(url: str, rounds: int, members: int, contacts_per_call: int) -> dict[str, float]:
    db = Database.from_url(url)
    migrate.upgrade(db.engine)
    ctx = ServiceContext(db)
    groups, contacts = CustomerGroups(ctx), Contacts(ctx)
    account = (AccountTier.VERIFIED, "bench", "Bench", "", "")
    await db.write(channels.create, "bench", "line", "fake", account, "sealed", ctx.now())
    member_rates, contact_rates, update_rates = [], [], []
    for r in range(rounds):
        g = await groups.create(LOCAL, "merchants/bench", f"group {r}", "", "")
        name = f"merchants/bench/customerGroups/{g.id}"
        ids = [f"customer-{r}-{n}" for n in range(members)]
        start = time.perf_counter()
        await groups.add_members(LOCAL, name, ids)
        member_rates.append(members / (time.perf_counter() - start))

        now = datetime.now(UTC)
        batch = [
            ContactImport(f"U{r:04d}{n:028x}", f"Person {n}", "", FollowerState.FOLLOWING, now,
                          False, f"customer-{r}-{n}", now)
            for n in range(contacts_per_call)
        ]  # fmt: skip
        start = time.perf_counter()
        await contacts.batch_create(LOCAL, "merchants/bench/channels/line", batch)
        contact_rates.append(contacts_per_call / (time.perf_counter() - start))

        later = datetime.now(UTC)
        batch = [replace(c, last_interaction_time=later, opted_out=True, observe_time=later)
                 for c in batch]  # fmt: skip
        start = time.perf_counter()
        await contacts.batch_create(LOCAL, "merchants/bench/channels/line", batch)
        update_rates.append(contacts_per_call / (time.perf_counter() - start))
    db.close()
    return {
        "members_per_s": statistics.median(member_rates),
        "contacts_per_s": statistics.median(contact_rates),
        "updates_per_s": statistics.median(update_rates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="one small round (CI)")
    args = parser.parse_args()
    rounds, members, per_call = (1, 10_000, 1_000) if args.smoke else (5, 100_000, 10_000)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
            result = asyncio.run(run(url, rounds, members, per_call))
        print(
            f"{backend}: add {members:,} group members in one call: "
            f"{result['members_per_s']:,.0f} members/s; "
            f"import {per_call:,} contacts in one call: {result['contacts_per_s']:,.0f} contacts/s;"
            f" again, newer: {result['updates_per_s']:,.0f} contacts/s"
        )
        for row, count, rate, unit in (
            ("bulk_members.members", members, result["members_per_s"], "members"),
            ("bulk_members.contacts", per_call, result["contacts_per_s"], "contacts"),
            ("bulk_members.updates", per_call, result["updates_per_s"], "contacts"),
        ):
            figure = f"{rate:,.0f} {unit}/s ({count / rate:.2f} s)"
            record(row, backend, figure, per_s=rate, count=count)


if __name__ == "__main__":
    main()
