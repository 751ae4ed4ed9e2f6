"""pytest fixtures for tests that talk to the emulator: the emulator's own and any LINE client's.

A conftest imports the ones it needs, so they are defined once::

    from broadcaster_line_emulator.testing import clock as clock, emulator as emulator

- ``clock``: a :class:`ManualClock` the emulator runs on (time moves only when a test says).
- ``conformance``: a :class:`ConformanceRecorder` the emulator reports every exchange to; a test
  asserts on the requests it finds, e.g. that a client followed messaging-api.yml.
- ``emulator``: a started :class:`LineEmulator` on ``clock`` with ``conformance`` attached.
  After the test, every response it gave must have followed messaging-api.yml and no observer
  may have failed.
- ``shop``: a verified account with 1,200 followers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .clock import ManualClock
from .conformance import ConformanceRecorder
from .emulator import LineEmulator
from .state import Account


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
def shop(emulator: LineEmulator) -> Account:
    return emulator.add_account(tier="verified", followers=1_200, follower_seed="shop")
