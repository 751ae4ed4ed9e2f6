"""Drain on deploy: two replicas on PostgreSQL sending one broadcast to 1,000,000 LINE
followers, each restarted in turn (SIGTERM, then started again) in the middle of the send, as a
rolling deploy does.

    ./dev run python -m bench.drain [--smoke] [--recipients N] [--latency SECONDS]

The LINE emulator runs in its own process with one verified account; two `broadcaster serve`
processes share a fresh PostgreSQL database. The followers are written straight into the
database as contacts; one broadcast (a text and an image bubble) is sent through the first
replica. Once some of it is sent, the replica sending it gets SIGTERM, and is started again as
soon as it has exited; once it is ready, the other replica (sending by then) gets the same.

Reported, from the emulator's own records: that every follower received the broadcast exactly
once; the longest pause between two accepted multicast requests (from one's answer to the
next one's, over the whole send: target ≤ 2 s); how many batches were sent again (answered
"already accepted": none when every drain recorded its batches in time); and for each restart,
how long the replica took from SIGTERM to exit and how long until the other sent again.

--smoke sends to 150,000 followers with 1.5 s of emulated latency on each request and at most
32 requests of the channel in flight (BROADCASTER_CHANNEL_IN_FLIGHT), so that the send lasts
long enough for both restarts: about 21 requests a second, where a channel's bound in flight,
which follows its answer time, would reach 192 and send the 300 batches before the second
restart. A pause then includes one request's latency (the replica that drains waits for the
answers to its requests before letting the channel go). The full run has no added latency.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.dispatch import ENGINE, _connect, _control, _draft, _seed_contacts
from bench.live import ADMIN, NO_AUTOMATIC_SYNCS, emulator, scrape
from bench.results import record
from broadcaster.store import migrate
from broadcaster.store.database import Database
from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import broadcast_service_pb2_grpc as bpb_grpc
from tests.databases import fresh_database
from tests.e2e import server as live

TARGET_GAP = 2.0
ACCEPTED = 'broadcaster_channel_responses_total{channel_type="line",outcome="accepted"}'


@dataclass
class Replica:
    """One `serve` process of the two, restarted in place."""

    n: int
    url: str
    api: str
    logs: Path
    in_flight: int  # BROADCASTER_CHANNEL_IN_FLIGHT
    server: live.Server | None = None
    starts: int = 0

    def start(self) -> None:
        self.server = live.start(
            self.url,
            self.logs / f"serve-{self.n}-{self.starts}.log",
            extra_env={
                "BROADCASTER_PLUGINS": "line",
                "BROADCASTER_LINE_API_BASE": self.api,
                "BROADCASTER_CHANNEL_IN_FLIGHT": str(self.in_flight),
                **NO_AUTOMATIC_SYNCS,
            },
        )
        self.starts += 1

    def accepted(self) -> float:
        assert self.server is not None
        return scrape(self.server.http_port).get(ACCEPTED, 0.0)

    def ready(self) -> bool:
        assert self.server is not None
        url = f"http://127.0.0.1:{self.server.http_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return bool(reply.status == 200)
        except urllib.error.HTTPError:
            return False

    def sigterm(self) -> float:
        """SIGTERM, and the seconds until the process exited (status 0)."""
        assert self.server is not None
        started = time.perf_counter()
        self.server.process.send_signal(signal.SIGTERM)
        code = self.server.process.wait(timeout=60)
        took = time.perf_counter() - started
        assert code == 0, f"replica {self.n} exited with {code}: see {self.server.log}"
        return took

    def stop(self) -> None:
        if self.server is not None and self.server.process.poll() is None:
            self.server.stop()


def _sent(stub: bpb_grpc.BroadcastServiceStub, name: str) -> bpb.Broadcast:
    return stub.GetBroadcast(bpb.GetBroadcastRequest(name=name), metadata=ADMIN)


class TimedOut(Exception):
    pass


def _wait(what: str, check: Any, timeout: float = 120, every: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise TimedOut(f"drain bench: timed out waiting for {what}")
        time.sleep(every)
    return found


def _resumed(api: str, channel_id: str, span: dict[str, Any]) -> float:
    """Seconds until the emulator accepted another multicast of the channel than those of
    `span` (the channel's accepted requests so far)."""
    started = time.perf_counter()
    _wait(
        "the other replica to send",
        lambda: (
            _control(api, "stats")["acceptedSpans"][f"{channel_id}/multicast"]["count"]
            > span["count"]
        ),
        every=0.01,
    )
    return time.perf_counter() - started


def run(recipients: int, latency: float, in_flight: int) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database("postgresql", Path(tmp)) as url,
        emulator(
            "--account",
            f"token={ENGINE[0]},secret={ENGINE[1]},tier=verified,followers={recipients}",
        ) as (api, accounts),
    ):
        account = accounts[0]
        channel_id = account["channelId"]
        replicas = [Replica(n, url, api, Path(tmp), in_flight) for n in (0, 1)]
        try:
            # As a deploy does: the schema first (`broadcaster migrate`), then the replicas,
            # both at once.
            db = Database.from_url(url, threads=1)
            migrate.upgrade(db.engine)
            db.close()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(Replica.start, replicas))
            first = replicas[0].server
            assert first is not None
            with grpc.insecure_channel(first.target) as channel:
                name = _connect(channel, "bench", *ENGINE)
                ids = _control(api, f"accounts/{channel_id}/followers")["userIds"]
                _seed_contacts(url, "bench", name.rsplit("/", 1)[1], ids)
                draft = _draft(channel, "bench", name)
            if latency:
                _control(api, "faults", {"latency": latency, "endpoints": ["multicast"]})
            restarts = []
            with grpc.insecure_channel(first.target) as channel:
                stub = bpb_grpc.BroadcastServiceStub(channel)
                started = time.perf_counter()
                stub.SendBroadcast(bpb.SendBroadcastRequest(name=draft), metadata=ADMIN)
                _wait("the first recipients", lambda: _sent(stub, draft).counters.sent > 0)
            # The replica sending is the one LINE accepted requests from; after its restart,
            # the other one is.
            sending = max(replicas, key=Replica.accepted)
            for _ in range(2):
                other = replicas[1 - sending.n]
                assert other.server is not None
                with grpc.insecure_channel(other.server.target) as channel:
                    stub = bpb_grpc.BroadcastServiceStub(channel)
                    before = _sent(stub, draft)
                    assert before.state == bpb.Broadcast.SENDING, "the send ended before a restart"
                    exited = sending.sigterm()
                    # Its own answers may still have come after SIGTERM: count from its exit.
                    spans = _control(api, "stats")["acceptedSpans"]
                    resumed = exited + _resumed(api, channel_id, spans[f"{channel_id}/multicast"])
                    at = before.counters.sent / recipients
                sending.start()
                _wait(f"replica {sending.n} to be ready", sending.ready)
                restarts.append((sending.n, at, exited, resumed))
                print(
                    f"replica {sending.n} restarted at {at:.0%} sent, back after "
                    f"{time.perf_counter() - started:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
                sending = other
            assert sending.server is not None
            with grpc.insecure_channel(sending.server.target) as channel:
                stub = bpb_grpc.BroadcastServiceStub(channel)
                done = _wait(
                    "the broadcast to finish",
                    lambda: (b := _sent(stub, draft)).state != bpb.Broadcast.SENDING and b,
                    timeout=3600,
                    every=0.05,
                )
            took = time.perf_counter() - started
        except TimedOut as e:
            for log in sorted(Path(tmp).glob("serve-*.log")):
                tail = "\n".join(log.read_text().splitlines()[-15:])
                print(f"--- {log.name} (last lines)\n{tail}")
            raise SystemExit(str(e)) from None
        finally:
            for replica in replicas:
                replica.stop()
        summary = _control(api, f"accounts/{channel_id}/deliveries/summary")
        stats = _control(api, "stats")
    span = stats["acceptedSpans"][f"{channel_id}/multicast"]
    gap, arrival_gap = span["longestGap"], span["longestArrivalGap"]
    again = sum(
        r["count"]
        for r in stats["requests"]
        if r["channelId"] == channel_id and r["endpoint"] == "multicast" and r["status"] == 409
    )
    assert done.state == bpb.Broadcast.SENT, done
    assert (done.counters.sent, done.counters.failed) == (recipients, 0), done.counters
    assert summary["usersReached"] == recipients, summary
    assert summary["usersReachedMoreThanOnce"] == 0, summary
    steps = "; ".join(
        f"replica {n} at {at:.0%}: exited {exited:.2f} s after SIGTERM, the other sent "
        f"{resumed:.2f} s after SIGTERM"
        for n, at, exited, resumed in restarts
    )
    added = f" (each request answered after {latency:g} s)" if latency else ""
    met = "meets" if gap <= TARGET_GAP + latency else "misses"
    print(
        f"postgresql: {recipients:,} recipients in {took:.1f} s across 2 restarts{added}, each "
        f"exactly once; longest pause between accepted requests {gap:.2f} s ({met} the "
        f"{TARGET_GAP:g} s target{' + latency' if latency else ''}; between their arrivals "
        f"{arrival_gap:.2f} s); {again} batches sent again (409); {steps}"
    )
    record(
        "drain.restarts",
        "postgresql",
        f"longest pause {gap:.2f} s, {again} batches sent again; {recipients:,} recipients, "
        f"each exactly once, in {took:.1f} s",
        gap_s=gap,
        arrival_gap_s=arrival_gap,
        resent=again,
        recipients=recipients,
        seconds=took,
        exit_s=max(r[2] for r in restarts),
    )
    record("drain.restarts", "sqlite", "(replicas share PostgreSQL only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="150,000 recipients, 1.5 s per request (CI)"
    )
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--latency", type=float, help="seconds added to each multicast answer")
    args = parser.parse_args()
    if args.smoke:
        recipients, latency, in_flight = 150_000, 1.5, 32
    else:
        recipients, latency, in_flight = args.recipients, 0.0, 192
    if args.latency is not None:
        latency = args.latency
    run(recipients, latency, in_flight)


if __name__ == "__main__":
    main()
