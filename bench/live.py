"""Shared set-up for benchmarks that run the real service: an emulator process, a `serve`
process, a fresh database, and a gRPC stub helper."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e import server as live  # noqa: E402

TOKEN, SECRET = "bench-token-0123456789", "bench-secret-0123456789"


@contextmanager
def emulator(*args: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """`python -m broadcaster_line_emulator ARGS`: its base URL and seeded accounts."""
    process = subprocess.Popen(
        [sys.executable, "-m", "broadcaster_line_emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    base_url = process.stdout.readline().strip()
    accounts = []
    for _ in range(sum(1 for a in args if a in ("--token", "--account"))):
        accounts.append(json.loads(process.stdout.readline()))
    try:
        yield base_url, accounts
    finally:
        process.terminate()
        process.wait(timeout=20)


NO_AUTOMATIC_SYNCS = {"BROADCASTER_FOLLOWER_SYNC_INTERVAL": "off"}


@contextmanager
def service(
    database_url: str, log: Path, line_api: str, env: dict[str, str] | None = None
) -> Iterator[live.Server]:
    """`broadcaster serve` with the LINE plugin pointed at `line_api`; `env`: more settings.
    Follower syncs are not automatic (a benchmark seeds its contacts itself, and a sync listing
    the same followers beside what it measures would measure both) unless `env` says so."""
    running = live.start(
        database_url,
        log,
        extra_env={
            "BROADCASTER_PLUGINS": "line",
            "BROADCASTER_LINE_API_BASE": line_api,
            **NO_AUTOMATIC_SYNCS,
            **(env or {}),
        },
    )
    try:
        yield running
    finally:
        running.stop()


ADMIN = live.auth(live.ADMIN)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's memory from /proc/PID/status: its peak RSS (VmHWM), or its RSS now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def scrape(http_port: int) -> dict[str, float]:
    """Every series of one scrape of the service's /metrics (`name` or `name{labels}`)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=30).read()
    found = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            found[series] = float(value)
    return found
