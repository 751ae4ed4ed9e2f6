"""`python -m broadcaster_line_emulator` runs standalone and prints its URL first."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import aiohttp
from emulator_support import LineApi

COMMAND = [sys.executable, "-m", "broadcaster_line_emulator"]


async def test_standalone_server_prints_its_url_and_serves_seeded_accounts() -> None:
    proc = await asyncio.create_subprocess_exec(
        *COMMAND,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--token",
        "cli-token",
        "--secret",
        "cli-secret",
        "--tier",
        "none",
        "--followers",
        "25",
        "--quota",
        "100",
        "--account",
        "token=second,tier=premium,followers=1200,seed=7",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().strip()
        first = json.loads(await proc.stdout.readline())
        second = json.loads(await proc.stdout.readline())
        async with aiohttp.ClientSession(url) as http:
            plain, premium = LineApi(http, "cli-token"), LineApi(http, "second")
            info = await plain.bot_info()
            refused = await plain.followers()
            quota = await plain.quota()
            followers = await premium.all_followers()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)

    assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0
    assert (first["accessToken"], first["channelSecret"], first["tier"]) == (
        "cli-token",
        "cli-secret",
        "none",
    )
    assert second["tier"] == "premium" and second["followers"] == 1_200
    assert info.status == 200 and info.body["userId"] == first["bot"]["userId"]
    assert refused.status == 403
    assert quota.body == {"type": "limited", "value": 100}
    assert len(followers) == 1_200
    assert code == 0


def test_bad_arguments_exit_with_usage_error() -> None:
    result = subprocess.run(
        [*COMMAND, "--account", "colour=blue"], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2
    assert "unknown account keys" in result.stderr
