"""Building Karmada where the Go module proxy refuses it: from a release's source archive (go build -mod=vendor).

A real `go build` on a small stand-in for the release (same module path, cmd/ programs that print their stamped
version, vendor/, CRD and webhook files), with the module proxy switched off so the pinned module cannot be
fetched, as on a machine whose proxy answers 403.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from autoglm.sandbox import build
from autoglm.sandbox.build import KARMADA, SandboxError

VERSION = "v1.18.2"
MAIN = """package main

import (
	"fmt"

	"github.com/karmada-io/karmada/pkg/version"
)

func main() { fmt.Println(version.Get()) }
"""
VERSION_GO = """package version

var gitVersion = "v0.0.0-master"

func Get() string { return gitVersion }
"""


def _release(root: Path, vendor: bool = True, module: str = "github.com/karmada-io/karmada") -> Path:
    top = root / f"karmada-{VERSION}"
    (top / "pkg" / "version").mkdir(parents=True)
    (top / "pkg" / "version" / "version.go").write_text(VERSION_GO)
    (top / "go.mod").write_text(f"module {module}\n\ngo 1.22\n")
    for program in KARMADA.programs.values():
        cmd = top / "cmd" / program.rsplit("/", 1)[-1]
        cmd.mkdir(parents=True)
        (cmd / "main.go").write_text(MAIN)
    if vendor:
        (top / "vendor").mkdir()
        (top / "vendor" / "modules.txt").write_text("")
    crds = top / "charts" / "karmada" / "_crds"
    crds.mkdir(parents=True)
    (crds / "kustomization.yaml").write_text("resources: []\n")
    (top / "artifacts" / "deploy").mkdir(parents=True)
    (top / "artifacts" / "deploy" / "webhook-configuration.yaml").write_text("# webhooks\n")
    (top / "LICENSE").write_text("Apache-2.0\n")
    archive = root / f"karmada-{VERSION}-src.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    shutil.rmtree(top)
    return archive


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pinned-module folder for Karmada that cannot be built: no proxy, an empty module cache."""
    src = tmp_path / "pins"
    (src / "karmada").mkdir(parents=True)
    pinned = (build.source_dir() / "karmada" / "go.mod").read_text()
    (src / "karmada" / "go.mod").write_text(pinned)
    (src / "karmada" / "go.sum").write_text("")
    monkeypatch.setenv("GOPROXY", "off")
    monkeypatch.setenv("GOFLAGS", "-mod=mod")
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(build.KARMADA_SRC_ENV, raising=False)
    return src


def test_without_an_archive_the_error_says_how_to_build_karmada(offline: Path) -> None:
    with pytest.raises(SandboxError, match="--karmada-src FILE"):
        build.build(components=(KARMADA,), src=offline)


def test_karmada_builds_from_the_release_archive_with_its_version(offline: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    (result,) = build.build(components=(KARMADA,), src=offline, karmada_archive=_release(tmp_path), log=lines.append)
    assert result.built and result.version == VERSION
    assert any("building" in line and "karmada" in line for line in lines)
    found = build.binaries(src=offline, components=(KARMADA,))
    for program in KARMADA.programs:
        out = subprocess.run([str(found[program])], capture_output=True, text=True, check=True).stdout
        assert out.strip() == VERSION
    share = found["karmada-share"]
    assert (share / "charts/karmada/_crds/kustomization.yaml").exists()
    assert (share / "artifacts/deploy/webhook-configuration.yaml").exists()
    assert not (result.directory / "src").exists()  # the extracted source is not kept
    # Cached: a second build does nothing, and the environment variable serves as well as the flag.
    assert not build.build(components=(KARMADA,), src=offline)[0].built


def test_two_builds_at_once_take_turns_and_the_second_finds_the_firsts(offline: Path, tmp_path: Path) -> None:
    """Two processes may build on a fresh machine at once (a demo started beside the test suite): one builds, the
    other waits for it and finds the cache entry complete, instead of building too and replacing it under it."""
    archive = _release(tmp_path)
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: build.build(components=(KARMADA,), src=offline, karmada_archive=archive), "ab"))
    assert sorted(r.built for (r,) in runs) == [False, True]
    found = build.binaries(src=offline, components=(KARMADA,))
    assert all(found[program].exists() for program in KARMADA.programs)


@pytest.mark.parametrize(
    ("archive_kind", "problem"),
    [("no-vendor", "has no vendor/ folder"), ("other-module", "is not a source archive of")],
)
def test_a_wrong_archive_is_refused_with_the_reason(
    offline: Path, tmp_path: Path, archive_kind: str, problem: str
) -> None:
    if archive_kind == "no-vendor":
        archive = _release(tmp_path, vendor=False)
    else:
        archive = _release(tmp_path, module="example.com/other")
    with pytest.raises(SandboxError, match=problem):
        build.build(components=(KARMADA,), src=offline, karmada_archive=archive)
    assert not list((tmp_path / "cache").glob("karmada-*"))
