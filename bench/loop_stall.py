"""Event-loop stall and memory while callers send the largest requests the API takes, against
the real service.

    ./dev run python -m bench.loop_stall [--backend sqlite|postgresql|both] [--smoke]

`broadcaster serve` (a process) on a fresh database with one channel and one customer group.
For a fixed time, 20 authenticated callers each send, one after another, a 10,000-contact
BatchCreateContacts (2 MB, merged into the same contacts) or a 100,000-id
AddCustomerGroupMembers (2.4 MB), and 2 unauthenticated callers send 16 MB requests without a
token. The stall is the longest event-loop lag the service itself measured
(`broadcaster_event_loop_lag_max_seconds`: a 10 ms ticker on its loop, read from /metrics); RSS
is read from /proc before, at its peak during, and after the load.
Targets: stall <= 50 ms; RSS back within 200 MB of where it started (bounded, not growing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

import grpc

from bench.live import ADMIN, live, memory_mb, scrape
from bench.results import record
from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import customer_group_service_pb2 as gpb
from broadcaster.v1 import customer_group_service_pb2_grpc as gpb_grpc
from tests.databases import fresh_database

CALLERS, INTRUDERS = 20, 2
CONTACTS, MEMBERS = 10_000, 100_000
JUNK = 16 * 1024 * 1024
BIG = 64 * 1024 * 1024


def _metrics(http_port: int, *names: str) -> list[float]:
    """The values of the named series (`name` or `name{labels}`), from one scrape of /metrics."""
    found = scrape(http_port)
    return [found[name] for name in names]


def _contacts(channel: str) -> bytes:
    contacts = [
        cpb.Contact(
            external_id=f"U{n:032x}",
            display_name=f"Customer {n}",
            picture_uri=f"https://profile.line-scdn.net/0h{n:040x}/preview",
            customer_id=f"cust-{n:07d}",
        )
        for n in range(CONTACTS)
    ]
    return cpb.BatchCreateContactsRequest(parent=channel, contacts=contacts).SerializeToString()


def _members(group: str) -> bytes:
    ids = [f"cust-{n:07d}-{'x' * 8}" for n in range(MEMBERS)]
    return gpb.AddCustomerGroupMembersRequest(
        customer_group=group, customer_ids=ids
    ).SerializeToString()


async def load(target: str, seconds: float, contacts: bytes, members: bytes) -> dict[str, int]:
    done = {"contacts": 0, "members": 0, "refused": 0, "errors": 0}
    options = [("grpc.max_send_message_length", BIG), ("grpc.max_receive_message_length", BIG)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        batch = channel.unary_unary(
            "/broadcaster.v1.ContactService/BatchCreateContacts",
            request_serializer=None,
            response_deserializer=None,
        )
        add = channel.unary_unary(
            "/broadcaster.v1.CustomerGroupService/AddCustomerGroupMembers",
            request_serializer=None,
            response_deserializer=None,
        )
        deadline = time.perf_counter() + seconds

        async def caller(n: int) -> None:
            while time.perf_counter() < deadline:
                kind = "contacts" if n % 2 == 0 else "members"
                try:
                    if kind == "contacts":
                        await batch(contacts, metadata=ADMIN, timeout=120)
                    else:
                        await add(members, metadata=ADMIN, timeout=120)
                    done[kind] += 1
                except grpc.RpcError:
                    done["errors"] += 1
                n += 1

        junk = b"\x12\x00" * (JUNK // 2)

        async def intruder() -> None:
            while time.perf_counter() < deadline:
                try:
                    await batch(junk, timeout=60)
                except grpc.aio.AioRpcError as e:
                    refused = e.code() == grpc.StatusCode.UNAUTHENTICATED
                    done["refused" if refused else "errors"] += 1

        await asyncio.gather(
            *(caller(i) for i in range(CALLERS)), *(intruder() for _ in range(INTRUDERS))
        )
    return done


def run(backend: str, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
        server = live.start(url, Path(tmp) / "serve.log")
        try:
            with grpc.insecure_channel(server.target) as channel:
                made = live.connect_fake(channel, "merchants/bench", tier="verified")
                group = gpb_grpc.CustomerGroupServiceStub(channel).CreateCustomerGroup(
                    gpb.CreateCustomerGroupRequest(
                        parent="merchants/bench",
                        customer_group=gpb.CustomerGroup(display_name="Everyone"),
                    ),
                    metadata=ADMIN,
                )
            contacts, members = _contacts(made.name), _members(group.name)
            pid = server.process.pid
            before = memory_mb(pid, "VmRSS")
            [stall_before] = _metrics(server.http_port, "broadcaster_event_loop_lag_max_seconds")
            peak = [before]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.1):
                    peak[0] = max(peak[0], memory_mb(pid, "VmRSS"))

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            done = asyncio.run(load(server.target, seconds, contacts, members))
            elapsed = time.perf_counter() - started
            sampling.set()
            sampler.join()
            time.sleep(2.0)
            after = memory_mb(pid, "VmRSS")
            stall, ticks, quick = _metrics(
                server.http_port,
                "broadcaster_event_loop_lag_max_seconds",
                "broadcaster_event_loop_lag_seconds_count",
                'broadcaster_event_loop_lag_seconds_bucket{le="0.05"}',
            )
            over = ticks - quick
        finally:
            server.stop()
    stall_ms = stall * 1000
    machine_load = os.getloadavg()[0]
    print(
        f"{backend}: {elapsed:.0f} s, {CALLERS} callers: {done['contacts']} contact batches of "
        f"{CONTACTS:,} ({len(contacts) / 2**20:.1f} MB), {done['members']} member batches of "
        f"{MEMBERS:,} ({len(members) / 2**20:.1f} MB), {done['errors']} errors; "
        f"{INTRUDERS} intruders: {done['refused']} unauthenticated 16 MB requests refused"
    )
    print(
        f"{backend}: event-loop stall max {stall_ms:.1f} ms (before the load: "
        f"{stall_before * 1000:.1f} ms; {over:.0f} ticks over 50 ms); RSS {before:.0f} MB -> "
        f"peak {peak[0]:.0f} MB -> {after:.0f} MB after; machine load average {machine_load:.1f} "
        f"({os.cpu_count()} CPUs)"
    )
    record(
        "loop_stall",
        backend,
        f"stall {stall_ms:.0f} ms, RSS {before:.0f} → peak {peak[0]:.0f} → {after:.0f} MB "
        f"({done['contacts'] + done['members']} max-size calls, {done['refused']} of 16 MB "
        "unauthenticated refused)",
        stall_ms=stall_ms,
        rss_growth_mb=after - before,
        rss_peak_mb=peak[0],
        errors=done["errors"],
        load_average=machine_load,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="three seconds per backend (CI)")
    args = parser.parse_args()
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, 3.0 if args.smoke else 30.0)


if __name__ == "__main__":
    main()
