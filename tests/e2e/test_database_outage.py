"""PostgreSQL goes away in the middle of two channels' broadcasts under one replica, and comes
back: a real `broadcaster serve` whose database connections run through a proxy the test cuts
(tests/pgproxy.py; the shared PostgreSQL server itself stays up).

While it is down, calls fail UNAVAILABLE with reason DATABASE_UNAVAILABLE (retryable), never
INTERNAL or UNKNOWN, `/readyz` answers 503 and the gRPC health service NOT_SERVING; once it
is back, the next calls succeed, the
replica is ready again, and the broadcasts finish by themselves with every recipient reached
exactly once (batches whose answer could not be recorded are sent again with their retry keys,
and LINE answers those "already accepted").
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from broadcaster_line_emulator import Faults
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from broadcaster.v1 import broadcast_service_pb2 as bpb
from tests.databases import fresh_database
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.sending_rig import Api, Servers, merchant, reach, wait_for
from tests.e2e.server import failure
from tests.pgproxy import PgProxy, proxied

PEOPLE = (10_000, 6_000)  # two channels' audiences
LATENCY = 1.0  # every multicast answer takes this long: the sends last a few seconds
OUTAGE = 2.0  # seconds the database is away


@pytest.fixture
def outage(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PgProxy, str, str]]:
    """A database of its own (no other test server dispatches its channels), the proxy to
    it, and the URL through the proxy."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a database outage is a server's: SQLite has none")
    with (
        fresh_database("postgresql", tmp_path_factory.mktemp("outage")) as direct,
        proxied(direct) as (proxy, url),
    ):
        yield proxy, url, direct


def _ready(api: Api) -> int:
    url = f"http://127.0.0.1:{api.server.http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _ready_gauge(api: Api) -> float:
    url = f"http://127.0.0.1:{api.server.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("broadcaster_ready "):
                return float(line.split()[1])
    raise AssertionError("no broadcaster_ready in /metrics")


def _health(api: Api) -> int:
    stub = health_pb2_grpc.HealthStub(api.channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status)


class Poller:
    """A caller polling GetBroadcast without pause, keeping every answer's code and reason."""

    def __init__(self, api: Api, name: str) -> None:
        self._api, self._name = api, name
        self.seen: Counter[tuple[str, str]] = Counter()
        self.last: tuple[str, str] = ("", "")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self._api.get(self._name)
                self.last = ("OK", "")
            except grpc.RpcError as e:
                f = failure(e)
                self.last = (f.code.name, f.reason)
            self.seen[self.last] += 1
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_a_database_restart_mid_send(outage: tuple[PgProxy, str, str], tmp_path: Path) -> None:
    proxy, url, _ = outage
    emulator = EmulatorThread()
    servers = Servers(url, emulator, tmp_path)
    try:
        emu = emulator.emulator
        api = servers.start()
        assert _ready(api) == 200
        parent = merchant()
        shops, channels = [], []
        for n, people in enumerate(PEOPLE):
            account = emulator.call(emu.add_account, tier="verified", followers=people)
            made = api.connect(parent, account)
            channels.append(made.name)
            api.import_contacts(made.name, emulator.call(emu.follower_ids, account))
            draft = api.draft(parent, made.name, f"Outage {n}")
            shops.append((account, draft.name, people))
        slow = Faults(latency=LATENCY, endpoints=frozenset({"multicast"}))
        for account, *_ in shops:
            emulator.call(emu.set_faults, slow, account)
        for _, name, _ in shops:
            assert api.send(name).state == bpb.Broadcast.SENDING
        poller = Poller(api, shops[0][1])
        try:
            wait_for(
                "the first batches to be recorded",
                lambda: api.get(shops[0][1]).counters.sent > 0,
                timeout=30,
            )
            proxy.cut()
            wait_for(
                "a poll to meet the outage",
                lambda: poller.last == ("UNAVAILABLE", "DATABASE_UNAVAILABLE"),
                timeout=20,
                every=0.01,
            )
            with pytest.raises(grpc.RpcError) as refused:  # a write too
                api.draft(parent, channels[0], "during the outage")
            got = failure(refused.value)
            assert (got.code, got.reason) == (grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE")
            (retry,) = [d for d in got.details if isinstance(d, error_details_pb2.RetryInfo)]
            assert retry.retry_delay.ToTimedelta().total_seconds() == 1.0  # the least wait
            # Readiness is checked at most once a second (probes share the check): it turns
            # within a moment, not at once.
            wait_for("the replica to be not ready", lambda: _ready(api) == 503, timeout=10)
            assert _health(api) == health_pb2.HealthCheckResponse.NOT_SERVING
            assert _ready_gauge(api) == 0
            time.sleep(OUTAGE)
            during = sum(n for (code, _), n in poller.seen.items() if code != "OK")
            proxy.restore()
            assert api.get(shops[1][1]).name == shops[1][1]  # the next call succeeds
            wait_for("the replica to be ready again", lambda: _ready(api) == 200, timeout=20)
            assert _health(api) == health_pb2.HealthCheckResponse.SERVING
            assert _ready_gauge(api) == 1
            done = [api.finished(name, timeout=120) for _, name, _ in shops]
        finally:
            poller.stop()
        codes = {code for code, _ in poller.seen}
        assert codes <= {"OK", "UNAVAILABLE"}, poller.seen
        assert poller.seen[("UNAVAILABLE", "DATABASE_UNAVAILABLE")] == sum(
            n for (code, _), n in poller.seen.items() if code != "OK"
        ), poller.seen
        assert during > 0 and poller.seen[("OK", "")] > 0, poller.seen
        for (account, _, people), b in zip(shops, done, strict=True):
            assert b.state == bpb.Broadcast.SENT, b
            assert (b.counters.total, b.counters.sent, b.counters.failed) == (people, people, 0)
            got = reach(emulator, account)
            assert (got.users_reached, got.more_than_once) == (people, 0), got
        print(f"GetBroadcast answers through the outage: {dict(poller.seen)}")
    finally:
        servers.stop_all()
        emulator.stop()
