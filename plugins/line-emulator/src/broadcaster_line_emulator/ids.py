"""Identifiers in the shapes LINE uses: user ids (`U` + 32 hex digits), request ids (UUIDs),
webhook event ids (ULIDs), message ids (decimal strings), channel access tokens and secrets.

Generated follower ids come from an invertible 128-bit mix of `key + index`, so a million
followers cost no memory and an id can be mapped back to its index in O(1)."""

from __future__ import annotations

import base64
import hashlib
import random
import re
import uuid

USER_ID_PATTERN = re.compile(r"U[0-9a-f]{32}")
RETRY_KEY_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

_BITS = 128
_MASK = (1 << _BITS) - 1
# Odd multipliers are invertible modulo 2**128; the xor-shifts by 64 are their own inverses.
_M1 = 0x9E3779B97F4A7C15F39CC0605CEDC835
_M2 = 0xC2B2AE3D27D4EB4F165667B19E3779F9
_M1_INV = pow(_M1, -1, 1 << _BITS)
_M2_INV = pow(_M2, -1, 1 << _BITS)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def is_user_id(value: object) -> bool:
    return isinstance(value, str) and USER_ID_PATTERN.fullmatch(value) is not None


def _mix(x: int) -> int:
    x ^= x >> 64
    x = (x * _M1) & _MASK
    x ^= x >> 64
    x = (x * _M2) & _MASK
    x ^= x >> 64
    return x


def _unmix(x: int) -> int:
    x ^= x >> 64
    x = (x * _M2_INV) & _MASK
    x ^= x >> 64
    x = (x * _M1_INV) & _MASK
    x ^= x >> 64
    return x


def seed_key(seed: int | str, purpose: str) -> int:
    """A 128-bit key derived from a seed, distinct per purpose."""
    digest = hashlib.blake2b(f"{purpose}:{seed}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big")


class UserIdSpace:
    """A deterministic, collision-free sequence of user ids: index <-> id in O(1)."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key & _MASK

    def user_id(self, index: int) -> str:
        return "U" + format(_mix((self.key + index) & _MASK), "032x")

    def index_of(self, user_id: str) -> int:
        """The index this space would give `user_id`; callers check it against their count."""
        return (_unmix(int(user_id[1:], 16)) - self.key) & _MASK


class IdFactory:
    """Every random-looking id the emulator hands out, reproducible from one seed."""

    def __init__(self, seed: int | str = 0) -> None:
        self._rng = random.Random(f"line-emulator:{seed}")
        self._channels: set[str] = set()

    def request_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def message_id(self) -> str:
        return str(self._rng.randrange(10**17, 10**18))

    def quote_token(self) -> str:
        return base64.urlsafe_b64encode(self._rng.randbytes(48)).decode().rstrip("=")

    def reply_token(self) -> str:
        return self._rng.randbytes(16).hex()

    def ulid(self, timestamp_ms: int) -> str:
        value = ((timestamp_ms & ((1 << 48) - 1)) << 80) | self._rng.getrandbits(80)
        return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))

    def user_id(self) -> str:
        return "U" + format(self._rng.getrandbits(128), "032x")

    def channel_id(self) -> str:
        """Ten digits, like LINE's channel ids; never the same twice from one factory."""
        while True:
            channel = str(2_000_000_000 + self._rng.randrange(10**9))
            if channel not in self._channels:
                self._channels.add(channel)
                return channel

    def basic_id(self) -> str:
        letters = "".join(self._rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5))
        return f"@{self._rng.randrange(100, 1000)}{letters}"

    def access_token(self) -> str:
        # Long-lived LINE channel access tokens are 172 base64 characters.
        return base64.b64encode(self._rng.randbytes(129)).decode()

    def channel_secret(self) -> str:
        return self._rng.randbytes(16).hex()
