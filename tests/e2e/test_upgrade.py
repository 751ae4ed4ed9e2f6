"""A rolling upgrade from the previous release to this checkout, on PostgreSQL, with the LINE
emulator as the judge: the previous release migrates an empty database and serves; this
checkout's `broadcaster migrate` runs while it does; a broadcast goes out through the old
replica; the old replica restarts on the migrated schema (it must start: only expand
migrations came since); this checkout's `serve` starts beside it, and a broadcast goes out
through the new one. Every recipient gets each broadcast exactly once.

The previous release is named in releases/previous: its tag where this clone has it, else its
commit. It is exported from git (`git archive`) into a temporary directory and installed there
from the lock file with uv (its packages come from uv's cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.databases import fresh_postgres
from tests.e2e import server as live
from tests.e2e.emulator_thread import EmulatorThread
from tests.e2e.sending_rig import Api, merchant, reach

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "releases" / "previous"
FOLLOWERS = 1_200  # three batches of LINE's 500


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def previous_release() -> str:
    """The previous release's commit id; skips where git cannot tell (no metadata, shallow)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the previous release cannot be checked out")
    try:
        shallow = _git("rev-parse", "--is-shallow-repository")
    except RuntimeError as e:
        pytest.skip(f"no git metadata here, so no previous release to run: {e}")
    if shallow == "true":
        pytest.skip("a shallow clone: the previous release's commit may be missing from it")
    lines = [x.strip() for x in RECORDED.read_text().splitlines()]
    tag, commit = next(x for x in lines if x and not x.startswith("#")).split()
    try:
        return _git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
    except RuntimeError:
        return _git("rev-parse", "--verify", f"{commit}^{{commit}}")


def _uv() -> str:
    for found in (os.environ.get("UV"), ROOT / ".tools" / "bin" / "uv", shutil.which("uv")):
        if found and Path(found).exists():
            return str(found)
    raise AssertionError("uv not found: run the tests through ./dev, which installs it")


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release, installed in a directory of its own: its directory."""
    commit = previous_release()
    where = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    # Its own environment (.venv in its directory), not this run's.
    ours = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    env = {k: v for k, v in os.environ.items() if k not in ours}
    subprocess.run(
        [_uv(), "sync", "--frozen", "--all-packages", "--python", "python3", "--quiet"],
        cwd=where,
        env=env,
        check=True,
        timeout=600,
    )
    return where


def _broadcaster(previous: Path | None) -> list[str]:
    if previous is None:
        return [sys.executable, "-m", "broadcaster.cli"]
    return [str(previous / ".venv" / "bin" / "broadcaster")]


def _migrate(previous: Path | None, url: str) -> None:
    done = subprocess.run(
        [*_broadcaster(previous), "migrate", "--database-url", url],
        cwd=previous or ROOT,
        env={**os.environ, "BROADCASTER_SECRET_KEY": live.SECRET_KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def _serve(previous: Path | None, url: str, emulator: EmulatorThread, log: Path) -> Api:
    server = live.start(
        url,
        log,
        extra_env={
            "BROADCASTER_PLUGINS": "line",
            "BROADCASTER_PLUGIN_MODULES": "",
            "BROADCASTER_LINE_API_BASE": emulator.base_url,
        },
        command=[*_broadcaster(previous), "serve"],
        cwd=previous or ROOT,
    )
    return Api(server)


def _stop(api: Api) -> None:
    api.close()
    code = api.server.stop()
    assert code == 0, f"serve exited with {code}:\n{api.server.log.read_text()}"


def test_the_previous_release_runs_beside_this_one(
    previous: Path, emulator: EmulatorThread, tmp_path: Path
) -> None:
    began = time.monotonic()
    account = emulator.call(emulator.emulator.add_account, tier="verified", followers=FOLLOWERS)
    followers = emulator.call(emulator.emulator.follower_ids, account)
    texts = ("Sent by the previous release", "Sent by this one")
    with fresh_postgres() as url:
        _migrate(previous, url)
        old = _serve(previous, url, emulator, tmp_path / "old.log")
        running = [old]
        try:
            _migrate(None, url)  # this release's migrations, under the running old replica
            parent = merchant()
            channel = old.connect(parent, account).name
            old.import_contacts(channel, followers)
            first = old.draft(parent, channel, texts[0])
            old.send(first.name)
            assert old.finished(first.name).counters.sent == FOLLOWERS

            _stop(running.pop())
            old = _serve(previous, url, emulator, tmp_path / "old-again.log")
            running.append(old)
            new = _serve(None, url, emulator, tmp_path / "new.log")
            running.append(new)
            second = new.draft(parent, channel, texts[1])
            new.send(second.name)
            assert new.finished(second.name).counters.sent == FOLLOWERS
            assert old.get(second.name).counters.sent == FOLLOWERS  # the old one reads it too
        finally:
            for api in running:
                _stop(api)
    for text in texts:
        got = reach(emulator, account, text)
        assert (got.deliveries, got.more_than_once) == (FOLLOWERS, 0), text
        assert got.reached_ids == frozenset(followers), text
    print(f"upgrade from the previous release: {time.monotonic() - began:.1f} s")
