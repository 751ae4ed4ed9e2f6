"""Hostile input at the edges, against a real `serve` on each database: signed webhooks carrying
ids and timestamps no channel would send, slow clients, too many calls, unknown channels."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import contact_service_pb2_grpc as cpb_grpc
from tests import tlscerts
from tests.e2e import server as live
from tests.e2e.server import ADMIN, Server, auth, connect_fake
from tests.e2e.test_operations import scrape
from tests.fakechannel import sign

A = auth(ADMIN)
T0 = 1_760_000_000_000
YEAR_9999 = 253_402_300_799_000


def _merchant() -> str:
    return f"merchants/m-{uuid.uuid4().hex[:12]}"


def _post(server: Server, path: str, body: bytes, signature: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.http_port}{path}",
        data=body,
        headers={"x-fake-signature": signature, "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return int(reply.status), json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _events(*items: tuple[str, str, str, int]) -> bytes:
    return json.dumps(
        {"events": [{"id": i, "user": u, "kind": k, "ts": t} for i, u, k, t in items]}
    ).encode()


def _contacts(channel: grpc.Channel, parent: str) -> dict[str, cpb.Contact]:
    stub = cpb_grpc.ContactServiceStub(channel)
    page = stub.ListContacts(cpb.ListContactsRequest(parent=parent, page_size=1000), metadata=A)
    return {c.external_id: c for c in page.contacts}


def test_one_merchants_bad_events_never_fail_anothers_webhooks(
    server: Server, channel: grpc.Channel
) -> None:
    a = connect_fake(channel, _merchant(), token="hostile-a-token")
    b = connect_fake(channel, _merchant(), token="honest-b-token")
    tag = uuid.uuid4().hex[:8]
    hostile = [
        _events(
            (f"{tag}-a{n}-ok", f"a-user-{n}", "message", T0), (f"{tag}-a{n}", bad, "follow", T0)
        )
        for n, bad in enumerate(["u" * 5000, "nul\x00user", "esc\x1b[2Juser"])
    ] + [_events((f"{tag}-nul\x00{n}", "a-user-x", "follow", T0)) for n in range(2)]
    honest = [_events((f"{tag}-b{n}", f"b-user-{n}", "message", T0 + n)) for n in range(100)]
    before = scrape(server)

    def post_a(body: bytes) -> tuple[int, Any]:
        return _post(server, a.webhook_path, body, sign("hostile-a-token", body))

    def post_b(body: bytes) -> tuple[int, Any]:
        return _post(server, b.webhook_path, body, sign("honest-b-token", body))

    with ThreadPoolExecutor(24) as pool:
        a_answers = [pool.submit(post_a, body) for body in hostile]
        b_answers = [pool.submit(post_b, body) for body in honest]
        b_codes = [f.result()[0] for f in b_answers]
        a_results = [f.result() for f in a_answers]

    assert b_codes == [200] * 100
    assert len(_contacts(channel, b.name)) == 100
    # The hostile requests are answered too: their bad events refused, their good ones recorded.
    assert [code for code, _ in a_results] == [200] * len(hostile)
    assert sum(body["refused"] for _, body in a_results) == len(hostile)
    assert set(_contacts(channel, a.name)) == {"a-user-0", "a-user-1", "a-user-2"}
    after = scrape(server)
    refused = {
        labels: after[name, labels] - before.get((name, labels), 0.0)
        for name, labels in after
        if name == "broadcaster_webhook_events_refused_total"
    }
    assert refused == {(("channel_type", "fake"), ("refusal", "invalid_id")): len(hostile)}


def test_a_timestamp_far_in_the_future_never_pins_a_contact(
    server: Server, channel: grpc.Channel
) -> None:
    made = connect_fake(channel, _merchant(), token="future-token")
    tag = uuid.uuid4().hex[:8]
    future = _events((f"{tag}-1", "u1", "follow", YEAR_9999))
    for _ in range(2):  # a redelivery is answered the same way
        code, _ = _post(server, made.webhook_path, future, sign("future-token", future))
        assert code == 200
    now_ms = int(time.time() * 1000)
    pinned = _contacts(channel, made.name)["u1"]
    assert pinned.last_interaction_time.ToMilliseconds() <= now_ms + 1000
    # A later real event still moves the contact.
    later = _events((f"{tag}-2", "u1", "unfollow", now_ms + 2000))
    code, _ = _post(server, made.webhook_path, later, sign("future-token", later))
    assert code == 200
    assert _contacts(channel, made.name)["u1"].follower_state == cpb.Contact.BLOCKED


# -- transport ----------------------------------------------------------------------------------


def _health(channel: grpc.Channel) -> int:
    return int(
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    )


def test_tls_on_both_ports(database_url: str, tmp_path: Path) -> None:
    files = tlscerts.make(tmp_path)
    trusted = grpc.ssl_channel_credentials(root_certificates=files.ca.read_bytes())
    env = {
        "BROADCASTER_TLS_CERT": str(files.server_cert),
        "BROADCASTER_TLS_KEY": str(files.server_key),
    }
    running = live.start(database_url, tmp_path / "serve.log", extra_env=env, credentials=trusted)
    try:
        with grpc.secure_channel(running.target, trusted) as secure:
            assert _health(secure) == health_pb2.HealthCheckResponse.SERVING
            connect_fake(secure, _merchant())  # an authenticated call over TLS
        with grpc.insecure_channel(running.target) as plain:
            with pytest.raises(grpc.RpcError) as refused:
                _health(plain)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        https = ssl.create_default_context(cafile=str(files.ca))
        url = f"https://127.0.0.1:{running.http_port}/healthz"
        with urllib.request.urlopen(url, context=https, timeout=10) as reply:
            assert reply.status == 200
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(f"http://127.0.0.1:{running.http_port}/healthz", timeout=10)
    finally:
        assert running.stop() == 0


def test_a_client_certificate_when_a_client_ca_is_set(database_url: str, tmp_path: Path) -> None:
    files = tlscerts.make(tmp_path)
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=files.client_key.read_bytes(),
        certificate_chain=files.client_cert.read_bytes(),
    )
    env = {
        "BROADCASTER_TLS_CERT": str(files.server_cert),
        "BROADCASTER_TLS_KEY": str(files.server_key),
        "BROADCASTER_TLS_CLIENT_CA": str(files.ca),
    }
    log = tmp_path / "serve.log"
    running = live.start(database_url, log, extra_env=env, credentials=with_cert)
    try:
        with grpc.secure_channel(running.target, with_cert) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        without = grpc.ssl_channel_credentials(root_certificates=files.ca.read_bytes())
        with grpc.secure_channel(running.target, without) as channel:
            with pytest.raises(grpc.RpcError) as refused:
                _health(channel)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        assert running.stop() == 0


def _closed_by_server(sock: socket.socket, trickle: bytes) -> bytes:
    """Send `trickle` a byte at a time, a pause between bytes, until the server answers or
    closes; returns what it answered (b"" for a bare close). Fails if it never does."""
    sock.settimeout(0.25)
    for byte in trickle:
        try:
            answer = sock.recv(4096)
        except TimeoutError:
            answer = None
        except ConnectionError:
            return b""
        if answer is not None:
            return answer
        try:
            sock.sendall(bytes([byte]))
        except ConnectionError:
            return b""
    raise AssertionError("the server waited for the whole trickle")


def test_slow_clients_are_cut_off(database_url: str, tmp_path: Path) -> None:
    env = {"BROADCASTER_HTTP_HEADER_TIMEOUT": "1", "BROADCASTER_HTTP_BODY_TIMEOUT": "1"}
    running = live.start(database_url, tmp_path / "serve.log", extra_env=env)
    address = ("127.0.0.1", running.http_port)
    trickle = b"X-Slow: " + b"a" * 400
    try:
        with ThreadPoolExecutor(8) as pool:
            sockets = [socket.create_connection(address) for _ in range(8)]
            for n, sock in enumerate(sockets):
                head = f"POST /webhooks/fake/slow-{n} HTTP/1.1\r\nHost: x\r\n"
                if n % 2:  # complete headers, then a body that trickles
                    head += "Content-Length: 400\r\nContent-Type: application/json\r\n\r\n"
                sock.sendall(head.encode())
            answers = list(pool.map(_closed_by_server, sockets, [trickle] * 8))
            for sock in sockets:
                sock.close()
        for n, answer in enumerate(answers):
            if n % 2:
                assert answer.startswith(b"HTTP/1.1 408"), answer
            else:
                assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
        # The server still serves everyone else.
        url = f"http://127.0.0.1:{running.http_port}/healthz"
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200
    finally:
        assert running.stop() == 0
