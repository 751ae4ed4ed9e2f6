"""Credentials channels issue for themselves, kept by the core (services/credentials.py) on both
databases: sealed at rest, one renewal when replicas race, the others read it, a refused one
renewed even when not due, a failed renewal leaves the lease free, and due ones are renewed by
the background renewer."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from broadcaster_line_emulator import Account, LineEmulator
from sqlalchemy import Connection

from broadcaster.channels import ChannelUnavailable, IssuedCredential
from broadcaster.channels.manager import PluginManager
from broadcaster.domain.auth import Caller
from broadcaster.domain.model import ChannelAccount, ChannelState, CredentialState
from broadcaster.domain.names import ChannelName
from broadcaster.services.channel_hub import ChannelHub
from broadcaster.services.channels import Channels
from broadcaster.services.context import ServiceContext
from broadcaster.services.credentials import Renewer, StoredCredentials, seal, unseal
from broadcaster.store import channel_credentials
from broadcaster.store import channels as repo
from broadcaster.store.clock import to_us
from broadcaster.store.database import Database
from broadcaster.store.sealing import Sealer
from broadcaster.store.tables import channel_credentials as table

SEALER = Sealer(("k" * 32,))
EVERYONE = Caller(label="tests", merchants=None)
_numbers = itertools.count(1)


def _credential(
    now: datetime, *, renew_in: float = 3600, expire_in: float = 7200
) -> IssuedCredential:
    n = next(_numbers)
    return IssuedCredential(
        value=f"token-{n}-{'x' * 40}",
        issue_time=now,
        renew_time=now + timedelta(seconds=renew_in),
        expire_time=now + timedelta(seconds=expire_in),
        key_id=f"kid-{n}",
    )


class Issuer:
    """Counts issues; each takes `delay` seconds, like a call to the channel."""

    def __init__(self, ctx: ServiceContext, delay: float = 0.0, fail: bool = False) -> None:
        self.ctx = ctx
        self.delay = delay
        self.fail = fail
        self.calls = 0

    async def __call__(self) -> IssuedCredential:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ChannelUnavailable("LINE is down")
        return _credential(self.ctx.now())


async def _store_first(db: Database, channel_id: str, credential: IssuedCredential) -> None:
    await db.write(channel_credentials.create, channel_id, seal(SEALER, credential))


def _stored(ctx: ServiceContext, channel_id: str, owner: str) -> StoredCredentials:
    return StoredCredentials(ctx, SEALER, channel_id, "fake", owner, wait_seconds=5.0)


async def test_the_token_is_sealed_at_rest_and_read_back(ctx: ServiceContext, channel: str) -> None:
    channel_id = ChannelName.parse(channel).channel
    first = _credential(ctx.now())
    await _store_first(ctx.db, channel_id, first)

    current = await _stored(ctx, channel_id, "a").current()

    assert current == first
    with ctx.db.reading() as conn:
        raw = conn.execute(sa.select(table.c.sealed).where(table.c.channel_id == channel_id))
        sealed = raw.scalar_one()
    assert first.value not in sealed and first.key_id not in sealed
    account = await ctx.db.read(repo.get, ChannelName.parse(channel).merchant, channel_id)
    assert account is not None and account.issued_credential is not None
    assert account.issued_credential.expire_time == first.expire_time
    assert account.credential_state(ctx.now()) is CredentialState.VALID
    assert account.credential_state(first.renew_time) is CredentialState.EXPIRING


async def test_a_fresh_token_is_used_without_issuing(ctx: ServiceContext, channel: str) -> None:
    channel_id = ChannelName.parse(channel).channel
    first = _credential(ctx.now())
    await _store_first(ctx.db, channel_id, first)
    issuer = Issuer(ctx)

    got = await _stored(ctx, channel_id, "a").renew(issuer)

    assert got == first and issuer.calls == 0


async def test_replicas_racing_renew_once_and_all_use_the_new_token(
    database_url: str, ctx: ServiceContext, channel: str
) -> None:
    """Two 'processes' (their own connection pools) with several renewers each, on a token that
    is due and already expired: one issue in all, and everybody ends with its token."""
    channel_id = ChannelName.parse(channel).channel
    now = ctx.now()
    await _store_first(ctx.db, channel_id, _credential(now, renew_in=-20, expire_in=-10))
    other_db = Database.from_url(database_url)
    try:
        other = ServiceContext(other_db)
        issuer = Issuer(ctx, delay=0.3)
        renewers = [_stored(ctx, channel_id, "process-a") for _ in range(4)] + [
            _stored(other, channel_id, "process-b") for _ in range(4)
        ]

        got = await asyncio.gather(*(r.renew(issuer) for r in renewers))
    finally:
        other_db.close()

    assert issuer.calls == 1
    assert len({c.value for c in got}) == 1
    stored = await ctx.db.read(channel_credentials.get, channel_id)
    assert stored is not None and stored.version == 2 and stored.lease_owner == ""


async def test_while_one_renews_a_due_but_valid_token_serves_the_others(
    ctx: ServiceContext, channel: str
) -> None:
    channel_id = ChannelName.parse(channel).channel
    first = _credential(ctx.now(), renew_in=-1, expire_in=600)
    await _store_first(ctx.db, channel_id, first)
    issuer = Issuer(ctx, delay=0.5)

    renewing = asyncio.create_task(_stored(ctx, channel_id, "a").renew(issuer))
    await asyncio.sleep(0.2)
    meanwhile = await _stored(ctx, channel_id, "b").renew(issuer)
    renewed = await renewing

    assert meanwhile == first  # no waiting, no second issue
    assert renewed.value != first.value and issuer.calls == 1


async def test_a_refused_token_is_renewed_even_when_not_due(
    ctx: ServiceContext, channel: str
) -> None:
    channel_id = ChannelName.parse(channel).channel
    first = _credential(ctx.now())
    await _store_first(ctx.db, channel_id, first)
    issuer = Issuer(ctx)
    store_a, store_b = _stored(ctx, channel_id, "a"), _stored(ctx, channel_id, "b")

    renewed = await store_a.renew(issuer, refused=first.value)
    # Another replica's send was refused with the same old token: it reads the new one.
    also = await store_b.renew(issuer, refused=first.value)

    assert renewed.value != first.value and also == renewed and issuer.calls == 1


async def test_a_failed_renewal_frees_the_lease(ctx: ServiceContext, channel: str) -> None:
    channel_id = ChannelName.parse(channel).channel
    await _store_first(ctx.db, channel_id, _credential(ctx.now(), renew_in=-1, expire_in=-1))
    failing = Issuer(ctx, fail=True)

    with pytest.raises(ChannelUnavailable):
        await _stored(ctx, channel_id, "a").renew(failing)
    working = Issuer(ctx)
    renewed = await _stored(ctx, channel_id, "b").renew(working)

    assert working.calls == 1 and renewed.expire_time > ctx.now()
    assert ctx.metrics.credential_renewals.labels("fake", "failed")._value.get() == 1


async def test_due_lists_connected_channels_with_due_credentials(
    ctx: ServiceContext, channel: str
) -> None:
    channel_id = ChannelName.parse(channel).channel
    await _store_first(ctx.db, channel_id, _credential(ctx.now(), renew_in=-1))

    assert channel_id in await ctx.db.read(channel_credentials.due, ctx.now(), 1000)
    await ctx.db.write(
        repo.set_tier_and_state, channel_id, None, ChannelState.CREDENTIALS_INVALID, ctx.now()
    )
    assert channel_id not in await ctx.db.read(channel_credentials.due, ctx.now(), 1000)


# -- the LINE channel through the core: connect, the renewer, delete -------------------------


@pytest.fixture
async def line_hub(ctx: ServiceContext) -> AsyncIterator[tuple[ChannelHub, LineEmulator]]:
    """A hub with the LINE plugin pointed at an in-process emulator (on the real clock)."""
    emulator = LineEmulator(seed="credentials")
    await emulator.start()
    registry = PluginManager.load(("line",)).register_channels()
    env = {"BROADCASTER_LINE_API_BASE": emulator.base_url}
    hub = ChannelHub(registry, SEALER, ctx.db, env, ctx=ctx)
    yield hub, emulator
    await hub.close()
    await emulator.stop()


async def _connected(
    ctx: ServiceContext, hub: ChannelHub, merchant: str, account: Account
) -> ChannelAccount:
    credentials = {"channel_id": account.channel_id, "channel_secret": account.channel_secret}
    return await Channels(ctx, hub).create(
        EVERYONE, f"merchants/{merchant}", "line", credentials, f"connect-{uuid.uuid4()}"
    )


async def _make_due(db: Database, channel_id: str, now: datetime) -> None:
    def due(conn: Connection) -> None:
        conn.execute(
            sa.update(table)
            .where(table.c.channel_id == channel_id)
            .values(renew_time=to_us(now - timedelta(seconds=1)))
        )

    await db.write(due)


async def test_the_renewer_renews_due_tokens_of_idle_channels(
    ctx: ServiceContext, line_hub: tuple[ChannelHub, LineEmulator], merchant: str
) -> None:
    hub, emulator = line_hub
    account = emulator.add_account(tier="verified", followers=1)
    made = await _connected(ctx, hub, merchant, account)
    assert made.issued_credential is not None
    first = emulator.issued_tokens(account)
    await _make_due(ctx.db, made.id, ctx.now())

    await Renewer(ctx, hub).renew_due()

    stored = await ctx.db.read(channel_credentials.get, made.id)
    assert stored is not None and stored.version == 2
    assert stored.status.renew_time > ctx.now()
    tokens = emulator.issued_tokens(account)
    assert len(tokens) == 2 and tokens[0].value == first[0].value
    assert unseal(SEALER, stored).value == tokens[1].value


async def test_the_renewer_marks_a_channel_whose_secret_is_refused(
    ctx: ServiceContext, line_hub: tuple[ChannelHub, LineEmulator], merchant: str
) -> None:
    hub, emulator = line_hub
    account = emulator.add_account(tier="verified", followers=1)
    made = await _connected(ctx, hub, merchant, account)
    account.channel_secret = "0" * 32  # a new secret issued in the console
    await _make_due(ctx.db, made.id, ctx.now())

    await Renewer(ctx, hub).renew_due()

    found = await ctx.db.read(repo.get, merchant, made.id)
    assert found is not None and found.state is ChannelState.CREDENTIALS_INVALID
    assert found.credential_state(ctx.now()) is CredentialState.REFUSED
    assert ctx.metrics.credentials_refused.labels("line")._value.get() == 1
    assert made.id not in await ctx.db.read(channel_credentials.due, ctx.now(), 1000)


async def test_delete_revokes_and_forgets_the_token(
    ctx: ServiceContext, line_hub: tuple[ChannelHub, LineEmulator], merchant: str
) -> None:
    hub, emulator = line_hub
    account = emulator.add_account(tier="verified", followers=1)
    made = await _connected(ctx, hub, merchant, account)
    assert len(emulator.issued_tokens(account)) == 1

    await Channels(ctx, hub).delete(EVERYONE, f"merchants/{merchant}/channels/{made.id}")

    assert emulator.issued_tokens(account) == []
    assert await ctx.db.read(channel_credentials.get, made.id) is None
