"""Contact sync of 1,000,000 LINE followers from the emulator, through the real service.

    ./dev run python bench/contact_sync.py [--backend sqlite|postgresql|both] [--smoke]

Starts the LINE emulator (a separate process) with one verified account and N followers, and
`broadcaster serve` (another process) on a fresh database; connects the channel over gRPC
(CreateChannel starts the sync), then polls GetChannel. Prints the time from the connection
until every follower is a contact (`followers_complete`; target <= 60 s for 1,000,000) and the
rate at which profiles follow (LINE allows 2,000 profile requests/s, so profiles for a million
followers take at least 500 s whatever the client does; they continue in the background).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import grpc

from bench.live import ADMIN, SECRET, TOKEN, emulator, service
from bench.results import record
from broadcaster.v1 import channel_service_pb2 as pb
from broadcaster.v1 import channel_service_pb2_grpc as pb_grpc
from tests.databases import fresh_database


def run(backend: str, followers: int, profile_seconds: float) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(backend, Path(tmp)) as url,
        emulator("--token", TOKEN, "--secret", SECRET, "--tier", "verified",
                 "--followers", str(followers)) as (line_api, _),
        service(  # CreateChannel starts the sync
            url, Path(tmp) / "serve.log", line_api, {"BROADCASTER_FOLLOWER_SYNC_INTERVAL": "86400"}
        ) as server,
        grpc.insecure_channel(server.target) as channel,
    ):  # fmt: skip
        stub = pb_grpc.ChannelServiceStub(channel)
        started = time.perf_counter()
        made = stub.CreateChannel(
            pb.CreateChannelRequest(
                parent="merchants/bench",
                channel=pb.Channel(
                    type="line",
                    credentials={"channel_access_token": TOKEN, "channel_secret": SECRET},
                ),
            ),
            metadata=ADMIN,
        )
        while True:
            sync = stub.GetChannel(pb.GetChannelRequest(name=made.name), metadata=ADMIN).last_sync
            if sync.followers_complete or sync.state not in (0, pb.ContactSync.RUNNING):
                break
            time.sleep(0.2)
        listed = time.perf_counter() - started
        assert sync.contacts_synced == followers, sync
        first_profiles, t0 = sync.profiles_fetched, time.perf_counter()
        time.sleep(profile_seconds)
        sync = stub.GetChannel(pb.GetChannelRequest(name=made.name), metadata=ADMIN).last_sync
        rate = (sync.profiles_fetched - first_profiles) / (time.perf_counter() - t0)
        print(
            f"{backend}: {followers:,} followers listed into contacts in {listed:.1f} s "
            f"({followers / listed:,.0f} contacts/s); profiles then at {rate:,.0f}/s "
            f"(all {followers:,} in ~{followers / max(rate, 1):,.0f} s)"
        )
        record(
            "contact_sync.followers",
            backend,
            f"{listed:.1f} s",
            seconds=listed,
            followers=followers,
        )
        record("contact_sync.profiles", backend, f"{rate:,.0f} profiles/s", per_s=rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="20,000 followers (CI)")
    args = parser.parse_args()
    followers, profile_seconds = (20_000, 2.0) if args.smoke else (1_000_000, 10.0)
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, followers, profile_seconds)


if __name__ == "__main__":
    main()
