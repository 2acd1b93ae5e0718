"""Running one job, and the store of job records that makes a sweep resumable.

:func:`execute_job` simulates one :class:`~simscale.sweeps.plan.Job` with
:func:`simscale.simulator.runner.run_scenario` and returns its record, never raising for a
failing job (only Ctrl-C propagates). :class:`Store` keeps the records under ``OUTDIR/runs``,
named by the job's key: ``<key>.json`` for a finished job (reused by the next run) and
``<key>.error.json`` for a failed one (tried again by the next run), each written atomically.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

from simscale import __version__
from simscale.errors import UserError
from simscale.io import write_json_atomic
from simscale.simulator.scenario import load_scenario
from simscale.sweeps.plan import Job

__all__ = ["Store", "error_text", "execute_job", "lost_record"]


def execute_job(job: Job) -> dict[str, Any]:
    """Run one job (in a worker process or a Ray task) and return its record.

    The record is ``{"key", "label", "seed", "runs": [summary.json's run dicts],
    "wall_s": seconds, "simscale_version"}`` or, when the simulation raised,
    ``{"key", "label", "seed", "error": "Type: message", "traceback": str, ...}``.
    Whatever the job raises is caught here, so that one failing job never stops a sweep: any
    exception, ``SystemExit`` (a strategy that calls ``sys.exit``) and every other
    ``BaseException`` subclass; only ``KeyboardInterrupt`` (Ctrl-C) propagates.
    """
    from simscale.simulator import runner

    t0 = time.perf_counter()
    record: dict[str, Any] = {"key": job.key, "label": job.label, "seed": job.seed,
                              "simscale_version": __version__}
    try:
        scenario = load_scenario({**job.scenario, "__source__": job.source,
                                  "__base_dir__": job.base_dir})
        result = runner.run_scenario(scenario, strategies=[job.label], seed=job.seed,
                                     replications=1, force=job.force)
        record["runs"] = list(result.summary["runs"])
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a failing job is recorded, not raised
        record["error"] = error_text(exc)
        record["traceback"] = traceback.format_exc()
    record["wall_s"] = time.perf_counter() - t0
    return record


def error_text(exc: BaseException) -> str:
    """``Type: message`` on one line (``SystemExit`` says that the job exited)."""
    if isinstance(exc, SystemExit):
        return (f"SystemExit: the job called sys.exit({exc.code!r}) (a strategy or runner "
                "must return, not exit)")
    msg = exc.format() if isinstance(exc, UserError) else str(exc)
    text = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    return " ".join(text.split())  # one line


def lost_record(job: Job, what: str) -> dict[str, Any]:
    """The error record of a job whose result never came back (its worker died, or the result
    could not be read): ``what`` is the one-line error; ``wall_s`` is 0."""
    return {"key": job.key, "label": job.label, "seed": job.seed,
            "simscale_version": __version__, "error": what, "traceback": "", "wall_s": 0.0}


class Store:
    """``OUTDIR/runs/<key>.json`` (finished jobs) and ``<key>.error.json`` (failed ones)."""

    def __init__(self, outdir: Path):
        self.dir = outdir / "runs"
        self.dir.mkdir(parents=True, exist_ok=True)

    def ok_path(self, key: str) -> Path:
        """Where the record of finished job ``key`` is stored."""
        return self.dir / f"{key}.json"

    def error_path(self, key: str) -> Path:
        """Where the record of failed job ``key`` is stored."""
        return self.dir / f"{key}.error.json"

    def load(self, key: str) -> dict[str, Any] | None:
        """The finished record of job ``key``, or ``None`` when it has none (or it is bad)."""
        p = self.ok_path(key)
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("key") != key or not isinstance(
                rec.get("runs"), list):
            return None
        return rec

    def save(self, job: Job, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``record`` (with the job's configuration added as ``config``) atomically: a
        finished one replaces any earlier error record of the job. Return it as it reads back
        from JSON."""
        record = {**record, "config": {"scenario": job.scenario, "strategy": job.label,
                                       "seed": job.seed}}
        if "error" in record:
            write_json_atomic(self.error_path(job.key), record)
            return json.loads(json.dumps(record, default=str))
        p = self.ok_path(job.key)
        write_json_atomic(p, record)
        self.error_path(job.key).unlink(missing_ok=True)
        return json.loads(p.read_text(encoding="utf-8"))
