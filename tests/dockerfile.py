"""operator/Dockerfile read as its stages: what the image tests check and the install test runs."""

from __future__ import annotations

from tests.conftest import ROOT

DOCKERFILE = ROOT / "operator" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def stages() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(base image, stage name, instructions) per FROM."""
    found: list[tuple[str, str, list[tuple[str, str]]]] = []
    for instruction, args in instructions():
        if instruction == "FROM":
            words = args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"every stage is named: FROM {args}"
            found.append((words[0], words[2], []))
        else:
            found[-1][2].append((instruction, args))
    return found
