"""Starting the server from a launch plan, waiting until it is ready, and stopping it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from glidein_triton.worker import door, processes, runtime, server_report, triton_release
from glidein_triton.worker.commands import run_quietly, spawn_detached
from glidein_triton.worker.errors import (
    ModelLoadError,
    OptionRefusedError,
    PortInUseError,
    ReadinessTimeoutError,
    ServerStartError,
    TritonSetupError,
    VOConfigError,
)
from glidein_triton.worker.state import PLUGIN_SOCKET_NAME, LaunchPlan, ServerState
from glidein_triton.worker.triton_api import Server

LOG = logging.getLogger(__name__)

TEARDOWN_TIMEOUT = 60.0
LOG_TAIL_LINES = 25
#: Readiness polls go to loopback and cost about a millisecond: poll often while a server usually gets
#: ready (a few seconds), then back off for slow model loads.
FAST_POLL_INTERVAL = 0.01
FAST_POLL_SECONDS = 5.0
MAX_POLL_INTERVAL = 0.5
MIB = 1 << 20
#: While the server starts, what it is loading is logged after PROGRESS_FIRST seconds, then at twice the
#: previous interval up to PROGRESS_MAX: eight lines in the longest wait of the default timeout (240 s).
PROGRESS_FIRST = 5.0
PROGRESS_MAX = 40.0
PORT_CLASH_WORDS = ("already in use", "Address in use", "Failed to bind")
#: Under RLIMIT_DATA, a thread stack (8 MiB) or buffer that does not fit fails: a server process this close
#: to its limit is held by it (measured: 253 of 256 MiB while the python backend waited for its stub).
LIMIT_MARGIN_MIB = 16
#: Exits of a crash, which a failed allocation ends in when the code does not check it.
CRASH_CODES = (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS)


def log_tail(path: str | Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of the server log, for error messages."""
    try:
        with Path(path).open(errors="replace") as log:
            return "".join(deque(log, maxlen=lines)).rstrip()
    except OSError:
        return "(no server log)"


def _evidence(argv: list[str], code: int | None, log_path: str | Path) -> str:
    status = "still running" if code is None else f"exit code {code}"
    return f"command: {' '.join(argv)}\n{status}\nlast lines of {log_path}:\n{log_tail(log_path)}"


