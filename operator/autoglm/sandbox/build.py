"""Build the sandbox's upstream programs from pinned Go modules into a cache keyed by what was pinned."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "AUTOGLM_SANDBOX_CACHE"
SOURCE_ENV = "AUTOGLM_SANDBOX_SRC"


class SandboxError(Exception):
    """A sandbox step failed; the message names the component and what to do."""


@dataclass(frozen=True)
class Component:
    """One upstream project: its module folder under e2e/sandbox/go and the programs built from it."""

    name: str
    module: str
    programs: dict[str, str]
    version_module: str

    def ldflags(self, version: str) -> str:
        if self.name != "kubernetes":
            return ""
        major, minor = version.lstrip("v").split(".")[:2]
        return " ".join(
            f"-X k8s.io/component-base/version.{k}={v}"
            for k, v in (("gitVersion", version), ("gitMajor", major), ("gitMinor", minor))
        )


COMPONENTS = (
    Component(
        name="kubernetes",
        module="kubernetes",
        programs={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        },
        version_module="k8s.io/kubernetes",
    ),
    Component(
        name="etcd",
        module="etcd",
        programs={"etcd": "go.etcd.io/etcd/server/v3"},
        version_module="go.etcd.io/etcd/server/v3",
    ),
    Component(
        name="kwok", module="kwok", programs={"kwok": "sigs.k8s.io/kwok/cmd/kwok"}, version_module="sigs.k8s.io/kwok"
    ),
)


def source_dir() -> Path:
    """Where the pinned Go modules are: $AUTOGLM_SANDBOX_SRC or e2e/sandbox/go in this checkout."""
    env = os.environ.get(SOURCE_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "e2e" / "sandbox" / "go"


def cache_dir() -> Path:
    """$AUTOGLM_SANDBOX_CACHE, else ~/.cache/open-autoglm/sandbox."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "open-autoglm" / "sandbox"


def pinned_version(component: Component, src: Path | None = None) -> str:
    mod = ((src or source_dir()) / component.module / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(component.version_module)}\s+(v\S+)", mod, re.MULTILINE)
    if not match:
        raise SandboxError(f"{component.name}: go.mod does not pin {component.version_module}")
    return match.group(1)


def build_key(component: Component, src: Path | None = None) -> str:
    """Changes whenever the pinned modules (go.mod, go.sum) or the program list change."""
    folder = (src or source_dir()) / component.module
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((folder / name).read_bytes())
    digest.update(repr(sorted(component.programs.items())).encode())
    return f"{component.name}-{pinned_version(component, src)}-{digest.hexdigest()[:12]}"


def binary_dir(component: Component, src: Path | None = None) -> Path:
    return cache_dir() / build_key(component, src)


def binaries(src: Path | None = None) -> dict[str, Path]:
    """Program name -> built binary; raises SandboxError naming what is missing and how to build it."""
    found: dict[str, Path] = {}
    for component in COMPONENTS:
        folder = binary_dir(component, src)
        if not (folder / ".complete").exists():
            raise SandboxError(
                f"sandbox component {component.name} is not built (expected in {folder}); run `autoglm sandbox build`"
            )
        for program in component.programs:
            found[program] = folder / program
    return found


@dataclass(frozen=True)
class BuildResult:
    component: str
    version: str
    directory: Path
    built: bool


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise SandboxError("Go is not installed or not on PATH: the sandbox builds its programs with `go build`")
    return go


def build(
    components: tuple[Component, ...] = COMPONENTS,
    src: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> list[BuildResult]:
    """Build every component not already in the cache; a component whose pins did not change is skipped."""
    src = src or source_dir()
    results = []
    for component in components:
        folder = src / component.module
        if not (folder / "go.mod").exists():
            raise SandboxError(f"{component.name}: no Go module at {folder} (set {SOURCE_ENV} to e2e/sandbox/go)")
        target = binary_dir(component, src)
        version = pinned_version(component, src)
        if (target / ".complete").exists():
            log(f"{component.name} {version}: up to date in {target}")
            results.append(BuildResult(component.name, version, target, built=False))
            continue
        log(f"{component.name} {version}: building {', '.join(component.programs)} ...")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{component.name}-", dir=target.parent))
        command = [_go(), "build", "-trimpath", "-ldflags", component.ldflags(version), "-o", f"{staging}/"]
        if len(component.programs) == 1:
            ((program, package),) = component.programs.items()
            command[-1] = str(staging / program)
            command.append(package)
        else:
            command += list(component.programs.values())
        done = subprocess.run(
            command, cwd=folder, capture_output=True, text=True, env={**os.environ, "CGO_ENABLED": "0"}
        )
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise SandboxError(f"building {component.name} failed: `{' '.join(command)}` in {folder}:\n{tail}")
        (staging / ".complete").write_text(version + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        results.append(BuildResult(component.name, version, target, built=True))
    return results
