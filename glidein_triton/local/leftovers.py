"""What a simulated glidein leaves behind: processes, ports, shared memory, container instances, files.

A :class:`Watch` samples, while a glidein runs, the processes that belong to it: those whose command line
names a path under its directory or whose working directory is in it (the startup and cleanup scripts,
tritonserver and its python-backend stubs, a container instance's own process), and those that carry the
process tag of its server (daemons of models that left the server's process group). :func:`leftovers`
then lists whatever of it is still there. Used by the fault tests and by ``glidein-triton soak``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

from glidein_triton.worker import glidein_paths, processes, runtime
from glidein_triton.worker.ports import is_listening
from glidein_triton.worker.state import ServerState

SHARED_MEMORY = Path("/dev/shm")  # noqa: S108 (where the python backend's regions live)
SHARED_MEMORY_PREFIX = "triton_python_backend_shm_region_"
PORT_OPTION = re.compile(r"^--(?:http|grpc|metrics)-port=(\d+)$")
INSTANCE_URI = "instance://"


@dataclass(frozen=True)
class Process:
    """One process, identified by pid and start time (pids are reused)."""

    pid: int
    start_ticks: int
    argv: tuple[str, ...]

    def alive(self) -> bool:
        return processes.is_running(self.pid, self.start_ticks)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def processes_under(root: Path) -> list[Process]:
    """Live processes whose command line names a path under ``root``, or whose working dir is in it."""
    prefix = str(root)
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        argv, cwd = process.info["cmdline"], process.info["cwd"]
        if process.pid == os.getpid() or argv is None or cwd is None:
            continue  # this process, or one whose command line or working dir cannot be read
        if _under(cwd, prefix) or any(prefix + "/" in word or word == prefix for word in argv):
            ticks = processes.start_ticks(process.pid)
            if ticks and processes.is_running(process.pid, ticks):
                found.append(Process(process.pid, ticks, tuple(argv)))
    return found


def server_ports(seen: Iterable[Process]) -> set[int]:
    """The ports given to tritonserver on its command lines."""
    return {
        int(match.group(1)) for process in seen for word in process.argv if (match := PORT_OPTION.match(word))
    }


def shared_memory_regions(seen: Iterable[Process]) -> set[Path]:
    """The python backend's regions, named on its stubs' command lines."""
    return {
        SHARED_MEMORY / word
        for process in seen
        for word in process.argv
        if word.startswith(SHARED_MEMORY_PREFIX)
    }


def instance_names(seen: Iterable[Process]) -> set[str]:
    """Container instances that the glidein's processes ran in (``exec instance://NAME``)."""
    return {
        word[len(INSTANCE_URI) :]
        for process in seen
        for word in process.argv
        if word.startswith(INSTANCE_URI)
    }


def listed_instances(
    container_runtime: str, environment: Mapping[str, str], config_dir: Path
) -> dict[str, str]:
    """Instance name -> image, as ``<runtime> instance list --json`` with the plugin's config dir shows them
    (empty when it fails)."""
    try:
        listed = subprocess.run(
            [
                *runtime.in_config_dir("apptainer", str(config_dir)),
                container_runtime,
                "instance",
                "list",
                "--json",
            ],
            env=dict(environment),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        rows = json.loads(listed.stdout)["instances"] if listed.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return {}
    return {str(row.get("instance", "")): str(row.get("img", "")) for row in rows if isinstance(row, dict)}


def lock_problems(config_path: Path) -> list[str]:
    """A held lock on glidein_config: GlideinWMS's symlink lock and pid file, or a held flock."""
    problems = []
    lock = config_path.with_name(config_path.name + ".lock")
    pid_file = config_path.with_name(config_path.name + ".pid")
    if lock.is_symlink():
        problems.append(f"lock {lock} left")
    elif lock.is_file():
        with lock.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                problems.append(f"lock {lock} is still held")
    if pid_file.exists():
        problems.append(f"lock pid file {pid_file} left")
    return problems


def state_file_problems(work_dir: Path) -> list[str]:
    """The plugin's state and half-written state files."""
    directory = glidein_paths.plugin_dir(work_dir)
    names = [glidein_paths.STATE_FILE_NAME]
    with contextlib.suppress(OSError):
        names += [path.name for path in directory.glob(f".{glidein_paths.STATE_FILE_NAME}.*")]
    return [f"{directory / name} left" for name in names if (directory / name).exists()]


class Watch:
    """Samples the processes of the glidein under ``root`` in a thread until stopped."""

    def __init__(self, root: Path, interval: float = 0.1) -> None:
        self.root = root
        self.interval = interval
        self.seen: dict[tuple[int, int], Process] = {}
        self.tags: set[str] = set()  # process tags of the servers seen in the state file
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch {root}", daemon=True)

    def sample(self) -> list[Process]:
        state = ServerState.load(glidein_paths.state_file(self.root))
        if state is not None and state.process_tag:
            self.tags.add(state.process_tag)
        current = processes_under(self.root)
        known = {process.pid for process in current}
        for pid in sorted({pid for tag in sorted(self.tags) for pid in processes.tagged(tag)} - known):
            with contextlib.suppress(psutil.Error):
                current.append(Process(pid, processes.start_ticks(pid), tuple(psutil.Process(pid).cmdline())))
        for process in current:
            self.seen[(process.pid, process.start_ticks)] = process
        return current

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        self.sample()

    def leftovers(
        self, config_path: Path, container_runtime: str = "", environment: Mapping[str, str] | None = None
    ) -> list[str]:
        """Everything of the glidein that is still there (empty: nothing)."""
        current = self.sample()
        seen = list(self.seen.values())
        problems = [f"process {p.pid} still runs: {' '.join(p.argv)[:300]}" for p in current]
        problems += [
            f"port {port} still listens" for port in sorted(server_ports(seen)) if is_listening(port)
        ]
        problems += [f"{path} left" for path in sorted(shared_memory_regions(seen)) if path.exists()]
        if container_runtime:
            # The glidein's instances: those its processes ran in, or of an image in its directory.
            names = instance_names(seen)
            config_dir = glidein_paths.plugin_dir(self.root) / runtime.CONFIG_DIR_NAME
            running = listed_instances(container_runtime, environment or os.environ, config_dir)
            problems += [
                f"instance {name} of {image} still runs"
                for name, image in sorted(running.items())
                if name in names or _under(image, str(self.root))
            ]
        return problems + lock_problems(config_path) + state_file_problems(config_path.parent)

    def kill_leftovers(self) -> None:
        """SIGKILL every process of the glidein still alive (after a failed check)."""
        for process in [*self.sample(), *self.seen.values()]:
            if process.alive():
                with contextlib.suppress(OSError):
                    os.kill(process.pid, 9)
