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
    """Turn a :class:`pydantic.ValidationError` into one :class:`UserError` line.

    The first error is reported with its dotted location; the count of further errors is added so
    that the line stays short but nothing is hidden.
    """
    errors = exc.errors()  # type: ignore[attr-defined]
    if not errors:
        return UserError(str(exc), source=source)
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p not in ("function-after", ))
    msg = first.get("msg", "invalid value")
    if first.get("type") == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return UserError(f"{msg}{more}", source=source, field=loc or None)
