"""Which job holds which model: a reference count per model, kept in files under fcntl locks.

Files in the plugin's directory (``<glidein work dir>/triton``):

* ``models.json``: for each model loaded for jobs, its source (the directory linked into the job model
  repository, or "" for a model of the server's own repository) and its holders;
* ``hooks.lock``: held (briefly) while ``models.json`` or ``usage.json`` is read and rewritten;
* ``model_locks/<model>.lock``: held by a pre-job while it registers itself and loads the model, and by the
  reaper while it checks that a model has no holder and unloads it, so a model a job has registered for
  is never unloaded under it.

A holder is one job: its GlobalJobId (else its sandbox, else its pid) names it; it records the job's
sandbox (host path) and, outside containers, the pid and start time of the job wrapper (which becomes the
job). GlideinWMS runs no post-job hooks, so the periodic script reaps holders whose sandbox is gone (HTCondor
removes it when the job ends) or whose process is gone. Every pre-job also leaves a claim file in its own
sandbox, which the reaper adopts: inside a container that is the only record a job can leave.

Only the standard library's light modules are imported: the pre-job hook runs before every job.
"""

# Imported by the pre-job hook, which runs before every job: os.path instead of pathlib (~9 ms to import).
# ruff: noqa: PTH103, PTH105, PTH112, PTH118, PTH123, PTH208

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

REGISTRY_FILE = "models.json"
USAGE_FILE = "usage.json"
LOCK_FILE = "hooks.lock"
MODEL_LOCKS_DIR = "model_locks"
#: In each job's sandbox: the claim (what the job holds) and the environment for the job.
JOB_DIR = ".glidein_triton"
CLAIM_FILE = "claim.json"
ENVIRONMENT_FILE = "prejob.env"


class LockTimeoutError(OSError):
    """A lock could not be taken in time (another process holds it)."""


@contextlib.contextmanager
def locked(path: str, timeout: float) -> Iterator[None]:
    """Hold an exclusive fcntl (flock) lock on ``path``, waiting at most ``timeout`` seconds."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    message = f"{path} is still locked by another process after {timeout:g} s"
                    raise LockTimeoutError(message) from error
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def read_json(path: str) -> dict[str, Any]:
    """A JSON object from a file; empty when the file is missing or unreadable."""
    try:
        with open(path) as stream:
            data = json.load(stream)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: str, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically (temporary file, then rename)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as stream:
        json.dump(data, stream, indent=1, sort_keys=True)
    os.replace(temporary, path)


class Registry:
    """The reference counts of one glidein, in its plugin directory."""

    def __init__(self, directory: str, lock_timeout: float = 30.0) -> None:
        self.directory = directory
        self.lock_timeout = lock_timeout

    @property
    def path(self) -> str:
        return os.path.join(self.directory, REGISTRY_FILE)

    def exists(self) -> bool:
        """Whether this process can see the plugin's directory (it cannot from most job containers)."""
        return os.path.isdir(self.directory)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The lock of ``models.json`` and ``usage.json``: hold it only for a read and a rewrite."""
        return locked(os.path.join(self.directory, LOCK_FILE), self.lock_timeout)

    def model_lock(self, model: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """The lock of one model: held while it is registered and loaded, or checked and unloaded."""
        directory = os.path.join(self.directory, MODEL_LOCKS_DIR)
        os.makedirs(directory, exist_ok=True)
        return locked(os.path.join(directory, f"{model}.lock"), timeout)

    def models(self) -> dict[str, dict[str, Any]]:
        """``{model: {"source": ..., "holders": {holder: {...}}}}``; read under :meth:`lock`."""
        models = read_json(self.path).get("models", {})
        return models if isinstance(models, dict) else {}

    def save(self, models: dict[str, dict[str, Any]]) -> None:
        write_json(self.path, {"models": models})

    def reference_counts(self) -> dict[str, int]:
        with self.lock():
            return {name: len(entry.get("holders", {})) for name, entry in self.models().items()}


def process_start_ticks(pid: int) -> int:
    """When ``pid`` started (clock ticks after boot), 0 when it is gone (as processes.start_ticks)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return 0 if fields[0] in ("Z", "X") else int(fields[19])


def holder_alive(holder: dict[str, Any]) -> bool:
    """False when the holder's sandbox is gone or its process is gone (or is another process now)."""
    sandbox = holder.get("sandbox", "")
    if sandbox and not os.path.isdir(sandbox):
        return False
    pid, ticks = int(holder.get("pid", 0)), int(holder.get("ticks", 0))
    return not pid or process_start_ticks(pid) == ticks


def write_claim(sandbox: str, holder: str, record: dict[str, Any], models: list[str]) -> None:
    """Leave the job's claim in its sandbox, where the reaper on the host finds it."""
    directory = os.path.join(sandbox, JOB_DIR)
    os.makedirs(directory, exist_ok=True)
    write_json(os.path.join(directory, CLAIM_FILE), {"holder": holder, "record": record, "models": models})


def claims(execute_dir: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(sandbox, claim) for every job sandbox under HTCondor's execute directory that has a claim."""
    try:
        sandboxes = sorted(os.listdir(execute_dir))
    except OSError:
        return
    for name in sandboxes:
        sandbox = os.path.join(execute_dir, name)
        claim = read_json(os.path.join(sandbox, JOB_DIR, CLAIM_FILE))
        if claim.get("holder") and isinstance(claim.get("models"), list):
            yield sandbox, claim
