"""A private copy of a job model, made from a tree whose every file is trusted: what the server loads.

The server never reads a job repository: the agent copies the model into ``<plugin dir>/job_snapshots``
(directories 0700, files 0400) and links that copy into the job model repository, so a later change of the
source (a new CVMFS revision, a file another account rewrites) cannot reach the server, on a restart or a
reload. The copy is made from descriptors: each file is opened without following a link, checked
(:func:`untrusted`) on that descriptor, and copied from it, so what was checked is what was copied; the
policy then reads the configuration from the copy (:mod:`job_policy`).

* **Links**: a link to a file inside the model directory is copied as that file (under the link's name,
  which is the name Triton sees); a link to a directory, or one that leaves the model directory, is refused.
  So nothing outside the vetted tree is read, and no version directory is skipped.
* **Trusted owners**: root and the owner of the operator's prefix (the VO's repository), never the
  glidein's own user (every job runs as that user). A file or directory on a read-write file system that
  another account owns, or that its group or others may write, is untrusted; on a read-only file system
  (CVMFS) nothing can be written, so everything is trusted. Only regular files, directories and links.
"""

# The agent copies models in threads with directory descriptors, as model_registry does.
# ruff: noqa: PTH101, PTH102, PTH103, PTH112, PTH114, PTH116, PTH118, PTH120

from __future__ import annotations

import contextlib
import os
import shutil
import stat

from glidein_triton.worker.state import JOB_SNAPSHOTS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection

#: Copies are made in chunks of this size.
CHUNK = 1 << 20


class Untrusted(ValueError):
    """The model cannot be copied as vetted: a file or link the policy refuses, or too large."""


def is_under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def trusted_owners(prefix: str) -> frozenset[int]:
    """Root and the owner of ``prefix``, without the glidein's own user."""
    owners = {0}
    with contextlib.suppress(OSError):
        owners.add(os.stat(prefix).st_uid)
    owners.discard(os.geteuid())
    return frozenset(owners)


def untrusted(status: os.stat_result, read_only: bool, trusted: Collection[int]) -> str:
    """Why someone other than the trusted owners could change this file or directory ("" if nobody)."""
    if read_only:
        return ""
    if status.st_uid not in trusted:
        whose = "the glidein's user (every job's)" if status.st_uid == os.geteuid() else "another account"
        return f"owned by uid {status.st_uid}, {whose}, not by root or the repository's owner"
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by its group or by others (mode {stat.S_IMODE(status.st_mode):o})"
    return ""


def check_descriptor(descriptor: int, shown: str, trusted: Collection[int]) -> os.stat_result:
    status = os.fstat(descriptor)
    problem = untrusted(status, bool(os.fstatvfs(descriptor).f_flag & os.ST_RDONLY), trusted)
    if problem:
        raise Untrusted(f"{shown} is {problem}")
    return status


class Copier:
    """One copy of the model directory ``source`` (resolved) to ``destination`` (made here, 0700)."""

    def __init__(self, source: str, destination: str, trusted: Collection[int], limit: int) -> None:
        self.source = source
        self.destination = destination
        self.trusted = trusted
        self.left = limit
        self.limit = limit
        #: The copied files, relative to the model directory, as Triton sees them (links by their names).
        self.files: list[str] = []

    def copy(self) -> list[str]:
        descriptor = os.open(self.source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            check_descriptor(descriptor, self.source, self.trusted)
            os.mkdir(self.destination, 0o700)
            self.directory(descriptor, "")
        finally:
            os.close(descriptor)
        return self.files

    def directory(self, descriptor: int, relative: str) -> None:
        for name in sorted(os.listdir(descriptor)):
            path = os.path.join(relative, name)
            status = os.stat(name, dir_fd=descriptor, follow_symlinks=False)
            if stat.S_ISLNK(status.st_mode):
                self.link(path)
            elif stat.S_ISDIR(status.st_mode):
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=descriptor)
                try:
                    check_descriptor(child, path, self.trusted)
                    os.mkdir(os.path.join(self.destination, path), 0o700)
                    self.directory(child, path)
                finally:
                    os.close(child)
            elif stat.S_ISREG(status.st_mode):
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                self.file(os.open(name, flags, dir_fd=descriptor), path)
            else:
                raise Untrusted(f"{path} is not a regular file, a directory or a link")

    def link(self, path: str) -> None:
        target = os.path.realpath(os.path.join(self.source, path))
        if target == self.source or not is_under(target, self.source):
            raise Untrusted(f"{path} links outside the model directory (to {target})")
        if os.path.isdir(target):
            raise Untrusted(f"{path} links to a directory ({os.path.relpath(target, self.source)})")
        self.file(os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), path)

    def file(self, descriptor: int, path: str) -> None:
        with os.fdopen(descriptor, "rb") as stream:
            status = check_descriptor(descriptor, path, self.trusted)
            if not stat.S_ISREG(status.st_mode):
                raise Untrusted(f"{path} is not a regular file")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with os.fdopen(os.open(os.path.join(self.destination, path), flags, 0o400), "wb") as copy:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    self.left -= len(chunk)
                    if self.left < 0:
                        raise Untrusted(
                            f"the model is larger than the snapshot limit ({self.limit >> 20} MiB, "
                            "GLIDEIN_TRITON_JOB_MODEL_SIZE_LIMIT)"
                        )
                    copy.write(chunk)
        self.files.append(path)


def new_path(plugin_dir: str, model: str) -> str:
    """A fresh path for a snapshot of ``model`` in the plugin's ``job_snapshots`` (made 0700 here)."""
    base = os.path.join(plugin_dir, JOB_SNAPSHOTS)
    os.makedirs(base, mode=0o700, exist_ok=True)
    os.chmod(base, 0o700)
    return os.path.join(base, f"{model}.{os.urandom(8).hex()}")


def is_snapshot(plugin_dir: str, path: str) -> bool:
    """Whether ``path`` is a snapshot directory of this plugin (a registry value is checked before use)."""
    base = os.path.join(plugin_dir, JOB_SNAPSHOTS)
    return bool(path) and os.path.dirname(path) == base and os.path.isdir(path) and not os.path.islink(path)


def remove(plugin_dir: str, path: str) -> None:
    """Remove a snapshot (nothing else: ``path`` comes from the registry)."""
    if is_snapshot(plugin_dir, path):
        shutil.rmtree(path, ignore_errors=True)
