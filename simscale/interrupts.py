"""SIGTERM handled like Ctrl-C, so that every command cleans up when it is stopped.

Python's default SIGTERM disposition ends the process at once: no ``finally`` block runs, so
temporary folders (a profile's model files, a spool) stay behind and child processes are not
stopped in order. Inside :func:`sigterm_as_interrupt`, SIGTERM raises :class:`Terminated` (a
``KeyboardInterrupt``) in the main thread instead, and every cleanup that Ctrl-C runs runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Terminated", "sigterm_as_interrupt"]


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (see :func:`sigterm_as_interrupt`)."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` in the main thread (so ``finally``
    blocks run: replicas stopped, temporary files removed); outside the main thread this does
    nothing. The previous handler is restored on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
