"""Fixtures for the LINE emulator's tests: an emulator on a manual clock with the spec
conformance checker attached, an HTTP session to it and a verified shop with followers.

For the plugin's tests: `line_channel(account)` builds a `LineChannel` talking to the emulator
through a plain shared session (as the core lends one), with quick retries; every request it
sends must follow messaging-api.yml."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from broadcaster_line.channel import LineChannel
from broadcaster_line.client import LineClient
from broadcaster_line.emulator import Account, LineEmulator, ManualClock
from broadcaster_line.retry import RetryPolicy
from emulator_support import LineApi
from line_conformance import ConformanceRecorder


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def conformance() -> ConformanceRecorder:
    return ConformanceRecorder()


@pytest.fixture
async def emulator(
    clock: ManualClock, conformance: ConformanceRecorder
) -> AsyncIterator[LineEmulator]:
    emu = LineEmulator(clock=clock, seed="tests", observers=[conformance])
    await emu.start()
    yield emu
    await emu.stop()
    # Whatever a test sends, everything the emulator answers must follow messaging-api.yml.
    responses = [v for v in conformance.violations if v.kind == "response"]
    assert not responses, "\n".join(map(str, responses))
    assert not emu.observer_errors


@pytest.fixture
async def http(emulator: LineEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(emulator.base_url) as session:
        yield session


@pytest.fixture
def shop(emulator: LineEmulator) -> Account:
    return emulator.add_account(tier="verified", followers=1_200, follower_seed="shop")


@pytest.fixture
def api(http: aiohttp.ClientSession, shop: Account) -> LineApi:
    return LineApi(http, shop.access_token)


QUICK_RETRY = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A session with no base URL, like the one the core lends its channels."""
    async with aiohttp.ClientSession() as http_session:
        yield http_session


@pytest.fixture
def line_channel(
    emulator: LineEmulator, session: aiohttp.ClientSession, conformance: ConformanceRecorder
) -> Iterator[Callable[..., LineChannel]]:
    def make(account: Account, *, retry: RetryPolicy = QUICK_RETRY) -> LineChannel:
        client = LineClient(session, account.access_token, emulator.base_url)
        return LineChannel(client, account.channel_secret, retry=retry)

    yield make
    requests = [v for v in conformance.violations if v.kind == "request"]
    assert not requests, "the plugin broke messaging-api.yml:\n" + "\n".join(map(str, requests))
