"""Running other programs: short commands to completion, long-lived ones detached in a session of their own.

Command lines are lists, never given to a shell; nothing reads our stdin (GlideinWMS runs scripts with
``< /dev/null``, and a command that waited on it would hang the glidein).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from glidein_triton.worker import log_files


def run_quietly(
    argv: Sequence[str], timeout: float, environment: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion with its output captured; raises OSError or subprocess.TimeoutExpired."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=None if environment is None else dict(environment),
        stdin=subprocess.DEVNULL,
    )


def spawn_detached(
    argv: Sequence[str], environment: Mapping[str, str], log_path: Path, data_limit: int = 0
) -> int:
    """Start ``argv`` in a new session (its own process group), stdin from /dev/null, stdout and stderr
    appended to ``log_path`` (mode 0600), its data size limited to ``data_limit`` bytes (0: as ours);
    returns its pid. posix_spawn rather than Popen: the process outlives us."""
    log = log_files.open_private(log_path)
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
        ]
        with limited_data(data_limit):
            return os.posix_spawn(argv[0], list(argv), dict(environment), file_actions=actions, setsid=True)
    finally:
        os.close(log)


@contextlib.contextmanager
def limited_data(limit: int) -> Iterator[None]:
    """Our soft RLIMIT_DATA lowered to ``limit`` bytes (unchanged when 0, or when it is lower) while the
    block runs, then restored: a process started meanwhile keeps it, as posix_spawn cannot set a child's
    limits. Our own data (tens of MiB) stays far below any limit the settings allow."""
    if not limit:
        yield
        return
    import resource  # noqa: PLC0415 (only a server launch needs it)

    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    lowered = min(value for value in (limit, soft, hard) if value != resource.RLIM_INFINITY)
    resource.setrlimit(resource.RLIMIT_DATA, (lowered, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
