"""The Message Center feed: one consumer reading a merchant's events through ListEvents pages and
through WatchEvents, against the real service.

    ./dev run python -m bench.events_feed [--backend sqlite|postgresql|both] [--smoke]
        [--recipients N] [--page-size N]

`broadcaster serve` (a process) on a fresh database; one merchant, one channel, a broadcast to N
recipients recorded the way the engine records it (the snapshot, then one outbox row per
accepted batch of 500 written by `store.events.record_delivered`; half the contacts had a
conversation already, so the other half get a conversation-created event before the message:
1.5 events per recipient). Nothing else runs. Then, in this process, one consumer pages
ListEvents (1,000 per page) from the start to the end, one reads WatchEventBatches from the
start until it has every event, and one reads WatchEvents (a message per event) for the first
50,000: gRPC's own cost per message bounds that one far below the target.

Then, on a LINE channel (the emulator in its own process, the real LINE plugin), a broadcast
to 500,000 followers is sent alone, and another of the same size on a second channel while a
consumer tails WatchEventBatches from the start: printed are both dispatch rates (multicast
req/s, from the emulator's per-second counts) and how long after the broadcast was SENT the
consumer had every event. Reading the feed must not slow sending.

Printed per consumer: events/s, and the service's CPU-seconds per 100,000 events (from /proc;
on PostgreSQL also its backends' for this database, when it runs on this host).
Target: >= 100,000 events/s through ListEvents and WatchEventBatches, on both databases: one
channel at LINE's ceiling delivers 100,000 recipients/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import grpc
from sqlalchemy import text

from bench.live import ADMIN, cpu_seconds, live
from bench.results import record
from broadcaster.store import events, snapshot
from broadcaster.store.clock import from_us
from broadcaster.store.database import Database
from broadcaster.v1 import event_service_pb2 as pb
from broadcaster.v1 import event_service_pb2_grpc as pb_grpc
from tests.databases import fresh_database

MERCHANT = "bench"
WATCH_ONE_BY_ONE = 50_000
BATCH = 500
ROWS_PER_WRITE = 40  # accepted batches recorded per transaction, as the group commit does


def _database_cpu(url: str) -> float:
    """CPU time of the PostgreSQL backends serving `url`'s database (0 on SQLite: in-process)."""
    if not url.startswith("postgresql"):
        return 0.0
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (parsed.database,),
            )
        ]
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # gone meanwhile, or on another host
            total += cpu_seconds(pid)
    return total


def seed(url: str, channel: str, recipients: int) -> int:
    """A broadcast to `recipients` contacts, every batch accepted and recorded; returns how many
    events that makes."""
    db = Database.from_url(url, threads=1)
    broadcast = "01benchbroadcast0000000000"
    ids = [f"U{n:032x}" for n in range(recipients)]
    with db.writing() as conn:
        if conn.dialect.name == "postgresql":
            source = "jsonb_array_elements_text(CAST(:ids AS jsonb)) WITH ORDINALITY AS j(value, n)"
            padded, odd = "lpad(CAST(n AS TEXT), 12, '0')", "n % 2 = 1"
        else:
            source = "(SELECT value, key AS n FROM json_each(:ids)) AS j"
            padded, odd = "printf('%012d', n)", "n % 2 = 1"
        conn.execute(
            text(
                "INSERT INTO contacts (id, merchant_id, channel_id, external_id, display_name,"
                " picture_uri, follower_state, state_time, last_interaction_time, opted_out,"
                " customer_id, has_conversation, observe_time, seen_sync, create_time,"
                f" update_time) SELECT :m || '-' || {padded}, :m, :ch, value, '', '', 1, 0, NULL,"
                f" {'false' if conn.dialect.name == 'postgresql' else '0'}, NULL, {odd}, 0,"
                f" NULL, 0, 0 FROM {source}"
            ),
            {"m": MERCHANT, "ch": channel, "ids": json.dumps(ids)},
        )
        snapshot.take(
            conn, merchant=MERCHANT, channel=channel, broadcast=broadcast, since=None,
            group=None, batch_size=BATCH, now=from_us(1_000_000),
        )  # fmt: skip
        conn.execute(text("UPDATE batches SET state = 1 WHERE broadcast_id = :b"), {"b": broadcast})
    spans = [(lo, min(lo + BATCH, recipients) - 1) for lo in range(0, recipients, BATCH)]
    for at in range(0, len(spans), ROWS_PER_WRITE):
        with db.writing() as conn:
            for span in spans[at : at + ROWS_PER_WRITE]:
                events.record_delivered(
                    conn, merchant=MERCHANT, channel=channel, broadcast=broadcast,
                    spans=[span], now=2_000_000 + at,
                )  # fmt: skip
    db.close()
    return recipients + recipients - recipients // 2


