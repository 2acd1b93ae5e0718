"""Streaming runs: the request plane holds a window of requests, folded into the figures as
the run goes, so a run's memory does not grow with its length.

A service with at least :data:`STREAM_MIN_REQUESTS` requests streams (or any, when asked): its
:class:`~simscale.simulator.requestplane.RequestPlane` is made with a window, the engine
advances it about :data:`STREAM_CHUNK` requests at a time (advancing the plane at extra times
changes no result: its loops are exact between any two times) and :class:`RequestStream` folds
the requests whose outcome is final, that the observations have read and that ended before the
keep horizon into a :class:`~simscale.simulator.accumulate.RequestFigures`, then lets the plane
forget them. A streaming run gives the same figures as one that keeps every request
(``tests/test_properties_sim.py`` checks it); it keeps no per-request table, but with a
:class:`~simscale.simulator.requesttable.RequestWriter` it writes the requests it forgets to
a Parquet file (``--save-requests``).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from simscale.simulator.accumulate import RequestFigures, fold
from simscale.simulator.background import Background
from simscale.simulator.observations import _pointer
from simscale.simulator.requestplane import RequestPlane

if TYPE_CHECKING:
    from simscale.simulator.requesttable import RequestWriter

__all__ = ["FOLD_BEHIND", "STREAM_CHUNK", "STREAM_KEEP_S", "STREAM_KEEP_WINDOWS",
           "STREAM_MIN_REQUESTS", "RequestStream", "streams"]

#: a service with at least this many requests streams by default; below, every request is
#: kept to the end (as ``--save-requests`` needs). Both give the same figures.
STREAM_MIN_REQUESTS = 2_000_000
#: a streaming plane folds and forgets requests about this many at a time
STREAM_CHUNK = 1 << 18
#: a streaming plane keeps the requests that ended in the last this many seconds, and at least
#: :data:`STREAM_KEEP_WINDOWS` times the strategy's latency window: the observations read them
#: again when a strategy widens its window (up to that much)
STREAM_KEEP_S = 600.0
STREAM_KEEP_WINDOWS = 2.0
#: a streaming run folds its requests in a thread of its own, behind the plane (``False``: in
#: the run's thread; the same figures either way)
FOLD_BEHIND = True


def streams(stream: bool | None, n_requests: int) -> bool:
    """Whether a service of ``n_requests`` streams: ``stream``, or by size when ``None``."""
    return n_requests >= STREAM_MIN_REQUESTS if stream is None else bool(stream)


class RequestStream:
    """The figures of a streaming service's requests, folded in as its plane moves on.

    ``figures``: what has been folded in (complete after :meth:`finish`). With
    :data:`FOLD_BEHIND` (read when the stream is made), a thread of its own folds a copy of each
    batch of final requests while the plane moves on (the fold's loops are compiled without
    the interpreter's lock or are numpy, so on two cores it costs little wall time); the
    batches are folded one after the other, in order, so the figures are the same, and
    nothing reads them before :meth:`finish` waits for the last batch."""

    def __init__(self, figures: RequestFigures, writer: RequestWriter | None = None) -> None:
        self.figures = figures
        #: where the requests go before they are forgotten (``--save-requests``), or ``None``
        self.writer = writer
        self.behind = FOLD_BEHIND
        self._p = 0  # first request of the plane that did not end before the horizon
        self._behind: Background | None = None  # the batch being folded behind
        self._copy: dict[str, np.ndarray] = {}  # its copy (buffers reused)

    @staticmethod
    def step_s(n_requests: int, duration_s: float) -> float:
        """Simulated seconds between two folds: about :data:`STREAM_CHUNK` requests."""
        return max(1.0, STREAM_CHUNK / max(n_requests / duration_s, 1e-9))

    def fold(self, plane: RequestPlane, requests: Any, now_s: float, lag_s: float,
             window_s: float) -> None:
        """Fold what can be forgotten at ``now_s`` (the plane advanced to it): requests that
        ended before the keep horizon and that the monitor's ``requests`` cursors passed."""
        horizon = now_s - lag_s - max(STREAM_KEEP_S, STREAM_KEEP_WINDOWS * window_s)
        self._p = _pointer(plane.end_s, self._p, plane.next_i, horizon)
        k = min(self._p, requests.p_done, requests.p_1s)
        if k < STREAM_CHUNK // 2:
            return
        if self.behind:
            self._fold_behind(plane, k)
        else:
            fold(self.figures, plane, k)
        if self.writer is not None:
            self.writer.write(plane, k)
        plane.compact(k)
        requests.shift(k)
        self._p -= k

    def _fold_behind(self, plane: RequestPlane, k: int) -> None:
        """Fold the plane's first ``k`` requests in a thread, from a copy (the plane forgets
        them next); the arrival after them goes too, as it closes the bins before it."""
        self._wait()
        view = SimpleNamespace()
        for name in ("arrival_s", "start_s", "end_s", "drop", "batch_size"):
            src = getattr(plane, name)
            m = min(k + 1, len(src)) if name == "arrival_s" else k
            buf = self._copy.get(name)
            if buf is None or len(buf) < m:
                buf = self._copy[name] = np.empty(2 * m, dtype=src.dtype)
            buf[:m] = src[:m]
            setattr(view, name, buf[:m])
        self._behind = Background(fold, self.figures, view, k, name="simscale-fold")

    def _wait(self) -> None:
        """Wait for the batch being folded behind, raising what folding it raised."""
        behind, self._behind = self._behind, None
        if behind is not None:
            behind.result()

    def finish(self, plane: RequestPlane) -> RequestFigures:
        """Fold the rest of the requests, as they are at the end of the run."""
        self._wait()
        fold(self.figures, plane, len(plane.arrival_s))
        self.figures.close()
        if self.writer is not None:
            self.writer.write(plane, len(plane.arrival_s))
            self.writer.close()
        return self.figures


