"""The terminal every command prints to (rich), made one way."""

from __future__ import annotations

from typing import Any

__all__ = ["make_console"]

#: the width of output that is not a terminal (a file, a pipe, a CI log): wide enough for every
#: table without cutting a number
PIPE_WIDTH = 120


def make_console(stderr: bool = False) -> Any:
    """A rich console on stdout (``stderr``: on stderr) without highlighting, as wide as the
    terminal, or :data:`PIPE_WIDTH` columns when the output is not a terminal (rich would use
    80 and cut table cells)."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=PIPE_WIDTH)
    return console
