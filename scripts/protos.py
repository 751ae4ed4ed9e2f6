"""Lint the protos and regenerate the Python stubs, offline.

    python scripts/protos.py           # buf lint, then regenerate src/broadcaster/v1/* and
                                       # the client's copy in clients/python (broadcaster_client.v1)
    python scripts/protos.py --check   # buf lint, then fail if either committed copy is stale

buf cannot run the Python gRPC plugin without its remote registry, so buf builds a descriptor
image and grpc_tools' protoc generates from that image. The google/api and google/rpc protos we
import are copied from the installed googleapis-common-protos package into build/proto-deps.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import google.api
import google.rpc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
DEPS = ROOT / "build" / "proto-deps"
OUT = ROOT / "src"
GENERATED = OUT / "broadcaster" / "v1"
CLIENT_OUT = ROOT / "clients" / "python" / "src"
CLIENT_GENERATED = CLIENT_OUT / "broadcaster_client" / "v1"
BIN = Path(sys.executable).parent
# Python module paths of our generated modules, in imports and in the module names the stubs
# register: `from broadcaster.v1 import x_pb2`, `broadcaster.v1.x_pb2`. The serialized
# descriptors never contain `_pb2`, nor ` import `, so they are left as they are.
MODULE_PATH = re.compile(r"\bbroadcaster\.v1(?=\.\w+_pb2\b| import )")


def gather_deps() -> None:
    """Copy the google/api and google/rpc protos that the API imports into build/proto-deps."""
    for package in (google.api, google.rpc):
        source = Path(next(iter(package.__path__)))
        target = DEPS / "google" / source.name
        target.mkdir(parents=True, exist_ok=True)
        for proto in source.glob("*.proto"):
            shutil.copyfile(proto, target / proto.name)


def run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


def generate(out: Path, image: Path) -> None:
    files = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))
    run(
        sys.executable, "-m", "grpc_tools.protoc",
        f"--descriptor_set_in={image}",
        f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}", f"--mypy_out={out}",
        f"--grpc_python_out={out}", f"--mypy_grpc_out={out}",
        *files,
    )  # fmt: skip
    package = out / "broadcaster" / "v1"
    (package / "__init__.py").write_text(
        '"""Generated from protos/broadcaster/v1. Do not edit."""\n'
    )


def generate_client(out: Path, image: Path) -> None:
    """The Python client's copy of the stubs, importable as `broadcaster_client.v1`.

    Only the Python module paths differ from the server's stubs: the descriptors (file names,
    package `broadcaster.v1`) are byte for byte the same, so protobuf's descriptor pool accepts
    both copies in one process (a test in clients/python checks it).
    """
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), image)
        target = out / "broadcaster_client" / "v1"
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted((Path(tmp) / "broadcaster" / "v1").iterdir()):
            if source.suffix in (".py", ".pyi") and source.name != "__init__.py":
                text = MODULE_PATH.sub("broadcaster_client.v1", source.read_text())
                (target / source.name).write_text(text)
    (target / "__init__.py").write_text(
        '"""Generated from protos/broadcaster/v1 by scripts/protos.py. Do not edit."""\n'
    )


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        print(f"stale: {cmp.left_only + cmp.right_only + cmp.diff_files}", file=sys.stderr)
        return False
    # dircmp compares by stat signature first; compare contents for certainty.
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        print(f"stale: {mismatch + errors}", file=sys.stderr)
        return False
    return all(same_tree(a / d, b / d) for d in cmp.common_dirs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed stubs are stale")
    args = parser.parse_args()

    gather_deps()
    buf = BIN / "buf"
    run(buf, "lint")
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "image.binpb"
        run(buf, "build", "-o", image)
        if args.check:
            out = Path(tmp) / "out"
            out.mkdir()
            generate(out, image)
            client = Path(tmp) / "client"
            generate_client(client, image)
            fresh = same_tree(out / "broadcaster" / "v1", GENERATED)
            fresh = (
                fresh
                and CLIENT_GENERATED.is_dir()
                and same_tree(client / "broadcaster_client" / "v1", CLIENT_GENERATED)
            )
            if not fresh:
                print("The generated stubs are stale: run `uv run python scripts/protos.py`.")
                return 1
            print("protos: lint clean, stubs fresh (server and Python client)")
            return 0
        if GENERATED.exists():
            shutil.rmtree(GENERATED)
        generate(OUT, image)
        if CLIENT_GENERATED.exists():
            shutil.rmtree(CLIENT_GENERATED)
        generate_client(CLIENT_OUT, image)
    print(
        f"protos: regenerated {GENERATED.relative_to(ROOT)} "
        f"and {CLIENT_GENERATED.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
