"""EstimateAudience on 1,000,000 contacts with a 200,000-member customer group, one call at a
time and for many merchants at once.

    ./dev run python -m bench.estimate_audience [--backend sqlite|postgresql|both] [--smoke]
        [--only single|many] [--channels 8] [--callers 50] [--seconds 30]

Each channel gets contacts spread over 400 days of interactions (a fifth never interacted, 3%
opted out, 5% blocked, 60% linked to a customer) and a group of 200,000 of those customers.

single: one channel; times the estimate through the application service (the gRPC handler's
code path: the audience count and the channel's quota, concurrently) for every window, with and
without the group. Target: p50 <= 50 ms, p95 <= 100 ms.

many: `broadcaster serve` (a process) with the LINE plugin and the LINE emulator (another), one
merchant per channel (8 by default), `--callers` concurrent callers over gRPC each asking, one
call after another with no pause, for a random merchant's estimate of a random window, with its
group half of the time, for `--seconds`. Prints p50 / p95 / max, calls/s, the service's CPU per
call and the load average (the client, the emulator and the database share the machine).
Target: p95 <= 100 ms. --smoke: 10,000 contacts per channel, 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for `tests` when run as a file

import grpc
from sqlalchemy import Connection, text

from bench.dispatch import _connect
from bench.live import ADMIN, cpu_seconds, emulator, service
from bench.results import record
from bench.settle import settle
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
from broadcaster.v1 import broadcast_service_pb2 as pb
from broadcaster.v1 import broadcast_service_pb2_grpc as pb_grpc
from tests import fakechannel
from tests.databases import fresh_database

DAY_US = 86_400_000_000


def seed_contacts(
    conn: Connection, merchant: str, channel: str, count: int, now: int, prefix: str = "c"
) -> None:
    """`count` contacts in one INSERT … SELECT over a generated series (ids `prefix` + n)."""
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
            f"SELECT :prefix || {padded}, :m, :ch, 'U' || CAST(n AS TEXT), '', '',"
            " CASE WHEN n % 20 = 1 THEN 2 ELSE 1 END, 0,"
            " CASE WHEN n % 5 = 0 THEN NULL"
            "  ELSE :now - (CAST(n AS BIGINT) * 7919 % 400) * :day"
            "  - (CAST(n AS BIGINT) * 104729 % 86400) * 1000000 END,"
            f" CASE WHEN n % 33 = 2 THEN {true} ELSE {false} END,"
            " CASE WHEN n % 5 < 3 THEN 'cust-' || CAST(n AS TEXT) ELSE NULL END,"
            f" {false}, :now, NULL, :now, :now FROM {series}"
        ),
        {
            "m": merchant,
            "ch": channel,
            "count": count,
            "now": now,
            "day": DAY_US,
            "prefix": prefix,
        },
    )


async def seed(
    db: Database, ctx: ServiceContext, merchant: str, channel: str, contacts: int, group_size: int
) -> str:
    """`contacts` contacts on the channel and a group of `group_size` of their customers, then
    statistics as a table not being bulk-loaded this instant has them; returns the group id."""
    started = time.perf_counter()
    now = to_us(datetime.now(UTC))
    await db.write(seed_contacts, merchant, channel, contacts, now, f"c{channel[-8:]}")
    parent = f"merchants/{merchant}"
    group = await CustomerGroups(ctx).create(LOCAL, parent, "VIP", "", "")
    # Customers 0, 5, 10, … are not linked (n % 5 >= 3 are unlinked); pick linked ones.
    members = [f"cust-{n}" for n in range(contacts) if n % 5 < 3][:group_size]
    for start in range(0, len(members), 100_000):
        await CustomerGroups(ctx).add_members(
            LOCAL, f"{parent}/customerGroups/{group.id}", members[start : start + 100_000]
        )
    settle(db)
    took = time.perf_counter() - started
    print(f"  seeded {contacts:,} contacts and {len(members):,} members in {took:.1f} s")
    return group.id


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
    group = await seed(db, ctx, "bench", channel.id, contacts, group_size)

    service = Broadcasts(ctx, hub)
    target = ChannelName("bench", channel.id)
    timings: list[float] = []
    for window in InteractionWindow:
        for group_id in (None, group):
            audience = Audience(window, group_id)
            await service.estimate_for(target, audience, recent_quota=True)  # warm up
            these = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                await service.estimate_for(target, audience, recent_quota=True)
                these.append((time.perf_counter() - t0) * 1000)
            timings += these
            label = f"{window.name}{' + group' if group_id else ''}"
            print(f"    {label:<28} p50 {statistics.median(these):6.1f} ms")
    await hub.close()
    db.close()
    return timings


async def hammer(
    target: str, audiences: list[tuple[str, str, str]], callers: int, seconds: float
) -> list[float]:
    """`callers` concurrent callers, each estimating one random audience of a random merchant
    after another (no pause) for `seconds`; returns the calls' durations in ms."""
    windows = [w for w in pb.Audience.InteractionWindow.values() if w]
    timings: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.BroadcastServiceStub(channel)

        async def caller(seed: int, until: float, out: list[float]) -> None:
            rnd = random.Random(seed)
            while time.perf_counter() < until:
                parent, channel_name, group = rnd.choice(audiences)
                groups = [f"{parent}/customerGroups/{group}"] if rnd.random() < 0.5 else []
                request = pb.EstimateAudienceRequest(
                    parent=parent,
                    channel=channel_name,
                    audience=pb.Audience(
                        last_interaction=rnd.choice(windows), customer_groups=groups
                    ),
                )
                t0 = time.perf_counter()
                await stub.EstimateAudience(request, metadata=ADMIN)
                out.append((time.perf_counter() - t0) * 1000)

        warm_until = time.perf_counter() + min(3.0, seconds)
        await asyncio.gather(*(caller(-k, warm_until, []) for k in range(1, callers + 1)))
        until = time.perf_counter() + seconds
        await asyncio.gather(*(caller(k, until, timings) for k in range(callers)))
    return timings


