"""Resource names (AIP-122): parsing and formatting.

merchants/{merchant}
merchants/{merchant}/customerGroups/{customer_group}
merchants/{merchant}/channels/{channel}
merchants/{merchant}/channels/{channel}/contacts/{contact}
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from broadcaster.domain.errors import FieldViolation, InvalidArgument

# Merchant ids come from the platform, so they admit upper case and underscores; ids this service
# assigns are lower-case base32.
ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"  # an id in a resource name, as a regex
_MERCHANT = re.compile(rf"merchants/({ID})")
_GROUP = re.compile(rf"merchants/({ID})/customerGroups/({ID})")
_CHANNEL = re.compile(rf"merchants/({ID})/channels/({ID})")
_CONTACT = re.compile(rf"merchants/({ID})/channels/({ID})/contacts/({ID})")


def _match(pattern: re.Pattern[str], value: str, field: str, shape: str) -> re.Match[str]:
    m = pattern.fullmatch(value)
    if m is None:
        detail = "is required" if not value else f"must look like {shape!r}"
        raise InvalidArgument([FieldViolation(field, f"{detail}, got {value[:300]!r}")])
    return m


@dataclass(frozen=True, slots=True)
class MerchantName:
    merchant: str

    @classmethod
    def parse(cls, value: str, field: str = "parent") -> MerchantName:
        return cls(*_match(_MERCHANT, value, field, "merchants/{merchant}").groups())

    def __str__(self) -> str:
        return f"merchants/{self.merchant}"


@dataclass(frozen=True, slots=True)
class CustomerGroupName:
    merchant: str
    group: str

    @classmethod
    def parse(cls, value: str, field: str = "name") -> CustomerGroupName:
        shape = "merchants/{merchant}/customerGroups/{customer_group}"
        return cls(*_match(_GROUP, value, field, shape).groups())

    def __str__(self) -> str:
        return f"merchants/{self.merchant}/customerGroups/{self.group}"


@dataclass(frozen=True, slots=True)
class ChannelName:
    merchant: str
    channel: str

    @classmethod
    def parse(cls, value: str, field: str = "parent") -> ChannelName:
        shape = "merchants/{merchant}/channels/{channel}"
        return cls(*_match(_CHANNEL, value, field, shape).groups())

    def __str__(self) -> str:
        return f"merchants/{self.merchant}/channels/{self.channel}"


@dataclass(frozen=True, slots=True)
class ContactName:
    merchant: str
    channel: str
    contact: str

    @classmethod
    def parse(cls, value: str, field: str = "name") -> ContactName:
        shape = "merchants/{merchant}/channels/{channel}/contacts/{contact}"
        return cls(*_match(_CONTACT, value, field, shape).groups())

    @property
    def channel_name(self) -> ChannelName:
        return ChannelName(self.merchant, self.channel)

    def __str__(self) -> str:
        return f"merchants/{self.merchant}/channels/{self.channel}/contacts/{self.contact}"


_BROADCAST = re.compile(rf"merchants/({ID})/broadcasts/({ID})")


@dataclass(frozen=True, slots=True)
class BroadcastName:
    merchant: str
    broadcast: str

    @classmethod
    def parse(cls, value: str, field: str = "name") -> BroadcastName:
        shape = "merchants/{merchant}/broadcasts/{broadcast}"
        return cls(*_match(_BROADCAST, value, field, shape).groups())

    def __str__(self) -> str:
        return f"merchants/{self.merchant}/broadcasts/{self.broadcast}"
