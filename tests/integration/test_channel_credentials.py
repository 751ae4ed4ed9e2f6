"""Credentials channels issue for themselves, kept by the core (services/credentials.py) on both
databases: sealed at rest, one renewal when replicas race, the others read it, a refused one
renewed even when not due, a failed renewal leaves the lease free, and due ones are renewed by
the background renewer."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from broadcaster.channels import ChannelUnavailable, IssuedCredential
from broadcaster.domain.model import ChannelState, CredentialState
from broadcaster.domain.names import ChannelName
from broadcaster.services.context import ServiceContext
from broadcaster.services.credentials import StoredCredentials, seal
from broadcaster.store import channel_credentials
from broadcaster.store import channels as repo
from broadcaster.store.database import Database
from broadcaster.store.sealing import Sealer
from broadcaster.store.tables import channel_credentials as table

SEALER = Sealer(("k" * 32,))
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
