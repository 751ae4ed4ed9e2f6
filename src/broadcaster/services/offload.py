"""CPU-bound work of large requests, off the event loop: parsing, checking and converting
thousands of items.

It runs in one worker thread, one piece at a time. Python runs one thread at a time (the GIL),
so more threads would not finish the work sooner; they would only make the event loop wait
longer for its turn each time it wants to run (every other call, webhook and send waits then).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_worker = ThreadPoolExecutor(1, thread_name_prefix="bulk")


async def off_loop(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` in the bulk worker thread."""
    return await asyncio.get_running_loop().run_in_executor(_worker, fn, *args)


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)`, where the C library has it."""
    name = ctypes.util.find_library("c")
    try:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None
    return None if trim is None else (lambda: trim(0))


_trim = _malloc_trim()


def give_back_memory() -> None:
    """Hand the memory large requests freed back to the system (glibc keeps freed memory of
    each thread's arena for reuse; after a burst of bulk calls that is hundreds of MB), in the
    bulk worker once the work queued there is done; returns at once, so no answer waits."""
    if _trim is not None:
        _worker.submit(_trim)
