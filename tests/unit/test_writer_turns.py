"""SQLite's one writer in turns: a writer that goes first is served before ordinary ones."""

from __future__ import annotations

import threading
import time

from broadcaster.store.database import _Turns


def _served(turns: _Turns, arrivals: list[tuple[str, bool, float]], hold: float) -> list[str]:
    """Writers that arrive while another holds the writer, in order (each its name, whether it
    goes first, and the seconds before the next arrives), each holding it `hold` seconds once
    served: the order they were served in after it lets go."""
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
            time.sleep(hold)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    holding.wait()
    for name, first, pause in arrivals:
        t = threading.Thread(target=writer, args=(name, first))
        t.start()
        threads.append(t)
        time.sleep(pause)
    release.set()
    for t in threads:
        t.join(5)
    return order


def test_a_first_writer_goes_ahead_of_ordinary_ones_waiting() -> None:
    # each is waiting before the next comes
    arrivals = [("ordinary-1", False, 0.05), ("ordinary-2", False, 0.05), ("first", True, 0.05)]
    order = _served(_Turns(), arrivals, hold=0.0)
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
    burst = [(f"ordinary-{n}", False, 0.0) for n in range(4)]
    # All four are overdue when the first writer comes, and it waits before the holder lets go.
    arrivals = [*burst[:-1], (burst[-1][0], False, 0.05), ("first", True, 0.05)]
    order = _served(_Turns(patience=0.01), arrivals, hold=0.01)
    assert len(order) == 5
    assert order.index("first") <= 1  # after at most one of the overdue ones
