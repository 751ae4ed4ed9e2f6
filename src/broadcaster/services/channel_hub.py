"""Live channel instances: built from the registry and opened credentials, shared per process.

The hub owns the process's one aiohttp session (channels borrow it through ChannelRuntime) and
caches an instance per channel, so webhooks and sends do not open credentials on every call.
Every few seconds the channel is read again, so a disconnect elsewhere takes effect quickly; the
instance is kept while its stored credentials stay the same, with what it keeps across calls.

Unknown channel ids are remembered too, for a shorter while (and only so many of them), so
posts to a made-up webhook path do not reach the database each time. Channel ids are chosen by
the server when a channel is created, so a new channel's id was never looked up before: it is
found at once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping

import aiohttp

from broadcaster import tracing
from broadcaster.channels import (
    Channel,
    ChannelRegistry,
    ChannelRuntime,
    IssuedCredentials,
    Poster,
)
from broadcaster.channels.registry import UnknownChannelType
from broadcaster.domain.errors import Unavailable
from broadcaster.domain.model import ChannelAccount
from broadcaster.domain.reasons import Reason
from broadcaster.services.context import ServiceContext
from broadcaster.services.credentials import StoredCredentials
from broadcaster.store import channels as repo
from broadcaster.store.database import Database
from broadcaster.store.sealing import Sealer, SecretKeyError

CACHE_SECONDS = 5.0
UNKNOWN_SECONDS = 2.0
MAX_UNKNOWN = 10_000  # remembered unknown ids; the oldest go first
NOT_OPENABLE_SECONDS = 60.0  # how long a channel this process cannot open is left to others
# Connections open at once to channels' APIs (BROADCASTER_CHANNEL_CONNECTIONS): a channel at
# its ceiling keeps rate x latency requests in flight (200/s x 0.15 s = 30 for LINE), up to the
# dispatcher's 32 a channel; 1,024 is 32 channels' worth.
CONNECTIONS = 1024


class NotOpenableHere(Unavailable):
    """The channel exists, but this process cannot open it: its channel type's plugin is not
    installed here, or its credentials are sealed under a key this process lacks (a rolling
    deploy that adds a plugin or a key, half done). Another replica may well open it: callers
    get UNAVAILABLE, and background work leaves the channel to the other replicas."""

    def __init__(self, channel_id: str, why: str) -> None:
        super().__init__(
            f"This server cannot open channel {channel_id}: {why}",
            reason=Reason.CHANNEL_UNAVAILABLE,
            retry_after=1.0,  # another replica may well take the call at once
        )
        self.channel_id = channel_id


class ChannelHub:
    def __init__(
        self,
        registry: ChannelRegistry,
        sealer: Sealer,
        db: Database,
        env: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.monotonic,
        ctx: ServiceContext | None = None,
        connections: int = CONNECTIONS,
    ) -> None:
        self.registry = registry
        self._connections = connections
        # Issued credentials (services.credentials) are kept through the app's context, so
        # their renewals show in its metrics; and renewed under this process's name.
        self._ctx = ctx or ServiceContext(db)
        self.owner = f"credentials-{uuid.uuid4().hex}"
        self.sealer = sealer
        self._db = db
        self._env = dict(env)
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._poster: Poster | None = None  # the channels' hot path (channels.posting)
        # id -> (until when it is fresh, the account, its instance, the sealed credentials the
        # instance was built from)
        self._cache: dict[str, tuple[float, ChannelAccount, Channel, str]] = {}
        self._gone_listeners: list[Callable[[str], None]] = []
        self._unknown: dict[str, float] = {}  # id -> until when it is taken as unknown
        self._not_openable: dict[str, float] = {}  # id -> until when it is left to others

    def runtime(self, issued: IssuedCredentials | None = None) -> ChannelRuntime:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30, connect=5, sock_read=20),
                # One host may serve every channel of a type (LINE: api.line.me), so the cap
                # is per process, not per host: with 128 a host, a replica kept at most 128
                # requests in flight to LINE, 853 requests/s at 150 ms an answer, short of
                # eight channels' 1,600.
                connector=aiohttp.TCPConnector(
                    limit=self._connections, limit_per_host=0, ttl_dns_cache=300
                ),
                raise_for_status=False,
            )
        if self._poster is None:
            traced = None if tracing.installed() is None else tracing.client_request
            self._poster = Poster(self._connections, traced=traced)
        return ChannelRuntime(
            http=self._session, env=self._env, credentials=issued, poster=self._poster
        )

    def build(
        self,
        channel_type: str,
        credentials: Mapping[str, str],
        *,
        issued: IssuedCredentials | None = None,
    ) -> Channel:
        """An instance; `issued` is where it keeps the credentials it issues for itself."""
        runtime = self.runtime(issued)
        return self.registry.get(channel_type).from_credentials(credentials, runtime)

    def issued_credentials(self, channel_id: str, channel_type: str) -> StoredCredentials:
        """A connected channel's store of the credentials it issues for itself."""
        return StoredCredentials(self._ctx, self.sealer, channel_id, channel_type, self.owner)

    async def get(self, channel_id: str) -> tuple[ChannelAccount, Channel] | None:
        """The live channel with this id (any merchant), or None once disconnected. Raises
        NotOpenableHere for one this process cannot open."""
        now = self._clock()
        cached = self._cache.get(channel_id)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        if self._unknown.get(channel_id, 0.0) > now:
            return None
        found = await self._db.read(repo.get_any_merchant, channel_id)
        if found is None:
            self._cache.pop(channel_id, None)
            self._remember_unknown(channel_id, now)
            return None
        self._unknown.pop(channel_id, None)
        account, sealed = found
        if cached is not None and cached[3] == sealed:
            # The same credentials: the same instance, with what it keeps (its token, its
            # pace, what it knows of the account) rather than a new one every few seconds.
            self._cache[channel_id] = (now + CACHE_SECONDS, account, cached[2], sealed)
            return account, cached[2]
        issued = self.issued_credentials(channel_id, account.type)
        try:
            instance = self.build(account.type, self.sealer.open(sealed), issued=issued)
        except UnknownChannelType:
            self._not_openable[channel_id] = now + NOT_OPENABLE_SECONDS
            raise NotOpenableHere(
                channel_id, f"no plugin for channel type {account.type!r} is installed"
            ) from None
        except SecretKeyError as e:
            self._not_openable[channel_id] = now + NOT_OPENABLE_SECONDS
            raise NotOpenableHere(channel_id, str(e)) from None
        self._cache[channel_id] = (now + CACHE_SECONDS, account, instance, sealed)
        return account, instance

    def not_openable(self) -> frozenset[str]:
        """The channels this process found it cannot open in the last minute: background work
        (the firing of scheduled broadcasts) leaves them to other replicas meanwhile."""
        now = self._clock()
        for channel_id in [c for c, until in self._not_openable.items() if until <= now]:
            del self._not_openable[channel_id]
        return frozenset(self._not_openable)

    def _remember_unknown(self, channel_id: str, now: float) -> None:
        self._unknown.pop(channel_id, None)
        while len(self._unknown) >= MAX_UNKNOWN:
            del self._unknown[next(iter(self._unknown))]
        self._unknown[channel_id] = now + UNKNOWN_SECONDS

    def forget(self, channel_id: str) -> None:
        self._cache.pop(channel_id, None)
        self._unknown.pop(channel_id, None)

    def on_gone(self, listener: Callable[[str], None]) -> None:
        """Have `listener(channel_id)` called when a channel is deleted in this process (the
        dispatcher: it stops sending with the channel's credentials at once)."""
        self._gone_listeners.append(listener)

    def gone(self, channel_id: str) -> None:
        """The channel was deleted (committed): forget it and tell the listeners."""
        self.forget(channel_id)
        for listener in self._gone_listeners:
            listener(channel_id)

    async def close(self) -> None:
        self._cache.clear()
        self._unknown.clear()
        if self._session is not None:
            await self._session.close()
        if self._poster is not None:
            await self._poster.close()
            self._poster = None
