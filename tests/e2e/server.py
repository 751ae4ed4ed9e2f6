"""A real `broadcaster serve` process for end-to-end tests, and helpers to read its errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

ADMIN = "admin-token-000000000000"
ALPHA = "alpha-token-000000000000"
BETA = "beta-token-0000000000000"
TOKENS = f"{ADMIN}=*;{ALPHA}=m-alpha;{BETA}=m-beta,m-shared"
SECRET_KEY = "e2e-secret-key-that-is-long-enough-0123456789"


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    http_port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start(
    database_url: str,
    log: Path,
    tokens: str = TOKENS,
    extra_env: dict[str, str] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
    command: list[str] | None = None,
    cwd: Path | None = None,
) -> Server:
    """`broadcaster serve` (by default this checkout's, in this interpreter; `command` and
    `cwd` run another release's)."""
    env = {
        **os.environ,
        "BROADCASTER_DATABASE_URL": database_url,
        "BROADCASTER_AUTH_TOKENS": tokens,
        "BROADCASTER_GRPC_LISTEN": "127.0.0.1:0",
        "BROADCASTER_HTTP_LISTEN": "127.0.0.1:0",
        "BROADCASTER_SECRET_KEY": SECRET_KEY,
        # Only the test channel: tests never pick up plugins installed on the machine.
        "BROADCASTER_PLUGINS": "",
        "BROADCASTER_PLUGIN_MODULES": "tests.fakechannel",
        **(extra_env or {}),
    }
    out = log.open("w")
    process = subprocess.Popen(
        command or [sys.executable, "-m", "broadcaster.cli", "serve"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=out,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"serving gRPC on \S+:(\d+) and HTTP on \S+:(\d+)", line)
    if match is None:
        process.wait(timeout=10)
        raise RuntimeError(f"server did not start: {line!r}\n{log.read_text()}")
    server = Server(
        process=process, port=int(match.group(1)), http_port=int(match.group(2)), log=log
    )
    _wait_serving(server.target, credentials)
    return server


def _wait_serving(target: str, credentials: grpc.ChannelCredentials | None = None) -> None:
    deadline = time.monotonic() + 20
    with (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(target, credentials)
    ) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                if stub.Check(health_pb2.HealthCheckRequest()).status == 1:
                    return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    fields: list[str]
    details: list[Any]


def failure(error: grpc.RpcError) -> Failure:
    """The rich status of a failed call: ErrorInfo reason and BadRequest field paths."""
    assert isinstance(error, grpc.Call)
    status: status_pb2.Status | None = rpc_status.from_call(error)
    assert status is not None, f"no google.rpc.Status in {error!r}"
    reason = domain = ""
    fields: list[str] = []
    details: list[Any] = []
    for any_detail in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.ResourceInfo,
            error_details_pb2.PreconditionFailure,
            error_details_pb2.RetryInfo,
        ):
            if any_detail.Is(kind.DESCRIPTOR):
                detail = kind()
                any_detail.Unpack(detail)
                details.append(detail)
                if isinstance(detail, error_details_pb2.ErrorInfo):
                    reason, domain = detail.reason, detail.domain
                if isinstance(detail, error_details_pb2.BadRequest):
                    fields = [v.field for v in detail.field_violations]
    return Failure(error.code(), status.message, reason, domain, fields, details)


def connect_fake(
    channel: grpc.Channel, parent: str, as_token: str = ADMIN, **credentials: str
) -> Any:
    """Connect a channel of the test-only `fake` type; returns the Channel message."""
    from broadcaster.v1 import channel_service_pb2 as pb
    from broadcaster.v1 import channel_service_pb2_grpc as pb_grpc

    # A token of its own: the fake channel keeps one ledger (and quota) per token.
    creds = {"token": f"fake-{uuid.uuid4().hex}", "account": uuid.uuid4().hex[:10], **credentials}
    return pb_grpc.ChannelServiceStub(channel).CreateChannel(
        pb.CreateChannelRequest(parent=parent, channel=pb.Channel(type="fake", credentials=creds)),
        metadata=auth(as_token),
    )
