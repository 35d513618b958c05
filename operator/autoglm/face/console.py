"""The consoles every `autoglm` command prints to. On a terminal, rich's boxed tables fitted to its width; piped
into a file, `grep` or `awk`, as kubectl prints: plain columns without box drawing, no name cut and no line
wrapped."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table

# Wide enough that a piped table keeps every name whole (a pipe reports 80 columns); lines are not wrapped there.
PIPED_WIDTH = 250


def _plain(renderable: Any) -> Any:
    """Tables in `renderable` (itself, or inside a Group) as kubectl's columns: no borders, no rules, two
    spaces between columns."""
    if isinstance(renderable, Table):
        renderable.box = None
        renderable.show_edge = False
        renderable.pad_edge = False
        renderable.title_justify = "left"
    elif isinstance(renderable, Group):
        for inner in renderable.renderables:
            _plain(inner)
    return renderable


class PipeFriendlyConsole(Console):
    def print(self, *objects: Any, **kwargs: Any) -> None:
        if not self.is_terminal:
            objects = tuple(_plain(o) for o in objects)
            kwargs.setdefault("soft_wrap", True)
        super().print(*objects, **kwargs)


def console(stderr: bool = False) -> PipeFriendlyConsole:
    terminal = PipeFriendlyConsole(stderr=stderr)
    return terminal if terminal.is_terminal else PipeFriendlyConsole(stderr=stderr, width=PIPED_WIDTH)
