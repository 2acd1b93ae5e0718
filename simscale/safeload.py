"""Reading untrusted input files: one safe path for every YAML, JSON and CSV file simscale reads.

Every reader of user files goes through :func:`read_text` (or :func:`check_regular_file` for
files a library parses itself), and every YAML document through :func:`load_yaml`. They refuse,
with one :class:`~simscale.errors.UserError` line naming the file:

- anything that is not a regular file (``/dev/zero``, a FIFO, a folder), before reading it;
- files larger than a limit (:data:`MAX_YAML_BYTES`, :data:`MAX_JSON_BYTES`), read at most one
  byte past it, so a growing or endless file cannot exhaust memory;
- bytes that are not UTF-8 text (naming the byte offset);
- YAML that is malformed, maps one key twice (the last would otherwise silently win), nests
  deeper than :data:`MAX_DEPTH` levels, or whose aliases would expand to more than
  :data:`MAX_YAML_NODES` nodes (a "billion laughs" bomb of a kilobyte stays a kilobyte: the
  expanded size is counted on the composed graph, shared nodes once per reference, before any
  Python object is built), or that refers to itself through an alias;
- JSON nested deeper than :data:`MAX_DEPTH`.

:func:`check_depth` applies the same nesting limit to data that arrives as Python objects (a
scenario given as a dict to the Python API).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from simscale.errors import UserError

__all__ = [
    "InputRefused",
    "MAX_DEPTH",
    "MAX_JSON_BYTES",
    "MAX_YAML_BYTES",
    "MAX_YAML_NODES",
    "check_depth",
    "check_regular_file",
    "load_json",
    "load_yaml",
    "read_text",
]

#: largest scenario or sweep YAML file read, bytes (real scenarios are a few kilobytes)
MAX_YAML_BYTES = 4 * 2**20
#: largest profile JSON file read, bytes (a full profile is about 300 KB)
MAX_JSON_BYTES = 64 * 2**20
#: deepest nesting of mappings and lists accepted in any input (scenarios nest about 6 deep)
MAX_DEPTH = 64
#: most nodes a YAML document may expand to once its aliases are followed
MAX_YAML_NODES = 200_000


def check_regular_file(path: str | Path, *, what: str, field: str | None = None,
                       max_bytes: int | None = None) -> os.stat_result:
    """Return ``path``'s stat when it is a regular file (of at most ``max_bytes``), else raise a
    :class:`UserError` naming it (``what`` says what the file was for, e.g. ``"scenario"``)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{what} file not found", source=path, field=field) from None
    except OSError as exc:
        raise UserError(f"cannot read {what} file: {exc.strerror}", source=path,
                        field=field) from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise UserError(f"{what} path is {kind}", source=path, field=field)
    if max_bytes is not None and st.st_size > max_bytes:
        raise UserError(f"{what} file is {_size(st.st_size)}, over the limit of "
                        f"{_size(max_bytes)}", source=path, field=field)
    return st


def read_text(path: str | Path, *, what: str, max_bytes: int, field: str | None = None) -> str:
    """Read a regular file of at most ``max_bytes`` as UTF-8 text.

    Opens the file without blocking (a FIFO swapped in after the check cannot hang the read),
    checks it is a regular file, reads at most ``max_bytes + 1`` bytes, and decodes strictly.
    Raises :class:`UserError` naming ``path`` for every problem.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UserError(f"{what} file not found", source=path, field=field) from None
    except IsADirectoryError:
        raise UserError(f"{what} path is a folder", source=path, field=field) from None
    except OSError as exc:
        raise UserError(f"cannot read {what} file: {exc.strerror}", source=path,
                        field=field) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise UserError(f"{what} path is {kind}", source=path, field=field)
        chunks: list[bytes] = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise UserError(f"cannot read {what} file: {exc.strerror}", source=path,
                        field=field) from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise UserError(f"{what} file is over the limit of {_size(max_bytes)}", source=path,
                        field=field)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x})",
                        source=path, field=field) from None


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


# ============================================================================ YAML
class InputRefused(UserError):
    """Input refused by a safety limit (size, depth, alias expansion, duplicate keys), as opposed
    to input that is merely malformed."""


class _LimitError(Exception):
    """A limit of the safe loader was hit (turned into :class:`InputRefused` by load_yaml)."""


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a depth limit while composing and no duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: D102 - PyYAML hook
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _LimitError(f"nested more than {MAX_DEPTH} levels deep at line "
                                  f"{mark.line + 1}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # noqa: D102
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    hash(key)
                except TypeError:
                    continue
                if key in seen:
                    raise _LimitError(
                        f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at "
                        f"line {seen[key].start_mark.line + 1})")
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: Any) -> int:
    """Nodes in the document once aliases are followed (a shared node counts once per
    reference), computed on the composed graph in time linear in its distinct nodes; raises
    :class:`_LimitError` past :data:`MAX_YAML_NODES` or for a node that contains itself."""
    memo: dict[int, int] = {}
    active: set[int] = set()
    # iterative post-order: (node, children visited?)
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            kids = _children(node)
            total = 1 + sum(memo[id(k)] for k in kids)
            if total > MAX_YAML_NODES:
                raise _LimitError(f"its aliases expand to more than {MAX_YAML_NODES:,} "
                                  "values")
            memo[key] = total
            continue
        if key in memo:
            continue
        if key in active:
            raise _LimitError("an alias refers to a value that contains it (recursive "
                              f"anchor at line {node.start_mark.line + 1})")
        active.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in active:
                raise _LimitError("an alias refers to a value that contains it (recursive "
                                  f"anchor at line {kid.start_mark.line + 1})")
            if id(kid) not in memo:
                stack.append((kid, False))
    return memo[id(root)]


def _children(node: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(text: str, *, source: str | Path | None, what: str = "YAML") -> Any:
    """Parse one YAML document safely (see the module docstring). Returns ``None`` for an empty
    document. Raises :class:`UserError` naming ``source`` on any problem."""
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _LimitError as exc:
        raise InputRefused(f"refused {what}: {exc}", source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"malformed YAML{where}: {problem}", source=source) from None
    except RecursionError:  # pragma: no cover - the depth limit comes first
        raise InputRefused(f"refused {what}: nested too deeply", source=source) from None
    finally:
        loader.dispose()


# ============================================================================ JSON and objects
def load_json(text: str, *, source: str | Path | None) -> Any:
    """Parse JSON text, refusing documents nested deeper than :data:`MAX_DEPTH`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON (line {exc.lineno}: {exc.msg})", source=source) from None
    except RecursionError:
        raise InputRefused(f"refused JSON: nested more than {MAX_DEPTH} levels deep",
                           source=source) from None
    check_depth(data, source=source)
    return data


def check_depth(data: Any, *, source: str | Path | None, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`UserError` when dicts and lists in ``data`` nest deeper than ``limit``
    (iterative: safe on any depth)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            kids = list(node.values())
        elif isinstance(node, list | tuple):
            kids = list(node)
        else:
            continue
        if depth > limit:
            raise InputRefused(f"refused input: nested more than {limit} levels deep",
                               source=source)
        stack.extend((k, depth + 1) for k in kids)
