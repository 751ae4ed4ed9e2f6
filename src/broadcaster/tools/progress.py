"""Progress for people: a plain-text bar redrawn in place on a terminal, and one line per change
when the output is a file or a pipe (CI logs, `| tee`), so neither gets a wall of carriage
returns nor a silent wait."""

from __future__ import annotations

import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import TextIO

BAR_WIDTH = 30


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """`[#########.........]  45%` (clamped to 0-100 %; an empty total is complete)."""
    fraction = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
    filled = int(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {int(fraction * 100):3d}%"


def _time_left(seconds: float) -> str:
    if seconds < 1:
        return "<1s left"
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"~{seconds}s left"
    if seconds < 3600:
        return f"~{seconds // 60}m{seconds % 60:02d}s left"
    return f"~{seconds // 3600}h{seconds % 3600 // 60:02d}m left"


class Progress:
    """Call `update` with each new reading and `finish` with the last words."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._out = stream if stream is not None else sys.stdout
        self._tty = self._out.isatty() if tty is None else tty
        self._clock = clock
        self._first: tuple[float, int] | None = None
        self._last: tuple[int, int | None, str] | None = None
        self._drawn = 0  # characters of the bar currently on screen (TTY)

    def render(self, done: int, total: int | None, detail: str = "") -> str:
        """`[###...]  45%  450/1,000 detail  123/s, ~4s left` (no bar without a total; the
        speed once a second has passed and the count moved)."""
        now = self._clock()
        if self._first is None:
            self._first = (now, done)
        started, done_then = self._first
        count = f"{done:,}" if total is None else f"{done:,}/{total:,}"
        parts = [bar(done, total) if total is not None else "", f"{count} {detail}".rstrip()]
        elapsed = now - started
        if elapsed >= 1 and done > done_then:
            rate = (done - done_then) / elapsed
            speed = f"{rate:,.0f}/s"
            if total is not None and total > done:
                speed += f", {_time_left((total - done) / rate)}"
            parts.append(speed)
        return "  ".join(p for p in parts if p)

    def update(self, done: int, total: int | None, detail: str = "") -> None:
        line = self.render(done, total, detail)
        if self._tty:
            pad = max(self._drawn - width(line), 0)
            self._out.write(f"\r{line}{' ' * pad}")
            self._drawn = width(line)
            self._out.flush()
            return
        # Off a terminal, a line only when something was counted (not for each new rate).
        if (done, total, detail) != self._last:
            self._last = (done, total, detail)
            self._out.write(line + "\n")
            self._out.flush()

    def finish(self, message: str) -> None:
        if self._tty and self._drawn:
            self._out.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0
        self._out.write(message + "\n")
        self._out.flush()


def width(text: str) -> int:
    """Columns `text` takes on a terminal: East Asian wide characters take two."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def fit(text: str, columns: int) -> str:
    """`text` cut to at most `columns` columns, with an ellipsis when cut."""
    if width(text) <= columns:
        return text
    out, used = [], 0
    for c in text:
        w = width(c)
        if used + w > columns - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], limits: Sequence[int]) -> str:
    """Left-aligned columns, two spaces apart; column i is cut to limits[i] columns (0: none)."""
    cells = [
        [fit(c, limit) if limit else c for c, limit in zip(row, limits, strict=True)]
        for row in [list(headers), *rows]
    ]
    widths = [max(width(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c + " " * (w - width(c)) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)
