"""Fixtures: one live server and LINE emulator for the session (see client_live), clients."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from client_live import TOKEN, Live, start

from broadcaster_client import Client, connect


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    yield from start(tmp_path_factory.mktemp("client-live"))


@pytest.fixture
def client(live: Live) -> Iterator[Client]:
    with connect(live.target, TOKEN) as running:
        yield running


@pytest.fixture
def merchant() -> str:
    """A merchant no other test uses, as its resource name."""
    return f"merchants/m-{uuid.uuid4().hex[:12]}"
