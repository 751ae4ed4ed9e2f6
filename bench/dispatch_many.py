"""Many merchants at once: K merchants, one LINE channel each, one broadcast of N followers each,
all sent at the same moment through the real service; and the cost of a replica with many
connected channels and nothing to send.

    ./dev run python -m bench.dispatch_many [--backend sqlite|postgresql|both] [--smoke]
        [--channels K ...] [--recipients N ...] [--idle CHANNELS] [--idle-seconds S]
        [--timeout S] [--talked] [--latency S]

The LINE emulator runs in its own process with 30 ms of latency on every request and 2K verified
accounts; `broadcaster serve` runs in another on a fresh database. Each merchant's account gets N
contacts (written straight into the database), a draft (a text and an image bubble), and then
all K drafts are sent from K threads at once.

Reported, from the emulator's own clock: the aggregate rate (every accepted multicast request
over the span from the first to the last, plus one request's duration), each channel's rate over
its own span (min / median / max), 429s; the service's CPU-seconds per 1,000 requests (from the
Sends to the last broadcast done, snapshots included), its database statements per request, the
seconds its write transactions took per 1,000 requests and as a share of that time (on SQLite,
how busy the one writer was), and peak RSS; on PostgreSQL, the database server's CPU-seconds
too. And that every follower of every account received its broadcast exactly once.

Beside it, the anchor: a bare `aiohttp` loop in this process posting the same 500-id bodies to
the other K accounts of the same emulator, each paced at the same share of its ceiling, with no
database: what Python can send on this box. The engine is reported as a share of it.

`--talked`: every contact has had a conversation with the account (a repeat send to an audience
that talks), so the broadcasts open none; by default none has (a first send, every recipient's
conversation created).

`--latency S`: LINE answers each multicast after S seconds instead of 0.03 (a channel at its
ceiling then keeps 200 x S requests in flight); not a row of the table. The most requests in
flight at once, at the emulator, is printed either way.

`--idle C`: C connected channels, nothing to send, for `--idle-seconds` (60): the service's CPU
as a share of one core and its database statements per second.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import grpc

from bench.dispatch import IMAGE, _connect, _control, _draft, _seed_contacts, _settle
from bench.live import ADMIN, cpu_seconds, emulator, memory_mb, scrape, service
from bench.results import record
from broadcaster.dispatch.engine import Settings
from broadcaster.dispatch.wire import AnswerPace
from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import broadcast_service_pb2_grpc as bpb_grpc
from tests.databases import fresh_database

LATENCY = 0.03
CEILING = 200
SHARE = 0.985  # the engine's pace, as a share of the ceiling: the anchor keeps the same
BATCH = 500
IN_FLIGHT = Settings()  # the engine's bounds in flight per channel, for the anchor


def _postgres_cpu() -> float:
    """CPU of every PostgreSQL server process of this machine so far (backends that exit take
    theirs with them; the service keeps its pool open)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == "postgres":
                total += cpu_seconds(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def _statements(http_port: int) -> float:
    """The service's `broadcaster_db_statements_total`, reads and writes."""
    return _database_work(http_port)[0]


def _database_work(http_port: int) -> tuple[float, float]:
    """From one scrape: the service's statements (`_statements`) and the seconds its write
    transactions took (`broadcaster_db_write_seconds_total`)."""
    found = scrape(http_port)
    statements = sum(
        v for k, v in found.items() if k.startswith("broadcaster_db_statements_total{")
    )
    return statements, found.get("broadcaster_db_write_seconds_total", 0.0)


def _accounts(prefix: str, count: int, followers: int) -> list[str]:
    args = []
    for i in range(count):
        token, secret = _token(prefix, i)
        args += ["--account", f"token={token},secret={secret},tier=verified,followers={followers}"]
    return args


def _token(prefix: str, i: int) -> tuple[str, str]:
    return f"{prefix}-token-{i:04d}-0123456789", f"{prefix}-secret-{i:04d}"


async def _anchor(
    api: str, tokens: list[str], ids: list[list[str]], latency: float
) -> tuple[float, float]:
    """Post every account's followers, 500 ids a request, each account paced at SHARE of its
    ceiling with as many requests in flight as the engine allows a channel answering in
    `latency` (dispatch.wire), no database. Returns (seconds, CPU-seconds)."""
    import aiohttp

    messages = [
        {"type": "text", "text": "Winter sale: 30% off"},
        {"type": "image", "originalContentUrl": IMAGE, "previewImageUrl": IMAGE},
    ]
    interval = 1 / (CEILING * SHARE)

    async def one(session: aiohttp.ClientSession, token: str, followers: list[str]) -> None:
        pace = AnswerPace(
            CEILING * SHARE, least=IN_FLIGHT.least_in_flight, most=IN_FLIGHT.in_flight
        )
        gate = asyncio.Semaphore(pace.answered(latency))
        start = time.monotonic()

        async def post(body: list[str]) -> None:
            async with gate:
                key = str(uuid.uuid4())
                headers = {"authorization": f"Bearer {token}", "x-line-retry-key": key}
                payload = {"to": body, "messages": messages}
                async with session.post(
                    f"{api}/v2/bot/message/multicast", json=payload, headers=headers
                ) as response:
                    await response.read()
                    assert response.status == 200, response.status

        posts = []
        for n, i in enumerate(range(0, len(followers), BATCH)):
            await asyncio.sleep(max(0.0, start + n * interval - time.monotonic()))
            posts.append(asyncio.create_task(post(followers[i : i + BATCH])))
        await asyncio.gather(*posts)

    cpu = time.process_time()
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one(session, t, f) for t, f in zip(tokens, ids, strict=True)))
    return time.perf_counter() - started, time.process_time() - cpu


