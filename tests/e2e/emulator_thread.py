"""The LINE emulator on its own event loop in a background thread, for synchronous e2e tests.

Everything that touches the emulator's state goes through `call`/`run`, on the emulator's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from broadcaster_line_emulator import LineEmulator

T = TypeVar("T")


class EmulatorThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="line-emu")
        self._thread.start()
        self.emulator: LineEmulator = self.call(LineEmulator)
        self.base_url: str = self.run(self.emulator.start())

    def run(self, coro: Awaitable[T]) -> T:
        async def wrapped() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout=600)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def wrapped() -> T:
            return fn(*args, **kwargs)

        return self.run(wrapped())

    def stop(self) -> None:
        self.run(self.emulator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
