"""Short-lived channel access tokens: a channel connected with its channel id and secret (or an
assertion signing key) issues its own, renews them before they expire, gets a new one when
LINE refuses one, and revokes it on disconnect."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import aiohttp
import jwt
import pytest
from broadcaster_line import tokens
from broadcaster_line.channel import API_BASE_ENV, LineChannel
from broadcaster_line.tokens import LIFETIME_ENV, RENEW_MARGIN_ENV, MemoryCredentials
from broadcaster_line_emulator import Account, Faults, LineEmulator, ManualClock
from broadcaster_line_emulator.conformance import ConformanceRecorder
from cryptography.hazmat.primitives.asymmetric import rsa

from broadcaster.channels import (
    ChannelRuntime,
    ChannelUnavailable,
    CredentialsInvalid,
    IssuedCredential,
    SendBatch,
    SendStatus,
    TextMessage,
)

Make = Callable[..., tuple[LineChannel, MemoryCredentials]]


@pytest.fixture
def clock() -> ManualClock:
    """LINE's clock starts at the real time: JWT assertions carry real times."""
    return ManualClock(start=time.time())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> dict[str, Any]:
    found: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True)
    return found


@pytest.fixture
def make(
    emulator: LineEmulator, session: aiohttp.ClientSession, conformance: ConformanceRecorder
) -> Iterator[Make]:
    def build(credentials: dict[str, str], **env: str) -> tuple[LineChannel, MemoryCredentials]:
        store = MemoryCredentials()
        runtime = ChannelRuntime(
            http=session, env={API_BASE_ENV: emulator.base_url, **env}, credentials=store
        )
        return LineChannel.from_credentials(credentials, runtime), store

    yield build
    requests = [v for v in conformance.violations if v.kind == "request"]
    assert not requests, "the plugin broke the LINE specs:\n" + "\n".join(map(str, requests))


def _by_secret(account: Account) -> dict[str, str]:
    return {"channel_id": account.channel_id, "channel_secret": account.channel_secret}


def _batch(shop: Account, emulator: LineEmulator, key: str) -> SendBatch:
    recipients = emulator.follower_ids(shop)[:3]
    return SendBatch(recipients, (TextMessage("hello"),), key)


async def test_connect_issues_a_short_lived_token_and_sends_with_it(
    make: Make, shop: Account, emulator: LineEmulator
) -> None:
    channel, store = make(_by_secret(shop))

    info = await channel.connect()

    assert info.account_id == shop.bot_user_id
    issued = emulator.issued_tokens(shop)
    assert len(issued) == 1 and issued[0].kind == "short_lived"
    assert store.held is not None and store.held.value == issued[0].value
    lifetime = store.held.expire_time - store.held.issue_time
    assert lifetime == timedelta(days=30)
    assert store.held.expire_time - store.held.renew_time == timedelta(days=1)
    outcome = await channel.send(_batch(shop, emulator, "0b7e6a4e-4a0f-4a53-9d55-5a1f7f0e0a01"))
    assert outcome.status is SendStatus.ACCEPTED
    assert len(emulator.issued_tokens(shop)) == 1  # no renewal while the token is fresh


