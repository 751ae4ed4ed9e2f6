"""Every hook and every Channel method is documented in docs/plugins.md."""

from __future__ import annotations

import inspect
from pathlib import Path

from broadcaster.channels import Channel, hookspecs

DOC = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()


def test_every_hook_is_documented() -> None:
    hooks = [
        n
        for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if n.startswith("broadcaster_")
    ]
    assert hooks
    for name in hooks:
        assert f"`{name}(" in DOC, name


def test_every_channel_member_is_documented() -> None:
    members = [n for n in dir(Channel) if not n.startswith("_")] + list(Channel.__annotations__)
    for name in set(members):
        assert f"`{name}" in DOC, name
