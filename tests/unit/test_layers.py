"""The package's layers, as STYLE.md states them: api <- core <- shell <- face, with sandbox beside them, and the
gateway (the data plane) on api and core only.

Never core -> shell, core -> sandbox, shell -> sandbox (the operator runs on any cluster), anything -> face, and
the gateway never on the operator's shell: it runs as its own process.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "autoglm"
# layer -> layers it may import (besides itself and the package root's constants)
ALLOWED = {
    "api": {"api"},
    "core": {"api", "core"},
    "shell": {"api", "core", "shell"},
    "sandbox": {"sandbox"},
    "gateway": {"api", "core", "gateway"},
    "face": {"api", "core", "shell", "sandbox", "gateway", "face"},
}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "autoglm" and parts[1] in ALLOWED else None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_what_it_may(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no modules in {layer}/"
    wrong = [
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in files
        for module in sorted(_imports(path))
        if (target := _layer(module)) is not None and target not in ALLOWED[layer]
    ]
    assert wrong == []


def test_every_module_sits_in_a_layer() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == []


def test_the_operator_does_not_load_the_forecasting_libraries_until_asked() -> None:
    """numpy, scikit-learn and the peers' libraries would double the operator's memory (issue 12's RSS goal):
    `autoglm run` with no forecasting on must not import them."""
    probe = (
        "import sys, autoglm.face.cli, autoglm.shell.controllers, autoglm.shell.reconcile; "
        "print(sorted(m for m in ('numpy', 'sklearn', 'scipy', 'matplotlib', 'pmdarima', 'statsmodels') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_autoglm_run_imports_nothing_of_the_sandbox_or_the_gateway() -> None:
    """The operator's process loads what it runs: not the sandbox (Go builds, a PKI, cryptography) nor the front
    door (gRPC, MQTT), which its image need not carry."""
    probe = (
        "import sys, autoglm.face.cli, autoglm.shell.controllers, autoglm.shell.reconcile, autoglm.shell.leader, "
        "autoglm.shell.process, autoglm.shell.kubeconfig; "
        "print(sorted(m for m in sys.modules if m.startswith(('autoglm.sandbox', 'autoglm.gateway', 'cryptography', "
        "'grpc', 'paho'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
