"""Build hook: generate ``benchd/v1/*_pb2.py``, ``*_pb2.pyi`` and ``*_grpc.py`` from ``proto/``.

Everything else about the package is in ``pyproject.toml``. The generation runs before
``build_py`` in every build, editable or not, so ``pip install -e .`` in a fresh clone gives
importable modules; the generated files are git-ignored and never edited by hand. The code
generator (grpcio-tools' protoc and grpclib's plugin) is a build requirement, so the protobuf
runtime pinned in the dependencies matches the generator's major version.

Error handling: a proto that does not compile fails the install with protoc's message.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # a build requirement (pyproject [build-system])
from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTO = ROOT / "proto"


def generate_grpc_code() -> None:
    protos = sorted(str(p) for p in PROTO.rglob("*.proto"))
    well_known = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as directory:
        # protoc runs plugins as executables; this one runs grpclib's plugin with the
        # interpreter doing the build, so it works in pip's isolated build environment.
        plugin = Path(directory) / "protoc-gen-grpclib_python"
        plugin.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -c'
            ' "from grpclib.plugin.main import main; main()"\n'
        )
        plugin.chmod(0o755)
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"--proto_path={PROTO}",
                f"--proto_path={well_known}",
                f"--python_out={ROOT}",
                f"--pyi_out={ROOT}",
                f"--grpclib_python_out={ROOT}",
                f"--plugin=protoc-gen-grpclib_python={plugin}",
                *protos,
            ]
        )
    missing = [
        str(module)
        for proto in PROTO.rglob("*.proto")
        for suffix in ("_pb2.py", "_pb2.pyi", "_grpc.py")
        if not (module := ROOT / proto.relative_to(PROTO).with_name(proto.stem + suffix)).exists()
    ]
    if status != 0 or missing:
        raise SystemExit(f"protoc failed (status {status}); not generated: {missing or 'none'}")


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate_grpc_code()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
