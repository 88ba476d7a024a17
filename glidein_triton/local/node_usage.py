"""What a node has in use, measured before and after a soak: processes, descriptors, ports, shm, disk.

Measured with psutil (the harness side may use it; the worker side reads /proc itself, standard library
only).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from glidein_triton.local.leftovers import SHARED_MEMORY

KIB = 1024


@dataclass(frozen=True)
class Metric:
    """One quantity that must not grow by more than ``tolerance`` (in its own unit)."""

    key: str
    label: str
    tolerance: float
    measure: Callable[[], float]


def user_processes(uid: int) -> int:
    """Running processes of user ``uid`` (zombies, which hold nothing but their pid, are not counted)."""
    count = 0
    for process in psutil.process_iter(["uids", "status"]):
        uids, status = process.info["uids"], process.info["status"]
        count += bool(uids) and uids.real == uid and status not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    return count


def open_descriptors() -> int:
    """Open file descriptors of this process."""
    return psutil.Process().num_fds()


def listening_tcp_ports() -> int:
    """TCP sockets in the LISTEN state, IPv4 and IPv6."""
    return sum(1 for connection in psutil.net_connections("tcp") if connection.status == psutil.CONN_LISTEN)


def shared_memory_files() -> int:
    return sum(1 for _ in SHARED_MEMORY.iterdir())


def shared_memory_kib() -> float:
    return disk_usage(SHARED_MEMORY) / KIB


def disk_usage(path: Path, skip: Path | None = None) -> int:
    """Bytes allocated to the files under ``path`` (as du counts them, links not followed)."""
    total = 0
    for directory, subdirectories, files in os.walk(path, onerror=lambda _error: None):
        if skip is not None:
            subdirectories[:] = [name for name in subdirectories if Path(directory, name) != skip]
        for name in [*files, *subdirectories]:
            try:
                total += Path(directory, name).lstat().st_blocks * 512
            except OSError:
                continue
    return total


def metrics(work_dir: Path, tolerances: dict[str, float] | None = None) -> list[Metric]:
    """The soak's measurements; ``tolerances`` replaces default tolerances by key."""
    temporary = Path(tempfile.gettempdir())  # the node's temporary directory is one of the things measured
    wanted = [
        Metric(
            "processes", f"running processes of user {os.getuid()}", 2, lambda: user_processes(os.getuid())
        ),
        Metric("descriptors", "open file descriptors of the soak", 2, open_descriptors),
        Metric("ports", "listening TCP ports", 2, listening_tcp_ports),
        Metric("shm-files", f"files in {SHARED_MEMORY}", 0, shared_memory_files),
        Metric("shm-kib", f"KiB in {SHARED_MEMORY}", 0, shared_memory_kib),
        Metric("work-dir-kib", "KiB used in the work directory", 256, lambda: disk_usage(work_dir) / KIB),
        Metric(
            "tmp-kib",
            f"KiB used in {temporary} (work directory apart)",
            1024,
            lambda: disk_usage(temporary, skip=work_dir) / KIB,
        ),
    ]
    chosen = tolerances or {}
    unknown = set(chosen) - {metric.key for metric in wanted}
    if unknown:
        raise ValueError(
            f"unknown metric {', '.join(sorted(unknown))}: use {', '.join(metric.key for metric in wanted)}"
        )
    return [
        Metric(metric.key, metric.label, chosen.get(metric.key, metric.tolerance), metric.measure)
        for metric in wanted
    ]
