"""A batch's recipients as the channel receives them: external ids, in seq order.

The store keeps a batch's ids as one JSON array, and a channel whose requests are JSON (LINE's
multicast) puts them in its body as a JSON array again. Decoding 500 ids into strings only to
encode them back took about 80 µs a request, in the claim and on the event loop, for nothing
in the usual batch, whose recipients are all sent. So the array can travel as it was read
(`Recipients.stored`), decoded only if something reads the ids one by one (a channel that sends
one request per recipient, or a retry without those the channel refused), and `json_array` hands
it over as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import overload


class Recipients(Sequence[str]):
    """External ids, in order: made from the ids themselves, or from a JSON array of them
    (`stored`). Equal to any sequence of the same ids."""

    __slots__ = ("_array", "_count", "_ids")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: tuple[str, ...] | None = tuple(ids)
        self._count = len(self._ids)
        self._array: str | None = None

    @classmethod
    def of(cls, ids: Sequence[str]) -> Recipients:
        """`ids` as Recipients (themselves if they are already)."""
        return ids if isinstance(ids, Recipients) else cls(ids)

    @classmethod
    def stored(cls, array: str, count: int) -> Recipients:
        """The `count` ids of `array`, a JSON array of strings the caller wrote itself (so it is
        not checked): decoded only when read one by one."""
        made = cls.__new__(cls)
        made._ids = None
        made._count = count
        made._array = array
        return made

    def json_array(self) -> str:
        """The ids as an ASCII JSON array: the stored one as it is, when it is ASCII. Ids that
        need no escaping (LINE's are 33 letters and digits) are quoted and joined as they are:
        json.dumps escaping each of 500 took a tenth of the event loop's time at eight channels'
        ceilings (py-spy)."""
        if self._array is not None and self._array.isascii():
            return self._array
        ids = self._decoded()
        together = "".join(ids)
        plain = together.isascii() and together.isprintable()
        if plain and '"' not in together and "\\" not in together:
            return '["' + '","'.join(ids) + '"]' if ids else "[]"
        return json.dumps(list(ids), separators=(",", ":"))

    def _decoded(self) -> tuple[str, ...]:
        if self._ids is None:
            assert self._array is not None
            self._ids = tuple(json.loads(self._array))
        return self._ids

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Recipients: ...

    def __getitem__(self, index: int | slice) -> str | Recipients:
        if isinstance(index, slice):
            return Recipients(self._decoded()[index])
        return self._decoded()[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __contains__(self, value: object) -> bool:
        return value in self._decoded()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Recipients | tuple | list):
            return len(self) == len(other) and self._decoded() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._decoded())

    def __repr__(self) -> str:
        return f"Recipients({list(self._decoded())!r})"
