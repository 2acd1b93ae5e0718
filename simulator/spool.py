"""Input spools: a long service's per-request inputs, drawn once, kept on disk, read in chunks.

A streaming run (:mod:`simscale.simulator.streaming`) keeps a window of requests in memory, but
its inputs (arrival time, service draw and routing uniforms of every request: 16 to 32 bytes a
request) would still be whole arrays: 1.9 GB for three weeks of 64 requests/s. An
:class:`InputSpool` holds them in raw float64 files in a private temporary folder instead: the
runner draws them a chunk at a time (the same numbers as drawing them whole) and appends each
chunk, and every strategy's request plane reads them back with its own :class:`SpoolReader`, a
chunk at a time, so the inputs are drawn once per replication, shared by every strategy (common
random numbers) and never held whole. Reads are ordinary file reads (not memory maps), so the
pages the kernel caches do not count in the process's resident memory.

The folder is made under ``$SIMSCALE_SPOOL_DIR`` or else the system's temporary folder and is
removed when the spool is closed, garbage-collected or the process exits. A disk too small
for it is a :class:`~simscale.errors.UserError` naming the folder and the space needed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from simscale.errors import UserError
from simscale.simulator.feeds import seconds_counted

__all__ = ["InputSpool", "SpoolReader", "spool_dir"]

#: requests a plane reads from its spool at a time
READ_CHUNK = 1 << 20


def spool_dir() -> str:
    """Where spools are made: ``$SIMSCALE_SPOOL_DIR`` when set, else the temporary folder."""
    return os.environ.get("SIMSCALE_SPOOL_DIR") or tempfile.gettempdir()


class InputSpool:
    """One service's inputs of one replication on disk: ``arrival_s`` and ``unit_service``
    (float64, one per request) and, for routing policies that draw, ``route_u`` (``draws``
    float64 per request). Write with :meth:`append`, then :meth:`seal`; read with
    :meth:`reader` (any number of independent readers)."""

    def __init__(self, draws: int = 0, *, bytes_needed: int = 0) -> None:
        self.draws = int(draws)
        self.n = 0  #: requests written
        self.sealed = False
        self._per_s = np.zeros(0, dtype=np.int64)  #: arrivals in each second so far
        root = spool_dir()
        if bytes_needed:
            free = shutil.disk_usage(root).free
            if free < bytes_needed:
                raise UserError(f"the inputs of this run need {bytes_needed / 1e9:.1f} GB of "
                                f"disk and {root} has {free / 1e9:.1f} GB free (set "
                                "SIMSCALE_SPOOL_DIR to a folder with room)",
                                source="SIMSCALE_SPOOL_DIR")
        self.folder = Path(tempfile.mkdtemp(prefix="simscale-spool-", dir=root))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)
        self._names = ["arrival_s", "unit_service"] + (["route_u"] if self.draws else [])
        self._files = [open(self.folder / f"{name}.f64", "wb")  # noqa: SIM115 - kept open
                       for name in self._names]

    def append(self, arrival_s: np.ndarray, unit_service: np.ndarray,
               route_u: np.ndarray | None = None) -> None:
        """Add the next requests (sorted arrival times, their draws, their routing uniforms)."""
        if self.sealed:
            raise ValueError("the spool is sealed")
        k = len(arrival_s)
        if len(unit_service) != k or (self.draws and (route_u is None or len(route_u) != k)):
            raise ValueError("one service draw (and routing draw) per arrival")
        parts = [arrival_s, unit_service] + ([route_u] if self.draws else [])
        try:
            for f, a in zip(self._files, parts, strict=True):
                np.ascontiguousarray(a, dtype=np.float64).tofile(f)
        except OSError as exc:
            self.close()
            raise UserError(f"cannot write the run's inputs under {spool_dir()}: "
                            f"{exc.strerror or exc} (set SIMSCALE_SPOOL_DIR to a folder with "
                            "room)", source="SIMSCALE_SPOOL_DIR") from None
        self.n += k
        if k:
            lo, per_s = seconds_counted(np.asarray(arrival_s, dtype=np.float64))
            end = lo + len(per_s)
            if end > len(self._per_s):
                grown = np.zeros(max(end, 2 * len(self._per_s)), dtype=np.int64)
                grown[:len(self._per_s)] = self._per_s
                self._per_s = grown
            self._per_s[lo:end] += per_s

    def arrivals_per_s(self, n_bins: int) -> np.ndarray:
        """Arrivals in each second ``[k, k + 1)`` for ``k < n_bins`` (float64; counted as the
        requests were written)."""
        out = np.zeros(n_bins)
        m = min(n_bins, len(self._per_s))
        out[:m] = self._per_s[:m]
        return out

    def seal(self) -> InputSpool:
        """Finish writing; returns the spool."""
        for f in self._files:
            f.close()
        self.sealed = True
        return self

    def reader(self) -> SpoolReader:
        """A new reader from the first request."""
        if not self.sealed:
            raise ValueError("seal the spool before reading it")
        return SpoolReader(self)

    def read_all(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Every request's inputs as whole arrays (for a run that must keep every request)."""
        r = self.reader()
        out = r.read(self.n)
        r.close()
        return out

    def close(self) -> None:
        """Remove the files (readers still open keep reading what they had)."""
        for f in self._files:
            f.close()
        self._finalizer()


