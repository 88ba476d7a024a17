"""Processes and process groups, read from /proc (Linux worker nodes) and signalled safely.

A process can leave the server's process group (``setsid``, a double-forked daemon of a python model), so
the server is also started with a tag in its environment, as HTCondor tags a job's processes: every process
it starts inherits ``GLIDEIN_TRITON_PROCESS_TAG=<random value of this glidein>``, and :func:`tagged` finds
them all in ``/proc/*/environ`` (the environment a process was started with, which it cannot clear).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
TAG_VARIABLE = "GLIDEIN_TRITON_PROCESS_TAG"
#: The python backend's default name prefix for its regions (``shm-region-prefix-name``).
REGION_PREFIX = "triton_python_backend_shm_region_"
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


def data_size_mib(pid: int) -> int:
    """The process's data segment (``VmData``: what RLIMIT_DATA limits) in MiB; 0 when it is gone."""
    try:
        text = (PROC / str(pid) / "status").read_text()
    except (OSError, ValueError):
        return 0
    for line in text.splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) // 1024
    return 0


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


def descendants(pid: int) -> list[int]:
    """``pid`` and the processes it started, and theirs (from /proc/<pid>/task/<tid>/children: a few reads,
    where :func:`group_members` reads every process of the node). Only ``pid`` when those files are absent."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            tasks = list((PROC / str(current) / "task").iterdir())
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError, ValueError):
                queue.extend(int(child) for child in (task / "children").read_text().split())
    return found


def resident_kib(pids: Iterable[int]) -> int:
    """The resident memory (VmRSS) of the processes, summed, in KiB; those gone count 0."""
    total = 0
    for pid in pids:
        try:
            lines = (PROC / str(pid) / "status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return total


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


def make_private(paths: Iterable[str | Path]) -> list[Path]:
    """Mode 0600 for those of ``paths`` this user owns that others may open; returns the ones changed.

    The python backend creates its /dev/shm regions 0644 whatever the umask (Boost.Interprocess sets the
    mode after creating them), which lets any local user read the tensors in them. The server's own
    descriptors stay valid; only new opens by others are refused.
    """
    changed = []
    uid = os.getuid()
    for path in map(Path, paths):
        try:
            status = path.stat()
            if status.st_uid == uid and status.st_mode & 0o077:
                path.chmod(0o600)
                changed.append(path)
        except OSError:
            continue  # gone already
    return changed


def private_shared_memory() -> list[Path]:
    """Make this user's python-backend regions in /dev/shm private (see make_private); a fraction of a ms.

    By name rather than by the server's memory maps: reading every process of the node is too slow for the
    pre-job and periodic hooks. Regions of the user's other glideins become 0600 too, which they do not mind.
    """
    try:
        regions = [path for path in Path(SHARED_MEMORY).iterdir() if path.name.startswith(REGION_PREFIX)]
    except OSError:
        return []  # a job container without /dev/shm
    return make_private(regions)


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


def new_tag() -> str:
    """A tag value of one glidein's server."""
    return os.urandom(16).hex()


def tagged(tag: str) -> list[int]:
    """Live processes of this user whose environment carries ``TAG_VARIABLE=tag``."""
    if not tag:
        return []
    marker = f"{TAG_VARIABLE}={tag}".encode()
    uid = os.getuid()
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue  # only the glidein user's processes: another user's environ is not readable anyway
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        fields = _stat_fields(int(entry.name))
        if marker in environment.split(b"\0") and fields and _alive(int(entry.name), fields):
            found.append(int(entry.name))
    return found


def stop_tagged(tag: str, grace: float) -> list[int]:
    """SIGTERM the tagged processes, SIGKILL what is left after ``grace`` seconds; returns the survivors."""
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        found = tagged(tag)
        if not found:
            return []
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        deadline = time.monotonic() + wait
        while tagged(tag) and time.monotonic() < deadline:
            time.sleep(0.05)
    return tagged(tag)
