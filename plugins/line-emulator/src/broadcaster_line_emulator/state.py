"""Accounts (LINE channels) and everything the emulator knows about each: credentials, bot
profile, tier, followers, monthly quota, deliveries and accepted retry keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .deliveries import DeliveryLog
from .followers import FollowerRegistry
from .retrykeys import RetryKeyStore


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
