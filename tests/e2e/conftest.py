"""A live server per database backend, and stubs bound to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from broadcaster.store import migrate
from broadcaster.store.database import Database
from broadcaster.v1 import contact_service_pb2_grpc, customer_group_service_pb2_grpc
from tests.databases import fresh_database
from tests.e2e import server as live
from tests.e2e.emulator_thread import EmulatorThread


@pytest.fixture(scope="session")
def database_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The live servers' own database, of the run's backend, apart from the in-process tests'
    one: a server's dispatcher and firing loop work on every channel of their database, and the
    in-process tests' channels (whose plugin the servers lack) would otherwise be claimed and
    held up by them."""
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    with fresh_database(backend, tmp_path_factory.mktemp(f"e2e-{backend}")) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine)
        db.close()
        yield url


@pytest.fixture(scope="session")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[live.Server]:
    log = tmp_path_factory.mktemp("server") / "serve.log"
    running = live.start(database_url, log)
    yield running
    code = running.stop()
    assert code == 0, f"server exited with {code}:\n{log.read_text()}"
    logged = log.read_text()
    for secret in (live.ADMIN, live.ALPHA, live.BETA):
        assert secret not in logged, "a token reached the log"
    for line in logged.splitlines():
        assert isinstance(json.loads(line), dict), f"not a JSON log line: {line!r}"


@pytest.fixture(scope="session")
def channel(server: live.Server) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(
        server.target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as ch:
        yield ch


@pytest.fixture
def groups(channel: grpc.Channel) -> customer_group_service_pb2_grpc.CustomerGroupServiceStub:
    return customer_group_service_pb2_grpc.CustomerGroupServiceStub(channel)


@pytest.fixture
def contacts(channel: grpc.Channel) -> contact_service_pb2_grpc.ContactServiceStub:
    return contact_service_pb2_grpc.ContactServiceStub(channel)


@pytest.fixture
def tmp_log(tmp_path: Path) -> Path:
    return tmp_path / "serve.log"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    """A LINE emulator of the test module's own, on a thread of its own."""
    running = EmulatorThread()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def own_database(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A database of the test module's own, of the run's backend: the session's other servers
    dispatch, fire, collect and take over every channel of their database, so a module whose
    servers use the LINE emulator (or are killed mid-send) keeps its channels apart."""
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    module = request.module.__name__.rsplit(".", 1)[-1]
    with fresh_database(backend, tmp_path_factory.mktemp(f"{module}-{backend}")) as url:
        yield url
