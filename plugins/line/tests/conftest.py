"""Fixtures for the LINE emulator's tests: an emulator on a manual clock with the spec
conformance checker attached, an HTTP session to it and a verified shop with followers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from broadcaster_line.emulator import Account, LineEmulator, ManualClock
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
