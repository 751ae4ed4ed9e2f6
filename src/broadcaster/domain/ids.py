"""Resource ids this service assigns: 26 lower-case base32 characters that sort by creation time.

48 bits of milliseconds then 80 random bits (the ULID layout), so `ORDER BY id` is creation order
and keyset pagination needs no second column. Within one process ids are strictly increasing even
inside one millisecond: the random part is incremented instead of drawn again.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = 0


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _next_values(count: int) -> range:
    global _last
    ms = int(time.time() * 1000) & ((1 << 48) - 1)
    fresh = ms << _RANDOM_BITS | int.from_bytes(os.urandom(9), "big")  # 72 bits: room to count
    with _lock:
        start = max(fresh, _last + 1)
        _last = start + count - 1
    return range(start, start + count)


def new_id() -> str:
    return _encode(_next_values(1)[0])


def new_ids(count: int) -> list[str]:
    """`count` increasing ids for one bulk insert."""
    return [_encode(v) for v in _next_values(count)]
