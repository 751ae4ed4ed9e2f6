"""A setting that cannot be used stops `broadcaster serve` before it starts anything: status 2
and one line on stderr naming the variable, or the flag that overrode it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("env", "flags", "line"),
    [
        (
            {"BROADCASTER_LOG_FORMAT": "xml"},
            [],
            "broadcaster: BROADCASTER_LOG_FORMAT must be one of json, text, got 'xml'",
        ),
        (
            {"BROADCASTER_GRPC_LISTEN": "127.0.0.1:50051"},
            ["--grpc-listen", "127.0.0.1:99999"],
            "broadcaster: --grpc-listen must be host:port, got '127.0.0.1:99999'",
        ),
    ],
)
def test_a_bad_setting_stops_serve_with_one_line(
    env: dict[str, str], flags: list[str], line: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "broadcaster.cli", "serve", *flags],
        env={
            "BROADCASTER_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}",
            "PATH": "/usr/bin:/bin",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (2, "", line + "\n")
    assert list(tmp_path.iterdir()) == []  # no database, no key file
