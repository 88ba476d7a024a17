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
sandbox, which the reaper adopts: inside a container that is the only record a job can leave. A claim is
written by the job, so it is input from a stranger: :func:`check_claim` accepts only the expected types and
model names (one bad claim is ignored, it affects no other job).

Lock files are mode 0600 (another user cannot open one, so cannot hold it), and every wait for a lock is
bounded (``LOCK_NB`` polling until a deadline, :class:`LockTimeoutError` after it). The files under the
registry's lock are read and rewritten in one place, :meth:`Registry.editing`.
"""

# The agent serves jobs in threads with os.path strings (job_loader.py).
# ruff: noqa: PTH103, PTH112, PTH118, PTH123

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time

from glidein_triton.worker import files, processes, sandboxes
from glidein_triton.worker.sandbox_protocol import CLAIM_FILE, JOB_DIR, MAX_CLAIM_BYTES
from glidein_triton.worker.word_rules import is_model_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

REGISTRY_FILE = "models.json"
USAGE_FILE = "usage.json"
LOCK_FILE = "hooks.lock"
#: Held by the periodic run that restarts the server: two runs never restart it at once.
RESTART_LOCK_FILE = "restart.lock"
MODEL_LOCKS_DIR = "model_locks"
#: The fields of a holder record a claim may carry, with their types; others are dropped.
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "job": (str,),
    "sandbox": (str,),
    "since": (int, float),
    "pid": (int,),
    "ticks": (int,),
}
MAX_HOLDER_LENGTH = 1024


#: The registry lock guards a read and a rewrite of a small file: a longer wait means a stuck holder.
REGISTRY_LOCK_WAIT = 5.0


class LockTimeoutError(OSError):
    """A lock could not be taken in time (another process holds it)."""


@contextlib.contextmanager
def locked(path: str, timeout: float) -> Iterator[None]:
    """Hold an exclusive fcntl (flock) lock on ``path``, waiting at most ``timeout`` seconds."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
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


def read_json(path: str, limit: int = 0) -> dict[str, Any]:
    """A JSON object from a file; empty when the file is missing, unreadable, or over ``limit`` bytes."""
    try:
        with open(path, "rb") as stream:
            text = stream.read(limit + 1) if limit else stream.read()
        if limit and len(text) > limit:
            return {}
        data = json.loads(text)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: str, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically (temporary file, then rename), mode 0600."""
    files.write_atomically(path, json.dumps(data, indent=1, sort_keys=True).encode())


class Registry:
    """The reference counts of one glidein, in its plugin directory."""

    def __init__(self, directory: str, lock_timeout: float = REGISTRY_LOCK_WAIT) -> None:
        self.directory = directory
        self.lock_timeout = lock_timeout

    def exists(self) -> bool:
        """Whether this process can see the plugin's directory (it cannot from most job containers)."""
        return os.path.isdir(self.directory)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """The lock of ``models.json`` and ``usage.json``: hold it only for a read and a rewrite."""
        return locked(os.path.join(self.directory, LOCK_FILE), self.lock_timeout)

    def model_lock(self, model: str, timeout: float) -> contextlib.AbstractContextManager[None]:
        """The lock of one model: held while it is registered and loaded, or checked and unloaded."""
        if not is_model_name(model):  # never a path outside the locks' directory
            raise ValueError(f"{model!r} is not a model name")
        directory = os.path.join(self.directory, MODEL_LOCKS_DIR)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        return locked(os.path.join(directory, f"{model}.lock"), timeout)

    @contextlib.contextmanager
    def editing(self, name: str = REGISTRY_FILE) -> Iterator[dict[str, Any]]:
        """The JSON object of the file ``name`` (``models.json``, or ``usage.json``) under :meth:`lock`,
        saved when the block changed it. ``models.json`` holds ``{"models": {model: {"source": ...,
        "holders": {holder: {...}}}}}``. Every top-level value is an object: one that is not (a damaged
        file) reads as absent, as a damaged file reads as empty."""
        path = os.path.join(self.directory, name)
        with self.lock():
            document = {key: value for key, value in read_json(path).items() if isinstance(value, dict)}
            before = json.dumps(document, sort_keys=True)
            yield document
            if json.dumps(document, sort_keys=True) != before:
                write_json(path, document)

    def reference_counts(self) -> dict[str, int]:
        with self.editing() as document:
            return {name: len(entry.get("holders", {})) for name, entry in document.get("models", {}).items()}


def holder_alive(holder: dict[str, Any]) -> bool:
    """False when the holder's sandbox is gone or its process is gone (or is another process now)."""
    sandbox = holder.get("sandbox", "")
    if sandbox and not os.path.isdir(sandbox):
        return False
    pid = holder.get("pid", 0)
    return not pid or processes.is_running(pid, holder.get("ticks", 0))


def check_claim(claim: dict[str, Any]) -> str:
    """What is wrong with a claim read from a job's sandbox ("" when nothing is).

    The holder is a printable string, the models a list of model names, the record an object whose known
    fields have their types (pid and ticks: whole numbers); the record is reduced to its known fields.
    """
    holder, models, record = claim.get("holder"), claim.get("models"), claim.get("record", {})
    if (
        not isinstance(holder, str)
        or not holder
        or len(holder) > MAX_HOLDER_LENGTH
        or not holder.isprintable()
    ):
        return "the holder is not a printable string"
    if not isinstance(models, list) or not all(is_model_name(model) for model in models):
        return "models is not a list of model names"
    if not isinstance(record, dict):
        return "the record is not an object"
    kept: dict[str, Any] = {}
    for name, value in record.items():
        allowed = RECORD_FIELDS.get(name)
        if allowed is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, allowed)
            or (isinstance(value, int) and value < 0)
        ):
            return f"record field {name} is not a valid {allowed[0].__name__}"
        kept[name] = value
    claim["record"] = kept
    return ""


def claims(execute_dir: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(sandbox, claim, problem) for every job scratch directory under HTCondor's execute directory (either
    layout: :mod:`sandboxes`) with a claim file.

    ``problem`` is "" for a valid claim (:func:`check_claim`); an invalid one is to be ignored.
    """
    for _name, sandbox in sandboxes.scratch_dirs(execute_dir):
        path = os.path.join(sandbox, JOB_DIR, CLAIM_FILE)
        if not os.path.lexists(path):
            continue
        claim = read_json(path, MAX_CLAIM_BYTES)
        yield sandbox, claim, check_claim(claim) if claim else "not a JSON object (or too large)"