def list_all(stub: pb_grpc.EventServiceStub, page_size: int) -> int:
    got, token = 0, ""
    while True:
        page = stub.ListEvents(
            pb.ListEventsRequest(
                parent=f"merchants/{MERCHANT}", page_size=page_size, page_token=token
            ),
            metadata=ADMIN,
        )
        got += len(page.events)
        token = page.next_page_token
        if not token:
            return got


def watch_all(stub: pb_grpc.EventServiceStub, total: int) -> int:
    got = 0
    stream = stub.WatchEvents(pb.WatchEventsRequest(parent=f"merchants/{MERCHANT}"), metadata=ADMIN)
    for _ in stream:
        got += 1
        if got == total:
            stream.cancel()
            break
    return got


def watch_batches(stub: pb_grpc.EventServiceStub, total: int) -> int:
    got = 0
    stream = stub.WatchEventBatches(
        pb.WatchEventBatchesRequest(parent=f"merchants/{MERCHANT}"), metadata=ADMIN
    )
    for batch in stream:
        got += len(batch.events)
        if got >= total:
            stream.cancel()
            break
    return got


def _profile(pid: int, prefix: str | None, label: str) -> subprocess.Popen[bytes] | None:
    """With --profile: py-spy (on PATH) samples the service while a consumer reads."""
    if not prefix:
        return None
    out = f"{prefix}-{label}.txt"
    spy = subprocess.Popen(
        ["py-spy", "record", "-p", str(pid), "-f", "raw", "-o", out, "-r", "200"]
    )
    time.sleep(1.0)  # attached before the consumer starts
    return spy


