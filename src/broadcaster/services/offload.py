"""CPU-bound work of large requests, off the event loop: parsing, checking and converting
thousands of items.

It runs in one worker thread, one piece at a time. Python runs one thread at a time (the GIL),
so more threads would not finish the work sooner; they would only make the event loop wait
longer for its turn each time it wants to run (every other call, webhook and send waits then).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_worker = ThreadPoolExecutor(1, thread_name_prefix="bulk")


async def off_loop(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in the bulk worker thread."""
    return await asyncio.get_running_loop().run_in_executor(_worker, fn, *args)
