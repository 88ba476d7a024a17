"""Starting the agent (:mod:`agent`) from the startup script: its command line and its log.

Apart from the agent itself, so that the startup does not import the agent's modules (~30 ms) to start it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from glidein_triton.worker import glidein_paths, processes
from glidein_triton.worker.commands import spawn_detached

LOG_FILE_NAME = "glidein_triton_agent.log"
CODE_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from glidein_triton.worker.agent import main; main()"
)


def spawn(work_dir: Path, glidein_pid: int, period: float, environment: Mapping[str, str]) -> tuple[int, int]:
    """Start the agent in its own session; returns its (pid, start ticks). ``glidein_pid`` 0: not followed."""
    log_path = glidein_paths.plugin_dir(work_dir) / LOG_FILE_NAME
    ticks = processes.start_ticks(glidein_pid) if glidein_pid else 0
    argv = [sys.executable, "-I", "-S", "-c", BOOTSTRAP, str(CODE_ROOT), str(work_dir), str(glidein_pid)]
    pid = spawn_detached([*argv, str(ticks), str(period)], environment, log_path)
    return pid, processes.start_ticks(pid)