def run(backend: str, recipients: int, page_size: int, profile: str | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
        server = live.start(url, Path(tmp) / "serve.log")
        try:
            with grpc.insecure_channel(
                server.target, options=[("grpc.max_receive_message_length", 64 * 2**20)]
            ) as channel:
                made = live.connect_fake(channel, f"merchants/{MERCHANT}", tier="verified")
                started = time.perf_counter()
                total = seed(url, made.name.rsplit("/", 1)[1], recipients)
                print(
                    f"{backend}: recorded {total:,} events ({recipients:,} recipients) in "
                    f"{time.perf_counter() - started:.1f} s"
                )
                stub = pb_grpc.EventServiceStub(channel)
                # A message per event is slow (gRPC's own cost per message): that consumer
                # reads the first WATCH_ONE_BY_ONE events only.
                one_by_one = min(total, WATCH_ONE_BY_ONE)
                consumers = {
                    "list": (total, lambda: list_all(stub, page_size)),
                    "watch_batches": (total, lambda: watch_batches(stub, total)),
                    "watch": (one_by_one, lambda: watch_all(stub, one_by_one)),
                }
                for label, (expected, consume) in consumers.items():
                    spy = _profile(server.process.pid, profile, f"{backend}-{label}")
                    before = cpu_seconds(server.process.pid)
                    database_before = _database_cpu(url)
                    started = time.perf_counter()
                    got = consume()
                    took = time.perf_counter() - started
                    cpu = cpu_seconds(server.process.pid) - before
                    database = _database_cpu(url) - database_before
                    if spy is not None:
                        spy.send_signal(signal.SIGINT)
                        spy.wait(timeout=60)
                    assert got == expected, (label, got, expected)
                    rate, per_100k = got / took, cpu / got * 100_000
                    database_per_100k = database / got * 100_000
                    what = {
                        "list": f"ListEvents, {page_size:,} per page",
                        "watch_batches": "WatchEventBatches",
                        "watch": "WatchEvents (a message per event)",
                    }[label]
                    print(
                        f"{backend}: {what}: {got:,} events in {took:.2f} s = {rate:,.0f} events/s;"
                        f" service {per_100k:.2f} CPU-s per 100,000 events"
                        + (f", PostgreSQL {database_per_100k:.2f}" if backend != "sqlite" else "")
                    )
                    record(
                        f"events_feed.{label}",
                        backend,
                        f"{rate:,.0f} events/s, {per_100k:.2f} CPU-s per 100,000",
                        per_s=rate,
                        cpu_per_100k=per_100k,
                        database_cpu_per_100k=database_per_100k,
                    )
        finally:
            server.stop()


ALONE = ("alone-token-0123456789", "alone-secret-0123456789")
WATCHED = ("watched-token-0123456789", "watched-secret-0123456789")


def while_sending(backend: str, recipients: int) -> None:
    """Dispatch alone, then the same broadcast on another channel with a consumer tailing
    WatchEventBatches from the start: the sending rate must not drop, and the consumer keeps
    up (how long after the broadcast's end it has every event)."""
    from bench.dispatch import _connect, _control, _seed_contacts, _send_and_wait, _sustained
    from bench.live import emulator, service

    accounts = [
        f"token={t},secret={x},tier=verified,followers={recipients}" for t, x in (ALONE, WATCHED)
    ]
    with (
        tempfile.TemporaryDirectory() as tmp,
        fresh_database(backend, Path(tmp)) as url,
        emulator("--account", accounts[0], "--account", accounts[1]) as (api, made),
        service(url, Path(tmp) / "serve.log", api) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        rates = {}
        for (token, secret), account, merchant in zip(
            (ALONE, WATCHED), made, ("alone", "watched"), strict=True
        ):
            name = _connect(channel, merchant, token, secret)
            ids = _control(api, f"accounts/{account['channelId']}/followers")["userIds"]
            _seed_contacts(url, merchant, name.rsplit("/", 1)[1], ids)
            done: dict[str, float] = {}
            tail = None
            if merchant == "watched":  # two events per recipient: none had a conversation
                tail = threading.Thread(
                    target=_tail, args=(channel, merchant, 2 * recipients, done)
                )
                tail.start()
            _, sent = _send_and_wait(channel, merchant, name)
            ended = time.perf_counter()
            assert sent.counters.sent == recipients, sent
            if tail is not None:
                tail.join(timeout=600)
            per_second = _control(api, "stats")["acceptedPerSecond"][
                f"{account['channelId']}/multicast"
            ]
            rates[merchant] = _sustained(per_second)[0]
        behind = done["at"] - ended
        print(
            f"{backend}: dispatch {rates['alone']:.1f} multicast req/s alone, "
            f"{rates['watched']:.1f} with a WatchEventBatches consumer tailing it; the consumer "
            f"had all {2 * recipients:,} events {behind:.2f} s after the broadcast was SENT"
        )
        record(
            "events_feed.live",
            backend,
            f"{rates['watched']:.1f} req/s (alone: {rates['alone']:.1f}); every event "
            f"{behind:.2f} s after SENT",
            watched_req_per_s=rates["watched"],
            alone_req_per_s=rates["alone"],
            behind_s=behind,
        )


def _tail(channel: grpc.Channel, merchant: str, total: int, done: dict[str, float]) -> None:
    stub = pb_grpc.EventServiceStub(channel)
    stream = stub.WatchEventBatches(
        pb.WatchEventBatchesRequest(parent=f"merchants/{merchant}"), metadata=ADMIN
    )
    got = 0
    for batch in stream:
        got += len(batch.events)
        if got >= total:
            done["at"] = time.perf_counter()
            stream.cancel()
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="small sizes (CI)")
    parser.add_argument("--recipients", type=int, default=400_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--live-recipients", type=int, default=500_000)
    parser.add_argument("--profile", metavar="PREFIX", help="py-spy the service: PREFIX-*.txt")
    args = parser.parse_args()
    recipients = 4_000 if args.smoke else args.recipients
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        run(backend, recipients, args.page_size, args.profile)
        while_sending(backend, 10_000 if args.smoke else args.live_recipients)


if __name__ == "__main__":
    main()
