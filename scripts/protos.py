"""Lint the protos and regenerate the Python stubs, offline.

    python scripts/protos.py           # buf lint, then regenerate src/broadcaster/v1/*
    python scripts/protos.py --check   # buf lint, then fail if the committed stubs are stale

buf cannot run the Python gRPC plugin without its remote registry, so buf builds a descriptor
image and grpc_tools' protoc generates from that image. The google/api and google/rpc protos we
import are copied from the installed googleapis-common-protos package into build/proto-deps.
"""

from __future__ import annotations

import argparse
import filecmp
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
BIN = Path(sys.executable).parent


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
            if not same_tree(out / "broadcaster" / "v1", GENERATED):
                print("The generated stubs are stale: run `uv run python scripts/protos.py`.")
                return 1
            print("protos: lint clean, stubs fresh")
            return 0
        if GENERATED.exists():
            shutil.rmtree(GENERATED)
        generate(OUT, image)
    print(f"protos: regenerated {GENERATED.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
