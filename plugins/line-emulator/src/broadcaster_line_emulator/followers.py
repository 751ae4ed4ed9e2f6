"""An account's friends: who follows it, in what order, who has blocked it, and their profiles.

Followers are positions 0..n-1. Seeded followers live in generated blocks (an id space plus a
count), so seeding a million costs a few integers; profiles of generated followers are derived
from the user id on demand. Followers added one by one (e.g. from a follow webhook) are stored
explicitly. Blocking is a set of positions.

A multicast's recipients are looked up together: the generated ones are unmixed a whole
request's worth at once (see `ids.UserIdSpace.indices_below`), with no per-id table to keep."""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from .ids import UserIdSpace, is_user_id, seed_key

_FIRST = (
    "Aiko",
    "Ben",
    "Chai",
    "Daichi",
    "Emi",
    "Fah",
    "Gun",
    "Hana",
    "Isara",
    "Jun",
    "Kanya",
    "Leo",
    "Mei",
    "Nok",
    "Ozzy",
    "Pim",
    "Ren",
    "Sora",
    "Tan",
    "Yui",
)
_LAST = (
    "Abe",
    "Boonma",
    "Chen",
    "Doi",
    "Endo",
    "Fujita",
    "Goto",
    "Hayashi",
    "Inoue",
    "Jaidee",
    "Kato",
    "Lim",
    "Mori",
    "Nakamura",
    "Ono",
    "Pongsak",
    "Sato",
    "Tanaka",
    "Ueda",
    "Wong",
)
_LANGUAGES = ("en", "ja", "th", "zh-TW", "id", None)
_STATUSES = ("Hello, LINE!", "At the beach", "Busy", None, None)


@dataclass(frozen=True, slots=True)
class Profile:
    """A user profile as `GET /v2/bot/profile/{userId}` returns it."""

    user_id: str
    display_name: str
    picture_url: str | None = None
    status_message: str | None = None
    language: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"displayName": self.display_name, "userId": self.user_id}
        if self.picture_url is not None:
            body["pictureUrl"] = self.picture_url
        if self.status_message is not None:
            body["statusMessage"] = self.status_message
        if self.language is not None:
            body["language"] = self.language
        return body

    @classmethod
    def generated(cls, user_id: str) -> Profile:
        """A stable, varied profile derived from the user id alone."""
        h = int(user_id[1:9], 16)
        name = f"{_FIRST[h % len(_FIRST)]} {_LAST[(h >> 5) % len(_LAST)]}"
        picture = None if h % 7 == 3 else f"https://profile.line-scdn.net/emulator/{user_id[1:17]}"
        return cls(
            user_id=user_id,
            display_name=name,
            picture_url=picture,
            status_message=_STATUSES[(h >> 10) % len(_STATUSES)],
            language=_LANGUAGES[(h >> 13) % len(_LANGUAGES)],
        )


@dataclass(frozen=True, slots=True)
class _Block:
    start: int
    count: int
    space: UserIdSpace


