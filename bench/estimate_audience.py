"""EstimateAudience on 1,000,000 contacts with a 200,000-member customer group.

    ./dev run python bench/estimate_audience.py [--backend sqlite|postgresql|both] [--smoke]

Seeds a channel with contacts spread over 400 days of interactions (a fifth never interacted,
3% opted out, 5% blocked, 60% linked to a customer) and a group of 200,000 of those customers,
then times the estimate through the application service (the gRPC handler's code path: the
audience count and the channel's quota call, concurrently) for every window, with and without
the group. Prints p50 and p95 per backend. Target: p50 <= 50 ms, p95 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for `tests` when run as a file

from sqlalchemy import Connection, text

from bench.results import record
from broadcaster.channels.manager import PluginManager
from broadcaster.domain.audience import Audience, InteractionWindow
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.names import ChannelName
from broadcaster.services.broadcasts import Broadcasts
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.services.customer_groups import CustomerGroups
from broadcaster.store import migrate
from broadcaster.store.clock import to_us
from broadcaster.store.database import Database
from broadcaster.store.sealing import Sealer
from tests import fakechannel
from tests.databases import fresh_database

DAY_US = 86_400_000_000


def seed_contacts(conn: Connection, merchant: str, channel: str, count: int, now: int) -> None:
    """`count` contacts in one INSERT … SELECT over a generated series."""
    series = (
        "generate_series(0, :count - 1) AS s(n)"
        if conn.dialect.name == "postgresql"
        else "(WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n + 1 < :count)"
        " SELECT n FROM s) AS s"
    )
    pg = conn.dialect.name == "postgresql"
    true, false = ("true", "false") if pg else ("1", "0")
    padded = "lpad(CAST(n AS TEXT), 12, '0')" if pg else "printf('%012d', n)"
    conn.execute(
        text(
            "INSERT INTO contacts (id, merchant_id, channel_id, external_id, display_name,"
            " picture_uri, follower_state, state_time, last_interaction_time, opted_out,"
            " customer_id, has_conversation, observe_time, seen_sync, create_time, update_time) "
            f"SELECT 'c' || {padded}, :m, :ch, 'U' || CAST(n AS TEXT), '', '',"
            " CASE WHEN n % 20 = 1 THEN 2 ELSE 1 END, 0,"
            " CASE WHEN n % 5 = 0 THEN NULL"
            "  ELSE :now - (CAST(n AS BIGINT) * 7919 % 400) * :day - n % 86400 END,"
            f" CASE WHEN n % 33 = 2 THEN {true} ELSE {false} END,"
            " CASE WHEN n % 5 < 3 THEN 'cust-' || CAST(n AS TEXT) ELSE NULL END,"
            f" {false}, :now, NULL, :now, :now FROM {series}"
        ),
        {"m": merchant, "ch": channel, "count": count, "now": now, "day": DAY_US},
    )


async def run(url: str, contacts: int, group_size: int, rounds: int) -> list[float]:
    db = Database.from_url(url)
    migrate.upgrade(db.engine)
    ctx = ServiceContext(db)
    registry = PluginManager.load((), [fakechannel]).register_channels()
    hub = ChannelHub(registry, Sealer(("bench-key-" * 4,)), db, {})
    parent = "merchants/bench"
    channel = await Channels(ctx, hub).create(
        LOCAL,
        parent,
        "fake",
        {"token": "t", "account": "bench", "tier": "verified", "quota": "5000000"},
        "",
    )
    started = time.perf_counter()
    await db.write(seed_contacts, "bench", channel.id, contacts, to_us(datetime.now(UTC)))
    group = await CustomerGroups(ctx).create(LOCAL, parent, "VIP", "", "")
    # Customers 0, 5, 10, … are not linked (n % 5 >= 3 are unlinked); pick linked ones.
    members = [f"cust-{n}" for n in range(contacts) if n % 5 < 3][:group_size]
    for start in range(0, len(members), 100_000):
        await CustomerGroups(ctx).add_members(
            LOCAL, f"{parent}/customerGroups/{group.id}", members[start : start + 100_000]
        )
    # Steady state: statistics gathered and (PostgreSQL) the visibility map set, as autovacuum
    # leaves a table that is not being bulk-loaded this instant.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if db.dialect == "postgresql" else "ANALYZE")
    took = time.perf_counter() - started
    print(f"  seeded {contacts:,} contacts and {len(members):,} members in {took:.1f} s")

    service = Broadcasts(ctx, hub)
    target = ChannelName("bench", channel.id)
    timings: list[float] = []
    for window in InteractionWindow:
        for group_id in (None, group.id):
            audience = Audience(window, group_id)
            await service.estimate_for(target, audience)  # warm the cache once
            these = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                await service.estimate_for(target, audience)
                these.append((time.perf_counter() - t0) * 1000)
            timings += these
            label = f"{window.name}{' + group' if group_id else ''}"
            print(f"    {label:<28} p50 {statistics.median(these):6.1f} ms")
    await hub.close()
    db.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="10,000 contacts (CI)")
    args = parser.parse_args()
    contacts, group_size, rounds = (10_000, 2_000, 3) if args.smoke else (1_000_000, 200_000, 15)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(f"{backend}:")
        with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
            timings = asyncio.run(run(url, contacts, group_size, rounds))
        q = statistics.quantiles(timings, n=20)
        print(
            f"  EstimateAudience over {contacts:,} contacts, {group_size:,}-member group, "
            f"{len(timings)} calls: p50 {statistics.median(timings):.1f} ms, p95 {q[18]:.1f} ms, "
            f"max {max(timings):.1f} ms"
        )
        p50, p95 = statistics.median(timings), q[18]
        record(
            "estimate_audience",
            backend,
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms",
            p50_ms=p50,
            p95_ms=p95,
            max_ms=max(timings),
            calls=len(timings),
            contacts=contacts,
        )


if __name__ == "__main__":
    main()
