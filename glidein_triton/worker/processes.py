"""Processes and process groups, read from /proc (Linux worker nodes) and signalled safely."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
SHARED_MEMORY = "/dev/shm/"  # noqa: S108 (where POSIX shared memory lives; only files our processes mapped)


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name; None when there is no such process."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    return text.rsplit(")", 1)[1].split()


def start_ticks(pid: int) -> int:
    """When the process started (clock ticks after boot); 0 when it is gone. Guards against pid reuse."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else 0


def _alive(pid: int, fields: list[str]) -> bool:
    """Not a zombie; or a zombie whose other threads still exit (and still hold its sockets and files)."""
    if fields[0] not in ("Z", "X"):
        return True
    try:
        tasks = [task for task in (PROC / str(pid) / "task").iterdir() if task.name != str(pid)]
    except OSError:
        return False
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            return True
    return False


def is_running(pid: int, ticks: int = 0) -> bool:
    """Whether ``pid`` is alive (zombies are not), and is still the process started at ``ticks``."""
    fields = _stat_fields(pid)
    if not fields or not _alive(pid, fields):
        return False
    return not ticks or int(fields[19]) == ticks


def group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) of process group ``pgid``."""
    members = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[2]) == pgid and _alive(int(entry.name), fields):
                members.append(int(entry.name))
    return members


def signal_group(pgid: int, signum: int) -> None:
    """Send ``signum`` to the process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no live process is left in the group; True if it emptied in time."""
    deadline = time.monotonic() + timeout
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def shared_memory_files(pids: list[int]) -> set[Path]:
    """Files of /dev/shm that the processes have mapped (the python backend's shared-memory regions)."""
    files = set()
    for pid in pids:
        try:
            maps = (PROC / str(pid) / "maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith(SHARED_MEMORY):
                files.add(Path(fields[5].split(" (deleted)")[0]))
    return files


def stop_group(pgid: int, grace: float) -> bool:
    """SIGTERM the group, then SIGKILL what is left after ``grace`` seconds; True if all are gone.

    A killed server cannot remove its shared-memory regions, so the /dev/shm files its processes had
    mapped are removed once they are gone.
    """
    if not group_members(pgid):
        return True
    signal_group(pgid, signal.SIGTERM)
    if wait_group_gone(pgid, grace):
        return True
    leftovers = shared_memory_files(group_members(pgid))
    signal_group(pgid, signal.SIGKILL)
    gone = wait_group_gone(pgid, 5.0)
    if gone:
        remove_files(leftovers)
    return gone


def remove_files(paths: Iterable[str | Path]) -> None:
    """Remove files that may already be gone."""
    for path in paths:
        with contextlib.suppress(OSError):
            Path(path).unlink()
