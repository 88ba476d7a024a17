"""Cleanup script, run at glidein exit from ``.gwms.d/exec/cleanup`` as ``./<script> <glidein_config>``.

Writes the usage accounting (:mod:`accounting`) while the server still answers, stops the server (SIGTERM,
then SIGKILL after the grace period), stops the container instance, removes the plugin's temporary files
(job model links, reference counts, locks) and checks that nothing is left. Safe to run twice, or without
a startup; it always exits 0 (GlideinWMS ignores cleanup exit codes) and logs what it did.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from glidein_triton.worker import (
    accounting,
    failure_messages,
    files,
    glidein_paths,
    logs,
    model_registry,
    processes,
    runtime,
    server,
)
from glidein_triton.worker.ports import is_listening
from glidein_triton.worker.state import (
    EMPTY_REPOSITORY,
    JOB_REPOSITORY,
    JOB_SNAPSHOTS,
    PLUGIN_SOCKET_NAME,
    ServerState,
)
from glidein_triton.worker.triton_api import Server, TritonAPIError

#: The hooks' files in the plugin directory, removed at cleanup (the server log stays).
HOOK_FILES = (
    model_registry.REGISTRY_FILE,
    model_registry.USAGE_FILE,
    model_registry.LOCK_FILE,
    model_registry.RESTART_LOCK_FILE,
)
HOOK_DIRS = (JOB_REPOSITORY, JOB_SNAPSHOTS, model_registry.MODEL_LOCKS_DIR, EMPTY_REPOSITORY)

LOG = logging.getLogger(__name__)


def account(work_dir: Path, state: ServerState) -> None:
    """Write the accounting JSON and log its summary line; never fails the cleanup."""
    registry = model_registry.Registry(str(glidein_paths.plugin_dir(work_dir)), lock_timeout=10.0)
    try:
        server = Server(state.http_port, unix_socket=state.plugin_socket)
        current = accounting.model_totals(server.model_statistics(timeout=5.0))
    except TritonAPIError as error:
        LOG.warning("no live statistics (%s): accounting up to the last periodic check", error)
        current = None
    try:
        totals = accounting.Usage(registry).totals(current) if registry.exists() else current or {}
        document = accounting.report(state, totals, complete=current is not None)
        path = accounting.write(work_dir, document)
    except OSError as error:
        LOG.error("could not write the accounting: %s", error)
        return
    LOG.info("%s", accounting.summary_line(document, path))


def clean(work_dir: Path, environment: Mapping[str, str], known: ServerState | None = None) -> list[str]:
    """Stop what the state file in ``work_dir`` records (or ``known``, the agent's copy in memory);
    returns the problems left (empty: all clean)."""
    directory = glidein_paths.plugin_dir(work_dir)
    state_path = glidein_paths.state_file(work_dir)
    state = known or ServerState.load(state_path)
    if state is None:
        LOG.info("no Triton server recorded in %s: nothing to clean up", directory)
        return []
    uptime = time.time() - state.started_at if state.started_at else 0.0
    stop_agent(state)
    account(work_dir, state)
    problems = server.stop(state, environment)
    if state.pgid and processes.group_members(state.pgid):
        pids = processes.group_members(state.pgid)
        problems.append(failure_messages.GROUP_SURVIVED.format(pgid=state.pgid, pids=pids))
    listening = [
        port for port in (state.http_port, state.grpc_port, state.metrics_port) if port and is_listening(port)
    ]
    if listening:
        problems.append(failure_messages.PORTS_STILL_OPEN.format(ports=listening))
    for name in HOOK_DIRS:
        shutil.rmtree(directory / name, ignore_errors=True)  # links are removed, never followed
    for name in HOOK_FILES:
        remove(directory / name)
    remove(directory / PLUGIN_SOCKET_NAME)  # the process runtime's door made it; stopped, it is gone
    if not problems:  # else the instance records stay, for a later instance stop
        shutil.rmtree(directory / runtime.CONFIG_DIR_NAME, ignore_errors=True)
        shutil.rmtree(directory / runtime.DOOR_DIR_NAME, ignore_errors=True)  # the container's sockets
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


def stop_agent(state: ServerState) -> None:
    """End the agent (unless it is what runs this cleanup): the glidein's own cleanup is running."""
    pid = state.agent_pid
    if pid and pid != os.getpid() and processes.is_running(pid, state.agent_ticks):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        while processes.is_running(pid, state.agent_ticks) and time.monotonic() < deadline:
            time.sleep(0.02)


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
    files.private_umask()  # the plugin's files 0600/0700 whatever umask the glidein has
    logs.configure("glidein-triton-cleanup")
    if not arguments:
        print("usage: 00_glidein_triton_cleanup.sh glidein_config", file=sys.stderr)
        return 0
    for problem in clean(Path(arguments[0]).resolve().parent, os.environ):
        LOG.error("%s", problem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
