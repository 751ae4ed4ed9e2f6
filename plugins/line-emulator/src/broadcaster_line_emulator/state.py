"""Accounts (LINE channels) and everything the emulator knows about each: credentials, bot
profile, tier, followers, monthly quota, deliveries and accepted retry keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .aggregation import Engagement, UnitLedger
from .deliveries import DeliveryLog
from .followers import FollowerRegistry
from .retrykeys import RetryKeyStore

MAX_ACTIVE_TOKENS = 30  # valid short-lived (and v2.1) tokens per channel


class Tier(StrEnum):
    """LINE has no API field for this; it shows in which endpoints an account may call."""

    NONE = "none"
    VERIFIED = "verified"
    PREMIUM = "premium"

    @property
    def can_list_followers(self) -> bool:
        # "This feature is available only for verified or premium accounts."
        return self is not Tier.NONE


@dataclass(eq=False)
class Quota:
    """The month's target limit (None: no limit set) and the messages counted so far."""

    limit: int | None = None
    usage: int = 0

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.usage)

    def allows(self, count: int) -> bool:
        return self.limit is None or self.usage + count <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "usage": self.usage, "remaining": self.remaining}


@dataclass(eq=False)
class Account:
    """One Messaging API channel and its LINE Official Account."""

    channel_id: str
    access_token: str
    channel_secret: str
    bot_user_id: str
    basic_id: str
    display_name: str
    tier: Tier
    retry_keys: RetryKeyStore
    picture_url: str | None = None
    premium_id: str | None = None
    chat_mode: str = "bot"
    mark_as_read_mode: str = "auto"
    quota: Quota = field(default_factory=Quota)
    followers: FollowerRegistry = field(default_factory=FollowerRegistry)
    deliveries: DeliveryLog = field(default_factory=DeliveryLog)
    # The webhook URL set in the console or through the API (None: never set), and whether the
    # console's "Use webhook" is on.
    webhook_endpoint: str | None = None
    webhook_active: bool = True
    # Unit names used per month (statistics per unit) and how recipients engage with sends.
    units: UnitLedger = field(default_factory=UnitLedger)
    engagement: Engagement = field(default_factory=Engagement)

    def bot_info(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "userId": self.bot_user_id,
            "basicId": self.basic_id,
            "displayName": self.display_name,
            "chatMode": self.chat_mode,
            "markAsReadMode": self.mark_as_read_mode,
        }
        if self.premium_id is not None:
            body["premiumId"] = self.premium_id
        if self.picture_url is not None:
            body["pictureUrl"] = self.picture_url
        return body

    def to_json(self) -> dict[str, Any]:
        """The control API's view, credentials included: it is a test double."""
        return {
            "channelId": self.channel_id,
            "accessToken": self.access_token,
            "channelSecret": self.channel_secret,
            "tier": self.tier.value,
            "bot": self.bot_info(),
            "followers": len(self.followers),
            "following": self.followers.following_count,
            "blocked": self.followers.blocked_count,
            "quota": self.quota.to_json(),
            "sends": len(self.deliveries.sends),
            "deliveries": self.deliveries.total_deliveries,
            "webhookEndpoint": self.webhook_endpoint,
            "webhookActive": self.webhook_active,
        }


class TokenKind(StrEnum):
    """How a channel access token was issued (spec/channel-access-token.yml)."""

    SHORT_LIVED = "short_lived"
    V2_1 = "v2.1"
    STATELESS = "stateless"


@dataclass(eq=False)
class IssuedToken:
    value: str
    channel_id: str
    kind: TokenKind
    issued_at: float
    expires_at: float  # on the emulator clock's time()
    key_id: str = ""


@dataclass(eq=False)
class IssuedTokens:
    """Every token issued through the OAuth endpoints, and the channels' assertion keys."""

    by_value: dict[str, IssuedToken] = field(default_factory=dict)
    # channel id -> key id -> public JWK
    assertion_keys: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    issued_count: int = 0
    revoked_count: int = 0

    def valid(self, value: str, now: float) -> IssuedToken | None:
        found = self.by_value.get(value)
        if found is None:
            return None
        if found.expires_at <= now:
            del self.by_value[value]
            return None
        return found

    def active(self, channel_id: str, kind: TokenKind, now: float) -> list[IssuedToken]:
        out = [
            t
            for t in self.by_value.values()
            if t.channel_id == channel_id and t.kind is kind and t.expires_at > now
        ]
        out.sort(key=lambda t: t.issued_at)
        return out

    def add(self, token: IssuedToken, now: float) -> None:
        if token.kind is not TokenKind.STATELESS:
            active = self.active(token.channel_id, token.kind, now)
            for oldest in active[: max(0, len(active) - MAX_ACTIVE_TOKENS + 1)]:
                self.revoke(oldest.value)
        self.by_value[token.value] = token
        self.issued_count += 1

    def revoke(self, value: str) -> bool:
        if self.by_value.pop(value, None) is None:
            return False
        self.revoked_count += 1
        return True

    def revoke_channel(self, channel_id: str) -> None:
        for value in [v for v, t in self.by_value.items() if t.channel_id == channel_id]:
            self.revoke(value)


class Directory:
    """Accounts by channel id and by access token."""

    def __init__(self) -> None:
        self._by_channel: dict[str, Account] = {}
        self._by_token: dict[str, Account] = {}

    def __iter__(self) -> Iterator[Account]:
        return iter(list(self._by_channel.values()))

    def __len__(self) -> int:
        return len(self._by_channel)

    def add(self, account: Account) -> None:
        if account.channel_id in self._by_channel:
            raise ValueError(f"channel {account.channel_id} already exists")
        if account.access_token in self._by_token:
            raise ValueError("another channel already uses this access token")
        self._by_channel[account.channel_id] = account
        self._by_token[account.access_token] = account

    def by_channel(self, channel_id: str) -> Account | None:
        return self._by_channel.get(channel_id)

    def by_token(self, token: str) -> Account | None:
        return self._by_token.get(token)

    def set_token(self, account: Account, token: str) -> None:
        """Issue a new token; the old one stops working at once."""
        if token in self._by_token and self._by_token[token] is not account:
            raise ValueError("another channel already uses this access token")
        self._by_token.pop(account.access_token, None)
        account.access_token = token
        self._by_token[token] = account

    def revoke_token(self, account: Account) -> None:
        self._by_token.pop(account.access_token, None)
