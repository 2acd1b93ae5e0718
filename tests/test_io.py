"""Atomic writes: an interrupted write leaves the previous file whole."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from simscale.io import write_json_atomic, write_with_atomic


def test_interrupted_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    write_json_atomic(target, {"a": 1})

    def boom(tmp: Path) -> None:
        tmp.write_text('{"a": 2, "half', encoding="utf-8")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_with_atomic(target, boom)
    assert target.read_text(encoding="utf-8").strip() == '{\n  "a": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary left


def test_written_files_are_readable_like_ordinary_files(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_json_atomic(target, {"nan": float("nan")})
    assert target.read_text(encoding="utf-8").strip() == '{\n  "nan": null\n}'
    assert target.stat().st_mode & stat.S_IRGRP  # not mkstemp's 0600
