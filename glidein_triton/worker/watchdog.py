"""The watchdog: stops the server when the glidein is gone without running its cleanup.

The startup script starts it once the server is ready, in a session of its own. It follows the process
that lives as long as the glidein, glidein_startup.sh (``GLIDEIN_STARTUP_PID`` in glidein_config), and stops
the server when ``MISSES`` checks in a row find it gone (killed, or the glidein ended with cleanup disabled).

Batch systems often delete the job's scratch directory, and the glidein work dir in it, as they kill the
glidein: so the watchdog keeps in memory what it needs to stop the server, read while the directory is
there (the state, re-read at each check as restarts change it; the instance's own process). With the
directory it runs the whole cleanup; without, it stops the server from its copy (SIGTERM, grace, SIGKILL,
the teardown argv), then ends the instance's process if the teardown could not find it (its records were
in the deleted directory). The glidein's own cleanup stops the watchdog (SIGTERM).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from glidein_triton.worker import cleanup, logs, processes, server
from glidein_triton.worker.commands import run_quietly, spawn_detached
from glidein_triton.worker.state import STATE_FILE_NAME, ServerState, state_dir

LOG = logging.getLogger(__name__)

MISSES = 3
LOG_FILE_NAME = "glidein_triton_watchdog.log"
CODE_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from glidein_triton.worker.watchdog import main; main()"
)
INSTANCE_STOP = ("instance", "stop")


def instance_process(state: ServerState, environment: Mapping[str, str]) -> tuple[int, int]:
    """(pid, start ticks) of the container instance's own process, from ``instance list --json`` run like
    the recorded ``instance stop``; (0, 0) without an instance or an answer."""
    stops = [argv for argv in state.teardown if tuple(argv[-3:-1]) == INSTANCE_STOP]
    if not state.instance or not stops:
        return 0, 0
    argv = [*stops[0][:-3], "instance", "list", "--json", state.instance]
    try:
        listed = run_quietly(argv, 60, environment)
        rows = json.loads(listed.stdout).get("instances", [])
        pid = int(next(row["pid"] for row in rows if row.get("instance") == state.instance))
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError, StopIteration) as error:
        LOG.warning("cannot find the process of instance %s: %r", state.instance, error)
        return 0, 0
    return pid, processes.start_ticks(pid)


def stop_from_memory(state: ServerState, instance: tuple[int, int], environment: Mapping[str, str]) -> None:
    """Stop the server from the watchdog's copy of the state (the work dir is gone)."""
    if not processes.is_running(state.pid, state.start_ticks):
        state.pid = state.pgid = 0  # gone already: its process group id may belong to another by now
    for problem in server.stop(state, environment):
        LOG.warning("%s", problem)
    pid, ticks = instance
    if pid and processes.is_running(pid, ticks):
        LOG.warning("instance %s (pid %d) still runs: stopping its process", state.instance, pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + max(state.stop_grace, 1.0)
        while processes.is_running(pid, ticks) and time.monotonic() < deadline:
            time.sleep(0.05)
        if processes.is_running(pid, ticks):
            os.kill(pid, signal.SIGKILL)


def watch(work_dir: Path, pid: int, ticks: int, period: float, environment: Mapping[str, str]) -> bool:
    """Follow ``pid`` until the glidein is gone, then stop the server; False when nothing was recorded.

    The glidein's own cleanup ends the watchdog (SIGTERM) before it stops the server.
    """
    state_path = state_dir(work_dir) / STATE_FILE_NAME
    state = ServerState.load(state_path)
    if state is None:
        return False
    instance = instance_process(state, environment)
    LOG.info(
        "following the glidein (pid %d) every %g s; server pid %d, instance pid %d",
        pid,
        period,
        state.pid,
        instance[0],
    )
    misses = 0
    while misses < MISSES:
        time.sleep(period)
        state = ServerState.load(state_path) or state  # restarts change it; the directory may be gone
        misses = 0 if processes.is_running(pid, ticks) else misses + 1
    LOG.warning("the glidein (pid %d) is gone without its cleanup: stopping the Triton server", pid)
    if state_path.is_file():
        cleanup.clean(work_dir, environment)
    else:
        LOG.warning("its work dir %s is gone: stopping the server recorded in memory", work_dir)
        stop_from_memory(state, instance, environment)
    return True


def spawn(work_dir: Path, glidein_pid: int, period: float, environment: Mapping[str, str]) -> tuple[int, int]:
    """Start the watchdog in its own session; returns its (pid, start ticks)."""
    # In the plugin's own directory: condor_startup.sh fails the glidein when it finds <work dir>/log
    # without <work dir>/execute ("Error creating monitor dirs"), so nothing may create it before HTCondor.
    log_path = state_dir(work_dir) / LOG_FILE_NAME
    ticks = processes.start_ticks(glidein_pid)
    argv = [sys.executable, "-I", "-S", "-c", BOOTSTRAP, str(CODE_ROOT), str(work_dir), str(glidein_pid)]
    pid = spawn_detached([*argv, str(ticks), str(period)], environment, log_path)
    return pid, processes.start_ticks(pid)


def main(argv: Sequence[str] | None = None) -> int:
    work_dir, pid, ticks, period = list(sys.argv[1:] if argv is None else argv)
    logs.configure("glidein-triton-watchdog")
    os.chdir("/")  # the work dir may be deleted while the watchdog runs: commands must not start in it
    watch(Path(work_dir), int(pid), int(ticks), float(period), os.environ)
    return 0
