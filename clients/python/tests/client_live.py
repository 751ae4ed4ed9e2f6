"""A real `broadcaster serve` with the LINE channel, against the LINE emulator, both as processes.

The server runs on a fresh SQLite file with two tokens: `TOKEN` acts for every merchant, `OTHER`
only for `merchants/m-other`. Tests use merchants of their own, so they share one server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broadcaster_client import BroadcasterError, connect
from broadcaster_client.v1 import customer_group_service_pb2 as gpb

TOKEN = "client-test-token-000000"
OTHER = "client-other-token-00000"
TOKENS = f"{TOKEN}=*;{OTHER}=m-other"
SECRET_KEY = "client-tests-secret-key-long-enough-0123456789"


def _start(args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], str]:
    """Start a process that prints one line when it is ready; return it and that line."""
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(timeout=10)
        raise RuntimeError(f"{args} did not start:\n{log.read_text()}")
    return process, line.strip()


def _stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@dataclass
class Live:
    target: str
    emulator_url: str

    def emulator(self, method: str, path: str, body: Any = None) -> Any:
        """Call the LINE emulator's control API (`/_emulator/...`)."""
        request = urllib.request.Request(
            self.emulator_url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def line_account(self, **spec: Any) -> dict[str, Any]:
        """A new emulated LINE account: `tier`, `followers`, `quota` (camelCase JSON back)."""
        account: dict[str, Any] = self.emulator("POST", "/_emulator/accounts", spec)
        return account


def start(work: Path) -> Iterator[Live]:
    """Start the emulator and the server in `work`; yield them running; stop both."""
    emulator, base_url = _start(
        [sys.executable, "-m", "broadcaster_line_emulator", "--port", "0"],
        dict(os.environ),
        work / "emulator.log",
    )
    env = {
        **os.environ,
        "BROADCASTER_DATABASE_URL": f"sqlite:///{work / 'broadcaster.db'}",
        "BROADCASTER_AUTH_TOKENS": TOKENS,
        "BROADCASTER_GRPC_LISTEN": "127.0.0.1:0",
        "BROADCASTER_HTTP_LISTEN": "127.0.0.1:0",
        "BROADCASTER_SECRET_KEY": SECRET_KEY,
        "BROADCASTER_PLUGINS": "line",
        "BROADCASTER_PLUGIN_MODULES": "",
        "BROADCASTER_LINE_API_BASE": base_url,
        # ScheduleBroadcast takes times a second ahead here, so a test sees one fire.
        "BROADCASTER_SCHEDULE_MIN_LEAD": "1",
    }
    server, line = _start(
        [sys.executable, "-m", "broadcaster.cli", "serve"], env, work / "serve.log"
    )
    match = re.search(r"serving gRPC on (\S+:\d+)", line)
    try:
        assert match is not None, f"unexpected first line {line!r}"
        running = Live(target=match.group(1), emulator_url=base_url)
        _wait_serving(running.target)
        yield running
    finally:
        code = _stop(server)
        _stop(emulator)
    assert code == 0, (work / "serve.log").read_text()


def _wait_serving(target: str) -> None:
    """Until a call is answered (with any status but UNAVAILABLE)."""
    deadline = time.monotonic() + 20
    with connect(target, TOKEN) as client:
        while True:
            try:
                client.customer_groups.GetCustomerGroup(
                    gpb.GetCustomerGroupRequest(name="merchants/m-probe/customerGroups/none"),
                    timeout=2,
                )
            except BroadcasterError as e:
                if e.reason:
                    return
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