def _span_rate(span: dict[str, float], latency: float) -> float:
    return span["count"] / (span["last"] - span["first"] + latency)


def _aggregate(spans: list[dict[str, float]], latency: float) -> float:
    first = min(s["first"] for s in spans)
    last = max(s["last"] for s in spans)
    return sum(s["count"] for s in spans) / (last - first + latency)


def _send_all(
    channel: grpc.Channel, drafts: list[str], log: Path, timeout: float, pid: int
) -> float:
    """Send every draft from a thread of its own at the same moment; wait until none is SENDING.
    Returns the seconds from the Sends to the last one done; prints when the Sends returned and
    the CPU the service (`pid`) had used by then. A broadcast still SENDING after
    `timeout` seconds fails the run, with the progress of each and the end of the service's
    log."""
    stub = bpb_grpc.BroadcastServiceStub(channel)
    ready = threading.Barrier(len(drafts) + 1)

    def send(name: str) -> None:
        ready.wait()
        stub.SendBroadcast(bpb.SendBroadcastRequest(name=name), metadata=ADMIN)

    threads = [threading.Thread(target=send, args=(d,)) for d in drafts]
    for t in threads:
        t.start()
    ready.wait()
    started, cpu = time.perf_counter(), cpu_seconds(pid)
    for t in threads:
        t.join()
    print(
        f"  the {len(drafts)} Sends returned after {time.perf_counter() - started:.1f} s, "
        f"the service having used {cpu_seconds(pid) - cpu:.1f} CPU-s"
    )
    # All are done when each is: one is asked about at a time, every 0.1 s until it is done,
    # then the next at once. (Asking about every broadcast every 0.1 s had the service answer
    # K x 10 GetBroadcast calls a second, 320 at K = 32, whose CPU counted as the sending's.)
    waiting = list(drafts)
    while waiting:
        b = stub.GetBroadcast(bpb.GetBroadcastRequest(name=waiting[0]), metadata=ADMIN)
        if b.state != bpb.Broadcast.SENDING:
            assert b.state == bpb.Broadcast.SENT, b
            waiting.pop(0)
            continue
        if time.perf_counter() - started > timeout:
            _give_up(stub, waiting, log, timeout)
        time.sleep(0.1)
    return time.perf_counter() - started


