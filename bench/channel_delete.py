"""Deleting a channel of 1,000,000 contacts while another merchant writes.

    ./dev run python -m bench.channel_delete [--backend sqlite|postgresql|both] [--smoke]
        [--contacts N]

Through the application services against a fresh database: one merchant's channel holds N
contacts (every other one in a customer group), another merchant imports 20 contacts at a time
without pause. The first merchant deletes its channel (DeleteChannel's service call), and its
contacts are forgotten as the service does it: in the background, a chunk at a time
(services.forgetting). Printed: how long DeleteChannel took, the other merchant's write
latency (p50 / p99 / longest) while the contacts were forgotten, and how long forgetting took.
For comparison, the same on a second channel of N contacts forgotten in one transaction (what
DeleteChannel did in its own transaction before): the longest the other merchant waited.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, text

from bench.results import record
from broadcaster.channels.manager import PluginManager
from broadcaster.domain.auth import LOCAL
from broadcaster.domain.model import AccountTier, ContactImport, FollowerState
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.contacts import Contacts
from broadcaster.services.context import ServiceContext
from broadcaster.services.customer_groups import CustomerGroups
from broadcaster.services.forgetting import Forgetting
from broadcaster.store import channels, migrate
from broadcaster.store.database import Database
from broadcaster.store.sealing import Sealer
from tests import fakechannel
from tests.databases import fresh_database

PER_CALL = 10_000


def _contacts(prefix: str, start: int, count: int, now: datetime) -> list[ContactImport]:
    return [
        ContactImport(f"U{prefix}{n:030x}", f"Person {n}", "", FollowerState.FOLLOWING, now,
                      False, f"customer-{n}" if n % 2 == 0 else None, now)
        for n in range(start, start + count)
    ]  # fmt: skip


async def _filled(ctx: ServiceContext, merchant: str, channel_id: str, count: int) -> str:
    account = (AccountTier.VERIFIED, channel_id, "Shop", "", "")
    await ctx.db.write(channels.create, merchant, channel_id, "fake", account, "sealed", ctx.now())
    parent = f"merchants/{merchant}/channels/{channel_id}"
    contacts, now = Contacts(ctx), ctx.now()
    for start in range(0, count, PER_CALL):
        batch = _contacts(channel_id, start, min(PER_CALL, count - start), now)
        await contacts.batch_create(LOCAL, parent, batch)
    return parent


class Writer:
    """Another merchant importing 20 contacts at a time, as fast as the database lets it."""

    def __init__(self, ctx: ServiceContext, parent: str) -> None:
        self._contacts, self._parent, self._ctx = Contacts(ctx), parent, ctx
        self.waits: list[float] = []
        self._n = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            batch = _contacts("w", self._n, 20, self._ctx.now())
            self._n += 20
            started = time.perf_counter()
            await self._contacts.batch_create(LOCAL, self._parent, batch)
            self.waits.append(time.perf_counter() - started)

    def start(self) -> None:
        self.waits.clear()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[float]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return sorted(self.waits)


def _p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def run(url: str, count: int) -> dict[str, float]:
    db = Database.from_url(url)
    migrate.upgrade(db.engine)
    ctx = ServiceContext(db)
    registry = PluginManager.load((), [fakechannel]).register_channels()
    hub = ChannelHub(registry, Sealer(("k" * 32,)), db, {})
    background, inline = [await _filled(ctx, "shop", ch, count) for ch in ("bg", "inline")]
    groups = CustomerGroups(ctx)
    group = await groups.create(LOCAL, "merchants/shop", "Even", "", "")
    members = [f"customer-{n}" for n in range(0, count, 2)]
    for start in range(0, len(members), 100_000):  # the most one call takes
        name = f"merchants/shop/customerGroups/{group.id}"
        await groups.add_members(LOCAL, name, members[start : start + 100_000])
    other = await _filled(ctx, "other", "other", 1)
    writer = Writer(ctx, other)
    forgetting = Forgetting(ctx)
    deleting = Channels(ctx, hub, deleted=forgetting.wake)

    writer.start()
    await asyncio.sleep(1.0)
    quiet = await writer.stop()

    writer.start()
    forgetting.start()
    started = time.perf_counter()
    await deleting.delete(LOCAL, background)
    delete_s = time.perf_counter() - started
    while True:
        if not await db.read(_left, "bg"):
            break
        await asyncio.sleep(0.05)
    forget_s = time.perf_counter() - started
    waits = await writer.stop()
    await forgetting.stop()

    # Before: every contact in the one transaction, as DeleteChannel's own statement.
    await Channels(ctx, hub).delete(LOCAL, inline)
    writer.start()
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    await db.write(_delete_all, "shop", "inline")
    inline_s = time.perf_counter() - started
    await asyncio.sleep(0.2)
    inline_waits = await writer.stop()
    await hub.close()
    db.close()
    return {
        "delete_ms": delete_s * 1000,
        "quiet_p99_ms": _p(quiet, 0.99) * 1000,
        "p50_ms": statistics.median(waits) * 1000,
        "p99_ms": _p(waits, 0.99) * 1000,
        "longest_ms": waits[-1] * 1000,
        "forget_s": forget_s,
        "inline_s": inline_s,
        "inline_longest_ms": inline_waits[-1] * 1000,
    }


def _delete_all(conn: Connection, merchant: str, channel_id: str) -> None:
    conn.execute(
        text("DELETE FROM contacts WHERE merchant_id = :m AND channel_id = :ch"),
        {"m": merchant, "ch": channel_id},
    )


def _left(conn: Connection, channel_id: str) -> bool:
    found = conn.execute(
        text("SELECT 1 FROM contacts WHERE channel_id = :ch LIMIT 1"), {"ch": channel_id}
    ).first()
    return found is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="20,000 contacts (CI)")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    args = parser.parse_args()
    count = 20_000 if args.smoke else args.contacts
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
            r = asyncio.run(run(url, count))
        figure = (
            f"DeleteChannel {r['delete_ms']:,.0f} ms; the other merchant's writes while forgotten "
            f"p50 {r['p50_ms']:,.0f} ms, p99 {r['p99_ms']:,.0f} ms, longest "
            f"{r['longest_ms']:,.0f} ms (alone p99 {r['quiet_p99_ms']:,.0f}); forgotten in "
            f"{r['forget_s']:,.1f} s; in one transaction instead: {r['inline_s']:,.1f} s, "
            f"longest write {r['inline_longest_ms']:,.0f} ms"
        )
        print(f"{backend}: {count:,} contacts: {figure}")
        record("channel_delete", backend, figure, count=count, **r)


if __name__ == "__main__":
    main()
