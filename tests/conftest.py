"""Fixtures shared by every tier. Tests isolate themselves by using their own merchant ids, so a
database is created and migrated once per backend per run."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from broadcaster.channels.manager import PluginManager
from broadcaster.domain.ids import new_id
from broadcaster.domain.model import AccountTier
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.context import ServiceContext
from broadcaster.store import channels, migrate
from broadcaster.store.clock import from_us
from broadcaster.store.database import Database
from broadcaster.store.sealing import Sealer
from tests import fakechannel
from tests.databases import fresh_database

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with fresh_database(request.param, tmp_path_factory.mktemp(request.param)) as url:
        db = Database.from_url(url, threads=1)
        migrate.upgrade(db.engine)
        db.close()
        yield url


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(database_url)
    yield database
    database.close()


@pytest.fixture
def ctx(db: Database) -> ServiceContext:
    return ServiceContext(db)


@pytest.fixture
def merchant() -> str:
    """A merchant id no other test uses."""
    return f"m-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def channel(db: Database, merchant: str) -> str:
    """A connected channel of `merchant` (stored directly), as its resource name."""
    channel_id = new_id()
    account = (AccountTier.VERIFIED, f"acct-{channel_id}", "Shop", "@shop", "")
    await db.write(channels.create, merchant, channel_id, "fake", account, "sealed", from_us(1))
    return f"merchants/{merchant}/channels/{channel_id}"


@pytest.fixture
async def hub(ctx: ServiceContext) -> AsyncIterator[ChannelHub]:
    """Live channels for in-process service tests, with only the test channel installed."""
    registry = PluginManager.load((), [fakechannel]).register_channels()
    running = ChannelHub(registry, Sealer(("k" * 32,)), ctx.db, {})
    yield running
    await running.close()
