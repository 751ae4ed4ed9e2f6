"""The database's share of sending: what claiming and recording the batches of K merchants
sending at once costs, without the channel, HTTP or the event loop.

    ./dev run python -m bench.recording [--backend sqlite|postgresql|both] [--smoke]
        [--channels K ...] [--recipients N] [--rounds R]

K channels, one merchant each, each with N contacts and a broadcast to them snapshotted and
SENDING (not timed). Then, timed, in one thread as the dispatcher's writer would run them: each
channel in turn claims 8 of its batches (`store.dispatch.claim`, a transaction each, as a
channel's dispatch claims when a quarter of its 32 sends in flight are free), and the claimed
batches are recorded as accepted in group commits of 16, several merchants' batches together
(`store.dispatch.record_sent`, as the recorder hands them over), until every batch is done.

Reported per 1,000 batches (multicast requests of 500): the seconds this takes, the CPU-seconds
of this process (on SQLite, the database's work included) and on PostgreSQL of the server's
processes; and the requests a second the database work alone would allow. The sending through
the real service (bench.dispatch_many) spreads from run to run with the machine's pace and the
scheduling of four processes on two cores; this isolates the writes, so that a change to them
can be measured on its own. Each configuration runs `--rounds` times on a fresh database; the
median is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, text

from bench.dispatch import _seed_contacts
from bench.dispatch_many import _postgres_cpu
from bench.results import record
from bench.settle import settle
from broadcaster.domain.lifecycle import BroadcastState
from broadcaster.store import dispatch, migrate, snapshot
from broadcaster.store.clock import from_us
from broadcaster.store.database import Database
from broadcaster.store.tables import metadata
from tests.databases import fresh_database

BATCH = 500
CLAIM = 8  # batches a channel's dispatch claims at a time
GROUP = 16  # accepted batches per group commit
NOW = from_us(1_800_000_000_000_000)


def _setup(db: Database, url: str, channels: int, recipients: int) -> list[str]:
    """K channels with a SENDING broadcast of `recipients` each; returns the channel ids."""
    names = [f"ch{i:03d}" for i in range(channels)]
    for i, channel in enumerate(names):
        merchant = f"shop-{i:03d}"
        with db.writing() as conn:
            conn.execute(
                insert(metadata.tables["channels"]).values(
                    id=channel, merchant_id=merchant, type="line", state=1, tier=0,
                    account_id=f"a{i}", create_time=0, update_time=0,
                )
            )  # fmt: skip
        ids = [f"U{i:04d}{n:028x}" for n in range(recipients)]
        _seed_contacts(url, merchant, channel, ids)
        with db.writing() as conn:
            conn.execute(
                insert(metadata.tables["broadcasts"]).values(
                    id=f"b{i:03d}", merchant_id=merchant, channel_id=channel, display_name="sale",
                    display_name_folded="sale", state=int(BroadcastState.SENDING),
                    interaction_window=0, messages="[]", total=recipients, sent=0, failed=0,
                    excluded=0, open_batches=0, create_time=0, update_time=0,
                )
            )  # fmt: skip
            fixed = snapshot.take(
                conn, merchant=merchant, channel=channel, broadcast=f"b{i:03d}", since=None,
                group=None, batch_size=BATCH, now=NOW,
            )  # fmt: skip
            conn.execute(
                text("UPDATE broadcasts SET open_batches = :n WHERE id = :b"),
                {"n": fixed.batches, "b": f"b{i:03d}"},
            )
    settle(db)
    return names


def _drive(db: Database, channels: list[str]) -> int:
    """Claim and record every batch, as the dispatcher would; returns the batches recorded."""
    open_channels = list(channels)
    recorded = 0
    until = NOW + timedelta(minutes=10)
    while open_channels:
        claimed: list[dispatch.ClaimedBatch] = []
        for channel in list(open_channels):
            with db.writing() as conn:
                got = dispatch.claim(
                    conn, channel=channel, owner="bench", lease_until=until, now=NOW, limit=CLAIM
                )
            if not got:
                open_channels.remove(channel)
            claimed += got
        for at in range(0, len(claimed), GROUP):
            group = [(c, NOW, dispatch.Acceptance()) for c in claimed[at : at + GROUP]]
            with db.writing() as conn:
                sent = dispatch.record_sent(conn, group)
            assert all(sent), sent
            recorded += len(group)
    return recorded


def run(backend: str, channels: int, recipients: int, rounds: int) -> None:
    seconds, cpus, servers = [], [], []
    batches = 0
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp, fresh_database(backend, Path(tmp)) as url:
            db = Database.from_url(url, threads=1)
            migrate.upgrade(db.engine)
            names = _setup(db, url, channels, recipients)
            server, cpu, started = _postgres_cpu(), time.process_time(), time.perf_counter()
            batches = _drive(db, names)
            took = time.perf_counter() - started
            cpus.append(1000 * (time.process_time() - cpu) / batches)
            servers.append(1000 * (_postgres_cpu() - server) / batches)
            seconds.append(1000 * took / batches)
            with db.reading() as conn:
                left = conn.execute(text("SELECT COUNT(*) FROM batches WHERE state <> 1")).scalar()
            assert left == 0, left
            db.close()
    per_k, cpu, server = (statistics.median(x) for x in (seconds, cpus, servers))
    on_server = f", PostgreSQL {server:.2f} CPU-s" if backend == "postgresql" else ""
    print(
        f"{backend}: K={channels} x {recipients:,}: {batches:,} batches claimed and recorded; per "
        f"1,000: {per_k:.2f} s, this process {cpu:.2f} CPU-s{on_server} (median of {rounds}: "
        + ", ".join(f"{s:.2f}" for s in seconds)
        + f" s); the database alone allows {1000 / per_k:,.0f} req/s"
    )
    record(
        f"recording.k{channels}",
        backend,
        f"{per_k:.2f} s per 1,000 batches ({1000 / per_k:,.0f} req/s); {cpu:.2f} CPU-s"
        + (f" + PostgreSQL {server:.2f}" if backend == "postgresql" else ""),
        seconds_per_1000=per_k,
        cpu_per_1000=cpu,
        server_cpu_per_1000=server,
        channels=channels,
        recipients=recipients,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--smoke", action="store_true", help="small runs (CI)")
    parser.add_argument("--channels", type=int, nargs="+", help="K values (default 8 32)")
    parser.add_argument("--recipients", type=int, help="N per channel (default 800,000 / K)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ks = args.channels or ([2] if args.smoke else [8, 32])
    for backend in ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]:
        for k in ks:
            n = args.recipients or (5_000 if args.smoke else 800_000 // k)
            run(backend, k, n, 1 if args.smoke else args.rounds)


if __name__ == "__main__":
    main()
