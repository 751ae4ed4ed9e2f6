"""Event cursors: opaque, bound to their merchant, and revealing nothing of other merchants.

A position in a merchant's event stream names a row of the outbox that every merchant shares,
so its number grows with everyone's sending: a cursor that showed it would let a merchant
measure how much the others send. A cursor is therefore the position encrypted, as one AES
block, under a key derived from the configured secret key (BROADCASTER_SECRET_KEY, or the key
kept beside a SQLite file) and the merchant's id:

    cursor = base64url(version ‖ key id ‖ AES-256(key(secret, merchant), block))
    block  = row (8 bytes, below 2⁴⁸) ‖ seq (4 bytes) ‖ kind order (1 byte) ‖ three zero bytes

A block cipher on a single block is a keyed permutation: a cursor says nothing about the
position (not even how far apart two cursors are), and any change to it decrypts to noise that
fails the check (the zero bytes and the kind order: about one in 10¹⁴ would pass). The key
is the same on every replica and across restarts, so a cursor resumes anywhere; another
merchant's key opens it to noise, so a cursor works only for its own merchant. With several
secret keys (rotation), the first seals and all open; the key id says which to try first.

Sealing runs in one call per page: the blocks of a thousand events are encrypted together and
their base64 cut into 24-character cursors (18 bytes each, so no padding falls between them).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import itertools
import struct
from collections.abc import Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from broadcaster.domain.deliveries import START, EventPosition
from broadcaster.domain.errors import FieldViolation, InvalidArgument
from broadcaster.domain.reasons import Reason

VERSION = 1
_CHARS = 24  # base64 of 18 bytes
_PACK = struct.Struct(">QIB3x")  # row, seq, kind order, zeros
_ROWS = 1 << 48  # seqs are 4 bytes: struct refuses more
_LABEL = b"broadcaster event cursor v1\x00"


class _Key:
    def __init__(self, secret: str) -> None:
        self.root = hmac.digest(secret.encode(), _LABEL, "sha256")
        self.id = self.root[0]

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one per merchant, for the keys' lifetime
    def cipher(self, merchant: str) -> Cipher[modes.ECB]:
        key = hmac.digest(self.root, merchant.encode(), "sha256")
        return Cipher(algorithms.AES(key), modes.ECB())


class EventCursors:
    """Seals positions into cursors and opens them, for one set of secret keys."""

    def __init__(self, secret_keys: Sequence[str]) -> None:
        if not secret_keys:
            raise ValueError("event cursors need a secret key")
        self._keys = [_Key(k) for k in secret_keys]
        self._header = bytes((VERSION, self._keys[0].id))

    def seal(self, merchant: str, positions: Sequence[EventPosition]) -> list[str]:
        """The cursors of `positions` (of `merchant`'s stream), in one pass."""
        if not positions:
            return []
        if positions[-1].row >= _ROWS:  # in stream order: the last has the highest row
            raise ValueError("an event row beyond what a cursor holds")
        sealed = (
            self._keys[0]
            .cipher(merchant)
            .encryptor()
            .update(b"".join(itertools.starmap(_PACK.pack, positions)))
        )
        # Each 16-byte block behind the 2-byte header, with slice copies rather than a loop.
        n = len(positions)
        units = bytearray(18 * n)
        units[0::18] = self._header[:1] * n
        units[1::18] = self._header[1:] * n
        for j in range(16):
            units[2 + j :: 18] = sealed[j::16]
        text = base64.urlsafe_b64encode(units).decode("ascii")
        return [text[i : i + _CHARS] for i in range(0, len(text), _CHARS)]

    def open(self, merchant: str, cursor: str, field: str) -> EventPosition:
        """The position `cursor` names in `merchant`'s stream (START for ""); INVALID_CURSOR
        for anything this service did not issue to this merchant."""
        if not cursor:
            return START
        raw = b""
        if len(cursor) == _CHARS and cursor.isascii():
            try:
                raw = base64.urlsafe_b64decode(cursor.encode("ascii"))
            except (binascii.Error, ValueError):
                raw = b""
        if len(raw) == 18 and raw[0] == VERSION:
            # The key the id names first, then the others (ids are one byte: they can collide).
            keys = sorted(self._keys, key=lambda k: k.id != raw[1])
            for key in keys:
                block = key.cipher(merchant).decryptor().update(raw[2:])
                row, seq, kind = _PACK.unpack(block)
                if row < _ROWS and kind <= 1 and block[13:] == b"\0\0\0":
                    return EventPosition(row, seq, kind)
        raise InvalidArgument(
            [FieldViolation(field, "is not a cursor this service issued")],
            reason=Reason.INVALID_CURSOR,
        )
