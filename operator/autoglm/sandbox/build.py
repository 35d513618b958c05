"""Build the sandbox's upstream programs from pinned Go modules into a cache keyed by what was pinned."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "AUTOGLM_SANDBOX_CACHE"
SOURCE_ENV = "AUTOGLM_SANDBOX_SRC"
# A release's source archive (with vendor/) to build Karmada from where the module proxy does not serve it.
KARMADA_SRC_ENV = "AUTOGLM_KARMADA_SRC"
ASSETS = "share"


class SandboxError(Exception):
    """A sandbox step failed; the message names the component and what to do."""


@dataclass(frozen=True)
class Component:
    """One upstream project: its module folder under sandbox/go and the programs built from it."""

    name: str
    module: str
    programs: dict[str, str]  # binary name -> Go package
    version_module: str
    # Files of the upstream source the sandbox needs at run time (CRDs, webhook configurations), copied next
    # to the binaries so a built cache is all `up` needs.
    assets: tuple[str, ...] = ()
    # How long its first build takes on the 2-core CI machine (measured 2026-12-04 from a cold Go cache, in the
    # order `build` runs them, each finding the modules the ones before it fetched): said in its progress line.
    expected_seconds: int = 0

    def building_line(self, version: str) -> str:
        about = f" (about {max(1, round(self.expected_seconds / 60))} min on 2 cores)" if self.expected_seconds else ""
        return f"{self.name} {version}: building {', '.join(self.programs)}{about} ..."

    def ldflags(self, version: str) -> str:
        if self.name == "kubernetes":
            major, minor = version.lstrip("v").split(".")[:2]
            return " ".join(
                f"-X k8s.io/component-base/version.{k}={v}"
                for k, v in (("gitVersion", version), ("gitMajor", major), ("gitMinor", minor))
            )
        if self.name == "karmada":
            return f"-X {self.version_module}/pkg/version.gitVersion={version}"
        return ""


KARMADA = Component(
    name="karmada",
    module="karmada",
    programs={
        f"karmada-{cmd}": f"github.com/karmada-io/karmada/cmd/{cmd}"
        for cmd in ("controller-manager", "scheduler", "aggregated-apiserver", "webhook")
    },
    version_module="github.com/karmada-io/karmada",
    assets=("charts/karmada/_crds", "artifacts/deploy/webhook-configuration.yaml", "LICENSE"),
    expected_seconds=150,
)

CLUSTER_COMPONENTS = (
    Component(
        name="kubernetes",
        module="kubernetes",
        programs={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        },
        version_module="k8s.io/kubernetes",
        expected_seconds=240,
    ),
    Component(
        name="etcd",
        module="etcd",
        programs={"etcd": "go.etcd.io/etcd/server/v3"},
        version_module="go.etcd.io/etcd/server/v3",
        expected_seconds=25,
    ),
    Component(
        name="kwok",
        module="kwok",
        programs={"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
        version_module="sigs.k8s.io/kwok",
        expected_seconds=70,
    ),
)
PROMETHEUS = Component(
    name="prometheus",
    module="prometheus",
    programs={
        "prometheus": "github.com/prometheus/prometheus/cmd/prometheus",
        "promtool": "github.com/prometheus/prometheus/cmd/promtool",
    },
    version_module="github.com/prometheus/prometheus",
    expected_seconds=260,
)
COMPONENTS = (*CLUSTER_COMPONENTS, KARMADA, PROMETHEUS)


def source_dir() -> Path:
    """Where the pinned Go modules are: $AUTOGLM_SANDBOX_SRC, else the package's own (sandbox/go: they ship in the
    wheel, so an installed autoglm builds the same sandbox as a checkout)."""
    env = os.environ.get(SOURCE_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "go"


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


def binaries(src: Path | None = None, components: tuple[Component, ...] = CLUSTER_COMPONENTS) -> dict[str, Path]:
    """Program name -> built binary; raises SandboxError naming what is missing and how to build it."""
    found: dict[str, Path] = {}
    for component in components:
        folder = binary_dir(component, src)
        if not (folder / ".complete").exists():
            raise SandboxError(
                f"sandbox component {component.name} is not built (expected in {folder}); run `autoglm sandbox build`"
            )
        for program in component.programs:
            found[program] = folder / program
        if component.assets:
            found[f"{component.name}-{ASSETS}"] = folder / ASSETS
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
    karmada_archive: Path | None = None,
) -> list[BuildResult]:
    """Build every component not already in the cache; a component whose pins did not change is skipped.

    Karmada comes from its pinned Go module; where the module proxy refuses it, from the source archive
    `karmada_archive` (or $AUTOGLM_KARMADA_SRC), built with its vendor/ folder.
    """
    src = src or source_dir()
    archive = karmada_archive or (Path(os.environ[KARMADA_SRC_ENV]) if os.environ.get(KARMADA_SRC_ENV) else None)
    results = []
    for component in components:
        folder = src / component.module
        if not (folder / "go.mod").exists():
            raise SandboxError(
                f"{component.name}: no Go module at {folder} "
                f"(set {SOURCE_ENV} to a folder of Go modules like autoglm/sandbox/go)"
            )
        target = binary_dir(component, src)
        version = pinned_version(component, src)
        with building(target):
            if (target / ".complete").exists():
                log(f"{component.name} {version}: up to date in {target}")
                results.append(BuildResult(component.name, version, target, built=False))
                continue
            log(component.building_line(version))
            _build_into(component, version, folder, target, archive, log)
        results.append(BuildResult(component.name, version, target, built=True))
    return results


@contextmanager
def building(target: Path) -> Iterator[None]:
    """Held while one process looks at and builds a cache entry: two builds at once (a demo started beside the
    test suite) take turns, and the second finds the first's result instead of replacing it under its users."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_into(
    component: Component,
    version: str,
    folder: Path,
    target: Path,
    archive: Path | None,
    log: Callable[[str], None],
) -> None:
    """Build one component into a staging folder that replaces `target` once complete."""
    with staged(target) as staging:
        try:
            source = _build_module(component, version, folder, staging)
        except SandboxError as refused:
            if component is not KARMADA or archive is None:
                raise
            log(f"{component.name}: the module could not be built ({_first_line(refused)}); building {archive}")
            source = _build_archive(component, version, archive, staging)
        for asset in component.assets:
            _copy(source / asset, staging / ASSETS / asset)
        shutil.rmtree(staging / "src", ignore_errors=True)  # an extracted archive, once built
        (staging / ".complete").write_text(version + "\n")


@contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A staging folder beside `target` to build into; it replaces `target` when the block ends without an
    error, and is removed when it raises. A half-built cache entry is never left where `target` is."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _go_build(component: Component, version: str, cwd: Path, args: list[str]) -> None:
    command = [_go(), "build", "-trimpath", "-ldflags", component.ldflags(version), *args]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "CGO_ENABLED": "0"})
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        hint = ""
        if component is KARMADA:
            hint = (
                f"\n(where the Go module proxy refuses {component.version_module}, build from its source archive: "
                f"`autoglm sandbox build --karmada-src FILE` or ${KARMADA_SRC_ENV})"
            )
        raise SandboxError(f"building {component.name} failed: `{' '.join(command)}` in {cwd}:\n{tail}{hint}")


def _build_module(component: Component, version: str, folder: Path, staging: Path) -> Path:
    """Build from the pinned module folder; returns the upstream module's source folder (for assets)."""
    if len(component.programs) == 1:
        ((program, package),) = component.programs.items()
        _go_build(component, version, folder, ["-o", str(staging / program), package])
    else:
        _go_build(component, version, folder, ["-o", f"{staging}/", *component.programs.values()])
        for program, package in component.programs.items():
            built = staging / package.rsplit("/", 1)[-1]
            if built.name != program:
                built.rename(staging / program)
    if not component.assets:
        return folder
    done = subprocess.run(
        [_go(), "list", "-m", "-f", "{{.Dir}}", component.version_module],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise SandboxError(f"{component.name}: cannot locate the source of {component.version_module}: {done.stderr}")
    return Path(done.stdout.strip())


def _build_archive(component: Component, version: str, archive: Path, staging: Path) -> Path:
    """Build from a release's source archive (one top folder holding go.mod and vendor/), checked against the
    pinned module and version; it is extracted into staging/src, which the caller removes."""
    if not archive.is_file():
        raise SandboxError(f"{component.name}: source archive {archive} does not exist")
    source_root = staging / "src"
    source_root.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(source_root, filter="data")
    tops = [p for p in source_root.iterdir() if p.is_dir()]
    root = tops[0] if len(tops) == 1 and not (source_root / "go.mod").exists() else source_root
    gomod = root / "go.mod"
    if not gomod.exists() or f"module {component.version_module}\n" not in gomod.read_text():
        raise SandboxError(f"{archive} is not a source archive of {component.version_module} (no matching go.mod)")
    if not (root / "vendor").is_dir():
        raise SandboxError(f"{archive} has no vendor/ folder: it cannot be built without the module proxy")
    if version not in archive.name:
        raise SandboxError(f"{archive} does not look like {component.version_module} {version} (its name lacks it)")
    prefix = component.version_module + "/"
    for program, package in component.programs.items():
        local = "./" + package.removeprefix(prefix)
        _go_build(component, version, root, ["-mod=vendor", "-o", str(staging / program), local])
    return root


def _copy(source: Path, target: Path) -> None:
    if not source.exists():
        raise SandboxError(f"expected {source} in the upstream source")
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copyfile(source, target)
