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

from typing import TYPE_CHECKING, Any

from simscale.simulator.accumulate import RequestFigures, fold
from simscale.simulator.observations import _pointer
from simscale.simulator.requestplane import RequestPlane

if TYPE_CHECKING:
    from simscale.simulator.requesttable import RequestWriter

__all__ = ["STREAM_CHUNK", "STREAM_KEEP_S", "STREAM_KEEP_WINDOWS", "STREAM_MIN_REQUESTS",
           "RequestStream", "streams"]

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


def streams(stream: bool | None, n_requests: int) -> bool:
    """Whether a service of ``n_requests`` streams: ``stream``, or by size when ``None``."""
    return n_requests >= STREAM_MIN_REQUESTS if stream is None else bool(stream)


class RequestStream:
    """The figures of a streaming service's requests, folded in as its plane moves on.

    ``figures``: what has been folded in (complete after :meth:`finish`)."""

    def __init__(self, figures: RequestFigures, writer: RequestWriter | None = None) -> None:
        self.figures = figures
        #: where the requests go before they are forgotten (``--save-requests``), or ``None``
        self.writer = writer
        self._p = 0  # first request of the plane that did not end before the horizon

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
        fold(self.figures, plane, k)
        if self.writer is not None:
            self.writer.write(plane, k)
        plane.compact(k)
        requests.shift(k)
        self._p -= k

    def finish(self, plane: RequestPlane) -> RequestFigures:
        """Fold the rest of the requests, as they are at the end of the run."""
        fold(self.figures, plane, len(plane.arrival_s))
        self.figures.close()
        if self.writer is not None:
            self.writer.write(plane, len(plane.arrival_s))
            self.writer.close()
        return self.figures


