"""The emulator and the LINE plugin stay apart: the emulator imports neither broadcaster nor the
plugin, and the plugin never imports the emulator, so a production install can leave it out."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import broadcaster_line
import broadcaster_line_emulator
import pytest


def imported_packages(package: Path) -> Iterator[tuple[str, str]]:
    """(module file, top-level package) for every absolute import under `package`."""
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                yield path.name, name.partition(".")[0]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        (broadcaster_line_emulator, {"broadcaster", "broadcaster_line"}),
        (broadcaster_line, {"broadcaster_line_emulator"}),
    ],
    ids=["emulator", "plugin"],
)
def test_no_import_crosses(package: object, forbidden: set[str]) -> None:
    imports = list(imported_packages(Path(getattr(package, "__file__", "")).parent))
    assert imports, "no module found"
    assert [(f, name) for f, name in imports if name in forbidden] == []
