"""Whole-request lookups (recipient checks, id <-> position for many ids at once, follower
listings) must give exactly what the one-id-at-a-time functions give."""

from __future__ import annotations

import random
from array import array

from broadcaster_line_emulator import FollowerRegistry, Profile
from broadcaster_line_emulator.deliveries import DeliveryLog
from broadcaster_line_emulator.ids import UserIdSpace, all_user_ids, is_user_id
from broadcaster_line_emulator.validation import validate_multicast
from hypothesis import example, given, settings
from hypothesis import strategies as st

HEX = "0123456789abcdef"
hex32 = st.text(alphabet=HEX, min_size=32, max_size=32)
user_ids = hex32.map(lambda h: "U" + h)
# Almost user ids: each differs from one in a way a whole-list check could overlook.
near_user_ids = st.one_of(
    st.tuples(user_ids, user_ids).map("\n".join),  # two ids in one entry
    st.tuples(user_ids, user_ids).map(lambda p: p[0] + "\n" + p[1][:-1]),
    user_ids.map(lambda u: u + "\n"),
    user_ids.map(lambda u: "\n" + u[:-1]),
    user_ids.map(lambda u: u[:-1]),
    user_ids.map(lambda u: u + "0"),
    user_ids.map(lambda u: "a" + u),
    user_ids.map(lambda u: u[1] + "U" + u[2:]),  # the right length, the U out of place
    user_ids.map(lambda u: u[1:] + "U"),
    user_ids.map(lambda u: u.upper()),
    user_ids.map(lambda u: "u" + u[1:]),
    user_ids.map(lambda u: u[:5] + "U" + u[6:]),
    user_ids.map(lambda u: u[:7] + "\u0663" + u[8:]),  # an Arabic-Indic digit
    user_ids.map(lambda u: u[:9] + "g" + u[10:]),
    st.sampled_from(["", "\n", "U", "U\n", "\nU"]),
)
not_strings = st.one_of(st.none(), st.integers(), st.booleans(), st.lists(user_ids, max_size=1))
entries = st.one_of(user_ids, user_ids, near_user_ids, st.text(max_size=40), not_strings)

V = "U" + "0123456789abcdef" * 2
W = "U" + "fedcba9876543210" * 2


@given(st.lists(entries, max_size=40))
@example([V + "\n" + W[:-1], "", V])  # as long as three ids, with a newline where one joins
@example([V + "\n" + W, V[:-1], ""])
@example([V, "\n" + W[:-1], V])
@example(["\n".join([V] * 3)] + [""] * 2)
@example([V[:-1], "a" + W])  # a U every 34 characters, but the second is not where an id starts
def test_the_whole_list_check_agrees_with_checking_each_entry(values: list[object]) -> None:
    assert all_user_ids(values) == all(is_user_id(v) for v in values)


@given(st.lists(entries, min_size=1, max_size=60))
@example([V + "\n" + W[:-1], "", V])
def test_multicast_names_exactly_the_entries_that_are_not_user_ids(to: list[object]) -> None:
    check = validate_multicast({"to": to, "messages": [{"type": "text", "text": "x"}]})
    bad = [i for i, user in enumerate(to) if not is_user_id(user)]
    assert check.invalid_recipients == bad
    assert [e.property for e in check.errors] == [f"to[{i}]" for i in bad]


@given(
    st.integers(min_value=0, max_value=(1 << 128) - 1),
    st.integers(min_value=0, max_value=(1 << 128) - 1),
    st.integers(min_value=0, max_value=1_200),
)
@settings(max_examples=60)
def test_ids_made_together_are_the_ids_made_one_by_one(key: int, start: int, count: int) -> None:
    space = UserIdSpace(key)
    assert space.user_ids(start, start + count) == [
        space.user_id(i) for i in range(start, start + count)
    ]


@given(
    st.integers(min_value=0, max_value=(1 << 128) - 1),
    # Indices past 2**64 and near 2**128 too: their low 64 bits alone could pass for followers.
    st.lists(
        st.integers(min_value=0, max_value=3_000)
        .map(lambda i: st.sampled_from([i, i + (1 << 64), (i << 64) + i, (1 << 128) - 1 - i]))
        .flatmap(lambda s: s),
        max_size=1_100,
    ),
    st.lists(user_ids, max_size=30),
    st.sampled_from([0, 1, 700, 2_000, 3_001, 1 << 64, (1 << 64) + 1, 1 << 128]),
    st.randoms(use_true_random=False),
)
@settings(max_examples=60)
def test_indices_found_together_are_the_indices_found_one_by_one(
    key: int, indices: list[int], others: list[str], count: int, rng: random.Random
) -> None:
    space = UserIdSpace(key)
    ids = [space.user_id(i) for i in indices] + others
    rng.shuffle(ids)
    expected = [i if (i := space.index_of(u)) < count else None for u in ids]
    assert space.indices_below(ids, count) == expected


def test_an_index_past_2_64_is_not_below_a_small_count_whatever_its_low_bits() -> None:
    space = UserIdSpace(12_345)
    far = [space.user_id((1 << 64) + i) for i in range(3)] + [space.user_id(5 << 64)]
    assert space.indices_below(far, 10) == [None] * 4
    assert space.indices_below([space.user_id(7), *far], 10) == [7, None, None, None, None]


