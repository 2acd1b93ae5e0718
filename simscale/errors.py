"""User-facing errors.

Every problem caused by the user's input (a YAML file, a trace, a profile, a CLI flag) is raised
as :class:`UserError`. The CLI prints its message as one line and exits with status 2; it never
shows a traceback for these.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2.

    Parameters
    ----------
    message:
        What is wrong, in one sentence.
    source:
        The file (or flag) the problem is in, when there is one.
    field:
        The dotted field path inside ``source`` (e.g. ``services.0.slo_ms``), when known.
    """

    exit_code = 2

    def __init__(self, message: str, *, source: str | Path | None = None, field: str | None = None):
        self.message = message
        self.source = str(source) if source is not None else None
        self.field = field
        super().__init__(self.format())

    def format(self) -> str:
        """Return the one-line message: ``source: field: message``."""
        parts = [p for p in (self.source, self.field) if p]
        return ": ".join([*parts, self.message])


def pydantic_error_to_user_error(exc: Exception, source: str | Path | None) -> UserError:
    """Turn a :class:`pydantic.ValidationError` into one :class:`UserError` line that lists
    every problem.

    The first problem's dotted location is the error's ``field``; further problems follow in the
    message as ``; field: message``, so nothing is hidden behind a count.
    """
    errors = exc.errors()  # type: ignore[attr-defined]
    if not errors:
        return UserError(str(exc), source=source)
    items = [_describe(e) for e in errors]
    first_loc, first_msg = items[0]
    rest = "".join(f"; {loc + ': ' if loc else ''}{msg}" for loc, msg in items[1:])
    return UserError(f"{first_msg}{rest}", source=source, field=first_loc or None)


def _describe(error: dict) -> tuple[str, str]:
    """``(dotted location, message)`` of one pydantic error."""
    loc = ".".join(str(p) for p in error.get("loc", ()) if p not in ("function-after", ))
    msg = error.get("msg", "invalid value")
    if error.get("type") == "extra_forbid" or error.get("type") == "extra_forbidden":
        msg = "unknown key"
    return loc, msg
