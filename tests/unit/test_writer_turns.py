"""SQLite's one writer in turns: a writer that goes first is served before ordinary ones."""

from __future__ import annotations

import threading
import time

from broadcaster.store.database import _Turns


def test_a_first_writer_goes_ahead_of_ordinary_ones_waiting() -> None:
    turns = _Turns()
    order: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with turns.hold(first=False):
            holding.set()
            release.wait()

    def writer(name: str, first: bool) -> None:
        with turns.hold(first):
            order.append(name)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    holding.wait()
    for name, first in (("ordinary-1", False), ("ordinary-2", False), ("first", True)):
        t = threading.Thread(target=writer, args=(name, first))
        t.start()
        threads.append(t)
        time.sleep(0.05)  # each is waiting before the next comes
    release.set()
    for t in threads:
        t.join(5)
    assert order[0] == "first" and sorted(order[1:]) == ["ordinary-1", "ordinary-2"]


def test_one_writer_at_a_time() -> None:
    turns = _Turns()
    inside = 0
    most = 0
    lock = threading.Lock()

    def writer(first: bool) -> None:
        nonlocal inside, most
        for _ in range(200):
            with turns.hold(first):
                with lock:
                    inside += 1
                    most = max(most, inside)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=writer, args=(n % 2 == 0,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert most == 1


def test_an_ordinary_writer_is_not_held_up_for_long_by_first_ones() -> None:
    turns = _Turns(patience=0.05)
    stop = threading.Event()
    served_at: list[float] = []

    def stream() -> None:  # first writers, one after another, each holding a moment
        while not stop.is_set():
            with turns.hold(first=True):
                time.sleep(0.005)

    streams = [threading.Thread(target=stream) for _ in range(3)]
    for t in streams:
        t.start()
    time.sleep(0.05)
    asked = time.monotonic()
    with turns.hold(first=False):
        served_at.append(time.monotonic())
    stop.set()
    for t in streams:
        t.join(5)
    assert served_at[0] - asked < 1.0  # about the patience, not never


def test_a_burst_of_overdue_ordinary_writers_takes_turns_with_a_first_one() -> None:
    """Ordinary writers past their patience go ahead of first ones, but not all of them in a
    row: a first writer waiting gets every other turn (a burst of Sends, each writing a
    snapshot, must not stop every channel's dispatch until the last is written)."""
    turns = _Turns(patience=0.01)
    order: list[str] = []
    holding = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with turns.hold(first=False):
            holding.set()
            release.wait()

    def writer(name: str, first: bool) -> None:
        with turns.hold(first):
            order.append(name)
            time.sleep(0.01)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    holding.wait()
    for n in range(4):
        t = threading.Thread(target=writer, args=(f"ordinary-{n}", False))
        t.start()
        threads.append(t)
    time.sleep(0.05)  # all four are overdue
    first = threading.Thread(target=writer, args=("first", True))
    first.start()
    threads.append(first)
    time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(5)
    assert len(order) == 5
    assert order.index("first") <= 1  # after at most one of the overdue ones