def _give_up(
    stub: bpb_grpc.BroadcastServiceStub, waiting: list[str], log: Path, timeout: float
) -> None:
    """Print what the unfinished broadcasts had reached and the end of the service's log, and
    fail the run."""
    for name in waiting:
        b = stub.GetBroadcast(bpb.GetBroadcastRequest(name=name), metadata=ADMIN)
        print(f"  {name}: {bpb.Broadcast.State.Name(b.state)}; {b.counters}".replace("\n", " "))
    print("  the service's log, last lines:")
    for line in log.read_text(errors="replace").splitlines()[-40:]:
        print(f"    {line}")
    raise SystemExit(f"{len(waiting)} broadcasts still SENDING after {timeout:.0f} s")


def run(
    backend: str,
    channels: int,
    recipients: int,
    timeout: float,
    talked: bool = False,
    latency: float = LATENCY,
) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(backend, Path(tmp)) as url,
        emulator(*_accounts("m", channels, recipients), *_accounts("a", channels, recipients)) as (
            api,
            accounts,
        ),
        service(url, Path(tmp) / "serve.log", api) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        ours, theirs = accounts[:channels], accounts[channels:]
        drafts = []
        for i, account in enumerate(ours):
            merchant = f"shop-{i:03d}"
            name = _connect(channel, merchant, *_token("m", i))
            ids = _control(api, f"accounts/{account['channelId']}/followers")["userIds"]
            _seed_contacts(url, merchant, name.rsplit("/", 1)[1], ids, talked=talked)
            drafts.append(_draft(channel, merchant, name))
        _settle(url)
        _control(api, "faults", {"latency": latency})

        pid = server.process.pid
        cpu, db_cpu = cpu_seconds(pid), _postgres_cpu()
        statements, writing = _database_work(server.http_port)
        took = _send_all(channel, drafts, Path(tmp) / "serve.log", timeout, pid)
        cpu = cpu_seconds(pid) - cpu
        db_cpu = _postgres_cpu() - db_cpu if backend == "postgresql" else float("nan")
        statements_after, writing_after = _database_work(server.http_port)
        statements, writing = statements_after - statements, writing_after - writing
        rss = memory_mb(pid)
        stats = _control(api, "stats")
        spans = [stats["acceptedSpans"][f"{a['channelId']}/multicast"] for a in ours]
        for account in ours:
            summary = _control(api, f"accounts/{account['channelId']}/deliveries/summary")
            assert summary["usersReached"] == recipients, summary
            assert summary["usersReachedMoreThanOnce"] == 0, summary
        requests = sum(s["count"] for s in spans)
        limited = stats["rateLimited"].get("multicast", 0)
        rates = sorted(_span_rate(s, latency) for s in spans)
        aggregate = _aggregate(spans, latency)
        in_flight = stats["mostInProgress"].get("multicast", 0)

        anchor_ids = [
            _control(api, f"accounts/{a['channelId']}/followers")["userIds"] for a in theirs
        ]
        tokens = [_token("a", i)[0] for i in range(channels)]
        _, anchor_cpu = asyncio.run(_anchor(api, tokens, anchor_ids, latency))
        anchor_spans = [
            _control(api, "stats")["acceptedSpans"][f"{a['channelId']}/multicast"] for a in theirs
        ]
        anchor = _aggregate(anchor_spans, latency)
        anchor_requests = sum(s["count"] for s in anchor_spans)

        origin = min(s["first"] for s in spans)
        print(
            f"{backend}: each channel's first and last accepted request (s after the first): "
            + ", ".join(f"{s['first'] - origin:.1f}-{s['last'] - origin:.1f}" for s in spans)
        )
        per_k = 1000 * cpu / requests
        written_per_k = 1000 * writing / requests
        median = statistics.median(rates)
        shape = " (every contact had a conversation)" if talked else ""
        if latency != LATENCY:
            shape += f" ({latency * 1000:.0f} ms answers)"
        print(
            f"{backend}: K={channels} x {recipients:,}{shape}: aggregate {aggregate:,.0f} "
            f"multicast req/s of {channels * CEILING:,} ({aggregate / (channels * CEILING):.1%});"
            " per channel "
            f"min {rates[0]:.0f} / median {median:.0f} / max {rates[-1]:.0f} req/s "
            f"(min = {rates[0] / median:.0%} of median); at most {in_flight} in flight at once; "
            f"{limited} x 429; all done "
            f"{took:.1f} s after the Sends; service {cpu:.1f} CPU-s = {per_k:.2f} per 1,000 "
            f"requests, {statements / requests:.1f} statements per request, write transactions "
            f"{writing:.1f} s = {written_per_k:.2f} s per 1,000 requests ({writing / took:.0%} of "
            f"the time), peak RSS {rss:.0f} MB"
            + (f"; PostgreSQL {db_cpu:.1f} CPU-s" if backend == "postgresql" else "")
            + "; each follower exactly once"
        )
        print(
            f"{backend}: anchor (bare aiohttp, no database, same pace): {anchor:,.0f} req/s, "
            f"{1000 * anchor_cpu / anchor_requests:.2f} CPU-s per 1,000 requests; engine = "
            f"{aggregate / anchor:.0%} of the anchor"
        )
        if talked or latency != LATENCY:
            return  # not a row of the table
        record(
            f"dispatch_many.k{channels}",
            backend,
            f"{aggregate:,.0f} req/s ({aggregate / anchor:.0%} of bare aiohttp's "
            f"{anchor:,.0f}); channels {rates[0]:.0f}/{median:.0f}/{rates[-1]:.0f}; "
            f"{per_k:.2f} CPU-s per 1,000; writes {written_per_k:.2f} s per 1,000 "
            f"({writing / took:.0%} of the time); {limited} × 429; {rss:.0f} MB",  # noqa: RUF001
            req_per_s=aggregate,
            channels=channels,
            recipients=recipients,
            min_channel=rates[0],
            median_channel=median,
            max_channel=rates[-1],
            min_share=rates[0] / median,
            cpu_per_1000=per_k,
            statements_per_request=statements / requests,
            write_seconds_per_1000=written_per_k,
            rate_limited=limited,
            rss_mb=rss,
            anchor_req_per_s=anchor,
            seconds=took,
        )


