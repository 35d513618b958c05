"""Generates the gateway's gRPC stubs from operator/autoglm/gateway/v1/inference.proto when the package is built
or installed (editable installs included), so they are never committed and always match the .proto. Everything
else about the package is in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent / "operator"
PROTOS = ["autoglm/gateway/v1/inference.proto"]


class BuildWithStubs(build_py):
    def run(self) -> None:
        from grpc_tools import protoc  # a build requirement (pyproject's [build-system])

        include = str(Path(protoc.__file__).parent / "_proto")
        for proto in PROTOS:
            args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={ROOT}", f"--pyi_out={ROOT}",
                    f"--grpc_python_out={ROOT}", str(ROOT / proto)]  # fmt: skip
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed on {proto}")
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
