"""One call run by a thread of its own while the run's thread goes on (a streaming run's next
chunk of inputs drawn ahead, its last batch of requests folded behind)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Background"]


class Background:
    """``fn(*args)`` started at once in a daemon thread named ``name`` (an interrupted run does
    not wait for it); :meth:`result` waits for it and returns what it returned, or raises, in
    the caller's thread, what it raised."""

    def __init__(self, fn: Callable[..., Any], *args: Any, name: str) -> None:
        self._fn = fn
        self._args = args
        self._out: Any = None
        self._err: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._out = self._fn(*self._args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            self._err = exc

    def result(self) -> Any:
        self._thread.join()
        if self._err is not None:
            raise self._err
        return self._out
