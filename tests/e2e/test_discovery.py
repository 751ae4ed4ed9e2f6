"""Reflection and health: what admin tools and load balancers see."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.server import Server


def test_reflection_lists_every_method(server: Server) -> None:
    buf = shutil.which("buf") or str(Path(sys.executable).parent / "buf")
    listed = subprocess.run(
        [buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods",
         f"http://{server.target}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    for method in (
        "broadcaster.v1.CustomerGroupService/CreateCustomerGroup",
        "broadcaster.v1.CustomerGroupService/AddCustomerGroupMembers",
        "broadcaster.v1.ContactService/BatchCreateContacts",
        "broadcaster.v1.ContactService/UpdateContact",
        "grpc.health.v1.Health/Check",
    ):
        assert method in listed


def test_health_needs_no_token(channel: grpc.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "broadcaster.v1.ContactService"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
