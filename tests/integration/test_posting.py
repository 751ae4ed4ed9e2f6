"""The channels' hot-path POSTs (broadcaster.channels.posting) against a real HTTP server on a
real socket, one that answers as told: kept-alive connections, chunked answers, servers that
close, reset, stall or answer nonsense, and the limit on connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from broadcaster.channels import Poster, PostError, Target

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@dataclass
class Server:
    """Reads each request whole, then answers with `answer(request)` (bytes, or None to close
    the connection without answering); counts connections and requests."""

    answer: Callable[[bytes], bytes | None] = lambda _request: OK
    delay: float = 0.0
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if self.delay:
                    await asyncio.sleep(self.delay)
                answer = self.answer(request)
                if answer is None:
                    return
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    return
        finally:
            self.open_now -= 1
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    made = Server()
    listening = await asyncio.start_server(made.handle, "127.0.0.1", 0)
    made.port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield made
        listening.close()


@pytest.fixture
async def poster() -> AsyncIterator[Poster]:
    made = Poster(4, timeout=2.0)
    yield made
    await made.close()


def target(server: Server) -> Target:
    return Target.of(
        f"http://127.0.0.1:{server.port}/v2/bot/message/multicast",
        {"Authorization": "Bearer t", "Content-Type": "application/json"},
    )


async def test_a_post_carries_the_head_its_headers_and_the_body(
    server: Server, poster: Poster
) -> None:
    answer = await poster.post(target(server), b"X-Line-Retry-Key: k1\r\n", b'{"to":[]}')

    assert (answer.status, answer.body) == (200, b"{}")
    assert answer.headers["content-type"] == "application/json"
    head, body = server.requests[0].split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v2/bot/message/multicast HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert {b"Authorization: Bearer t", b"X-Line-Retry-Key: k1", b"Content-Length: 9"} <= set(lines)
    assert body == b'{"to":[]}'


async def test_connections_are_kept_alive_and_reused(server: Server, poster: Poster) -> None:
    for n in range(20):
        await poster.post(target(server), b"", b"%d" % n)

    assert server.connections == 1 and len(server.requests) == 20


async def test_at_most_the_limit_is_open_at_once(server: Server, poster: Poster) -> None:
    server.delay = 0.02
    answers = await asyncio.gather(*(poster.post(target(server), b"", b"x") for _ in range(40)))

    assert all(a.status == 200 for a in answers)
    assert server.most_open <= 4 and len(server.requests) == 40


async def test_a_chunked_answer_is_read_whole(server: Server, poster: Poster) -> None:
    server.answer = lambda _r: (
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nX-Line-Request-Id: r1\r\n\r\n"
        b'5\r\n{"mes\r\nf\r\nsage":"bad to"}\r\n0\r\n\r\n'
    )

    answer = await poster.post(target(server), b"", b"x")

    assert (answer.status, answer.body) == (400, b'{"message":"bad to"}')
    assert answer.headers["x-line-request-id"] == "r1"
    await poster.post(target(server), b"", b"x")  # the connection is still good
    assert server.connections == 1


async def test_a_connection_the_server_closes_is_not_used_again(
    server: Server, poster: Poster
) -> None:
    server.answer = lambda _r: OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    for _ in range(3):
        assert (await poster.post(target(server), b"", b"x")).status == 200

    assert server.connections == 3


async def test_an_idle_connection_the_server_dropped_is_replaced(server: Server) -> None:
    poster = Poster(4, keep_alive=0.0)  # every idle connection counts as stale
    await poster.post(target(server), b"", b"x")
    await poster.post(target(server), b"", b"x")
    await poster.close()

    assert server.connections == 2


async def test_a_connection_closed_before_the_answer_is_a_reset(
    server: Server, poster: Poster
) -> None:
    server.answer = lambda _r: None

    with pytest.raises(ConnectionResetError):
        await poster.post(target(server), b"", b"x")


async def test_half_an_answer_then_a_close_is_a_reset(server: Server, poster: Poster) -> None:
    server.answer = lambda _r: (
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{}"
    )

    with pytest.raises(ConnectionResetError):
        await poster.post(target(server), b"", b"x")


async def test_an_answer_that_is_not_http_is_a_post_error(server: Server, poster: Poster) -> None:
    server.answer = lambda _r: b"SSH-2.0-OpenSSH_9.2\r\n\r\n"

    with pytest.raises(PostError):
        await poster.post(target(server), b"", b"x")


async def test_a_slow_answer_times_out_and_its_connection_goes(server: Server) -> None:
    server.delay = 0.5
    poster = Poster(4, timeout=0.05)
    with pytest.raises(TimeoutError):
        await poster.post(target(server), b"", b"x")
    server.delay = 0.0
    assert (await poster.post(target(server), b"", b"x")).status == 200
    await poster.close()

    assert server.connections == 2  # the one that timed out was closed, not reused


async def test_a_refused_connection_is_an_os_error(poster: Poster) -> None:
    closed = Server()
    listening = await asyncio.start_server(closed.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()

    with pytest.raises(OSError):
        await poster.post(Target.of(f"http://127.0.0.1:{port}/", {}), b"", b"x")


def test_a_target_is_an_http_url() -> None:
    made = Target.of("https://api.line.me/v2/bot/message/multicast?a=1", {"X": "y"})
    assert (made.host, made.port, made.tls) == ("api.line.me", 443, True)
    assert made.head.startswith(b"POST /v2/bot/message/multicast?a=1 HTTP/1.1\r\n")
    assert b"Host: api.line.me\r\n" in made.head and made.head.endswith(b"X: y\r\n")
    with pytest.raises(ValueError):
        Target.of("ftp://example.com/", {})