class FollowerRegistry:
    """Positions, ids, profiles and block state of one account's followers."""

    def __init__(self) -> None:
        self._blocks: list[_Block] = []
        self._block_starts: list[int] = []
        self._size = 0
        self._explicit_ids: dict[int, str] = {}
        self._explicit_positions: dict[str, int] = {}
        self._explicit_profiles: dict[str, Profile] = {}
        self._blocked: set[int] = set()

    def __len__(self) -> int:
        return self._size

    @property
    def blocked_count(self) -> int:
        return len(self._blocked)

    @property
    def following_count(self) -> int:
        return self._size - len(self._blocked)

    def add_generated(self, count: int, seed: int | str) -> range:
        """Append `count` followers whose ids are derived from `seed`."""
        if count < 0:
            raise ValueError("count must not be negative")
        block = _Block(
            self._size, count, UserIdSpace(seed_key(seed, f"followers:{len(self._blocks)}"))
        )
        self._blocks.append(block)
        self._block_starts.append(block.start)
        self._size += count
        return range(block.start, self._size)

    def add(self, profile: Profile) -> int:
        """Add (or re-add) one follower; returns its position. Unblocks a returning follower."""
        if not is_user_id(profile.user_id):
            raise ValueError(f"not a LINE user id: {profile.user_id!r}")
        position = self.position(profile.user_id)
        if position is None:
            position = self._size
            self._size += 1
            self._explicit_ids[position] = profile.user_id
            self._explicit_positions[profile.user_id] = position
        self._explicit_profiles[profile.user_id] = profile
        self._blocked.discard(position)
        return position

    def position(self, user_id: str) -> int | None:
        """The follower's position, or None if this user never followed the account."""
        explicit = self._explicit_positions.get(user_id)
        if explicit is not None:
            return explicit
        if not self._blocks or not is_user_id(user_id):
            return None
        for block in self._blocks:
            index = block.space.index_of(user_id)
            if index < block.count:
                return block.start + index
        return None

    def deliverable(self, user_ids: Sequence[str]) -> tuple[array[int], int]:
        """The positions a send to `user_ids` reaches, in order, and how many ids reach no one.

        Each follower counts once; blocked users, non-followers and repeats reach no one.
        Every entry must be a user id (see `ids.all_user_ids`)."""
        explicit = self._explicit_positions
        if explicit:
            positions = list(map(explicit.get, user_ids))
            missing = [i for i, position in enumerate(positions) if position is None]
            if missing and self._blocks:
                found = self._generated_positions([user_ids[i] for i in missing])
                for i, position in zip(missing, found, strict=True):
                    positions[i] = position
        else:
            positions = self._generated_positions(user_ids)
        blocked = self._blocked
        distinct = set(positions)
        if (
            len(distinct) == len(positions)
            and None not in distinct
            and blocked.isdisjoint(distinct)
        ):
            return array("I", cast("list[int]", positions)), 0  # no None: just checked
        reached = dict.fromkeys(positions)  # first occurrences, in order
        recipients = array("I", [p for p in reached if p is not None and p not in blocked])
        return recipients, len(user_ids) - len(recipients)

    def _generated_positions(self, user_ids: Sequence[str]) -> list[int | None]:
        """`position` of user ids that are not explicit followers, a block at a time."""
        if not self._blocks:
            return [None] * len(user_ids)
        first, *others = self._blocks
        found = first.space.indices_below(user_ids, first.count)
        if first.start:
            found = [None if index is None else first.start + index for index in found]
        if others and None in found:
            pending = [i for i, position in enumerate(found) if position is None]
            for block in others:
                indices = block.space.indices_below([user_ids[i] for i in pending], block.count)
                left = []
                for i, index in zip(pending, indices, strict=True):
                    if index is None:
                        left.append(i)
                    else:
                        found[i] = block.start + index
                pending = left
                if not pending:
                    break
        return found

    def user_id_at(self, position: int) -> str:
        explicit = self._explicit_ids.get(position)
        if explicit is not None:
            return explicit
        if not 0 <= position < self._size:
            raise IndexError(position)
        block = self._blocks[bisect.bisect_right(self._block_starts, position) - 1]
        return block.space.user_id(position - block.start)

    def user_ids(self, start: int, stop: int) -> list[str]:
        """`user_id_at` of the positions in [start, stop) that exist, a block's stretch at a
        time."""
        start, stop = max(start, 0), min(stop, self._size)
        explicit = self._explicit_ids
        ids: list[str] = []
        position = start
        while position < stop:
            user_id = explicit.get(position)
            if user_id is not None:
                ids.append(user_id)
                position += 1
                continue
            # Not explicit, so inside a block: the last one starting at or before it.
            block = self._blocks[bisect.bisect_right(self._block_starts, position) - 1]
            end = min(block.start + block.count, stop)
            ids.extend(block.space.user_ids(position - block.start, end - block.start))
            position = end
        return ids

    def profile(self, user_id: str) -> Profile:
        return self._explicit_profiles.get(user_id) or Profile.generated(user_id)

    def is_blocked(self, position: int) -> bool:
        return position in self._blocked

    def block(self, position: int) -> None:
        self._blocked.add(position)

    def unblock(self, position: int) -> None:
        self._blocked.discard(position)

    def is_following(self, user_id: str) -> bool:
        position = self.position(user_id)
        return position is not None and position not in self._blocked

    def page(self, start: int, limit: int) -> tuple[list[str], int | None]:
        """Ids of following users among positions [start, start+limit), and where to go next.

        Like LINE, a page can hold fewer than `limit` ids while `next` is still returned,
        because users who blocked the account are left out."""
        end = min(start + limit, self._size)
        ids = self.listed(start, end)
        return ids, (end if end < self._size else None)

    def listed(self, start: int, stop: int, *, include_blocked: bool = False) -> list[str]:
        """Ids at positions [start, stop), leaving out users who blocked the account unless
        `include_blocked`."""
        ids = self.user_ids(start, stop)
        blocked = self._blocked
        if include_blocked or not blocked:
            return ids
        return [user_id for p, user_id in enumerate(ids, max(start, 0)) if p not in blocked]

    def following_positions(self) -> Iterator[int]:
        blocked = self._blocked
        if not blocked:
            yield from range(self._size)
            return
        yield from (p for p in range(self._size) if p not in blocked)
