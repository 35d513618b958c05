"""The two images' own layers, measured without a Docker engine: operator/Dockerfile's pip commands run as
tests/image_install.py runs them (the wheel built once, each target's venv installed from it with bytecode
compiled, as the image does), and each venv's size on disk is what that image adds to python:3.11-slim.

    python benchmarks/image_sizes.py

Peers side by side in the same run: the operator image (the package alone), the gateway image (its gateway
extra), and one install with the sandbox extra (gateway and sandbox libraries with the operator: what the
operator image carried before the extras were split). The biggest packages of each are listed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.image_install import build_wheel_as_the_image_does

MIB = 1024 * 1024


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _largest(venv: Path, count: int = 6) -> list[tuple[str, int]]:
    (site,) = venv.glob("lib/python*/site-packages")
    sizes = [(entry.name, _size(entry)) for entry in site.iterdir() if entry.is_dir() and "dist-info" not in entry.name]
    return sorted(sizes, key=lambda item: -item[1])[:count]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wheels = build_wheel_as_the_image_does(root / "build")
        venvs = {
            "operator": wheels.install_as_the_image_does("operator", root / "operator"),
            "gateway": wheels.install_as_the_image_does("gateway", root / "gateway"),
            "before the split": wheels.install_with_extras("sandbox", root / "before"),
        }
        # The images compile bytecode at install (their root filesystem is read-only); the helper leaves it to
        # first import, so it is compiled here for the same bytes on disk.
        for venv in venvs.values():
            subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv)], check=False)
        print(f"# python benchmarks/image_sizes.py   ({datetime.now(UTC):%Y-%m-%d}; venv on python:3.11-slim)")
        print(f"{'image':<26}{'venv MiB':>10}  largest packages (MiB)")
        for name, venv in venvs.items():
            largest = ", ".join(f"{pkg} {size / MIB:.0f}" for pkg, size in _largest(venv))
            print(f"{name:<26}{_size(venv) / MIB:>10.0f}  {largest}")


if __name__ == "__main__":
    main()
