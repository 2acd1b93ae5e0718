"""Atomic file output.

Results are written to a temporary file in the destination's folder and renamed over the
destination, so an interrupted run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (NaN is written as null). The text is
    written as it is encoded, never held whole (a three-week run's summary lists hundreds of
    thousands of scaling events)."""
    clean = _nan_to_none(obj)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(clean, f, indent=indent, allow_nan=False)
        f.write("\n")


def write_with_atomic(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and rename the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:  # NaN
        return None
    if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _nan_to_none(obj.item())
    return obj


def check_output_dir(path: str | Path, *, flag: str = "--output") -> Path:
    """Check, before any work, that results can be written to the folder ``path``: it is a
    folder or can be made one (no part of it is a file, every name fits the file system, the
    nearest existing folder is writable). Creates nothing. Raises :class:`UserError` naming the
    folder and ``flag`` otherwise; returns ``path``."""
    from simscale.errors import UserError

    path = Path(path)
    where = f"{flag} {path}"
    for part in path.parts:
        if len(part.encode("utf-8", "surrogateescape")) > 255:
            raise UserError(f"the name '{part[:40]}…' is longer than 255 bytes", source=where)
    node = path
    while not os.path.lexists(node) and node.parent != node:
        node = node.parent
    if not os.path.isdir(node):
        what = "is a file" if node == path else f"lies inside {node}, which is a file"
        raise UserError(f"the output folder {what}", source=where)
    if not os.access(node, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {node} (permission denied)", source=where)
    return path
