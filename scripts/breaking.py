"""Fail on a breaking change to a released API package, offline, with `buf breaking`.

    python scripts/breaking.py                      # check the protos against every baseline
    python scripts/breaking.py --record             # release: record the protos as they are
    python scripts/breaking.py --record --from REF  # ... as they were at git revision REF

The baseline of each API package version is a committed buf image of its last release,
`api/<package>.binpb` (`api/broadcaster.v1.binpb`), so the check needs neither git history nor a
registry. A change that would break callers of a released package (a field renamed, removed or
renumbered, a type changed, an RPC removed...; buf's FILE rules, configured in buf.yaml) fails
with buf's message. Additions pass. Breaking changes go into a new package version
(`protos/broadcaster/v2`, package `broadcaster.v2`): once a newer version exists, an older one may
be retired (its directory removed) and its baseline is no longer checked.

Record a baseline deliberately, when an API version is released: `--record` first checks the
protos against the current baseline and refuses to record a breaking change (`--allow-breaking`
overrides, for an unreleased package only).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from protos import BIN, DEPS, PROTOS, ROOT, gather_deps

BASELINES = ROOT / "api"
BUF = BIN / "buf"
VERSION = re.compile(r"v(\d+)(?:(?:alpha|beta)\d*)?")


def packages(protos: Path = PROTOS) -> dict[str, Path]:
    """API package versions (`broadcaster.v1`) by their directory under protos/."""
    found: dict[str, Path] = {}
    for proto in protos.rglob("*.proto"):
        directory = proto.parent
        relative = directory.relative_to(protos)
        if VERSION.fullmatch(relative.name):
            found[".".join(relative.parts)] = directory
    return found


def retired(package: str, current: dict[str, Path]) -> bool:
    """Whether a newer version of `package` (same name, higher major) has replaced it."""
    name, _, version = package.rpartition(".")
    match = VERSION.fullmatch(version)
    major = int(match.group(1)) if match else 0
    for other in current:
        other_name, _, other_version = other.rpartition(".")
        other_match = VERSION.fullmatch(other_version)
        if other_name == name and other_match and int(other_match.group(1)) > major:
            return True
    return False


def breaking(baseline: Path, workspace: Path = ROOT) -> bool:
    """Run buf breaking of the protos against `baseline`; True if it found breaking changes."""
    done = subprocess.run(
        [str(BUF), "breaking", "protos", "--against", str(baseline), "--exclude-imports"],
        cwd=workspace,
    )
    return done.returncode != 0


def check() -> int:
    current = packages()
    failed = False
    for baseline in sorted(BASELINES.glob("*.binpb")):
        package = baseline.stem
        where = baseline.relative_to(ROOT)
        if package not in current:
            if retired(package, current):
                print(f"breaking: {package} retired by a newer version; {where} is not checked")
                continue
            print(
                f"breaking: API package {package} was removed; callers of the released API "
                f"break. Keep it, or replace it with a new version (and then delete {where})."
            )
            failed = True
        elif breaking(baseline):
            print(
                f"breaking: the change above breaks callers of {package} as released ({where}). "
                "Make it compatible, or make it in a new package version."
            )
            failed = True
    for package in sorted(set(current) - {b.stem for b in BASELINES.glob("*.binpb")}):
        print(f"breaking: {package} has no released baseline yet (scripts/breaking.py --record)")
    if not failed:
        print("breaking: no breaking change to a released API")
    return 1 if failed else 0


def record(ref: str | None, allow_breaking: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        workspace = ROOT
        if ref is not None:
            # The protos and buf.yaml as they were at `ref`, with today's google/* dependencies.
            workspace = Path(tmp) / "workspace"
            workspace.mkdir()
            archive = subprocess.run(
                ["git", "archive", ref, "protos", "buf.yaml"], cwd=ROOT, check=True, stdout=-1
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(workspace)], input=archive, check=True)
            shutil.copytree(DEPS, workspace / DEPS.relative_to(ROOT))
        recorded = packages(workspace / "protos")
        BASELINES.mkdir(exist_ok=True)
        for package, directory in sorted(recorded.items()):
            target = BASELINES / f"{package}.binpb"
            image = Path(tmp) / f"{package}.binpb"
            subprocess.run(
                [str(BUF), "build", "--path", str(directory.relative_to(workspace)),
                 "--exclude-source-info", "-o", str(image)],
                cwd=workspace, check=True,
            )  # fmt: skip
            if target.exists() and not allow_breaking and breaking(target, workspace):
                print(f"breaking: not recording {package}: it breaks its released baseline")
                return 1
            shutil.copyfile(image, target)
            source = ref or "the working tree"
            print(f"breaking: recorded {package} from {source} in {target.relative_to(ROOT)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="record the released baselines")
    parser.add_argument("--from", dest="ref", help="with --record: the git revision to record")
    parser.add_argument(
        "--allow-breaking", action="store_true", help="with --record: record a breaking change"
    )
    args = parser.parse_args()
    gather_deps()
    if args.record:
        return record(args.ref, args.allow_breaking)
    return check()


if __name__ == "__main__":
    sys.exit(main())
