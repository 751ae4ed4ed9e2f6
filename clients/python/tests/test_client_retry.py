"""`retry`: which failures are called again, how often, for how long; and against a real
address with nothing listening."""

from __future__ import annotations

import socket
from typing import Any

import grpc
import pytest

from broadcaster_client import TRANSIENT, BroadcasterError, connect, retry
from broadcaster_client.v1 import broadcast_service_pb2 as bpb


class _Failure(grpc.RpcError):
    """What a failed blocking call raises (code and details), without a server."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"failed with {self._code.name}"

    def trailing_metadata(self) -> Any:
        return ()


class _Rpc:
    """A method that fails with `codes` in turn, then answers; it records every call."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.failures = [BroadcasterError(_Failure(code)) for code in codes]
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: str, **kwargs: Any) -> str:
        self.calls.append((request, kwargs))
        if self.failures:
            raise self.failures.pop(0)
        return f"answer to {request}"


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def test_unavailable_is_called_again_until_it_answers() -> None:
    rpc, clock = _Rpc(UNAVAILABLE, UNAVAILABLE), _Clock()
    answer = retry(rpc, "r", timeout=5.0, sleep=clock.sleep, clock=clock)
    assert answer == "answer to r"
    assert rpc.calls == [("r", {"timeout": 5.0})] * 3
    assert clock.slept == [pytest.approx(0.2), pytest.approx(0.4)]
    assert {UNAVAILABLE} == TRANSIENT


def test_other_failures_are_raised_at_once() -> None:
    rpc, clock = _Rpc(grpc.StatusCode.INTERNAL), _Clock()
    with pytest.raises(BroadcasterError) as caught:
        retry(rpc, "r", sleep=clock.sleep, clock=clock)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert len(rpc.calls) == 1 and clock.slept == []
    # Unless the caller names them: a deadlock a busy database reports as INTERNAL.
    rpc = _Rpc(grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED)
    codes = {grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED}
    assert retry(rpc, "r", codes=codes, sleep=clock.sleep, clock=clock) == "answer to r"


def test_out_of_attempts_raises_the_last_failure() -> None:
    rpc, clock = _Rpc(*[UNAVAILABLE] * 5), _Clock()
    with pytest.raises(BroadcasterError) as caught:
        retry(rpc, "r", attempts=3, sleep=clock.sleep, clock=clock)
    assert caught.value is not None and caught.value.code() == UNAVAILABLE
    assert len(rpc.calls) == 3 and len(clock.slept) == 2


def test_patience_bounds_the_time_not_the_count() -> None:
    rpc, clock = _Rpc(*[UNAVAILABLE] * 100), _Clock()
    with pytest.raises(BroadcasterError):
        retry(
            rpc,
            "r",
            attempts=None,
            patience=30,
            pause=lambda _: 1.0,
            sleep=clock.sleep,
            clock=clock,
        )
    # Calls at 0, 1, ..., 30 s fail in time to be retried; the one at 31 s is the last.
    assert len(rpc.calls) == 32 and clock.slept == [1.0] * 31


def test_a_limit_is_required() -> None:
    with pytest.raises(ValueError, match="limit"):
        retry(_Rpc(), "r", attempts=None)
    with pytest.raises(ValueError, match="at least 1"):
        retry(_Rpc(), "r", attempts=0)


def test_nothing_listening_is_unavailable_after_every_attempt() -> None:
    with socket.socket() as s:  # a port that was free a moment ago, and nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    slept: list[float] = []
    request = bpb.GetBroadcastRequest(name="merchants/m/broadcasts/b")
    with connect(f"127.0.0.1:{port}") as client, pytest.raises(BroadcasterError) as caught:
        retry(client.broadcasts.GetBroadcast, request, timeout=5, sleep=slept.append)
    assert caught.value.code() == UNAVAILABLE and caught.value.reason == ""
    assert slept == [pytest.approx(0.2), pytest.approx(0.4), pytest.approx(0.6)]
