"""Firing lateness: N broadcasts scheduled for the same second on one replica, and how late
each is sent.

    ./dev run python -m bench.schedule_firing [--backend sqlite|postgresql|both] [--smoke]
        [--broadcasts N] [--followers F] [--lead SECONDS]

The LINE emulator runs in its own process with one verified account of F followers;
`broadcaster serve` runs in another on a fresh database, with its minimum schedule lead lowered
(`BROADCASTER_SCHEDULE_MIN_LEAD`) so the run need not wait a minute. N drafts are created, then
all scheduled (16 callers at once) for the same whole second, `--lead` seconds after the last
draft was made. Reported once every broadcast has left SCHEDULED: lateness, from each
broadcast's `schedule_time` to its `send_time` (when its send was accepted, recipients fixed),
p50 / p99 / max; the service's CPU-seconds from a second before that time until the last was
sent; and that every one was sent (none FAILED) and the emulator delivered each exactly once
(N times F deliveries once dispatch ends).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from bench.dispatch import _connect, _control, _seed_contacts
from bench.live import ADMIN, cpu_seconds, emulator, service
from bench.results import record
from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import broadcast_service_pb2_grpc as bpb_grpc
from tests.databases import fresh_database

TOKEN, SECRET = "schedule-bench-token-0123456789", "schedule-bench-secret"
MERCHANT = "shop-scheduled"
CALLERS = 16


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def _draft(stub: bpb_grpc.BroadcastServiceStub, channel_name: str, n: int) -> str:
    return stub.CreateBroadcast(
        bpb.CreateBroadcastRequest(
            parent=f"merchants/{MERCHANT}",
            broadcast=bpb.Broadcast(
                display_name=f"Flash sale {n}",
                channel=channel_name,
                audience=bpb.Audience(last_interaction=bpb.Audience.ALL_CONTACTS),
                messages=[bpb.BroadcastMessage(text=bpb.TextContent(text="Flash sale: 9 am"))],
            ),
        ),
        metadata=ADMIN,
    ).name


def run(backend: str, broadcasts: int, followers: int, lead: float) -> None:
    account = f"token={TOKEN},secret={SECRET},tier=verified,followers={followers}"
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(backend, Path(tmp)) as url,
        emulator("--account", account) as (api, (seeded,)),
        service(
            url, Path(tmp) / "serve.log", api, {"BROADCASTER_SCHEDULE_MIN_LEAD": "1"}
        ) as server,
        grpc.insecure_channel(server.target) as channel,
        ThreadPoolExecutor(CALLERS) as pool,
    ):
        stub = bpb_grpc.BroadcastServiceStub(channel)
        channel_name = _connect(channel, MERCHANT, TOKEN, SECRET)
        ids = _control(api, f"accounts/{seeded['channelId']}/followers")["userIds"]
        _seed_contacts(url, MERCHANT, channel_name.rsplit("/", 1)[1], ids)
        names = list(pool.map(lambda n: _draft(stub, channel_name, n), range(broadcasts)))
        at = Timestamp(seconds=int(time.time() + lead) + 1)

        def schedule(name: str) -> None:
            request = bpb.ScheduleBroadcastRequest(name=name, schedule_time=at)
            stub.ScheduleBroadcast(request, metadata=ADMIN)

        started = time.perf_counter()
        list(pool.map(schedule, names))
        took = time.perf_counter() - started
        left = at.seconds - time.time()
        assert left > 1, f"scheduling took {took:.1f} s: raise --lead"
        print(f"  {broadcasts} scheduled in {took:.1f} s, due in {left:.1f} s")
        time.sleep(left - 1)
        pid = server.process.pid
        cpu = cpu_seconds(pid)

        def page(state: int, size: int, token: str = "") -> bpb.ListBroadcastsResponse:
            request = bpb.ListBroadcastsRequest(
                parent=f"merchants/{MERCHANT}", state=state, page_size=size, page_token=token
            )
            return stub.ListBroadcasts(request, metadata=ADMIN)

        # One small call per poll, as a caller watching its schedule would make: reading every
        # broadcast each time would load the service it measures.
        deadline = time.monotonic() + 120
        while page(bpb.Broadcast.SCHEDULED, 1).broadcasts:
            time.sleep(0.25)
            assert time.monotonic() < deadline, "still scheduled after 120 s"
        cpu = cpu_seconds(pid) - cpu
        done: list[bpb.Broadcast] = []
        token, wanted = "", set(names)
        while True:
            listed = page(bpb.Broadcast.STATE_UNSPECIFIED, 1000, token)
            done.extend(b for b in listed.broadcasts if b.name in wanted)
            token = listed.next_page_token
            if not token:
                break
        assert len(done) == broadcasts, (len(done), broadcasts)
        failed = [b for b in done if b.state == bpb.Broadcast.FAILED]
        assert not failed, f"{len(failed)} failed, e.g. {failed[0].failure_reason}"
        late = [
            (b.send_time.ToMicroseconds() - b.schedule_time.ToMicroseconds()) / 1e6 for b in done
        ]
        assert min(late) >= 0, "sent before its time"
        assert all(b.counters.total == followers for b in done)
        expected = broadcasts * followers
        summary: dict[str, int] = {}
        for _ in range(300):
            summary = _control(api, f"accounts/{seeded['channelId']}/deliveries/summary")
            if summary["totalDeliveries"] >= expected:
                break
            time.sleep(0.2)
        assert summary["totalDeliveries"] == expected, (summary, expected)

    p50, p99, worst = statistics.median(late), _percentile(late, 0.99), max(late)
    print(
        f"{backend}: {broadcasts} broadcasts due at one second: lateness p50 {p50 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {worst * 1000:.0f} ms; service {cpu:.1f} CPU-s; "
        f"{expected:,} deliveries, each once"
    )
    record(
        "schedule_firing",
        backend,
        f"p99 {p99 * 1000:.0f} ms, p50 {p50 * 1000:.0f} ms, max {worst * 1000:.0f} ms; "
        f"{cpu:.1f} CPU-s",
        p50_s=p50,
        p99_s=p99,
        max_s=worst,
        cpu_s=cpu,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="a small run (CI)")
    parser.add_argument("--broadcasts", type=int, help="N (default 1,000; smoke 50)")
    parser.add_argument("--followers", type=int, default=5, help="F (default %(default)s)")
    parser.add_argument("--lead", type=float, help="seconds ahead (default 30; smoke 4)")
    args = parser.parse_args()
    broadcasts = args.broadcasts or (50 if args.smoke else 1_000)
    lead = args.lead or (4.0 if args.smoke else 30.0)
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, broadcasts, args.followers, lead)


if __name__ == "__main__":
    main()
