"""The command line's structure: one module per command group, one way to print an error, one way to write
objects as JSON or YAML, and one rule for reaching a cluster (issue 26 §7)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from autoglm.face.cli import app

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "autoglm"
CLI = PACKAGE / "face" / "cli"


def test_errors_and_json_yaml_output_are_written_in_one_place() -> None:
    for path in sorted(CLI.glob("*.py")):
        if path.name == "common.py":
            continue
        text = path.read_text()
        assert "[red]error" not in text, f"{path.name}: print errors with common.refuse/fail"
        assert not re.search(r"if output is Output\.JSON", text), f"{path.name}: write data with common.emit"


def test_every_cluster_is_reached_by_one_rule() -> None:
    """Only shell/kubeconfig.py loads a kubeconfig or the in-cluster account (a member's kubeconfig document, from
    its Secret, is loaded by shell/members.py from a dict)."""
    loaders = re.compile(r"load_kube_config\(|load_incluster_config\(")
    found = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if loaders.search(p.read_text()))
    assert found == ["shell/kubeconfig.py"]


def test_help_lists_the_planning_verbs_first_and_every_group() -> None:
    names = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert names[:5] == ["plan", "render", "inventory", "crds", "catalog"]
    assert {"run", "gateway", "probe", "demo", "join", "unjoin", "forecast", "sandbox"} <= set(names)


def test_the_demo_says_in_one_line_why_it_runs_direct_when_karmada_is_not_built(monkeypatch: Any) -> None:
    from typer.testing import CliRunner

    from autoglm.face import demo as demo_run
    from autoglm.face.cli import showcase
    from autoglm.sandbox import build as sandbox_builder

    ran: list[bool] = []
    monkeypatch.setattr(sandbox_builder, "build", lambda **_: [])
    monkeypatch.setattr(showcase, "_karmada_missing", lambda: "sandbox component karmada is not built")
    monkeypatch.setattr(demo_run, "run_demo_fleet", lambda _dir, karmada, *_: ran.append(karmada) or True)
    result = CliRunner().invoke(app, ["demo", "--propagation", "auto"])
    assert result.exit_code == 0, result.output
    assert ran == [False]
    (line,) = [line for line in result.output.splitlines() if "not Karmada" in line]
    assert line.startswith("direct mode, not Karmada: Karmada is not built here") and "--karmada-src" in line
    # Asked for by name, it is refused with the reason instead.
    result = CliRunner().invoke(app, ["demo", "--propagation", "karmada"])
    assert result.exit_code == 1 and "karmada is not built" in result.output and ran == [False]


def test_the_extras_the_commands_ask_for_are_pyprojects_and_the_check_sees_a_missing_module(monkeypatch: Any) -> None:
    import importlib.util
    import tomllib

    from autoglm.face.cli import common
    from tests.conftest import ROOT

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(common.EXTRAS) <= set(extras)
    assert common.missing_extras("gateway", "sandbox") == []  # the dev install has both
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real(name, *a))
    assert common.missing_extras("gateway", "sandbox") == ["sandbox"]
