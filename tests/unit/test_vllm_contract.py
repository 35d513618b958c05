"""The vLLM contract: every flag rendered for a vLLM runtime exists in the vLLM release its image carries (the
catalog's engineVersion) and takes the value given. The flags come from that release's own argument
definitions, read from its wheel by e2e/runtime_flags.py into tests/fixtures/runtime-flags/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from autoglm.api.common import Precision
from tests.unit.test_runtime_fidelity import CATALOG, _cases, _render

FLAGS = Path(__file__).resolve().parents[1] / "fixtures" / "runtime-flags"
# vLLM runtimes whose image names no vLLM release, so there is nothing to check them against (said in the
# catalog as well): Intel's Gaudi vault tags the installer, not the vLLM fork's version.
UNPINNED = {"vllm-gaudi"}


def _fixture(pin: str) -> dict[str, Any]:
    path = FLAGS / (pin.replace("==", "-") + ".json")
    assert path.exists(), f"no flag fixture for {pin}: run python e2e/runtime_flags.py {pin.replace('+', ' --plugin ')}"
    flags: dict[str, Any] = json.loads(path.read_text())["flags"]
    return flags


def test_every_vllm_runtime_pins_the_release_its_image_carries() -> None:
    for runtime in CATALOG:
        if runtime.spec.command[:1] == ["vllm"] and runtime.metadata.name not in UNPINNED:
            assert runtime.spec.engine_version, f"{runtime.metadata.name} runs vllm but pins no engineVersion"
            _fixture(runtime.spec.engine_version)


def _problems(args: list[str], flags: dict[str, Any]) -> list[str]:
    problems = []
    words = args[1:]  # the model, positional
    for i, word in enumerate(words):
        if not word.startswith("--"):
            continue
        spec = flags.get(word)
        if spec is None:
            problems.append(f"{word} is not a flag of this vLLM")
            continue
        value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("--") else None
        kind = spec["kind"]
        if kind == "bool":
            if value is not None:
                problems.append(f"{word} takes no value, got {value!r}")
        elif value is None:
            problems.append(f"{word} needs a value")
        elif kind == "int" and not value.isdigit():
            problems.append(f"{word} takes an integer, got {value!r}")
        elif kind == "float" and not _is_float(value):
            problems.append(f"{word} takes a number, got {value!r}")
        elif kind == "choice" and value not in spec["choices"]:
            problems.append(f"{word} takes one of {spec['choices']}, got {value!r}")
    return problems


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


PINNED = [c for c in _cases() if next(r for r in CATALOG if r.metadata.name == c[0]).spec.engine_version]


@pytest.mark.parametrize(("name", "precision", "tp", "pp"), PINNED)
def test_every_rendered_flag_exists_in_the_pinned_vllm_and_takes_its_value(
    name: str, precision: Precision, tp: int, pp: int
) -> None:
    runtime = next(r for r in CATALOG if r.metadata.name == name)
    assert runtime.spec.engine_version is not None
    option, _ = _render(name, precision, tp, pp)
    assert _problems(option.args, _fixture(runtime.spec.engine_version)) == []


def test_the_check_finds_an_unknown_flag_a_bad_choice_and_a_value_given_to_a_switch() -> None:
    flags = _fixture("vllm==0.11.0")
    assert _problems(["m", "--dtype", "float16", "--tensor-parallel-size", "2", "--trust-remote-code"], flags) == []
    assert _problems(["m", "--pipeline-parallel", "2"], flags) == ["--pipeline-parallel is not a flag of this vLLM"]
    assert "takes one of" in _problems(["m", "--dtype", "fp16"], flags)[0]
    assert "takes no value" in _problems(["m", "--trust-remote-code", "true"], flags)[0]
    assert "takes an integer" in _problems(["m", "--max-num-seqs", "many"], flags)[0]
