"""Cleanup script, run at glidein exit from ``.gwms.d/exec/cleanup`` as ``./<script> <glidein_config>``.

Stops the server (SIGTERM, then SIGKILL after the grace period), stops the container instance, removes the
plugin's temporary files and checks that nothing is left. Safe to run twice, or without a startup; it
always exits 0 (GlideinWMS ignores cleanup exit codes) and logs what it did.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import logs, processes, server
from .ports import is_listening
from .state import EMPTY_REPOSITORY, STATE_FILE_NAME, TOKEN_FILE_NAME, ServerState, state_dir

LOG = logging.getLogger(__name__)


def clean(work_dir: Path, environment: Mapping[str, str]) -> list[str]:
    """Stop what the state file in ``work_dir`` records; returns the problems left (empty: all clean)."""
    directory = state_dir(work_dir)
    state_path = directory / STATE_FILE_NAME
    state = ServerState.load(state_path)
    if state is None:
        # A token without a state file: the startup was killed before it recorded a server.
        remove(directory / TOKEN_FILE_NAME)
        LOG.info("no Triton server recorded in %s: nothing to clean up", directory)
        return []
    uptime = time.time() - state.started_at if state.started_at else 0.0
    problems = server.stop(state, environment)
    if state.pgid and processes.group_members(state.pgid):
        problems.append(f"process group {state.pgid} still has {processes.group_members(state.pgid)}")
    listening = [
        port for port in (state.http_port, state.grpc_port, state.metrics_port) if port and is_listening(port)
    ]
    if listening:
        problems.append(f"ports {listening} still accept connections")
    shutil.rmtree(directory / EMPTY_REPOSITORY, ignore_errors=True)
    remove(directory / TOKEN_FILE_NAME)
    remove(state_path)
    LOG.info(
        "stopped tritonserver (pid %d, %s%s) after %.0f s: %s",
        state.pid,
        state.runtime,
        f", instance {state.instance}" if state.instance else "",
        uptime,
        "nothing left running" if not problems else "; ".join(problems),
    )
    return problems


def remove(path: Path) -> None:
    """Remove one of the plugin's files; a failure (e.g. a read-only directory) is logged, not raised."""
    if not os.path.lexists(path):
        return  # a read-only file system refuses even to unlink what is not there
    try:
        path.unlink()
    except OSError as error:
        LOG.error("cannot remove %s: %s", path, error)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    logs.configure("glidein-triton-cleanup")
    if not arguments:
        print("usage: glidein_triton_cleanup.sh glidein_config", file=sys.stderr)
        return 0
    for problem in clean(Path(arguments[0]).resolve().parent, os.environ):
        LOG.error("%s", problem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
