"""The startup's guard: stops the server when the startup script is killed before the agent runs.

glidein_startup.sh traps no signal while the custom scripts run, and SIGKILL cannot be trapped: a batch
system that kills the glidein's process group ends the startup script with it, while the server, in a
session of its own, runs on, and no agent follows the glidein yet. So the startup starts this guard, in a
session of its own, before it launches the server, and stops it once the agent runs (or the startup failed
and stopped the server). Every ``POLL`` seconds the guard checks the startup script's process (pid and
start time); after ``MISSES`` misses in a row, if glidein_startup.sh (``GLIDEIN_STARTUP_PID``) is gone too,
it runs the cleanup on what the state file records, and ends. A glidein that is still there fails on its
killed script and runs its cleanup scripts, which stop the server.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from glidein_triton.worker import glidein_paths, log_files, logs, processes
from glidein_triton.worker.agent_launch import LOG_FILE_NAME
from glidein_triton.worker.state import ServerState

LOG = logging.getLogger(__name__)

POLL = 0.5
MISSES = 3


def spawn(work_dir: Path, environment: Mapping[str, str], glidein_startup_pid: str) -> int:
    """Start the guard of this process (the startup script) and of ``glidein_startup_pid`` (a number, else
    not followed) in a session of its own, logging with the agent; returns its pid.

    A fork, not a new interpreter: the guard needs nothing the startup has not imported, and a second Python
    starting beside the server's own start cost the startup ~10 ms on two cores."""
    glidein_pid = int(glidein_startup_pid) if glidein_startup_pid.strip().isdigit() else 0
    startup = (os.getpid(), processes.start_ticks(os.getpid()))
    glidein = (glidein_pid, processes.start_ticks(glidein_pid) if glidein_pid else 0)
    log = log_files.open_private(glidein_paths.plugin_dir(work_dir) / LOG_FILE_NAME)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid:
        os.close(log)
        return pid
    try:  # the guard: stdin /dev/null, its log as stdout and stderr, nothing else of the startup's open
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the startup's handler: stop() ends it
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        logs.configure("glidein-triton-guard")
        os.chdir("/")  # the work dir may be deleted meanwhile: commands must not start in it
        watch(work_dir, startup, glidein, environment)
    finally:
        logs.exit_now(0)


def stop(pid: int) -> None:
    """End the guard (the startup is done with it) and reap it."""
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def watch(
    work_dir: Path, startup: tuple[int, int], glidein: tuple[int, int], environment: Mapping[str, str]
) -> bool:
    """Wait until the startup script (pid, start ticks) is gone; True when it left a server to stop, with
    glidein_startup.sh (pid 0: not followed) gone as well."""
    misses = 0
    while misses < MISSES:
        time.sleep(POLL)
        misses = 0 if processes.is_running(*startup) else misses + 1
    if glidein[0] and processes.is_running(*glidein):
        return False  # the glidein's cleanup scripts stop the server
    if ServerState.load(glidein_paths.state_file(work_dir)) is None:
        return False
    LOG.warning(
        "the startup script (pid %d) was killed before the agent ran, and the glidein is gone: stopping the "
        "Triton server",
        startup[0],
    )
    from glidein_triton.worker import cleanup  # noqa: PLC0415 (only this rare case needs it)

    for problem in cleanup.clean(work_dir, environment):
        LOG.warning("%s", problem)
    return True
