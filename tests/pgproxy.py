"""A TCP proxy between the service and PostgreSQL that a test can cut and restore: a database
outage (a restart, a network partition) for one test, without touching the PostgreSQL server
that every other test and process on the machine shares.

`cut()` closes every proxied connection (as a fast shutdown terminates the server's backends)
and stops listening, so new connections are refused; `restore()` listens again on the same
port. The proxy runs its own event loop on a thread, so synchronous tests (a `serve` process
pointed at it) and asynchronous ones use it alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

T = TypeVar("T")


class PgProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        with socket.socket() as probe:  # a free port, kept across cuts
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self.connections = 0  # accepted so far
        self._call(self._listen())

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        done: Future[T] = asyncio.run_coroutine_threadsafe(work, self._loop)
        return done.result(timeout=10)

    def url(self, database_url: str) -> str:
        """`database_url` pointed at the proxy."""
        return (
            make_url(database_url)
            .set(host="127.0.0.1", port=self.port)
            .render_as_string(hide_password=False)
        )

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_w.close()
            return
        pair = {client_w, server_w}
        self._writers |= pair
        try:
            await asyncio.gather(_pump(client_r, server_w), _pump(server_r, client_w))
        finally:
            self._writers -= pair
            for w in pair:
                w.close()

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()  # a reset, as when the server's backend goes
        self._writers.clear()

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self._call(self._cut())

    def restore(self) -> None:
        """Accept connections again."""
        if self._server is None:
            self._call(self._listen())

    def close(self) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()


@contextmanager
def proxied(database_url: str) -> Iterator[tuple[PgProxy, str]]:
    """A proxy to the PostgreSQL server of `database_url`, and the URL through it."""
    url = make_url(database_url)
    proxy = PgProxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield proxy, proxy.url(database_url)
    finally:
        proxy.close()
