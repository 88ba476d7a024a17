"""The plugin's log files: private from their creation, and cut to their end when too large."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from glidein_triton.worker import log_files


def test_a_log_is_private_even_when_it_was_there_before(tmp_path: Path) -> None:
    fresh, old = tmp_path / "new" / "server.log", tmp_path / "old.log"
    old.write_text("earlier\n")
    old.chmod(0o644)
    os.umask(0o000)
    try:
        for path in (fresh, old):
            descriptor = log_files.open_private(path)
            os.write(descriptor, b"line\n")
            os.close(descriptor)
    finally:
        os.umask(0o022)
    assert [stat.S_IMODE(path.stat().st_mode) for path in (fresh, old)] == [0o600, 0o600]
    assert old.read_text() == "earlier\nline\n"  # appended, not replaced


def test_a_log_over_its_limit_keeps_its_last_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "server.log"
    path.write_bytes(b"".join(b"line %04d\n" % number for number in range(1000)))  # 10 000 bytes
    assert not log_files.cap(path, limit=10_000, kept=100)
    assert log_files.cap(path, limit=9_999, kept=100)
    text = path.read_bytes()
    assert text.startswith(log_files.CUT_NOTE % 9_999)
    assert text.endswith(b"line 0999\n")
    lines = text.splitlines()[1:]
    assert lines == [b"line %04d" % number for number in range(991, 1000)]  # no half line first
    appending = log_files.open_private(path)  # a writer in append mode goes on at the new end
    os.write(appending, b"after\n")
    os.close(appending)
    assert path.read_bytes().endswith(b"line 0999\nafter\n")
    assert not log_files.cap(tmp_path / "absent.log")
