"""The LINE emulator and the broadcaster service, in the demo's process.

The service is built as `broadcaster serve` builds it, from a `Config` read from environment
variables (here an embedded set of them), with its channel plugins loaded through their entry
points; the demo imports no plugin module.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

from broadcaster.tools.demo import platform
from broadcaster.tools.demo.shop import SEED

if TYPE_CHECKING:
    from broadcaster.api.server import RunningServer
    from broadcaster.app import App
    from broadcaster.http.app import RunningHttp
    from broadcaster.tools.demo.platform import LineEmulator

T = TypeVar("T")


class Stack:
    """The LINE emulator and the broadcaster service on one event loop in a background thread.

    Everything that touches either goes through `run`/`call`, on that loop."""

    def __init__(self, database_url: str, secret_key: str | None) -> None:
        self.database_url = database_url
        self.secret_key = secret_key
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, daemon=True, name="broadcaster-demo"
        )
        self._emulator: LineEmulator | None = None
        self._app: App | None = None
        self._servers: tuple[RunningServer, RunningHttp] | None = None

    @property
    def emulator(self) -> LineEmulator:
        assert self._emulator is not None, "start() first"
        return self._emulator

    @property
    def grpc_port(self) -> int:
        assert self._servers is not None, "start() first"
        return self._servers[0].port

    @property
    def http_port(self) -> int:
        assert self._servers is not None, "start() first"
        return self._servers[1].port

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        async def wrapped() -> T:
            return await coro

        future: Future[T] = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        return future.result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def wrapped() -> T:
            return fn(*args, **kwargs)

        return self.run(wrapped())

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        from broadcaster.app import App, prepare_schema
        from broadcaster.config import Config

        self._emulator = platform.emulator().LineEmulator(seed=SEED)
        base_url = await self.emulator.start("127.0.0.1", 0)
        # Embedded settings, whatever the environment says: this process alone, on loopback,
        # no tokens, only the LINE plugin (by its entry point), pointed at the emulator.
        env = {
            "BROADCASTER_DATABASE_URL": self.database_url,
            "BROADCASTER_GRPC_LISTEN": "127.0.0.1:0",
            "BROADCASTER_HTTP_LISTEN": "127.0.0.1:0",
            "BROADCASTER_PLUGINS": "line",
            "BROADCASTER_LINE_API_BASE": base_url,
            # A broadcast's opens and clicks are read from LINE a second after it is sent
            # (a server reads them hourly for a day, then daily), so the story can show them.
            "BROADCASTER_STATISTICS_EARLY_INTERVAL": "1",
        }
        if self.secret_key:
            env["BROADCASTER_SECRET_KEY"] = self.secret_key
        self._app = App.build(Config.from_env(env))
        await asyncio.to_thread(prepare_schema, self._app.db)
        self._servers = await self._app.start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self.run(self._stop(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if self._app is not None:
                self._app.close()

    async def _stop(self) -> None:
        if self._app is not None and self._servers is not None:
            await self._app.stop(*self._servers)
        if self._emulator is not None:
            await self._emulator.stop()
