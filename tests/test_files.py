"""write_atomically: whole files only, with the mode asked for, nothing left behind on failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glidein_triton.worker.files import write_atomically


def test_replaces_the_file_whole_with_the_mode_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    previous = os.umask(0o077)
    try:
        write_atomically(target, b"new", 0o644)
    finally:
        os.umask(previous)
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o644
    assert sorted(path.name for path in tmp_path.iterdir()) == ["state.json"]


def test_a_link_planted_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    (tmp_path / f".out.{os.getpid()}.tmp").symlink_to(victim)
    write_atomically(tmp_path / "out", b"data")
    assert victim.read_text() == "keep"
    assert (tmp_path / "out").read_bytes() == b"data"
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "kept").write_text("old")
    with pytest.raises(IsADirectoryError):
        write_atomically(target, b"data")  # the target is a directory: the rename fails
    assert (target / "kept").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["out"]
