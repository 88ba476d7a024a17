"""The server's state file: written before the wait for readiness, read by cleanup and later hooks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from glidein_triton.worker import failure_messages
from glidein_triton.worker.files import UntrustedFileError, private_directory, read_trusted, write_atomically

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs a periodic run ~4 ms to import; the annotations here are never evaluated
    from typing import Any

LOG = logging.getLogger(__name__)

LOG_FILE_NAME = "server.log"
#: The front door's plugin route (door.py): the Unix socket the plugin's own programs reach the server by.
PLUGIN_SOCKET_NAME = "admin.sock"
EMPTY_REPOSITORY = "empty_model_repository"
#: The second model repository the server serves: links to the model directories that jobs ask for.
JOB_REPOSITORY = "job_models"
#: The private copies of job models that those links point to (model_snapshot.py).
JOB_SNAPSHOTS = "job_snapshots"


def setting_default(name: str) -> Callable[[], Any]:
    """A default factory: the settings table's default for the ``Settings`` field ``name``.

    Imported when a state is made without the field (at startup, or from an older state file), not when one
    is loaded: the periodic, cleanup and agent runs would otherwise pay ~5 ms for the settings table.
    """

    def default() -> Any:
        from glidein_triton.worker.settings import default_value  # noqa: PLC0415

        return default_value(name)

    return default


@dataclass(frozen=True)
class LaunchPlan:
    """What to run: commands before the server, the server itself, and commands that tear it down."""

    runtime: str
    server: list[str]
    prepare: list[list[str]] = field(default_factory=list)
    teardown: list[list[str]] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    instance: str = ""
    #: False when the server's release has no --metrics-address, so that its metrics are off
    metrics: bool = True
    #: The server's data size limit (RLIMIT_DATA) in MiB; 0: none (GLIDEIN_TRITON_SERVER_MEMORY_LIMIT)
    memory_limit: int = 0
    #: The front door's plugin route when the plan's command is the door itself (the container runtime's);
    #: empty: the process runtime's default (``admin.sock`` beside ``server.log``)
    plugin_socket: str = ""


@dataclass
class ServerState:
    """What cleanup needs to stop everything the startup script started, and what the hooks need.

    The fields after ``argv`` were added for the pre-job, periodic and cleanup hooks; state files written
    without them load with the defaults (no restart plan: the periodic script then never restarts). The
    defaults of the operator's settings come from the settings table.
    """

    runtime: str
    pid: int = 0
    pgid: int = 0
    start_ticks: int = 0
    instance: str = ""
    teardown: list[list[str]] = field(default_factory=list)
    http_port: int = 0
    #: The door's plugin route to the server's HTTP API; empty when the server is not behind the door.
    plugin_socket: str = ""
    grpc_port: int = 0
    metrics_port: int = 0
    log_path: str = ""
    stop_grace: float = field(default_factory=setting_default("stop_grace"))
    started_at: float = 0.0
    ready_at: float = 0.0
    argv: list[str] = field(default_factory=list)
    #: The server's data size limit in MiB (0: none), set again at each restart.
    memory_limit: int = 0
    # The rest of the launch plan, to restart the server exactly as it was started (same ports).
    prepare: list[list[str]] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    # What the hooks need to know about the server.
    gpus: list[str] = field(default_factory=list)
    pinned_models: list[str] = field(default_factory=list)
    model_repository: str = ""
    ready_timeout: float = field(default_factory=setting_default("ready_timeout"))
    load_timeout: float = field(default_factory=setting_default("load_timeout"))
    instance_start_timeout: float = field(default_factory=setting_default("instance_start_timeout"))
    #: The operator's policy for job repositories (settings GLIDEIN_TRITON_JOB_/CODE_REPOSITORIES).
    job_repositories: list[str] = field(default_factory=list)
    code_repositories: list[str] = field(default_factory=list)
    #: MiB (GLIDEIN_TRITON_JOB_MODEL_SIZE_LIMIT)
    job_model_size_limit: int = field(default_factory=setting_default("job_model_size_limit"))
    #: Where cvmfsexec mounted CVMFS ("" at /cvmfs): jobs' /cvmfs repositories are translated into it.
    cvmfs_mount_dir: str = ""
    # Supervision by the periodic script.
    launched_at: float = 0.0
    restart_limit: int = 0
    restart_backoff: float = field(default_factory=setting_default("restart_backoff"))
    restart_window: float = field(default_factory=setting_default("restart_window"))
    #: Every restart counted (TritonRestarts); the times of the last restart_limit of them, for the window.
    restarts: int = 0
    restart_times: list[float] = field(default_factory=list)
    health_misses: int = 0
    #: An idle server whose resident memory stays high is restarted (GLIDEIN_TRITON_IDLE_MEMORY_GROWTH):
    #: the lowest resident memory (MiB) of this server life, and the runs in a row that found it too high.
    idle_memory_growth: int = field(default_factory=setting_default("idle_memory_growth"))
    idle_memory_floor: int = 0
    memory_high_checks: int = 0
    #: Requests served in this server life at the last periodic run (idle: none since).
    requests_seen: int = 0
    #: The periodic script's period (GLIDEIN_TRITON_PERIODIC_PERIOD): one run's waits stay within it.
    periodic_period: float = field(default_factory=setting_default("periodic_period"))
    #: /dev/shm files the server had mapped when it was ready: removed by cleanup if it died without doing so
    shared_memory: list[str] = field(default_factory=list)
    #: The agent (jobs' models; stops the server if the glidein ends without its cleanup).
    agent_pid: int = 0
    agent_ticks: int = 0
    #: The value of processes.TAG_VARIABLE in the server's environment: what cleanup sweeps for.
    process_tag: str = ""

    @classmethod
    def from_plan(cls, plan: LaunchPlan, **values: Any) -> ServerState:
        """The state of a server started (or about to be started) from ``plan``: its commands are kept, so
        that cleanup can tear it down and the periodic script can start it again the same way."""
        return cls(
            runtime=plan.runtime,
            instance=plan.instance,
            argv=plan.server,
            prepare=plan.prepare,
            teardown=plan.teardown,
            memory_limit=plan.memory_limit,
            **values,
        )

    def launch_plan(self) -> LaunchPlan:
        """The plan to start this server again (the environment is the recorded one, given at launch)."""
        return LaunchPlan(
            runtime=self.runtime,
            server=self.argv,
            prepare=self.prepare,
            teardown=self.teardown,
            instance=self.instance,
            memory_limit=self.memory_limit,
            plugin_socket=self.plugin_socket if self.runtime != "process" else "",
        )

    def save(self, path: Path) -> None:
        """Write atomically (temporary file, then rename) so a reader never sees half a file.

        Mode 0600 in a 0700 directory: the file holds the commands a restart runs (:meth:`load` refuses
        a file that another user could have written).
        """
        private_directory(path.parent)
        write_atomically(path, json.dumps(asdict(self), indent=1).encode())

    @classmethod
    def load(cls, path: Path) -> ServerState | None:
        """The recorded state, or None when there is none, it is unreadable, or another user could have
        written it (then nothing in it is run: it is logged as an error)."""
        try:
            data: dict[str, Any] = json.loads(read_trusted(path))
        except UntrustedFileError as error:
            LOG.error("%s", failure_messages.STATE_NOT_TRUSTED.format(reason=error))
            return None
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)