class SpoolReader:
    """Reads a spool's requests in order, a chunk at a time."""

    def __init__(self, spool: InputSpool) -> None:
        self.spool = spool
        self.n = spool.n  #: requests in the spool
        self.pos = 0  #: requests read so far
        self.draws = spool.draws  #: routing uniforms per request
        self._files = [open(spool.folder / f"{name}.f64", "rb")  # noqa: SIM115 - kept open
                       for name in spool._names]

    @property
    def done(self) -> bool:
        """Every request has been read."""
        return self.pos >= self.n

    def read(self, k: int | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The next (at most) ``k`` (default :data:`READ_CHUNK`) requests:
        ``(arrival_s, unit_service, route_u)``;
        ``route_u`` is ``None`` without routing draws, of shape ``(k,)`` for one draw a
        request and ``(k, draws)`` for more."""
        k = self.next_count(k)
        d = self.spool.draws
        arr = np.fromfile(self._files[0], dtype=np.float64, count=k)
        unit = np.fromfile(self._files[1], dtype=np.float64, count=k)
        ru = None
        if d:
            ru = np.fromfile(self._files[2], dtype=np.float64, count=k * d)
            if d > 1:
                ru = ru.reshape(k, d)
        if len(arr) != k or len(unit) != k:
            raise OSError(f"input spool {self.spool.folder} was cut short")
        self.pos += k
        return arr, unit, ru

    def next_count(self, k: int | None = None) -> int:
        """How many requests the next :meth:`read` of ``k`` (default :data:`READ_CHUNK`)
        returns."""
        return max(0, min(READ_CHUNK if k is None else int(k), self.n - self.pos))

    def read_into(self, arrival_s: np.ndarray, unit_service: np.ndarray,
                  route_u: np.ndarray | None = None) -> None:
        """Read the next ``len(arrival_s)`` requests into the given (contiguous float64)
        arrays, as :meth:`read` would return them, without allocating: ``route_u`` has
        ``draws`` values a request (``None`` without routing draws)."""
        k = len(arrival_s)
        if k > self.n - self.pos:
            raise ValueError(f"only {self.n - self.pos} requests left to read, not {k}")
        outs = [arrival_s, unit_service] + ([route_u] if self.spool.draws else [])
        for f, out in zip(self._files, outs, strict=True):
            want = out.nbytes
            if len(out) != k or f.readinto(memoryview(out).cast("B")) != want:
                raise OSError(f"input spool {self.spool.folder} was cut short")
        self.pos += k

    def arrivals_per_s(self, n_bins: int) -> np.ndarray:
        """The whole spool's arrivals in each second (:meth:`InputSpool.arrivals_per_s`)."""
        return self.spool.arrivals_per_s(n_bins)

    def close(self) -> None:
        """Close the files (the spool itself stays)."""
        for f in self._files:
            f.close()

    def __del__(self) -> None:
        for f in getattr(self, "_files", []):
            f.close()
