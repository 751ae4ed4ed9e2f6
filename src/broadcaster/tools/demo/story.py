"""The demo's story: its steps printed with the time since it began."""

from __future__ import annotations

import time
from typing import TextIO


class Story:
    """Prints the demo's steps with the time since it began."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.began = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def stamp(self, text: str) -> str:
        return f"[{self.elapsed():5.1f}s] {text}"

    def step(self, text: str) -> None:
        print(self.stamp(text), file=self.out, flush=True)

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)


def indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())
