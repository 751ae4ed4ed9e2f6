"""Calling again when a failure may pass: a server restarting or briefly out of reach
(`UNAVAILABLE`), or, where the caller knows it, a busy database's refusal.

    channel = retry(client.channels.GetChannel, GetChannelRequest(name=name), timeout=10)

Only for calls that are safe to repeat: reads, and writes that carry a `request_id` or set a
value (a retried write may have taken effect the first time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import grpc

from broadcaster_client.errors import BroadcasterError

__all__ = ["TRANSIENT", "retry"]

T = TypeVar("T")

#: What `retry` calls again by default: the server could not be reached or is restarting.
TRANSIENT: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE})


def _linear(retry: int) -> float:
    return 0.2 * retry


def retry(
    method: Callable[..., T],
    request: Any,
    *,
    codes: Collection[grpc.StatusCode] = TRANSIENT,
    attempts: int | None = 4,
    patience: float | None = None,
    pause: Callable[[int], float] = _linear,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    **kwargs: Any,
) -> T:
    """`method(request, **kwargs)`, called again while it fails with a code in `codes`.

    Args:
        codes: the status codes worth another call (default: `UNAVAILABLE`).
        attempts: calls in all, at most; None for no limit (then give `patience`).
        patience: seconds since the first call after which no retry starts; None for no limit.
        pause: seconds to wait before retry n (1, 2, ...); default 0.2 s, 0.4 s, 0.6 s, ...;
            longer when the failure advises a longer wait (`BroadcasterError.retry_delay`).
        kwargs: passed to every call (`timeout`, `metadata`).

    Raises:
        BroadcasterError: the last failure, once out of attempts or patience, or the first
            failure whose code is not in `codes`.
    """
    if attempts is None and patience is None:
        raise ValueError("retry needs a limit: attempts, patience or both")
    if attempts is not None and attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    began = clock()
    made = 0
    while True:
        try:
            return method(request, **kwargs)
        except grpc.RpcError as e:
            made += 1
            error = BroadcasterError.from_rpc_error(e)
            code = e.code() if isinstance(e, grpc.Call) else None
            out_of_attempts = attempts is not None and made >= attempts
            out_of_patience = patience is not None and clock() - began > patience
            if code not in codes or out_of_attempts or out_of_patience:
                raise error from None
            advised = error.retry_delay
        sleep(pause(made) if advised is None else max(pause(made), advised))
