"""Keep-alive HTTP/1.1 POSTs for a channel's hot path: one request per batch, hundreds a second.

A request through `aiohttp`'s client session costs its session, request and response objects,
header multidicts, URL and cookie handling, timers and trace signals: LINE multicasts of 500
ids through the LINE client, eight accounts at their ceilings, 32 in flight each, took 0.35-0.42
CPU-seconds per 1,000 requests that way and 0.22-0.33 through `Poster`, whose loop around
the requests alone costs about 0.2. A channel's sending posts the same few headers to the same
URL every time, so `Poster` does only that: a request's bytes are the channel's prepared head,
its own few headers and the body, written on a kept-alive connection; the answer is parsed by
`httptools` (llhttp, the parser `aiohttp` itself uses) into a status, the headers and the body.
Everything else a plugin calls goes through the shared `aiohttp` session
(`ChannelRuntime.http`).

Connections are pooled per host, port and TLS; at most `limit` are open at once for all
channels together (`BROADCASTER_CHANNEL_CONNECTIONS`); a POST past them waits for one. A
connection idle longer than `keep_alive` seconds is closed rather than used (the server may
have dropped it), and one the server closed, or that answered `Connection: close`, is not used
again. Failures are `OSError`s (`ConnectionResetError` when the connection closed before the
whole answer, `PostError` for an answer that is not HTTP) or `TimeoutError`: a POST is never
sent twice here, so what LINE's retry key guards against stays with the caller.

With tracing on, the core makes each POST a client span, a child of the span in progress (a
batch's `send batch`), that carries its `traceparent`, as `aiohttp`'s instrumentation does for
the session's requests (`traced`: broadcaster.tracing.client_request); with tracing off it
costs nothing.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


class PostError(OSError):
    """The answer was not HTTP the parser understands."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go, and the part of each request that never changes."""

    host: str
    port: int
    tls: bool
    head: bytes  # request line, Host and the caller's fixed headers, each ending in CRLF
    url: str  # for traces

    @classmethod
    def of(cls, url: str, headers: dict[str, str]) -> Target:
        """`url`: http(s)://host[:port]/path; `headers`: sent with every request (values must
        be header-safe: the caller checks them)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Accept-Encoding: identity"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        head = "".join(f"{line}\r\n" for line in lines).encode("latin-1")
        return cls(parts.hostname, port, tls, head, url)


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[Answer] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self.reusable = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(PostError(f"the server's answer is not HTTP: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(ConnectionResetError("the connection closed before the whole answer"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = {}
        self._body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self._parser.should_keep_alive()
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            status = self._parser.get_status_code()
            answer.set_result(Answer(status, self._headers, b"".join(self._body)))

    def _fail(self, error: OSError) -> None:
        answer, self._answer = self._answer, None
        if answer is not None and not answer.done():
            answer.set_exception(error)

    async def request(self, data: bytes) -> Answer:
        assert self.transport is not None and self._answer is None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self._answer

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


# A request as a trace's span: given the method and URL, a context around the request that
# yields the header lines to send with it and what to call with the answer's status.
Traced = Callable[[str, str], AbstractContextManager[tuple[bytes, Callable[[int], None]]]]


class Poster:
    """POSTs on kept-alive connections, at most `limit` open at once (see the module)."""

    def __init__(
        self,
        limit: int,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 5.0,
        keep_alive: float = 15.0,
        traced: Traced | None = None,
    ) -> None:
        """`traced`: each request as a span (the core's `tracing.client_request`, when tracing
        is on)."""
        self._traced = traced
        self._room = asyncio.Semaphore(limit)
        self._idle: dict[tuple[str, int, bool], deque[_Connection]] = {}
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._keep_alive = keep_alive
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def post(self, target: Target, headers: bytes, body: bytes) -> Answer:
        """POST `body` with `target`'s head and `headers` (whole header lines, each ending in
        CRLF; Content-Length is added). Raises OSError or TimeoutError (module docstring)."""
        if self._closed:
            raise ConnectionResetError("the poster is closed")
        if self._traced is None:
            return await self._post(target, headers, body)
        with self._traced("POST", target.url) as (traceparent, answered):
            answer = await self._post(target, headers + traceparent, body)
            answered(answer.status)
            return answer

    async def _post(self, target: Target, headers: bytes, body: bytes) -> Answer:
        data = b"".join((target.head, headers, b"Content-Length: %d\r\n\r\n" % len(body), body))
        key = (target.host, target.port, target.tls)
        async with self._room:
            connection = self._take(key) or await self._open(target)
            try:
                async with asyncio.timeout(self._timeout):
                    answer = await connection.request(data)
            except BaseException:
                connection.close()
                raise
            if connection.reusable and not connection.closed and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.setdefault(key, deque()).append(connection)
            else:
                connection.close()
            return answer

    def _take(self, key: tuple[str, int, bool]) -> _Connection | None:
        """The most recently used idle connection still open and fresh. Those gone stale or
        closed close and leave, from the oldest end too: after a burst, the connections it
        opened and no longer needs do not stay open until the server drops them."""
        idle = self._idle.get(key)
        if not idle:
            return None
        fresh_since = time.monotonic() - self._keep_alive
        while idle and (idle[0].closed or idle[0].idle_since < fresh_since):
            idle.popleft().close()
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
            connection.close()
        return None

    async def _open(self, target: Target) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if target.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        async with asyncio.timeout(self._connect_timeout):
            _, connection = await loop.create_connection(
                _Connection, target.host, target.port, ssl=tls
            )
        return connection

    async def close(self) -> None:
        """Close every idle connection; those in use close as their answers come."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
