"""Progress bars and tables for the operator commands."""

from __future__ import annotations

import io

import pytest

from broadcaster.tools.progress import Progress, bar, fit, table, width


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("done", "total", "shown"),
    [
        (0, 10, "[..........]   0%"),
        (5, 10, "[#####.....]  50%"),
        (10, 10, "[##########] 100%"),
        (12, 10, "[##########] 100%"),
        (0, 0, "[##########] 100%"),
    ],
)
def test_bar(done: int, total: int, shown: str) -> None:
    assert bar(done, total, width=10) == shown


def test_off_a_terminal_a_line_per_change_with_rate_and_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(out, tty=False, clock=clock)
    p.update(0, 1000, "(0 sent)")
    p.update(0, 1000, "(0 sent)")  # nothing new: no line
    clock.now += 2
    p.update(400, 1000, "(400 sent)")
    clock.now += 2
    p.update(999, 1000, "(999 sent)")
    p.finish("sent: 1,000 of 1,000")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[..............................]   0%  0/1,000 (0 sent)"
    assert lines[1].endswith("]  40%  400/1,000 (400 sent)  200/s, ~3s left")
    assert lines[2].endswith("]  99%  999/1,000 (999 sent)  250/s, <1s left")
    assert lines[3] == "sent: 1,000 of 1,000"
    assert "\r" not in out.getvalue()


def test_on_a_terminal_the_bar_is_redrawn_in_place_then_cleared() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(out, tty=True, clock=clock)
    p.update(10, None, "followers listed (10 new)")
    clock.now += 0.5
    p.update(1500, None, "listed")
    clock.now += 0.5
    p.update(2000, None, "listed")
    p.finish("done")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\rdone\n")
    first, second, third = text.split("\r")[1:4]
    assert first == "10 followers listed (10 new)"
    # A shorter reading is padded to cover what is left of the longer one before it.
    assert second == "1,500 listed".ljust(len(first))
    assert third.rstrip() == "2,000 listed  1,990/s"


def test_wide_characters_count_double_and_are_cut_whole() -> None:
    assert width("春季特賣") == 8 and width("sale") == 4
    assert fit("春季特賣會員限定", 9) == "春季特賣…"
    assert fit("short", 9) == "short"


def test_table_aligns_columns_by_display_width() -> None:
    shown = table(
        ["NAME", "STATE"],
        [["春季特賣", "sent"], ["Spring sale, long name", "draft"]],
        limits=[12, 0],
    ).splitlines()
    assert shown == [
        "NAME          STATE",
        "春季特賣      sent",
        "Spring sale…  draft",
    ]
