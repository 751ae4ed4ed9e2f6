"""`broadcaster demo` end to end: the command a new user runs first, as a subprocess, on its
embedded defaults (a temporary SQLite database) and with `--database-url` on PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from broadcaster import cli
from broadcaster.tools.demo import platform
from tests.databases import fresh_postgres

FOLLOWERS = 2000


def _number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture(
    params=["default", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def database_args(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    if request.param == "default":
        yield []
    else:
        with fresh_postgres() as url:
            yield ["--database-url", url]


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROADCASTER_")}
    return subprocess.run(
        [sys.executable, "-m", "broadcaster.cli", "demo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_sends_a_broadcast_and_shows_the_results(database_args: list[str]) -> None:
    done = run_demo("--followers", str(FOLLOWERS), *database_args)
    out = done.stdout
    assert done.returncode == 0, f"exit {done.returncode}\n{out}\n{done.stderr}"
    # Tidy: the service's JSON log lines went to the log file, not the terminal.
    for stream in (out, done.stderr):
        assert not [line for line in stream.splitlines() if line.lstrip().startswith("{")]

    synced = re.search(r"synced ([\d,]+) followers", out)
    assert synced and _number(synced.group(1)) == FOLLOWERS, out

    # The estimate table: a row per audience, and expected = match - opted out - unreachable.
    assert re.search(r"AUDIENCE\s+MATCH\s+OPTED OUT\s+UNREACHABLE\s+EXPECTED TO RECEIVE", out)
    rows = {
        m.group(1).strip(): [_number(m.group(n)) for n in range(2, 6)]
        for m in re.finditer(
            r"^\s+((?:last \d+ days|all contacts) · [^\d]+?)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)"
            r"\s+([\d,]+)\s*$",
            out,
            re.MULTILINE,
        )
    }
    assert len(rows) == 4, out
    for label, (matched, opted_out, unreachable, expected) in rows.items():
        assert expected == matched - opted_out - unreachable, label
    everyone = rows["all contacts · all customers"]
    assert everyone[0] == FOLLOWERS and everyone[1] > 0 and everyone[2] > 0
    assert 0 < rows["last 7 days · all customers"][0] < everyone[0]

    # A test send to one contact went out first, and left the draft a draft.
    assert re.search(
        r"test send of the draft to one contact first \(\w+: SENT\); still a draft", out
    )

    # The broadcast's bubbles, as its previews: a text, an image and a card carousel.
    assert re.search(r"sending 'Summer sale: 30% off' \(Summer sale starts today: .*… · "
                     r"\[Image\] · \[Card\] Summer sale picks — 3 items\)", out), out  # fmt: skip

    # The send ended SENT with every recipient sent, to those expected for "all contacts".
    sent = re.search(r"broadcast (\w+): ([\d,]+) / ([\d,]+) sent, ([\d,]+) failed", out)
    assert sent, out
    state, count, total, failed = sent.group(1), *map(_number, sent.group(2, 3, 4))
    assert (state, failed) == ("SENT", 0)
    assert count == total == everyone[3]

    # Its statistics, read from LINE (the emulator's friends open about 40 % of what they get,
    # and click about 7 %, each send a little off that): whole percentages.
    figures = re.search(r"of ([\d,]+) delivered, opened (\d+)%, clicked (\d+)%", out)
    assert figures, out
    assert _number(figures.group(1)) == total
    assert 30 <= int(figures.group(2)) <= 50 and 4 <= int(figures.group(3)) <= 10, out

    # The broadcast list: the sent broadcast with its numbers and rates, and the copy of it,
    # scheduled for the next day, which then goes back to a draft.
    assert re.search(
        r"ID\s+NAME\s+SENT AT\s+TARGET\s+STATE\s+SENT / TOTAL\s+OPENED / CLICKED", out
    ), out
    listed = re.search(
        r"Summer sale: 30% off\s+\d{4}-\d\d-\d\d \d\d:\d\d\s+All contacts · All customers"
        r"\s+sent\s+([\d,]+) / ([\d,]+)\s+(\d+\.\d)% / (\d+\.\d)%",
        out,
    )
    assert listed and _number(listed.group(1)) == _number(listed.group(2)) == total, out
    assert abs(float(listed.group(3)) - int(figures.group(2))) <= 1, out
    when = re.search(r"the follow-up scheduled for (\d{4}-\d\d-\d\d \d\d:\d\d): SCHEDULED", out)
    assert when, out
    assert re.search(
        rf"Copy of Summer sale: 30% off\s+at {when.group(1)}\s+.*\s+scheduled\s+-", out
    ), out
    assert "the follow-up unscheduled again: DRAFT" in out

    # The Message Center has an event per recipient.
    events = re.search(r"Message Center: ([\d,]+) broadcast message events", out)
    assert events and _number(events.group(1)) == total, out

    assert "/metrics" in out and "--keep-running" in out
    # The temporary directory (database, log) is gone after a successful run.
    log = re.search(r"service logs: (\S+)", out)
    assert log and not Path(log.group(1)).parent.exists()


def test_demo_without_the_emulator_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, platform.MODULE, None)  # as if not installed
    assert cli.main(["demo", "--followers", "10"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and platform.DISTRIBUTION in err, err
