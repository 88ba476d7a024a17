"""The startup's guard: stops the server when the startup script is killed before the agent runs.

glidein_startup.sh traps no signal while the custom scripts run, and SIGKILL cannot be trapped: a batch
system that kills the glidein's process group ends the startup script with it, while the server, in a
session of its own, runs on, and no agent follows the glidein yet. So the startup starts this guard, in a
session of its own, before it launches the server, and stops it once the agent runs (or the startup failed
and stopped the server). Every ``POLL`` seconds the guard checks the startup script's process (pid and
start time); after ``MISSES`` misses in a row it runs the cleanup on what the state file records, and ends.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from glidein_triton.worker import logs, processes
from glidein_triton.worker.agent_launch import CODE_ROOT, LOG_FILE_NAME
from glidein_triton.worker.commands import spawn_detached
from glidein_triton.worker.state import STATE_FILE_NAME, ServerState, state_dir

LOG = logging.getLogger(__name__)

POLL = 0.5
MISSES = 3
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from glidein_triton.worker.startup_guard import main; main()"
)


def spawn(work_dir: Path, environment: Mapping[str, str]) -> int:
    """Start the guard of this process (the startup script) in its own session, logging with the agent."""
    pid = os.getpid()
    argv = [sys.executable, "-I", "-S", "-c", BOOTSTRAP, str(CODE_ROOT), str(work_dir), str(pid)]
    return spawn_detached(
        [*argv, str(processes.start_ticks(pid))], environment, state_dir(work_dir) / LOG_FILE_NAME
    )


def stop(pid: int) -> None:
    """End the guard (the startup is done with it) and reap it."""
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def watch(work_dir: Path, pid: int, ticks: int, environment: Mapping[str, str], poll: float = POLL) -> bool:
    """Wait until the startup script (``pid``, ``ticks``) is gone; True when a server was left to stop."""
    misses = 0
    while misses < MISSES:
        time.sleep(poll)
        misses = 0 if processes.is_running(pid, ticks) else misses + 1
    if ServerState.load(state_dir(work_dir) / STATE_FILE_NAME) is None:
        return False
    LOG.warning(
        "the startup script (pid %d) was killed before the agent ran: stopping the Triton server", pid
    )
    from glidein_triton.worker import cleanup  # noqa: PLC0415 (only this rare case needs it)

    for problem in cleanup.clean(work_dir, environment):
        LOG.warning("%s", problem)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    work_dir, pid, ticks = list(sys.argv[1:] if argv is None else argv)
    logs.configure("glidein-triton-guard")
    os.chdir("/")  # the work dir may be deleted meanwhile: commands must not start in it
    watch(Path(work_dir), int(pid), int(ticks), os.environ)
    return 0
