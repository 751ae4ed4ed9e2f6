"""GetBroadcast and ListBroadcasts with 50 calls in flight, against the real service.

    ./dev run python -m bench.broadcast_reads [--backend sqlite|postgresql|both] [--smoke]

`broadcaster serve` (a process) on a fresh database with 200 drafts; this process keeps 50
calls in flight over one gRPC channel (grpc.aio) for a fixed time and counts completed calls.
Target: >= 1,500 calls/s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from bench.live import ADMIN, cpu_seconds, live
from bench.results import record
from broadcaster.v1 import broadcast_service_pb2 as pb
from broadcaster.v1 import broadcast_service_pb2_grpc as pb_grpc
from tests.databases import fresh_database

IN_FLIGHT = 50


async def hammer(target: str, seconds: float, names: list[str]) -> dict[str, float]:
    results: dict[str, float] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.BroadcastServiceStub(channel)
        calls = {
            "GetBroadcast": lambda n: stub.GetBroadcast(
                pb.GetBroadcastRequest(name=names[n % len(names)]), metadata=ADMIN
            ),
            "ListBroadcasts": lambda n: stub.ListBroadcasts(
                pb.ListBroadcastsRequest(parent="merchants/bench", page_size=20), metadata=ADMIN
            ),
        }
        for label, call in calls.items():
            done = 0
            deadline = time.perf_counter() + seconds

            async def worker(offset: int, call: Any = call, deadline: float = deadline) -> None:
                nonlocal done
                n = offset
                while time.perf_counter() < deadline:
                    await call(n)
                    done += 1
                    n += IN_FLIGHT

            started = time.perf_counter()
            await asyncio.gather(*(worker(i) for i in range(IN_FLIGHT)))
            results[label] = done / (time.perf_counter() - started)
    return results


def run(backend: str, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
        server = live.start(url, Path(tmp) / "serve.log")
        try:
            with grpc.insecure_channel(server.target) as channel:
                made = live.connect_fake(channel, "merchants/bench", tier="verified")
                stub = pb_grpc.BroadcastServiceStub(channel)
                names = [
                    stub.CreateBroadcast(
                        pb.CreateBroadcastRequest(
                            parent="merchants/bench",
                            broadcast=pb.Broadcast(
                                display_name=f"Campaign {n}",
                                channel=made.name,
                                audience=pb.Audience(last_interaction=pb.Audience.LAST_7_DAYS),
                                messages=[pb.BroadcastMessage(text=pb.TextContent(text="Hi"))],
                            ),
                        ),
                        metadata=ADMIN,
                    ).name
                    for n in range(200)
                ]
            before = cpu_seconds(server.process.pid)
            started = time.perf_counter()
            rates = asyncio.run(hammer(server.target, seconds, names))
            busy = (cpu_seconds(server.process.pid) - before) / (time.perf_counter() - started)
        finally:
            server.stop()
    for label, rate in rates.items():
        print(f"{backend}: {label}, {IN_FLIGHT} in flight: {rate:,.0f} calls/s")
        row = {"GetBroadcast": "broadcast_reads.get", "ListBroadcasts": "broadcast_reads.list"}
        record(row[label], backend, f"{rate:,.0f}", per_s=rate, service_cpu=busy)
    print(f"{backend}: the service used {busy:.0%} of one core meanwhile (the client the rest)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="one second per method (CI)")
    args = parser.parse_args()
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, 1.0 if args.smoke else 10.0)


if __name__ == "__main__":
    main()