async def test_a_token_due_for_renewal_is_renewed_before_use(
    make: Make, shop: Account, emulator: LineEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel, store = make(_by_secret(shop))
    await channel.connect()
    old = store.held
    assert old is not None
    later = old.renew_time + timedelta(seconds=1)  # within the margin, before the expiry
    monkeypatch.setattr(tokens, "_now", lambda: later)

    outcome = await channel.send(_batch(shop, emulator, "0b7e6a4e-4a0f-4a53-9d55-5a1f7f0e0a02"))

    assert outcome.status is SendStatus.ACCEPTED
    assert store.held is not None and store.held.value != old.value
    assert [t.value for t in emulator.issued_tokens(shop)] == [old.value, store.held.value]
    assert store.held.issue_time == later


async def _settled(emulator: LineEmulator, shop: Account, expected: list[str]) -> None:
    """Until the emulator's valid tokens are `expected` (revocations run in the background)."""
    async with asyncio.timeout(5):
        while True:
            if [t.value for t in emulator.issued_tokens(shop)] == expected:
                return
            await asyncio.sleep(0.01)


async def test_the_token_a_renewal_replaced_is_revoked_after_a_delay(
    make: Make, shop: Account, emulator: LineEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "REVOKE_DELAY", 0.2)
    channel, store = make(_by_secret(shop))
    await channel.connect()
    old = store.held
    assert old is not None
    later = old.renew_time + timedelta(seconds=1)
    monkeypatch.setattr(tokens, "_now", lambda: later)

    outcome = await channel.send(_batch(shop, emulator, "0b7e6a4e-4a0f-4a53-9d55-5a1f7f0e0a05"))

    assert outcome.status is SendStatus.ACCEPTED
    assert store.held is not None and store.held.value != old.value
    # Both valid for a moment (calls under way with the old one end), then the old one goes.
    assert [t.value for t in emulator.issued_tokens(shop)] == [old.value, store.held.value]
    await _settled(emulator, shop, [store.held.value])


class _Overtaken(MemoryCredentials):
    """A store where another replica's renewal is stored while this one issues its token."""

    def __init__(self, theirs: Callable[[], Awaitable[IssuedCredential]]) -> None:
        super().__init__()
        self._theirs = theirs

    async def renew(
        self, issue: Callable[[], Awaitable[IssuedCredential]], *, refused: str | None = None
    ) -> IssuedCredential:
        if self.held is None:
            return await super().renew(issue, refused=refused)
        await issue()  # ours, issued and then not stored
        self.held = await self._theirs()
        return self.held


async def test_a_token_issued_for_a_renewal_another_replica_won_is_revoked_at_once(
    shop: Account,
    emulator: LineEmulator,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = ChannelRuntime(http=session, env={API_BASE_ENV: emulator.base_url})
    other = LineChannel.from_credentials(_by_secret(shop), runtime)  # another replica's
    theirs: list[str] = []

    async def their_renewal() -> IssuedCredential:
        await other.connect()  # it issues a token for the same channel
        issued = emulator.issued_tokens(shop)[-1].value
        theirs.append(issued)
        now = tokens._now()
        return IssuedCredential(issued, now, now + timedelta(days=1), now + timedelta(days=2))

    store = _Overtaken(their_renewal)
    runtime = ChannelRuntime(http=session, env={API_BASE_ENV: emulator.base_url}, credentials=store)
    channel = LineChannel.from_credentials(_by_secret(shop), runtime)
    await channel.connect()
    first = store.held
    assert first is not None
    monkeypatch.setattr(tokens, "_now", lambda: first.renew_time + timedelta(seconds=1))

    assert await channel.renew_credentials()

    assert store.held is not None and store.held.value == theirs[0]
    # Ours was revoked at once; the one theirs replaced goes after the delay (not here).
    await _settled(emulator, shop, [first.value, theirs[0]])


async def test_a_refused_token_is_renewed_and_the_batch_goes_with_the_same_key(
    make: Make, shop: Account, emulator: LineEmulator, clock: ManualClock
) -> None:
    channel, store = make(_by_secret(shop))
    await channel.connect()
    first = store.held
    assert first is not None
    clock.advance(30 * 24 * 3600)  # LINE's clock: the token expired
    batch = _batch(shop, emulator, "0b7e6a4e-4a0f-4a53-9d55-5a1f7f0e0a03")

    refused = await channel.send(batch)
    renewed = await channel.renew_credentials(refused=True)
    again = await channel.send(batch)

    assert refused.status is SendStatus.CREDENTIALS_REFUSED
    assert renewed and store.held.value != first.value
    assert again.status is SendStatus.ACCEPTED
    assert await channel.renew_credentials(refused=True)  # renewed already: nothing to do
    assert len(emulator.issued_tokens(shop)) == 1


async def test_long_lived_tokens_have_nothing_to_renew(make: Make, shop: Account) -> None:
    channel, _ = make(
        {"channel_access_token": shop.access_token, "channel_secret": shop.channel_secret}
    )

    assert not channel.issues_tokens
    assert not await channel.renew_credentials(refused=True)


async def test_disconnect_revokes_the_token(
    make: Make, shop: Account, emulator: LineEmulator
) -> None:
    channel, _ = make(_by_secret(shop))
    await channel.connect()

    await channel.disconnect()

    assert emulator.issued_tokens(shop) == []
    refused = await channel.send(_batch(shop, emulator, "0b7e6a4e-4a0f-4a53-9d55-5a1f7f0e0a04"))
    assert refused.status is SendStatus.CREDENTIALS_REFUSED


async def test_a_wrong_secret_is_refused_at_connect(make: Make, shop: Account) -> None:
    channel, _ = make({"channel_id": shop.channel_id, "channel_secret": "0" * 32})

    with pytest.raises(CredentialsInvalid, match="channel id and channel secret"):
        await channel.connect()


async def test_assertion_key_issues_v21_tokens_of_the_configured_lifetime(
    make: Make, shop: Account, emulator: LineEmulator, rsa_key: rsa.RSAPrivateKey
) -> None:
    kid = emulator.add_assertion_key(shop, _jwk(rsa_key.public_key()))
    credentials = {
        **_by_secret(shop),
        "assertion_private_key": json.dumps(_jwk(rsa_key)),
        "assertion_key_id": kid,
    }
    channel, store = make(credentials, **{LIFETIME_ENV: "600", RENEW_MARGIN_ENV: "120"})

    await channel.connect()

    issued = emulator.issued_tokens(shop)
    assert [t.kind for t in issued] == ["v2.1"]
    assert store.held is not None and store.held.key_id == issued[0].key_id
    assert store.held.expire_time - store.held.issue_time == timedelta(seconds=600)
    assert store.held.expire_time - store.held.renew_time == timedelta(seconds=120)
    await channel.disconnect()
    assert emulator.issued_tokens(shop) == []


async def test_an_unregistered_assertion_key_is_refused(
    make: Make, shop: Account, rsa_key: rsa.RSAPrivateKey
) -> None:
    credentials = {
        **_by_secret(shop),
        "assertion_private_key": json.dumps(_jwk(rsa_key)),
        "assertion_key_id": "not-registered",
    }
    channel, _ = make(credentials)

    with pytest.raises(CredentialsInvalid):
        await channel.connect()


@pytest.mark.parametrize(
    ("credentials", "match"),
    [
        ({"channel_id": "1", "channel_access_token": "t", "channel_secret": "s"}, "not both"),
        ({"channel_secret": "s"}, "channel_access_token or channel_id"),
        ({"channel_id": "12a", "channel_secret": "s"}, "digits only"),
        ({"channel_id": "1", "channel_secret": "s", "assertion_key_id": "k"}, "together"),
        (
            {
                "channel_id": "1",
                "channel_secret": "s",
                "assertion_private_key": '{"kty": "RSA"}',
                "assertion_key_id": "k",
            },
            "private RSA key",
        ),
        (
            {
                "channel_id": "1",
                "channel_secret": "s",
                "assertion_private_key": "not json",
                "assertion_key_id": "k",
            },
            "private RSA key",
        ),
    ],
)
def test_refused_credential_shapes(make: Make, credentials: dict[str, str], match: str) -> None:
    with pytest.raises(CredentialsInvalid, match=match):
        make(credentials)


@pytest.mark.parametrize("value", ["0", "-5", "soon", str(31 * 24 * 3600)])
def test_refused_settings(make: Make, shop: Account, value: str) -> None:
    with pytest.raises(CredentialsInvalid, match=RENEW_MARGIN_ENV):
        make(_by_secret(shop), **{RENEW_MARGIN_ENV: value})


async def test_a_refused_token_that_cannot_be_renewed_yet_is_retried_later(
    make: Make, shop: Account, emulator: LineEmulator, clock: ManualClock
) -> None:
    channel, store = make(_by_secret(shop))
    await channel.connect()
    clock.advance(30 * 24 * 3600)  # LINE's clock: the token expired
    batch = _batch(shop, emulator, "0b7e6a4e-4a0f-4a53-9d55-5a1f7f0e0a05")
    token_endpoint_down = Faults(
        error_rate=1.0, error_statuses=(503,), endpoints=frozenset({"issue_short_lived_token"})
    )

    assert (await channel.send(batch)).status is SendStatus.CREDENTIALS_REFUSED
    emulator.set_faults(token_endpoint_down)
    with pytest.raises(ChannelUnavailable):
        await channel.renew_credentials(refused=True)
    later = await channel.send(batch)  # renews first: LINE's token endpoint is still down
    emulator.clear_faults()
    again = await channel.send(batch)

    assert later.status is SendStatus.RETRY_LATER
    assert again.status is SendStatus.ACCEPTED
    assert store.held is not None and len(emulator.issued_tokens(shop)) == 1


async def test_a_token_refused_during_a_contact_sync_is_renewed_and_the_list_goes_on(
    make: Make, shop: Account, emulator: LineEmulator, clock: ManualClock
) -> None:
    channel, store = make(_by_secret(shop))
    await channel.connect()
    first = store.held
    clock.advance(30 * 24 * 3600)  # LINE's clock: the token expired

    listed = [c.external_id async for page in channel.sync_contacts(None) for c in page.contacts]

    assert sorted(listed) == sorted(emulator.follower_ids(shop))
    assert store.held is not None and first is not None and store.held.value != first.value
