"""Identifiers in the shapes LINE uses: user ids (`U` + 32 hex digits), request ids (UUIDs),
webhook event ids (ULIDs), message ids (decimal strings), channel access tokens and secrets.

Generated follower ids come from an invertible 128-bit mix of `key + index`, so a million
followers cost no memory and an id can be mapped back to its index in O(1). Many ids at once are
mixed or unmixed as one big integer with a 256-bit lane per id, so the per-id work is done by
C loops over integers and bytes rather than by Python arithmetic on each id."""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import re
import sys
import uuid
from array import array
from collections.abc import Sequence
from typing import cast

USER_ID_PATTERN = re.compile(r"U[0-9a-f]{32}")
RETRY_KEY_PATTERN = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

_BITS = 128
_MASK = (1 << _BITS) - 1
_HALF = (1 << 64) - 1  # the low 64 bits of one id
# Odd multipliers are invertible modulo 2**128; the xor-shifts by 64 are their own inverses.
_M1 = 0x9E3779B97F4A7C15F39CC0605CEDC835
_M2 = 0xC2B2AE3D27D4EB4F165667B19E3779F9
_M1_INV = pow(_M1, -1, 1 << _BITS)
_M2_INV = pow(_M2, -1, 1 << _BITS)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_HEX_DIGITS = b"0123456789abcdef"

# Lanes: ids packed into one integer, lane i holding bits [256 i, 256 i + 128). A product of two
# 128-bit numbers stays inside its 256-bit lane, so lanes never carry into each other.
_LANE_BITS = 256
_LANES = 500  # a full multicast is one packed integer, with these masks used as they are
_ONES = sum(1 << (_LANE_BITS * i) for i in range(_LANES))
_LOW64 = _ONES * _HALF
_LOW128 = _ONES * _MASK
_RAMP = sum(i << (_LANE_BITS * i) for i in range(_LANES))
_ZERO_HALF_LANE = b"0" * 32


def is_user_id(value: object) -> bool:
    return isinstance(value, str) and USER_ID_PATTERN.fullmatch(value) is not None


def all_user_ids(values: Sequence[object]) -> bool:
    """`all(map(is_user_id, values))`, checked on one joined string instead of per value.

    Joined with newlines (a non-string raises TypeError), n user ids make 34n - 1 characters
    with a `U` at every 34th, a newline after each 33 and lowercase hex digits elsewhere.
    Deleting the hex digits must then leave exactly `U`, newline, `U`, ..., `U`: no newline
    beyond the n - 1 joins (so no value holds one of its own, and the joins are where checked)
    and no `U` beyond the n checked, so each value is `U` + 32 hex digits."""
    n = len(values)
    if n == 0:
        return True
    try:
        joined = "\n".join(values)  # type: ignore[arg-type]
    except TypeError:
        return False
    if len(joined) != 34 * n - 1 or not joined.isascii():
        return False
    raw = joined.encode("ascii")
    return (
        raw[::34] == b"U" * n
        and raw[33::34] == b"\n" * (n - 1)
        and raw.translate(None, _HEX_DIGITS) == b"U\n" * (n - 1) + b"U"
    )


def _mix_lanes(x: int, low64: int, low128: int) -> int:
    """`_mix` of every lane; `low64`/`low128` keep the low 64/128 bits of each lane in use."""
    x ^= (x >> 64) & low64
    x = (x * _M1) & low128
    x ^= (x >> 64) & low64
    x = (x * _M2) & low128
    x ^= (x >> 64) & low64
    return x


def _unmix_lanes(x: int, low64: int, low128: int) -> int:
    x ^= (x >> 64) & low64
    x = (x * _M2_INV) & low128
    x ^= (x >> 64) & low64
    x = (x * _M1_INV) & low128
    x ^= (x >> 64) & low64
    return x


def _mix(x: int) -> int:
    return _mix_lanes(x, _HALF, _MASK)


def _unmix(x: int) -> int:
    return _unmix_lanes(x, _HALF, _MASK)


def seed_key(seed: int | str, purpose: str) -> int:
    """A 128-bit key derived from a seed, distinct per purpose."""
    digest = hashlib.blake2b(f"{purpose}:{seed}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big")


class UserIdSpace:
    """A deterministic, collision-free sequence of user ids: index <-> id in O(1)."""

    __slots__ = ("_minus_key_lanes", "key")

    def __init__(self, key: int) -> None:
        self.key = key & _MASK
        self._minus_key_lanes = ((-self.key) & _MASK) * _ONES

    def user_id(self, index: int) -> str:
        return "U" + format(_mix((self.key + index) & _MASK), "032x")

    def index_of(self, user_id: str) -> int:
        """The index this space would give `user_id`; callers check it against their count."""
        return (_unmix(int(user_id[1:], 16)) - self.key) & _MASK

    def user_ids(self, start: int, stop: int) -> list[str]:
        """`[user_id(i) for i in range(start, stop)]`, computed a lane per index."""
        ids: list[str] = []
        for first in range(start, stop, _LANES):
            n = min(_LANES, stop - first)
            shift = _LANE_BITS * (_LANES - n)
            low128 = _LOW128 >> shift
            x = ((((self.key + first) & _MASK) * (_ONES >> shift)) + _RAMP) & low128
            digits = _mix_lanes(x, _LOW64 >> shift, low128).to_bytes(n * 32, "big").hex()
            # The most significant lane comes first; each lane is 64 digits, the id its last 32.
            ids.extend(["U" + digits[i : i + 32] for i in range(n * 64 - 32, 0, -64)])
        return ids

    def indices_below(self, user_ids: Sequence[str], count: int) -> list[int | None]:
        """`index_of` of each user id, or None where it is not below `count`.

        Every entry must be a user id (see `all_user_ids`)."""
        n = len(user_ids)
        if count > 1 << 64:
            return [i if (i := self.index_of(u)) < count else None for u in user_ids]
        if n > _LANES:
            found: list[int | None] = []
            for first in range(0, n, _LANES):
                found += self.indices_below(user_ids[first : first + _LANES], count)
            return found
        if n == 0:
            return []
        shift = _LANE_BITS * (_LANES - n)
        low128 = _LOW128 >> shift
        # "U" + 32 digits -> 32 zeros + 32 digits: a lane each, the first id the most significant.
        digits = "".join(user_ids).encode().replace(b"U", _ZERO_HALF_LANE)
        x = _unmix_lanes(int.from_bytes(binascii.unhexlify(digits), "big"), _LOW64 >> shift, low128)
        x = (x + (self._minus_key_lanes >> shift)) & low128
        words = array("Q", x.to_bytes(n * _LANE_BITS // 8, "little"))
        if sys.byteorder == "big":
            words.byteswap()
        # Lane i is words 4i (its low 64 bits) and 4i+1; the last lane holds the first id.
        lows, highs = words[-4::-4].tolist(), words[-3::-4]
        if highs.tobytes() == bytes(8 * n) and max(lows) < count:  # all found: no per-id test
            return cast("list[int | None]", lows)
        return [
            low if not high and low < count else None for low, high in zip(lows, highs, strict=True)
        ]


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
