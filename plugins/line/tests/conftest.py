"""Fixtures for the LINE plugin's tests. The emulator stands in for LINE: the shared fixtures
(`clock`, `conformance`, `emulator`, `shop`) come from `broadcaster_line_emulator.testing`.

`line_channel(account)` builds a `LineChannel` talking to the emulator through a plain shared
session (as the core lends one), its multicasts through it or through a `Poster` (each test
runs with both), with quick retries; every request it sends must follow
messaging-api.yml."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from broadcaster_line.channel import LineChannel
from broadcaster_line.client import LineClient
from broadcaster_line.retry import RetryPolicy
from broadcaster_line_emulator import Account, LineEmulator
from broadcaster_line_emulator.conformance import ConformanceRecorder
from broadcaster_line_emulator.testing import clock as clock
from broadcaster_line_emulator.testing import conformance as conformance
from broadcaster_line_emulator.testing import emulator as emulator
from broadcaster_line_emulator.testing import shop as shop

from broadcaster.channels import Poster

QUICK_RETRY = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A session with no base URL, like the one the core lends its channels."""
    async with aiohttp.ClientSession() as http_session:
        yield http_session


@pytest.fixture(params=["session", "poster"])
async def poster(request: pytest.FixtureRequest) -> AsyncIterator[Poster | None]:
    """How multicasts travel: through the session like every call, or the core's `Poster` (as
    the core lends it to channels)."""
    if request.param == "session":
        yield None
        return
    made = Poster(16)
    yield made
    await made.close()


@pytest.fixture
def line_channel(
    emulator: LineEmulator,
    session: aiohttp.ClientSession,
    poster: Poster | None,
    conformance: ConformanceRecorder,
) -> Iterator[Callable[..., LineChannel]]:
    def make(account: Account, *, retry: RetryPolicy = QUICK_RETRY) -> LineChannel:
        client = LineClient(session, account.access_token, emulator.base_url, poster=poster)
        return LineChannel(client, account.channel_secret, retry=retry)

    yield make
    requests = [v for v in conformance.violations if v.kind == "request"]
    assert not requests, "the plugin broke messaging-api.yml:\n" + "\n".join(map(str, requests))
