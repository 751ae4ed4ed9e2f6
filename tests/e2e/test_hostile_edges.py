"""Hostile input at the edges, against a real `serve` on each database: signed webhooks carrying
ids and timestamps no channel would send, slow clients, too many calls, unknown channels."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from broadcaster.v1 import contact_service_pb2 as cpb
from broadcaster.v1 import contact_service_pb2_grpc as cpb_grpc
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
