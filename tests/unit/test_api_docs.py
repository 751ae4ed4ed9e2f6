"""Every reason in the catalogue is explained in docs/api.md, and the docs name no other."""

from __future__ import annotations

import re
from pathlib import Path

from broadcaster.domain.reasons import Reason

ROOT = Path(__file__).resolve().parents[2]
LITERAL = re.compile(r'reason\s*=\s*"([A-Z][A-Z_]+)"')
CODE = re.compile(r"`([A-Z][A-Z0-9_]+)`")


def documented_reasons() -> set[str]:
    """The reasons in the reason column of the tables under docs/api.md's "Errors"."""
    doc = (ROOT / "docs" / "api.md").read_text()
    errors = doc.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in errors.splitlines() if line.startswith("| ")]
    return {code for cells in rows for code in CODE.findall(cells[2])}


def test_every_reason_is_documented() -> None:
    missing = sorted(set(Reason) - documented_reasons())
    assert not missing, f"undocumented reasons: {missing}"


def test_every_documented_reason_is_in_the_catalogue() -> None:
    documented = documented_reasons()
    assert "CHANNEL_NOT_CONNECTED" in documented  # the parser finds them
    unknown = sorted(documented - set(Reason))
    assert not unknown, f"reasons documented but not in Reason: {unknown}"


def test_no_reason_outside_the_catalogue() -> None:
    """A reason still written as a literal must at least be one the catalogue holds."""
    sources = [
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "plugins/line/src").glob("broadcaster_line/*.py"),
    ]
    literals = {r for path in sources for r in LITERAL.findall(path.read_text())}
    assert not sorted(literals - set(Reason))
