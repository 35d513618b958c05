"""The sandbox build's progress lines (sandbox.build)."""

from __future__ import annotations


def test_each_builds_progress_line_says_what_it_builds_and_how_long_it_takes() -> None:
    """One line per build with its expected time (measured on the 2-core CI machine), so a first `autoglm demo`
    does not look hung for minutes."""
    from autoglm.sandbox.build import COMPONENTS

    for component in COMPONENTS:
        assert component.expected_seconds > 0, component.name
        line = component.building_line("v1.2.3")
        assert line.startswith(f"{component.name} v1.2.3: building ") and "min on 2 cores) ..." in line, line
        assert all(program in line for program in component.programs), line
