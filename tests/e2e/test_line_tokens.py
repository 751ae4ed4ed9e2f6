"""Short-lived channel access tokens end to end: a real `broadcaster serve` over gRPC, the LINE
emulator (on the real clock) issuing, expiring and revoking tokens.

- CreateChannel with the channel id and secret issues a token; the Channel says SHORT_LIVED,
  valid, and when it expires; DeleteChannel revokes it.
- A send that lasts several token lifetimes (v2.1 tokens of 4 s, renewed 2 s before expiry)
  renews them on the way: LINE never refuses a batch, nobody gets a message twice.
- A token revoked under a running send: the refused batches get one new token between them and
  go again with their own retry keys; the broadcast is SENT.
- A channel whose renewed token cannot be had (the secret changed in the console) shows
  CREDENTIAL_REFUSED; SendBroadcast is refused with CHANNEL_CREDENTIALS_INVALID.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import grpc
import jwt
import pytest
from broadcaster_line_emulator import DEFAULT_RATES, Account, Exchange, Rate
from cryptography.hazmat.primitives.asymmetric import rsa

from broadcaster.v1 import broadcast_service_pb2 as bpb
from broadcaster.v1 import channel_service_pb2 as pb
from tests.e2e import server as live
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.sending_rig import A, Api, MulticastRecorder, merchant, reach

LIFETIME, MARGIN = 4, 2  # seconds: v2.1 tokens in the long-send test


@pytest.fixture(scope="module")
def api(
    own_database: str, emulator: EmulatorThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    log = tmp_path_factory.mktemp("tokens-server") / "serve.log"
    server = live.start(
        own_database,
        log,
        extra_env={
            "BROADCASTER_PLUGINS": "line",
            "BROADCASTER_LINE_API_BASE": emulator.base_url,
            "BROADCASTER_LINE_TOKEN_LIFETIME": str(LIFETIME),
            "BROADCASTER_LINE_TOKEN_RENEW_MARGIN": str(MARGIN),
        },
    )
    running = Api(server)
    yield running
    running.close()
    assert server.stop() == 0, log.read_text()
    logged = log.read_text()
    emu = emulator.emulator
    tokens = [
        t.value for a in emulator.call(lambda: emu.accounts) for t in _valid_tokens(emulator, a)
    ]
    assert not any(t in logged for t in tokens), "a channel access token reached the log"


class TokenRequests:
    """Every call of the token endpoints for one channel (an emulator observer)."""

    def __init__(self, emulator: EmulatorThread, account: Account) -> None:
        self._emulator = emulator
        self._channel = account.channel_id
        self.calls: list[tuple[str, int | None]] = []
        self._lock = threading.Lock()
        emulator.call(emulator.emulator.add_observer, self)

    def __call__(self, exchange: Exchange) -> None:
        if not exchange.path.startswith(("/oauth2/", "/v2/oauth/")):
            return
        form = parse_qs(exchange.body.decode())
        ids = form.get("client_id", [])
        assertion = form.get("client_assertion", [])
        if assertion:
            ids = [str(jwt.decode(assertion[0], options={"verify_signature": False})["iss"])]
        if self._channel in ids or not ids:
            with self._lock:
                self.calls.append((exchange.path, exchange.status))

    def issued(self) -> int:
        with self._lock:
            return sum(
                1
                for path, status in self.calls
                if path.endswith(("token", "accessToken")) and status == 200
            )

    def close(self) -> None:
        self._emulator.call(self._emulator.emulator.remove_observer, self)


def _connect(api: Api, parent: str, credentials: dict[str, str]) -> pb.Channel:
    request = pb.CreateChannelRequest(
        parent=parent, channel=pb.Channel(type="line", credentials=credentials)
    )
    made = api.channels.CreateChannel(request, metadata=A)
    api.first_sync(made.name, whole=True)  # the sync CreateChannel starts, over first
    return made


def _get(api: Api, name: str) -> pb.Channel:
    return api.channels.GetChannel(pb.GetChannelRequest(name=name), metadata=A)


def _by_secret(account: Account) -> dict[str, str]:
    return {"channel_id": account.channel_id, "channel_secret": account.channel_secret}


def _valid_tokens(emulator: EmulatorThread, account: Account) -> list[Any]:
    return emulator.call(emulator.emulator.issued_tokens, account)


def _send_all(api: Api, parent: str, channel: str, followers: list[str], text: str) -> str:
    api.import_contacts(channel, followers)
    draft = api.draft(parent, channel, text)
    api.send(draft.name)
    return draft.name


def test_connect_issues_a_token_shown_on_the_channel_and_delete_revokes_it(
    api: Api, emulator: EmulatorThread
) -> None:
    account = emulator.call(emulator.emulator.add_account, tier="verified", followers=10)
    parent = merchant()

    made = _connect(api, parent, _by_secret(account))

    issued = _valid_tokens(emulator, account)
    assert [t.kind for t in issued] == ["short_lived"]
    assert made.credential_kind == pb.Channel.SHORT_LIVED
    assert made.credential_state == pb.Channel.CREDENTIAL_VALID
    lifetime = made.credential_expire_time.seconds - made.credential_issue_time.seconds
    assert abs(lifetime - 30 * 24 * 3600) <= 1
    assert made.credential_renew_time.seconds - made.credential_issue_time.seconds == pytest.approx(
        lifetime - MARGIN, abs=1
    )
    listed = api.channels.ListChannels(pb.ListChannelsRequest(parent=parent), metadata=A)
    assert [c.credential_kind for c in listed.channels] == [pb.Channel.SHORT_LIVED]

    api.channels.DeleteChannel(pb.DeleteChannelRequest(name=made.name), metadata=A)

    assert _valid_tokens(emulator, account) == []


def test_a_long_lived_token_is_shown_as_such(api: Api, emulator: EmulatorThread) -> None:
    account = emulator.call(emulator.emulator.add_account, tier="verified", followers=1)
    made = _connect(
        api,
        merchant(),
        {"channel_access_token": account.access_token, "channel_secret": account.channel_secret},
    )

    assert made.credential_kind == pb.Channel.LONG_LIVED
    assert made.credential_state == pb.Channel.CREDENTIAL_VALID
    assert not made.HasField("credential_expire_time")


def test_tokens_renewed_during_a_long_send_with_no_batch_refused(
    api: Api, emulator: EmulatorThread
) -> None:
    emu = emulator.emulator
    followers = 15_000  # 30 batches at 3 a second: about three token lifetimes and more
    account = emulator.call(emu.add_account, tier="verified", followers=followers)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    kid = emulator.call(emu.add_assertion_key, account, public)
    private = jwt.algorithms.RSAAlgorithm.to_jwk(key)
    parent = merchant()
    requests = TokenRequests(emulator, account)
    recorder = MulticastRecorder(emulator, account)
    emulator.call(emu.set_rate, "multicast", Rate(3, 1.0))
    try:
        made = _connect(
            api,
            parent,
            {**_by_secret(account), "assertion_private_key": private, "assertion_key_id": kid},
        )
        ids = emulator.call(emu.follower_ids, account)
        started = time.monotonic()
        name = _send_all(api, parent, made.name, ids, "A long send")
        done = api.finished(name, timeout=180)
        took = time.monotonic() - started
    finally:
        emulator.call(emu.set_rate, "multicast", DEFAULT_RATES["multicast"])
        recorder.close()
        requests.close()

    assert done.state == bpb.Broadcast.SENT, done
    assert (done.counters.sent, done.counters.failed) == (followers, 0)
    got = reach(emulator, account)
    assert (got.users_reached, got.more_than_once) == (followers, 0)
    statuses = {a.status for a in recorder.attempts()}
    assert 401 not in statuses, statuses  # every token was renewed before LINE refused it
    assert took > 2 * LIFETIME
    assert requests.issued() >= took // LIFETIME + 1
    assert _get(api, made.name).credential_state == pb.Channel.CREDENTIAL_VALID


def test_a_token_revoked_mid_send_is_renewed_once_and_the_batches_go_again(
    api: Api, emulator: EmulatorThread
) -> None:
    emu = emulator.emulator
    followers = 5_000
    account = emulator.call(emu.add_account, tier="verified", followers=followers)
    parent = merchant()
    made = _connect(api, parent, _by_secret(account))
    requests = TokenRequests(emulator, account)
    revoked: list[str] = []
    chains: dict[str, list[int | None]] = {}

    def revoke_after_the_first_batch(exchange: Exchange) -> None:
        """As if revoked in the console while the broadcast is going out."""
        if exchange.endpoint != "multicast":
            return
        # (A refused request names no channel: the test sends on one channel at a time.)
        key = exchange.headers.get("X-Line-Retry-Key", "").lower()
        chains.setdefault(key, []).append(exchange.status)
        if exchange.status == 200 and not revoked:
            for token in emu.issued_tokens(account):
                emu.revoke_issued(token.value)
                revoked.append(token.value)

    emulator.call(emu.add_observer, revoke_after_the_first_batch)
    try:
        ids = emulator.call(emu.follower_ids, account)
        name = _send_all(api, parent, made.name, ids, "Sent with a renewed token")
        done = api.finished(name)
    finally:
        emulator.call(emu.remove_observer, revoke_after_the_first_batch)
        requests.close()

    assert done.state == bpb.Broadcast.SENT, done
    assert (done.counters.sent, done.counters.failed) == (followers, 0)
    got = reach(emulator, account)
    assert (got.users_reached, got.more_than_once) == (followers, 0)
    refused = [k for k, chain in chains.items() if chain[0] == 401]
    assert revoked and refused
    assert all(chains[k] == [401, 200] for k in refused)  # renewed once, sent with the same key
    assert len(chains) == followers // 500
    assert requests.issued() == 1  # one renewal for every refused batch
    assert _get(api, made.name).credential_state == pb.Channel.CREDENTIAL_VALID


def test_a_refused_renewal_shows_on_the_channel(api: Api, emulator: EmulatorThread) -> None:
    emu = emulator.emulator
    account = emulator.call(emu.add_account, tier="verified", followers=600)
    parent = merchant()
    made = _connect(api, parent, _by_secret(account))
    # The merchant issued a new channel secret in the console, and the token was revoked.
    emulator.call(setattr, account, "channel_secret", "0" * 32)
    for token in _valid_tokens(emulator, account):
        emulator.call(emu.revoke_issued, token.value)

    ids = emulator.call(emu.follower_ids, account)

    # SendBroadcast reads the quota first: LINE refuses the token, then refuses to issue another.
    with pytest.raises(grpc.RpcError) as refused:
        _send_all(api, parent, made.name, ids, "Never sent")

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "invalid client_secret" in str(refused.value.details())
    channel = _get(api, made.name)
    assert channel.state == pb.Channel.CREDENTIALS_INVALID
    assert channel.credential_state == pb.Channel.CREDENTIAL_REFUSED
    metrics = _metrics(api)
    assert 'broadcaster_channel_credentials_refused_total{channel_type="line"}' in metrics


def _metrics(api: Api) -> str:
    url = f"http://127.0.0.1:{api.server.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        return str(reply.read().decode())


def test_wrong_secret_refused_at_connect(api: Api, emulator: EmulatorThread) -> None:
    account = emulator.call(emulator.emulator.add_account, tier="verified", followers=1)

    with pytest.raises(grpc.RpcError) as refused:
        _connect(api, merchant(), {"channel_id": account.channel_id, "channel_secret": "0" * 32})

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "channel id and channel secret" in str(refused.value.details())
