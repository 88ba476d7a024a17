"""The watchdog: stops the server when the glidein is gone without running its cleanup.

The startup script starts it once the server is ready, in a session of its own. It follows the process
that lives as long as the glidein, glidein_startup.sh (``GLIDEIN_STARTUP_PID`` in glidein_config), and runs
the cleanup when ``MISSES`` checks in a row find it gone (killed, or the glidein ended with cleanup disabled).
It ends by itself once the state file is gone: the glidein's own cleanup ran (and also stops it).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from glidein_triton.worker import cleanup, logs, processes
from glidein_triton.worker.commands import spawn_detached
from glidein_triton.worker.state import STATE_FILE_NAME, state_dir

LOG = logging.getLogger(__name__)

MISSES = 3
LOG_FILE_NAME = "glidein_triton_watchdog.log"
CODE_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from glidein_triton.worker.watchdog import main; main()"
)


def watch(work_dir: Path, pid: int, ticks: int, period: float, environment: Mapping[str, str]) -> bool:
    """Follow ``pid`` until the state file is gone (False) or the glidein is gone and cleaned up (True)."""
    state_path = state_dir(work_dir) / STATE_FILE_NAME
    misses = 0
    while state_path.exists():
        time.sleep(period)
        misses = 0 if processes.is_running(pid, ticks) else misses + 1
        if misses >= MISSES:
            LOG.warning("the glidein (pid %d) is gone without its cleanup: stopping the Triton server", pid)
            cleanup.clean(work_dir, environment)
            return True
    return False


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
    watch(Path(work_dir), int(pid), int(ticks), float(period), os.environ)
    return 0