def idle(backend: str, channels: int, seconds: float) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(backend, Path(tmp)) as url,
        emulator(*_accounts("i", channels, 0)) as (api, _),
        service(url, Path(tmp) / "serve.log", api) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        for i in range(channels):
            _connect(channel, f"idle-{i:04d}", *_token("i", i))
        time.sleep(5)  # let start-up work settle
        pid = server.process.pid
        cpu, statements = cpu_seconds(pid), _statements(server.http_port)
        time.sleep(seconds)
        cpu = cpu_seconds(pid) - cpu
        statements = _statements(server.http_port) - statements
        share, per_s = cpu / seconds, statements / seconds
        print(
            f"{backend}: idle with {channels:,} connected channels for {seconds:.0f} s: service "
            f"{share:.2%} of a core, {per_s:.1f} database statements/s"
        )
        record(
            "dispatch_many.idle",
            backend,
            f"{share:.2%} of a core, {per_s:.1f} statements/s ({channels:,} channels)",
            core_share=share,
            statements_per_s=per_s,
            channels=channels,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="small runs (CI)")
    parser.add_argument("--channels", type=int, nargs="+", help="K values (default 1 8 32)")
    parser.add_argument("--recipients", type=int, nargs="+", help="N per K (default 100k/25k)")
    parser.add_argument("--idle", type=int, default=1000, help="channels of the idle run (0: none)")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--no-sends", action="store_true", help="the idle run only")
    parser.add_argument(
        "--talked", action="store_true", help="every contact has had a conversation"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds a run's broadcasts may take"
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=LATENCY,
        help=f"seconds LINE takes to answer a multicast (default {LATENCY}; the table's rows)",
    )
    args = parser.parse_args()
    if args.smoke:
        runs, idle_channels, idle_seconds = [(4, 5_000)], 50, 5.0
    else:
        ks = args.channels or [1, 8, 32]
        ns = args.recipients or [100_000 if k <= 8 else 25_000 for k in ks]
        runs = list(zip(ks, ns, strict=True))
        idle_channels, idle_seconds = args.idle, args.idle_seconds
    if args.no_sends:
        runs = []
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        for k, n in runs:
            run(backend, k, n, args.timeout, args.talked, args.latency)
        if idle_channels:
            idle(backend, idle_channels, idle_seconds)


if __name__ == "__main__":
    main()
