"""`LineEmulator`: the in-process control surface and the server's lifecycle."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from . import api, control
from .aggregation import Engagement
from .clock import Clock, SystemClock
from .deliveries import Delivery
from .faults import FaultInjector, Faults
from .followers import Profile
from .ids import IdFactory, is_user_id
from .ratelimit import Rate, RateLimiter
from .retrykeys import RETRY_KEY_TTL, RetryKeyStore
from .runtime import Observer, Runtime
from .state import Account, Directory, IssuedToken, Tier
from .stats import Stats
from .webhooks import Event, EventFactory, WebhookResult, WebhookSender


class LineEmulator:
    """A LINE Messaging API server for tests, benchmarks and demos.

    Use it in-process (`async with LineEmulator() as emu: ...`, `emu.base_url`) or run
    `python -m broadcaster_line_emulator` and drive it over `/_emulator/`."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int | str = 0,
        rates: Mapping[str, Rate] | None = None,
        observers: Iterable[Observer] = (),
        retry_key_ttl: float = RETRY_KEY_TTL,
    ) -> None:
        clock = clock or SystemClock()
        ids = IdFactory(seed)
        self._runtime = Runtime(
            clock=clock,
            ids=ids,
            directory=Directory(),
            limiter=RateLimiter(clock, rates),
            stats=Stats(clock),
            retry_key_ttl=retry_key_ttl,
            observers=list(observers),
        )
        self.events = EventFactory(clock, ids)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._base_url: str | None = None

    # -- accounts -------------------------------------------------------------------------

    def add_account(
        self,
        *,
        tier: Tier | str = Tier.VERIFIED,
        access_token: str | None = None,
        channel_secret: str | None = None,
        channel_id: str | None = None,
        display_name: str = "Emulated Shop",
        bot_user_id: str | None = None,
        picture_url: str | None = "https://profile.line-scdn.net/emulator/bot",
        premium_id: str | None = None,
        quota: int | None = None,
        followers: int = 0,
        follower_seed: int | str | None = None,
    ) -> Account:
        """Create a channel. `quota` is the monthly target limit (None: no limit).

        `followers` are seeded from `follower_seed` (by default the channel id, so two accounts
        have different followers unless given the same seed)."""
        ids = self._runtime.ids
        tier = Tier(tier)
        if bot_user_id is not None and not is_user_id(bot_user_id):
            raise ValueError(f"not a LINE user id: {bot_user_id!r}")
        account = Account(
            channel_id=channel_id or ids.channel_id(),
            access_token=access_token or ids.access_token(),
            channel_secret=channel_secret or ids.channel_secret(),
            bot_user_id=bot_user_id or ids.user_id(),
            basic_id=ids.basic_id(),
            display_name=display_name,
            tier=tier,
            retry_keys=RetryKeyStore(self._runtime.clock, self._runtime.retry_key_ttl),
            picture_url=picture_url,
            premium_id=premium_id,
        )
        if tier is Tier.PREMIUM and premium_id is None:
            account.premium_id = "@" + display_name.lower().replace(" ", "")[:18]
        account.quota.limit = quota
        self._runtime.directory.add(account)
        if followers:
            self.add_followers(account, followers, seed=follower_seed)
        return account

    @property
    def accounts(self) -> list[Account]:
        return list(self._runtime.directory)

    def account(self, channel_id: str) -> Account:
        account = self._runtime.directory.by_channel(channel_id)
        if account is None:
            raise KeyError(f"no channel {channel_id}")
        return account

    def add_followers(
        self, account: Account, count: int, *, seed: int | str | None = None
    ) -> range:
        """Seed `count` followers with ids derived from `seed` (default: the channel id) and
        how many blocks the account already has; returns their positions."""
        return account.followers.add_generated(count, account.channel_id if seed is None else seed)

    def add_follower(
        self,
        account: Account,
        user_id: str | None = None,
        *,
        display_name: str | None = None,
        picture_url: str | None = None,
        status_message: str | None = None,
        language: str | None = None,
    ) -> Profile:
        """Add (or re-add, unblocking) one follower with an explicit profile."""
        user_id = user_id or self._runtime.ids.user_id()
        generated = Profile.generated(user_id)
        profile = Profile(
            user_id, display_name or generated.display_name, picture_url, status_message, language
        )
        account.followers.add(profile)
        return profile

    def follower_ids(self, account: Account, *, include_blocked: bool = False) -> list[str]:
        registry = account.followers
        return registry.listed(0, len(registry), include_blocked=include_blocked)

    def block(self, account: Account, user_id: str) -> None:
        """The user blocks the account (what LINE reports as `unfollow`)."""
        account.followers.block(self._position(account, user_id))

    def unblock(self, account: Account, user_id: str) -> None:
        account.followers.unblock(self._position(account, user_id))

    def set_quota(self, account: Account, limit: int | None, *, usage: int | None = None) -> None:
        account.quota.limit = limit
        if usage is not None:
            account.quota.usage = usage

    def set_engagement(
        self,
        account: Account,
        engagement: Engagement | None = None,
        *,
        unit_allowance: int | None = None,
    ) -> None:
        """How the account's recipients engage with sends under a unit (None keeps it), and
        how many unit names it may use a month (LINE: 1,000)."""
        if engagement is not None:
            account.engagement = engagement
        if unit_allowance is not None:
            if unit_allowance < 0:
                raise ValueError("unit_allowance must not be negative")
            account.units.allowance = unit_allowance

    def set_tier(self, account: Account, tier: Tier | str) -> None:
        account.tier = Tier(tier)

    def rotate_token(self, account: Account, token: str | None = None) -> str:
        """Issue a new channel access token; the old one gets 401 from now on."""
        self._runtime.directory.set_token(account, token or self._runtime.ids.access_token())
        return account.access_token

    def revoke_token(self, account: Account) -> None:
        self._runtime.directory.revoke_token(account)

    def add_assertion_key(self, account: Account, public_jwk: Mapping[str, Any]) -> str:
        """Register an assertion signing key's public half (an RSA JWK) for the channel, as the
        LINE Developers Console does; returns the key id (`kid`) the JWTs must name."""
        if public_jwk.get("kty") != "RSA" or "d" in public_jwk:
            raise ValueError("an assertion signing key is the public half of an RSA JWK")
        kid = self._runtime.ids.request_id()
        keys = self._runtime.tokens.assertion_keys.setdefault(account.channel_id, {})
        keys[kid] = dict(public_jwk)
        return kid

    def issued_tokens(self, account: Account, *, valid_only: bool = True) -> list[IssuedToken]:
        """Tokens issued for the channel through the OAuth endpoints, oldest first (by default
        only those valid now: not expired, not revoked)."""
        now = self._runtime.clock.time()
        found = [
            t
            for t in self._runtime.tokens.by_value.values()
            if t.channel_id == account.channel_id and (not valid_only or t.expires_at > now)
        ]
        return sorted(found, key=lambda t: t.issued_at)

    def revoke_issued(self, token: str) -> bool:
        """Revoke an issued token as if the channel's owner had (it gets 401 from now on)."""
        return self._runtime.tokens.revoke(token)

    def _position(self, account: Account, user_id: str) -> int:
        position = account.followers.position(user_id)
        if position is None:
            raise KeyError(f"{user_id} never followed channel {account.channel_id}")
        return position

    # -- limits and faults ----------------------------------------------------------------

    def set_rate(self, endpoint: str, rate: Rate | None) -> None:
        """Change an endpoint's rate limit for every channel (None lifts it)."""
        self._runtime.limiter.set_rate(endpoint, rate)

    def set_faults(self, faults: Faults | None, account: Account | None = None) -> None:
        """Inject faults for one channel, or for every request when `account` is None."""
        runtime = self._runtime
        if account is None:
            runtime.global_faults = FaultInjector(faults) if faults else None
        elif faults is None:
            runtime.channel_faults.pop(account.channel_id, None)
        else:
            runtime.channel_faults[account.channel_id] = FaultInjector(faults)

    def clear_faults(self) -> None:
        self._runtime.global_faults = None
        self._runtime.channel_faults.clear()

    def faults(self, account: Account | None = None) -> Faults | None:
        injector = (
            self._runtime.global_faults
            if account is None
            else self._runtime.channel_faults.get(account.channel_id)
        )
        return injector.faults if injector else None

    # -- what happened --------------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        return self._runtime.stats

    @property
    def clock(self) -> Clock:
        return self._runtime.clock

    @property
    def observer_errors(self) -> list[BaseException]:
        return self._runtime.observer_errors

    def add_observer(self, observer: Observer) -> None:
        """`observer(exchange)` is called for every Messaging API request and response."""
        self._runtime.observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        self._runtime.observers.remove(observer)

    def received(self, user_id: str, account: Account | None = None) -> list[Delivery]:
        """Every message request that reached `user_id`, oldest first (all channels by default)."""
        found: list[Delivery] = []
        for acc in [account] if account else self._runtime.directory:
            position = acc.followers.position(user_id)
            if position is None:
                continue
            found.extend(
                Delivery(
                    user_id,
                    acc.channel_id,
                    s.endpoint,
                    s.request_id,
                    s.retry_key,
                    s.messages,
                    s.accepted_at,
                )
                for s in acc.deliveries.sends_to(position)
            )
        found.sort(key=lambda d: d.accepted_at)
        return found

    def times_received(self, account: Account, user_id: str) -> int:
        position = account.followers.position(user_id)
        return 0 if position is None else account.deliveries.times_received(position)

    # -- webhooks -------------------------------------------------------------------------

    def webhook_sender(self, account: Account, timeout: float = 10.0) -> WebhookSender:
        return WebhookSender(
            self._client_session(), account.channel_secret, account.bot_user_id, timeout
        )

    async def post_webhook(
        self, account: Account, url: str, events: Sequence[Event], *, bad_signature: bool = False
    ) -> WebhookResult:
        return await self.webhook_sender(account).post(url, events, bad_signature=bad_signature)

    def follow(
        self,
        account: Account,
        user_id: str | None = None,
        *,
        timestamp_ms: int | None = None,
        redelivery: bool = False,
        **profile: Any,
    ) -> Event:
        """A user adds (or unblocks) the account: state changes and the follow event is returned."""
        known = user_id is not None and account.followers.position(user_id) is not None
        if user_id is not None and known:
            was_blocked = not account.followers.is_following(user_id)
            self.unblock(account, user_id)
        else:
            was_blocked = False
            user_id = self.add_follower(account, user_id, **profile).user_id
        return self.events.follow(
            user_id, is_unblocked=was_blocked, timestamp_ms=timestamp_ms, redelivery=redelivery
        )

    def unfollow(
        self,
        account: Account,
        user_id: str,
        *,
        timestamp_ms: int | None = None,
        redelivery: bool = False,
    ) -> Event:
        """A user blocks the account: state changes and the unfollow event is returned."""
        self.block(account, user_id)
        return self.events.unfollow(user_id, timestamp_ms=timestamp_ms, redelivery=redelivery)

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    # -- server ---------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=api.MAX_BODY_BYTES * 4)
        api.add_routes(app, self._runtime)
        control.add_routes(app, self)
        return app

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 picks a free port); returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("already started")
        runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
        self._base_url = f"http://{shown}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._base_url = None

    async def __aenter__(self) -> LineEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