def run_command(
    argv: list[str], environment: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a runtime command (instance start or stop) to completion, output captured, no stdin."""
    LOG.info("running %s", argv)
    return run_quietly(argv, timeout, environment)


def run_prepare(plan: LaunchPlan, environment: Mapping[str, str], timeout: float) -> None:
    """Run the plan's preparation commands (an instance start) to completion, each within ``timeout``."""
    for argv in plan.prepare:
        try:
            result = run_command(argv, environment, timeout)
        except subprocess.TimeoutExpired as error:
            raise ServerStartError(
                f"{plan.runtime} instance start took more than {timeout:g} s "
                "(GLIDEIN_TRITON_INSTANCE_START_TIMEOUT; a remote image is downloaded and converted then)",
                evidence=f"command: {' '.join(argv)}",
            ) from error
        except OSError as error:
            raise ServerStartError(f"{plan.runtime} instance could not be started: {error}") from error
        if result.returncode != 0:
            output = (result.stderr + result.stdout).strip()[-3000:]
            raise ServerStartError(
                f"{plan.runtime} instance could not be started",
                evidence=f"command: {' '.join(argv)}\nexit code {result.returncode}\n{output}",
            )


def launch(
    plan: LaunchPlan,
    log_path: Path,
    environment: Mapping[str, str],
    stop_grace: float,
    tag: str = "",
    plugin_socket: Path | None = None,
) -> ServerState:
    """Start the server process in a session of its own (its own process group), output to ``log_path``,
    behind the front door (:func:`runtime.behind_door`; ``plugin_socket``: the door's plugin route, by
    default ``server.log``'s directory's ``admin.sock``).

    ``tag`` (see :mod:`processes`) goes into its environment, which every process it starts inherits.
    """
    env = dict(environment)
    env.update(plan.environment)
    if tag:
        env[processes.TAG_VARIABLE] = tag
    LOG.info("starting %s", plan.server)
    socket_path = Path(plan.plugin_socket) if plan.plugin_socket else None
    socket_path = socket_path or plugin_socket or log_path.parent / PLUGIN_SOCKET_NAME
    argv = runtime.behind_door(plan, socket_path)
    try:
        pid = spawn_detached(argv, env, log_path, plan.memory_limit * MIB)
    except OSError as error:
        raise ServerStartError(f"cannot run {plan.server[0]}: {error.strerror}") from error
    return ServerState.from_plan(
        plan,
        pid=pid,
        pgid=pid,
        start_ticks=processes.start_ticks(pid),
        log_path=str(log_path),
        stop_grace=stop_grace,
        started_at=time.time(),
        process_tag=tag,
        plugin_socket=str(socket_path) if argv != plan.server or plan.plugin_socket else "",
    )


def _exit_code(pid: int) -> int | None:
    """The exit code of our child ``pid`` if it has ended (reaping it), else None."""
    try:
        finished, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None if processes.is_running(pid) else -1
    if finished == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def _first_error(log_text: str) -> str:
    """The server's first error line, for the end of a message."""
    return server_report.first_error(log_text) or "no error line in its log"


def door_line(tail: str) -> str:
    """The front door's line of the server's log on why it could not start the server (empty: none)."""
    lines = tail.splitlines()
    start = (door.NO_NAMESPACE, door.CANNOT_LISTEN)
    found = (line for line in lines if line.startswith(door.PROGRAM) and any(w in line for w in start))
    return next(found, "").strip()


def limit_is_the_cause(state: ServerState, log_text: str, code: int | None) -> bool:
    """Whether the data limit stopped the server: its log shows a failed allocation, it crashed (exit
    ``code``), or, still running, a process of it is within LIMIT_MARGIN_MIB of the limit (a thread it
    waits for could not start: the python backend's stub under 256 MiB)."""
    if not state.memory_limit:
        return False
    if server_report.allocation_failure(log_text):
        return True
    if code is not None:
        return code in CRASH_CODES
    members = processes.group_members(state.pgid) if state.pgid else []
    used = max((processes.data_size_mib(pid) for pid in members or [state.pid]), default=0)
    return used >= state.memory_limit - LIMIT_MARGIN_MIB


def door_error(tail: str, said: str, evidence: str) -> TritonSetupError | None:
    """The error of a front door that could not start the server (None when the log does not say so): no
    namespace of its own for the process runtime's server; the container's relay did not start (the VO's
    when the image has no python3, else what the runtime said)."""
    if door.NO_NAMESPACE in tail:
        return ServerStartError(
            f"the front door found {door.NO_NAMESPACE}, so the server is not started (its HTTP API would "
            "be open to every local user): the node must allow unprivileged user namespaces "
            f"(user.max_user_namespaces > 0): {said}",
            evidence=evidence,
        )
    lines = tail.splitlines()
    ended = next((index for index, line in enumerate(lines) if door.NO_RELAY in line), None)
    if ended is None:
        return None
    said = next((line.strip() for line in lines[:ended] if runtime.CONTAINER_PYTHON in line), "")
    if said:
        message = (
            f"{door.NO_RELAY}: the image needs {runtime.CONTAINER_PYTHON} (GLIDEIN_TRITON_IMAGE): {said}"
        )
        return VOConfigError(message, evidence=evidence)
    before = lines[ended - 1].strip() if ended else "no output"
    return ServerStartError(f"{door.NO_RELAY}: {before}", evidence=evidence)


def exit_error(state: ServerState, code: int) -> TritonSetupError:
    """The error of a server that exited before it was ready, from its log: the cause it names first."""
    evidence = _evidence(state.argv, code, state.log_path)
    text = server_report.read_log(state.log_path)
    tail = log_tail(state.log_path)
    said = door_line(tail) or _first_error(text)
    refused = door_error(tail, said, evidence)
    if refused is not None:
        return refused
    if any(word in tail for word in PORT_CLASH_WORDS):
        return PortInUseError(f"tritonserver could not bind its ports: {said}", evidence=evidence)
    option = triton_release.unrecognized_option(tail)
    if option:
        return OptionRefusedError(
            f"tritonserver does not accept {option}: the server's Triton release is older than "
            "that option (docs/images.md lists what each release supports)",
            option=option,
            evidence=evidence,
        )
    if limit_is_the_cause(state, text, code):
        return ServerStartError(
            f"tritonserver exited before it was ready (its data limited to {state.memory_limit} MiB: "
            f"GLIDEIN_TRITON_SERVER_MEMORY_LIMIT): {said}",
            evidence=evidence,
        )
    if server_report.model_failure(said):
        return ModelLoadError(
            f"tritonserver could not load its startup models (GLIDEIN_TRITON_MODELS from "
            f"GLIDEIN_TRITON_MODEL_REPOSITORY): {said}",
            evidence=evidence,
        )
    return ServerStartError(f"tritonserver exited before it was ready: {said}", evidence=evidence)


def timeout_error(state: ServerState, timeout: float) -> ReadinessTimeoutError:
    """The error of a server still not ready after ``timeout`` seconds."""
    evidence = _evidence(state.argv, None, state.log_path)
    text = server_report.read_log(state.log_path)
    said = _first_error(text)
    if limit_is_the_cause(state, text, None):
        return ReadinessTimeoutError(
            f"tritonserver was not ready after {timeout:g} s (GLIDEIN_TRITON_READY_TIMEOUT; its data "
            f"limited to {state.memory_limit} MiB: GLIDEIN_TRITON_SERVER_MEMORY_LIMIT): {said}",
            evidence=evidence,
        )
    return ReadinessTimeoutError(
        f"tritonserver was not ready after {timeout:g} s (GLIDEIN_TRITON_READY_TIMEOUT): {said}",
        evidence=evidence,
    )


def wait_ready(state: ServerState, timeout: float) -> None:
    """Poll ``/v2/health/ready`` with backoff until it answers 200.

    An early exit of the server is noticed at once, and a port clash raises PortInUseError so that the
    caller can retry with other ports. Every failure carries the server's first error line, and the argv,
    exit code and log tail as evidence.
    """
    endpoint = Server(state.http_port, unix_socket=state.plugin_socket)
    started = time.monotonic()
    deadline = started + timeout
    delay = FAST_POLL_INTERVAL
    interval = PROGRESS_FIRST
    next_progress = started + interval
    while True:
        if endpoint.is_ready(timeout=1.0):
            state.ready_at = time.time()
            return
        code = _exit_code(state.pid)
        if code is not None:
            raise exit_error(state, code)
        now = time.monotonic()
        if now >= deadline:
            raise timeout_error(state, timeout)
        if now >= next_progress:
            LOG.info(
                "waiting for tritonserver to be ready (%.0f of %g s, GLIDEIN_TRITON_READY_TIMEOUT): %s",
                now - started,
                timeout,
                server_report.loading_progress(server_report.read_log(state.log_path)),
            )
            interval = min(interval * 2, PROGRESS_MAX)
            next_progress = now + interval
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        if time.monotonic() - started > FAST_POLL_SECONDS:
            delay = min(delay * 1.5, MAX_POLL_INTERVAL)


def stop(state: ServerState, environment: Mapping[str, str]) -> list[str]:
    """Stop the server (SIGTERM, then SIGKILL after the grace period) and run the teardown commands.

    Returns the problems met (empty when everything is gone); never raises for a process already gone.
    """
    problems = []
    if state.pgid and not processes.stop_group(state.pgid, state.stop_grace):
        problems.append(
            f"processes {processes.group_members(state.pgid)} of group {state.pgid} survived SIGKILL"
        )
    else:
        # A server that was killed (or crashed) before this stop could not remove its shared memory.
        processes.remove_files(state.shared_memory)
    # Processes that left the group (daemons of models) still carry the tag of the server's environment.
    survivors = processes.stop_tagged(state.process_tag, state.stop_grace)
    if survivors:
        problems.append(f"processes {survivors} tagged {processes.TAG_VARIABLE} survived SIGKILL")
    if state.pid:
        _exit_code(state.pid)
    for argv in state.teardown:
        try:
            result = run_command(argv, environment, TEARDOWN_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as error:
            problems.append(f"{' '.join(argv)}: {error}")
            continue
        if result.returncode != 0:
            # "no instance found" too: the instance ended before (it crashed), or was started with another
            # config dir, where it may still run.
            problems.append(
                f"{' '.join(argv)}: exit code {result.returncode}: {result.stderr.strip()[-500:]}"
            )
    return problems