def _reference_deliverable(registry: FollowerRegistry, to: list[str]) -> tuple[list[int], int]:
    """What a multicast reaches, one id at a time."""
    recipients: list[int] = []
    seen: set[int] = set()
    undelivered = 0
    for user_id in to:
        position = registry.position(user_id)
        if position is None or position in seen or registry.is_blocked(position):
            undelivered += 1
            continue
        seen.add(position)
        recipients.append(position)
    return recipients, undelivered


# How a registry grows: ("seeded", count) adds a generated block, ("one", hex) one follower.
growth = st.lists(
    st.one_of(
        st.tuples(st.just("seeded"), st.integers(min_value=0, max_value=300)),
        st.tuples(st.just("one"), hex32),
    ),
    max_size=5,
)


def _grow(steps: list[tuple[str, object]], extra: int = 0) -> FollowerRegistry:
    """A registry after `steps`; `extra` more followers per block make ids that unmix to just
    past the real registry's blocks."""
    registry = FollowerRegistry()
    for kind, arg in steps:
        if kind == "seeded":
            assert isinstance(arg, int)
            registry.add_generated(arg + extra, seed=f"seed-{arg}")
        else:
            registry.add(Profile.generated(f"U{arg}"))
    return registry


def _block_some(registry: FollowerRegistry, data: st.DataObject, most: int) -> set[int]:
    """Up to `most` of the registry's followers, drawn, blocked; returns their positions."""
    if not len(registry):
        return set()
    positions = st.integers(min_value=0, max_value=len(registry) - 1)
    blocked = data.draw(st.sets(positions, max_size=most))
    for p in blocked:
        registry.block(p)
    return blocked


@given(growth, st.data())
@settings(max_examples=80)
def test_recipients_found_together_are_the_recipients_found_one_by_one(
    steps: list[tuple[str, object]], data: st.DataObject
) -> None:
    registry = _grow(steps)
    _block_some(registry, data, 20)
    wider = _grow(steps, extra=25)
    pool = wider.listed(0, len(wider), include_blocked=True)
    candidates = st.one_of(user_ids, st.sampled_from(pool)) if pool else user_ids
    to = data.draw(st.lists(candidates, min_size=1, max_size=600))

    recipients, undelivered = registry.deliverable(to)

    expected, expected_undelivered = _reference_deliverable(registry, to)
    assert list(recipients) == expected and undelivered == expected_undelivered
    assert isinstance(recipients, array) and recipients.typecode == "I"


@given(growth, st.data())
@settings(max_examples=60)
def test_listings_are_the_ids_at_each_position(
    steps: list[tuple[str, object]], data: st.DataObject
) -> None:
    registry = _grow(steps)
    size = len(registry)
    blocked = _block_some(registry, data, 9)
    start = data.draw(st.integers(min_value=0, max_value=size + 5))
    stop = data.draw(st.integers(min_value=0, max_value=size + 5))

    every = [registry.user_id_at(p) for p in range(start, min(stop, size))]
    assert registry.user_ids(start, stop) == every
    assert registry.listed(start, stop, include_blocked=True) == every
    assert registry.listed(start, stop) == [
        registry.user_id_at(p) for p in range(start, min(stop, size)) if p not in blocked
    ]
    limit = data.draw(st.integers(min_value=1, max_value=1_000))
    ids, after = registry.page(start, limit)
    end = min(start + limit, size)
    assert ids == [registry.user_id_at(p) for p in range(start, end) if p not in blocked]
    assert after == (end if end < size else None)


def test_a_registry_seeded_twice_finds_followers_of_either_block() -> None:
    registry = FollowerRegistry()
    registry.add(Profile.generated("U" + "1" * 32))
    registry.add_generated(1_000, seed="first")
    registry.add(Profile.generated("U" + "2" * 32))
    registry.add_generated(1_000, seed="second")
    everyone = registry.listed(0, len(registry))
    rng = random.Random(7)
    to = rng.sample(everyone, 500)

    recipients, undelivered = registry.deliverable(to)

    assert list(recipients) == [registry.position(u) for u in to] and undelivered == 0
    assert registry.position(everyone[0]) == 0 and registry.position(everyone[1_001]) == 1_001


def test_a_blocked_follower_among_distinct_followers_is_left_out() -> None:
    registry = FollowerRegistry()
    registry.add_generated(1_000, seed="shop")
    registry.block(4)
    to = registry.listed(0, 10, include_blocked=True)

    recipients, undelivered = registry.deliverable(to)

    assert list(recipients) == [0, 1, 2, 3, 5, 6, 7, 8, 9] and undelivered == 1


def test_receive_counts_include_every_send_recorded_before_they_are_read() -> None:
    log = DeliveryLog()

    def send(*positions: int) -> None:
        log.record(
            endpoint="multicast",
            request_id="r",
            retry_key=None,
            messages=[],
            accepted_at=0.0,
            notification_disabled=False,
            recipients=array("I", positions),
        )

    send(3, 1)
    assert log.times_received(3) == 1 and log.users_reached() == 2
    send(3, 9)
    send()
    assert log.times_received(3) == 2 and log.times_received(9) == 1
    assert log.times_received(10) == 0
    send(1)
    assert list(log.counts()) == [0, 2, 0, 2, 0, 0, 0, 0, 0, 1]
    assert log.positions_received_more_than_once() == [1, 3]
    assert log.users_reached() == 3 and log.total_deliveries == 5
