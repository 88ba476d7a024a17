"""Health of the running server, and its restart from the launch plan recorded at startup.

A server that does not answer ``/v2/health/ready`` is restarted when its process is gone, or when it is
still there but has missed several checks in a row after its readiness timeout (hung). A restart stops
what is left (process group, container instance), then runs the recorded plan again: the instance start,
and the server with the same argv (so the same ports: the URLs in the machine ad were published once,
and condor_startup.sh does not read them again) and the environment the startup script had.

Restarts are a rate, not a count: at most GLIDEIN_TRITON_RESTART_LIMIT within GLIDEIN_TRITON_RESTART_WINDOW
seconds (0: the glidein's whole life), a restart older than the window given back. Anyone who can reach the
server can crash it before any credential is checked (a request larger than its memory limit); a count
would let four such requests keep it down for the rest of the glidein, a rate brings it back once they
stop. Within the window they are spaced: the n-th waits GLIDEIN_TRITON_RESTART_BACKOFF * 2^(n-2) seconds
after the previous one (at most until it leaves the window). A restart of an idle server for its memory
(:func:`memory_restart_due`) is not counted.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from glidein_triton.worker import failure_messages, processes
from glidein_triton.worker.state import ServerState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from glidein_triton.worker.gpus import GPU
    from glidein_triton.worker.settings import Settings
    from glidein_triton.worker.state import LaunchPlan

LOG = logging.getLogger(__name__)

MISS_LIMIT = 3
#: Periodic runs in a row that find an idle server's resident memory too high before it is restarted.
MEMORY_CHECKS = 2
RESTART_READY_WAIT = 30.0
#: Words in the names of environment variables that are not written into the state file.
SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
#: Shared file systems that job model repositories live on, bound into a server container when present.
SHARED_FILE_SYSTEMS = ("/cvmfs",)


def same_path_roots(work_dir: Path, cvmfs_mount: str = "") -> list[str]:
    """Directories a server container gets at their own path, so links to job models resolve in it.

    The glidein directory (job sandboxes are in its execute/ directory) and /cvmfs when the node has it, or
    where cvmfsexec mounted CVMFS (``cvmfs_mount``: job repositories there are linked at their real path).
    """
    shared = [cvmfs_mount] if cvmfs_mount else SHARED_FILE_SYSTEMS
    return [str(work_dir), *(path for path in shared if Path(path).is_dir())]


def record_launch(
    state: ServerState,
    plan: LaunchPlan,
    environment: Mapping[str, str],
    settings: Settings,
    gpus: Sequence[GPU],
    model_repository: str,
    cvmfs_mount: str = "",
) -> None:
    """Put into ``state`` what a restart needs (the plan, the environment) and what the hooks need."""
    state.environment = {
        name: value
        for name, value in {**environment, **plan.environment}.items()
        if not any(word in name.upper() for word in SECRET_WORDS)
    }
    state.gpus = [f"{gpu.label} ({gpu.uuid})" for gpu in gpus]
    state.pinned_models = list(settings.models)
    state.model_repository = model_repository
    state.ready_timeout = settings.ready_timeout
    state.instance_start_timeout = settings.instance_start_timeout
    state.load_timeout = settings.load_timeout
    state.job_repositories = list(settings.job_repositories)
    state.code_repositories = list(settings.code_repositories)
    state.job_model_size_limit = settings.job_model_size_limit
    state.cvmfs_mount_dir = cvmfs_mount
    state.restart_limit = settings.restart_limit
    state.restart_backoff = settings.restart_backoff
    state.restart_window = settings.restart_window
    state.idle_memory_growth = settings.idle_memory_growth
    state.periodic_period = settings.periodic_period
    state.launched_at = state.started_at


def is_alive(state: ServerState) -> bool:
    return bool(state.pid) and processes.is_running(state.pid, state.start_ticks)


def is_hung(state: ServerState, now: float) -> bool:
    """Alive but unready for MISS_LIMIT checks in a row, and past its readiness timeout."""
    return state.health_misses >= MISS_LIMIT and now - state.started_at > state.ready_timeout


def has_plan(state: ServerState) -> bool:
    """Whether the state records how to start the server again (older state files do not)."""
    return bool(state.argv and state.environment)


def recent_restarts(state: ServerState, now: float) -> list[float]:
    """When the counted restarts still within the window happened (all of them without a window)."""
    window = state.restart_window
    return [moment for moment in state.restart_times if not window or now - moment < window]


def restart_refusal(state: ServerState, now: float) -> str:
    """Why a restart may not happen now ("" when it may); see :func:`gave_up` for the final ones."""
    if not has_plan(state):
        return "no launch plan recorded at startup"
    limit, window = state.restart_limit, state.restart_window
    recent = recent_restarts(state, now)
    if not limit or (not window and len(recent) >= limit):
        return failure_messages.RESTART_LIMIT_FOR_GOOD.format(limit=limit)
    if len(recent) >= limit:
        until = time.strftime("%H:%M:%S", time.localtime(recent[-limit] + window))
        return failure_messages.RESTART_LIMIT.format(restarts=len(recent), window=window, until=until)
    if recent:  # (a wait longer than the window ends with it: the restarts are out of it by then)
        wait_until = recent[-1] + state.restart_backoff * 2 ** (len(recent) - 1)
        if now < wait_until:
            return f"backing off until {time.strftime('%H:%M:%S', time.localtime(wait_until))}"
    return ""


def gave_up(refusal: str) -> bool:
    """Whether a refusal is final (no restart will ever happen)."""
    return "backing off until" not in refusal


def memory_restart_due(state: ServerState, resident_mib: int, idle: bool) -> bool:
    """Note an idle server's resident memory; True when it has stayed too high and it should be restarted.

    Too high: over the lowest resident memory of this server life (when it got ready, or seen idle) plus
    GLIDEIN_TRITON_IDLE_MEMORY_GROWTH, for MEMORY_CHECKS runs in a row. Not idle (a job holds a model, or
    requests were served since the last run): nothing is due. The caller saves ``state``.
    """
    if not state.idle_memory_growth or not idle or resident_mib <= 0 or not has_plan(state):
        state.memory_high_checks = 0
        return False
    if not state.idle_memory_floor or resident_mib < state.idle_memory_floor:
        state.idle_memory_floor = resident_mib
    if resident_mib <= state.idle_memory_floor + state.idle_memory_growth:
        state.memory_high_checks = 0
        return False
    state.memory_high_checks += 1
    return state.memory_high_checks >= MEMORY_CHECKS


def launch_environment(state: ServerState) -> dict[str, str]:
    """The startup script's environment, recorded at startup, for a restart from the periodic script.

    Process-family markers (HTCondor's ``_CONDOR_ANCESTOR_<pid>``...) in it are the outer batch system's,
    which follows the glidein's processes with them: kept. The glidein's own startd, which runs the periodic
    script, started after it and adds its own markers: they are not in this environment, so a restarted
    server is never counted in (and killed with) the periodic script's family.
    """
    return dict(state.environment)


def stop_leftovers(state: ServerState) -> None:
    """Stop what is left of the server (a hung process, its group, the instance), logging any problem."""
    from glidein_triton.worker import server  # noqa: PLC0415  (see restart)

    for problem in server.stop(state, launch_environment(state)):
        LOG.warning("while stopping what was left of the server: %s", problem)


def restart(
    state: ServerState, state_path: Path, budget: float = RESTART_READY_WAIT, counted: bool = True
) -> str:
    """Restart the server from the recorded plan; returns "" when it is ready, else what went wrong.

    The attempt is counted (unless ``counted`` is False: a restart for memory) and saved before it is made.
    The instance start and the wait for readiness together take at most ``budget`` seconds (what is left of
    the periodic run's period); a server that is still starting then is left to start: the next periodic
    run sees it ready or not.
    """
    deadline = time.monotonic() + budget
    # Imported here: they bring subprocess and urllib (40 ms), which a periodic run of a healthy server
    # does not need.
    from glidein_triton.worker import server  # noqa: PLC0415
    from glidein_triton.worker.errors import ServerStartError  # noqa: PLC0415

    environment = launch_environment(state)
    stop_leftovers(state)
    if counted:
        state.restarts += 1
        # The last restart_limit of them are all the window's count needs.
        now = time.time()
        state.restart_times = [*recent_restarts(state, now), now][-max(1, state.restart_limit) :]
    state.health_misses = state.memory_high_checks = state.idle_memory_floor = 0
    state.pid = state.pgid = state.start_ticks = 0
    state.save(state_path)
    plan = state.launch_plan()
    try:
        server.run_prepare(
            plan, environment, max(1.0, min(state.instance_start_timeout, deadline - time.monotonic()))
        )
        launched = server.launch(plan, Path(state.log_path), environment, state.stop_grace, state.process_tag)
    except ServerStartError as error:
        state.save(state_path)
        return error.detail()
    state.pid, state.pgid, state.start_ticks = launched.pid, launched.pgid, launched.start_ticks
    state.started_at = launched.started_at
    state.save(state_path)
    LOG.info(
        "restarted tritonserver (%s), pid %d",
        f"restart {state.restarts}" if counted else "for its memory, not counted",
        state.pid,
    )
    try:
        wait = min(RESTART_READY_WAIT, state.ready_timeout, deadline - time.monotonic())
        server.wait_ready(state, max(1.0, wait))
    except ServerStartError as error:
        state.save(state_path)
        return error.detail()
    state.idle_memory_floor = processes.resident_kib(processes.descendants(state.pid)) // 1024
    state.save(state_path)
    return ""
