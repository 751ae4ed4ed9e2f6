"""Webhook ingestion with signature checks, through the real service.

    ./dev run python -m bench.webhooks [--backend sqlite|postgresql|both] [--smoke]

The LINE emulator (a process) hosts one account; `broadcaster serve` (another process) has it
connected. This process builds LINE webhook bodies with the emulator's event builders (follows,
messages, postbacks from 20,000 users), signs them with the channel secret, and posts them to
the service with 64 requests in flight: first one event per request (the strictest case), then
ten per request (LINE batches events that happen together). Every request must answer 200.
Prints events/s for each. Target: >= 3,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from broadcaster_line_emulator import LineEmulator
from broadcaster_line_emulator.webhooks import callback_body, sign

from bench.live import ADMIN, SECRET, TOKEN, emulator, service
from bench.results import record
from broadcaster.v1 import channel_service_pb2 as pb
from broadcaster.v1 import channel_service_pb2_grpc as pb_grpc
from tests.databases import fresh_database

IN_FLIGHT = 64


def build_events(count: int) -> list[dict[str, Any]]:
    factory = LineEmulator().events
    events: list[dict[str, Any]] = []
    base = int(time.time() * 1000) - count
    for n in range(count):
        user = f"U{n % 20_000:032x}"
        kind = n % 4
        if kind == 0:
            events.append(factory.follow(user, timestamp_ms=base + n))
        elif kind == 3:
            events.append(factory.postback(user, f"item={n}", timestamp_ms=base + n))
        else:
            events.append(factory.text_message(user, f"hello {n}", timestamp_ms=base + n))
    return events


async def post_all(url: str, bodies: list[bytes]) -> float:
    gate = asyncio.Semaphore(IN_FLIGHT)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(body: bytes) -> None:
            headers = {"content-type": "application/json", "x-line-signature": sign(SECRET, body)}
            async with gate, session.post(url, data=body, headers=headers) as reply:
                assert reply.status == 200, (reply.status, await reply.text())

        started = time.perf_counter()
        await asyncio.gather(*(post(b) for b in bodies))
        return time.perf_counter() - started


def run(backend: str, events: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(backend, Path(tmp)) as url,
        emulator("--token", TOKEN, "--secret", SECRET, "--tier", "none") as (line_api, accounts),
        service(url, Path(tmp) / "serve.log", line_api) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        made = pb_grpc.ChannelServiceStub(channel).CreateChannel(
            pb.CreateChannelRequest(
                parent="merchants/bench",
                channel=pb.Channel(
                    type="line",
                    credentials={"channel_access_token": TOKEN, "channel_secret": SECRET},
                ),
            ),
            metadata=ADMIN,
        )
        hook = f"http://127.0.0.1:{server.http_port}{made.webhook_path}"
        destination = accounts[0].get("botUserId", "Ubench")
        built = build_events(events * 2)
        for per_request, chunk in ((1, built[:events]), (10, built[events:])):
            bodies = [
                callback_body(destination, chunk[i : i + per_request])
                for i in range(0, len(chunk), per_request)
            ]
            took = asyncio.run(post_all(hook, bodies))
            print(
                f"{backend}: {len(chunk):,} signed events, {per_request} per request, "
                f"{IN_FLIGHT} in flight: {len(chunk) / took:,.0f} events/s"
            )
            row = "webhooks.single" if per_request == 1 else "webhooks.batched"
            rate = len(chunk) / took
            record(row, backend, f"{rate:,.0f}", per_s=rate, events=len(chunk))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="2,000 events (CI)")
    args = parser.parse_args()
    events = 2_000 if args.smoke else 30_000
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, events)


if __name__ == "__main__":
    main()
