"""Every error reason the service can return is explained in docs/api.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REASON = re.compile(r'reason\s*=\s*"([A-Z][A-Z_]+)"')


def test_every_reason_is_documented() -> None:
    doc = (ROOT / "docs" / "api.md").read_text()
    sources = [
        *(ROOT / "src").rglob("*.py"),
        *(ROOT / "plugins/line/src").glob("broadcaster_line/*.py"),
    ]
    reasons = {r for path in sources for r in REASON.findall(path.read_text())}
    assert "CHANNEL_NOT_CONNECTED" in reasons  # the pattern finds them
    generic = {"ERROR", "FAILED_PRECONDITION", "CONFLICT", "ALREADY_EXISTS", "UNAVAILABLE",
               "UNAUTHENTICATED", "INVALID_FIELD"}  # fmt: skip
    missing = sorted(r for r in reasons - generic if f"`{r}`" not in doc)
    assert not missing, f"undocumented reasons: {missing}"
