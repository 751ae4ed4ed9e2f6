"""The lines between the layers (docs/architecture.md), read from every module's imports.

Each module of `src/broadcaster` belongs to a layer named by its first package below
`broadcaster` (`domain`, `store`, …; top-level modules by their own name). A layer may import
only the layers listed for it; on top of that, wire and storage encodings stay where they belong
and the core never imports a plugin. Imports inside functions and under TYPE_CHECKING count too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "broadcaster"

# Third-party frameworks the domain must not know.
FRAMEWORKS = (
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "psycopg",
    "grpc",
    "grpc_status",
    "google",
    "aiohttp",
    "pluggy",
    "prometheus_client",
    "platformdirs",
    "cryptography",
    "opentelemetry",
)

# layer -> the layers of ours it may import (itself always).
ALLOWED: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "channels": frozenset({"domain"}),
    "logs": frozenset({"domain"}),
    # OpenTelemetry set up (composition root) and used (spans of our own) through one module.
    "tracing": frozenset(),
    # The broadcasts-by-state gauge is counted in the database at scrape time.
    "metrics": frozenset({"domain", "channels", "store"}),
    "store": frozenset({"domain", "channels"}),
    "config": frozenset({"domain", "logs", "store"}),
    "services": frozenset({"domain", "channels", "store", "metrics", "logs", "tracing"}),
    "dispatch": frozenset(
        {"domain", "channels", "store", "services", "metrics", "logs", "tracing"}
    ),
    "api": frozenset({"domain", "channels", "services", "metrics", "logs", "v1"}),
    "http": frozenset({"domain", "channels", "store", "services", "metrics", "logs", "tracing"}),
    "app": frozenset(
        {"domain", "channels", "store", "services", "dispatch", "api", "http", "metrics"}
        | {"logs", "config", "tracing"}
    ),
    "cli": frozenset({"app", "config", "logs", "tools", "channels", "store"}),
    # The tools speak the API as any client does (broadcaster_client); the demo also runs the
    # service in-process, through the composition root like `serve`, and holds the servers it
    # started (their types come from api/ and http/; the stubs stay private to api/).
    "tools": frozenset({"app", "config", "logs", "api", "http"}),
    "v1": frozenset({"v1"}),
}

# Modules only their own layer may import: the storage clock (integer microseconds) and the
# generated protobuf stubs.
PRIVATE = {"broadcaster.store.clock": "store", "broadcaster.v1": "api"}
# The emulator is not a channel plugin but a stand-in for the LINE Platform: the demo plays
# against it.
PLUGIN_PACKAGES = ("broadcaster_line",)
EMULATOR = "broadcaster_line_emulator"


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> Iterator[Import]:
    for path in sorted(SRC.rglob("*.py")):
        if "v1" in path.relative_to(SRC).parts[:1]:
            continue  # generated
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    # `from broadcaster import logs` imports the module broadcaster.logs.
                    target = f"{base}.{alias.name}" if base else alias.name
                    yield Import(module, target, node.lineno)


def layer_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "broadcaster" or len(parts) < 2:
        return None
    return parts[1]


IMPORTS = list(_imports())


def _where(i: Import) -> str:
    return f"{i.module}:{i.line} imports {i.target}"


def test_the_modules_are_found() -> None:
    modules = {i.module for i in IMPORTS}
    assert {"broadcaster.domain.errors", "broadcaster.api.errors", "broadcaster.app"} <= modules


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    wrong = [
        _where(i)
        for i in IMPORTS
        if layer_of(i.module) == layer
        and (target := layer_of(i.target)) is not None
        and target != layer
        and target not in ALLOWED[layer]
    ]
    assert not wrong, f"{layer} reaches past its line:\n" + "\n".join(wrong)


def test_every_layer_is_placed() -> None:
    unplaced = {layer_of(i.module) for i in IMPORTS} - set(ALLOWED) - {None}
    assert not unplaced, f"add these to ALLOWED: {sorted(unplaced)}"


def test_the_domain_imports_no_framework() -> None:
    wrong = [
        _where(i)
        for i in IMPORTS
        if layer_of(i.module) == "domain" and i.target.split(".")[0] in FRAMEWORKS
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("private", sorted(PRIVATE))
def test_encodings_stay_in_their_layer(private: str) -> None:
    owner = PRIVATE[private]
    wrong = [
        _where(i)
        for i in IMPORTS
        if (i.target == private or i.target.startswith(private + "."))
        and layer_of(i.module) != owner
    ]
    assert not wrong, f"{private} belongs to {owner}/:\n" + "\n".join(wrong)


def test_the_core_never_imports_a_plugin() -> None:
    wrong = [_where(i) for i in IMPORTS if i.target.split(".")[0] in PLUGIN_PACKAGES]
    assert not wrong, "plugins arrive through entry points only:\n" + "\n".join(wrong)


def test_only_the_tools_know_the_emulator() -> None:
    wrong = [
        _where(i)
        for i in IMPORTS
        if i.target.split(".")[0] == EMULATOR and layer_of(i.module) != "tools"
    ]
    assert not wrong, "\n".join(wrong)


MICROSECONDS = re.compile(r"\b1e6\b|\bnow_us\b|\b(to|from)_us\(")


def test_the_core_does_no_microsecond_arithmetic_outside_the_store() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        layer = path.relative_to(SRC).parts[0]
        if layer in ("store", "v1"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if MICROSECONDS.search(line):
                wrong.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not wrong, "storage time stays in store/:\n" + "\n".join(wrong)
