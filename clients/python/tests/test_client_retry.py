"""`retry`: which failures are called again, how often, for how long; and against a real
address with nothing listening."""

from __future__ import annotations

import socket
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

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


class _Advised(_Failure, grpc.Call):
    """A failed call whose status advises a wait (`RetryInfo`), as the service's does."""

    def __init__(self, code: grpc.StatusCode, seconds: float) -> None:
        super().__init__(code)
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(round(seconds * 1e9))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        self._status = status_pb2.Status(
            code=code.value[0], message=self.details(), details=[detail]
        )

    def trailing_metadata(self) -> Any:
        return (("grpc-status-details-bin", self._status.SerializeToString()),)

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def test_a_wait_the_service_advises_is_kept_when_longer_than_the_pause() -> None:
    failures = [_Advised(UNAVAILABLE, 1.0), _Advised(UNAVAILABLE, 0.1)]
    assert BroadcasterError(failures[0]).retry_delay == 1.0
    assert BroadcasterError(_Failure(UNAVAILABLE)).retry_delay is None
    rpc, clock = _Rpc(), _Clock()
    rpc.failures = [BroadcasterError(f) for f in failures]
    assert retry(rpc, "r", sleep=clock.sleep, clock=clock) == "answer to r"
    assert clock.slept == [pytest.approx(1.0), pytest.approx(0.4)]  # advised, then the pause
