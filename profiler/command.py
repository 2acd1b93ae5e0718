"""The ``simscale profile`` command without click: the CLI parses flags and calls this."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from simscale.profiler.schema import Profile


def profile_command(
    models: list[str] | None,
    devices: list[str] | None,
    threads: list[int] | None,
    batch_sizes: list[int] | None,
    quick: bool,
    output: Path,
    weights: Path | None,
    colocation: bool | None = None,
) -> Profile:
    """Measure, show a progress bar (stderr) and a summary table (stdout), write ``output``.

    ``None`` for models/devices/threads/batch_sizes means the defaults of
    :func:`~simscale.profiler.runner.run_profile` (``colocation`` too: measured unless
    ``quick``). Bad arguments raise
    :class:`~simscale.errors.UserError` before anything is measured or written.
    """
    from simscale.console import make_console
    from simscale.profiler.runner import run_profile
    from simscale.profiler.show import profile_notes, summary_table

    err = Console(stderr=True)
    profile = run_profile(
        models=models,
        devices=devices,
        threads=threads,
        batch_sizes=batch_sizes,
        quick=quick,
        output=output,
        weights_path=weights,
        progress=True,
        console=err,
        colocation=colocation,
    )
    out = make_console()
    out.print(summary_table(profile))
    for note in profile_notes(profile):
        err.print(f"[yellow]{note}[/]")
    speed = profile.machine.speed
    if speed is not None:
        ends = ", ".join(f"{k} {v:.4g}" for k, v in (("start", speed.at_start_score),
                                                     ("end", speed.at_end_score)) if v)
        out.print(f"speed score {speed.score:.4g} work units/s ({ends})", soft_wrap=True)
    wall = profile.settings.get("wall_time_s")
    out.print(f"wrote {output}" + (f" ({wall:.0f} s)" if isinstance(wall, int | float) else ""))
    return profile