def run_many(
    backend: str, channels: int, contacts: int, group_size: int, callers: int, seconds: float
) -> None:
    """Many merchants at once: one LINE channel (emulated, with its quota calls) and one group
    each, `callers` concurrent EstimateAudience calls through the real `serve`."""
    accounts = [
        ("--account", f"token=estimate-token-{k:02d}-0123456789,secret=s{k:02d}-0123456789")
        for k in range(channels)
    ]
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(backend, Path(tmp)) as url,
        emulator(*(a for pair in accounts for a in pair)) as (api, _),
        service(url, Path(tmp) / "serve.log", api) as server,
        grpc.insecure_channel(server.target) as channel,
    ):  # fmt: skip
        names = [
            _connect(channel, f"shop-{k}", f"estimate-token-{k:02d}-0123456789", f"s{k:02d}-x")
            for k in range(channels)
        ]

        async def seed_all() -> list[tuple[str, str, str]]:
            db = Database.from_url(url)
            ctx = ServiceContext(db)
            audiences = []
            for k, name in enumerate(names):
                group = await seed(
                    db, ctx, f"shop-{k}", name.rsplit("/", 1)[1], contacts, group_size
                )
                audiences.append((f"merchants/shop-{k}", name, group))
            db.close()
            return audiences

        started = time.perf_counter()
        audiences = asyncio.run(seed_all())
        print(f"  {channels} channels seeded in {time.perf_counter() - started:.0f} s")
        load_before = os.getloadavg()[0]
        cpu = cpu_seconds(server.process.pid)
        timings = asyncio.run(hammer(server.target, audiences, callers, seconds))
        cpu = cpu_seconds(server.process.pid) - cpu
        load_after = os.getloadavg()[0]
    p50, p95 = statistics.median(timings), statistics.quantiles(timings, n=20)[18]
    per_call = 1000 * cpu / len(timings)
    print(
        f"  EstimateAudience, {channels} channels x {contacts:,} contacts, {callers} callers, "
        f"{len(timings):,} calls in {seconds:.0f} s ({len(timings) / seconds:,.0f}/s): "
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(timings):.1f} ms; service CPU "
        f"{per_call:.2f} ms per call; load average {load_before:.2f} before, {load_after:.2f} after"
    )
    record(
        "estimate_audience.many",
        backend,
        f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(timings):.0f} ms; "
        f"{per_call:.1f} ms CPU/call",
        p50_ms=p50,
        p95_ms=p95,
        max_ms=max(timings),
        calls=len(timings),
        cpu_ms_per_call=per_call,
        load=max(load_before, load_after),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="10,000 contacts (CI)")
    parser.add_argument(
        "--channels", type=int, default=8, help="many merchants at once: channels (default 8)"
    )
    parser.add_argument(
        "--callers", type=int, default=50, help="… and concurrent callers (default 50)"
    )
    parser.add_argument("--seconds", type=float, help="… for this long (default 30; smoke 3)")
    parser.add_argument(
        "--only", choices=["single", "many"], help="run one part (default: both in turn)"
    )
    args = parser.parse_args()
    contacts, group_size, rounds = (10_000, 2_000, 3) if args.smoke else (1_000_000, 200_000, 15)
    seconds = args.seconds or (3.0 if args.smoke else 30.0)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        print(f"{backend}:")
        if args.only != "many":
            single(backend, contacts, group_size, rounds)
        if args.only != "single":
            run_many(backend, args.channels, contacts, group_size, args.callers, seconds)


def single(backend: str, contacts: int, group_size: int, rounds: int) -> None:
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
