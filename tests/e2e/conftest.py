"""A live server per database backend, and stubs bound to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from broadcaster.v1 import contact_service_pb2_grpc, customer_group_service_pb2_grpc
from tests.e2e import server as live


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
