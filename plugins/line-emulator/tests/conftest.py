"""Fixtures for the LINE emulator's tests: the shared ones (an emulator on a manual clock with
the spec conformance checker attached, a verified shop with followers; see
`broadcaster_line_emulator.testing`), an HTTP session to the emulator and a thin API client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from broadcaster_line_emulator import Account, LineEmulator
from broadcaster_line_emulator.testing import clock as clock
from broadcaster_line_emulator.testing import conformance as conformance
from broadcaster_line_emulator.testing import emulator as emulator
from broadcaster_line_emulator.testing import shop as shop
from emulator_support import LineApi


@pytest.fixture
async def http(emulator: LineEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(emulator.base_url) as session:
        yield session


@pytest.fixture
def api(http: aiohttp.ClientSession, shop: Account) -> LineApi:
    return LineApi(http, shop.access_token)
