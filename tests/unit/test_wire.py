"""A channel's bound in flight: slots whose number changes while held, sized by its answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broadcaster.dispatch.wire import AnswerPace, Slots

# Each step: a task that holds a slot for some ticks, or a new size.
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("task"), st.integers(0, 5)),
        st.tuples(st.just("resize"), st.integers(1, 6)),
    ),
    min_size=1,
    max_size=60,
)


@given(first=st.integers(1, 6), steps=_steps)
def test_no_slot_is_handed_out_past_the_size_of_the_moment(
    first: int, steps: list[tuple[str, int]]
) -> None:
    async def run() -> None:
        slots = Slots(first)

        def handing(change: Callable[[], None], given_back: int) -> None:
            """`change` hands out slots only while fewer than the size are held."""
            before = slots.held - given_back
            change()
            if slots.held > before:
                assert slots.held <= slots.size

        async def task(ticks: int) -> None:
            await slots.acquire()
            assert slots.held <= max([first, *(v for k, v in steps if k == "resize")])
            for _ in range(ticks):
                await asyncio.sleep(0)
            handing(slots.release, 1)

        tasks = []
        for kind, value in steps:
            if kind == "task":
                tasks.append(asyncio.create_task(task(value)))
            else:
                handing(lambda v=value: slots.resize(v), 0)  # type: ignore[misc]
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        assert slots.held == 0

    asyncio.run(run())


def test_waiters_get_their_slots_in_turn() -> None:
    async def run() -> None:
        slots = Slots(1)
        await slots.acquire()
        order: list[int] = []

        async def wait(n: int) -> None:
            await slots.acquire()
            order.append(n)
            slots.release()

        waiting = [asyncio.create_task(wait(n)) for n in range(5)]
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*waiting)
        assert order == list(range(5))

    asyncio.run(run())


def test_growing_lets_waiters_in_and_shrinking_holds_the_next_back() -> None:
    async def run() -> None:
        slots = Slots(1)
        await slots.acquire()
        second = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        assert not second.done()
        slots.resize(2)
        await asyncio.sleep(0)
        assert second.done() and slots.held == 2
        slots.resize(1)
        slots.release()  # one held, size one: the next waits
        third = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        assert not third.done()
        slots.release()
        await asyncio.sleep(0)
        assert third.done() and slots.held == 1

    asyncio.run(run())


def test_a_cancelled_waiter_takes_no_slot_with_it() -> None:
    async def run() -> None:
        slots = Slots(1)
        await slots.acquire()
        waiting = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        slots.release()
        assert slots.held == 0
        # Handed a slot, then cancelled before it ran: the slot comes back.
        await slots.acquire()
        handed = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        slots.release()  # hands the slot to `handed`
        handed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handed
        assert slots.held == 0

    asyncio.run(run())


def test_slots_allow_at_least_one() -> None:
    with pytest.raises(ValueError):
        Slots(0)
    with pytest.raises(ValueError):
        Slots(1).resize(0)


@pytest.mark.parametrize(
    ("answer", "bound"),
    [(0.03, 32), (0.15, 38), (0.3, 75), (0.5, 125), (2.0, 192)],
)
def test_the_bound_is_the_rate_times_the_answer_time_with_headroom(
    answer: float, bound: int
) -> None:
    pace = AnswerPace(200.0, least=32, most=192)
    assert pace.bound == 32  # before any answer
    for _ in range(200):
        got = pace.answered(answer)
    assert got == bound


@given(
    rate=st.floats(0.1, 10_000),
    least=st.integers(1, 300),
    most=st.integers(1, 300),
    answers=st.lists(st.floats(0, 60), min_size=1, max_size=50),
)
def test_the_bound_stays_between_least_and_most(
    rate: float, least: int, most: int, answers: list[float]
) -> None:
    pace = AnswerPace(rate, least=least, most=most)
    for answer in answers:
        assert min(least, most) <= pace.answered(answer) <= most


def test_the_bound_follows_answers_that_get_slower_and_faster_again() -> None:
    pace = AnswerPace(197.0, least=32, most=192)
    pace.answered(0.03)
    for _ in range(30):
        slower = pace.answered(0.4)
    assert slower > 80
    for _ in range(60):
        faster = pace.answered(0.03)
    assert faster == 32
