"""The plugin's own files: private whatever the umask, replaced whole, read only if no one else wrote them.

Readers of a file written with :func:`write_atomically` see the old file or the new one, never half of one.
Everything the plugin keeps is mode 0700 (directories) or 0600 (files): its programs start with
:func:`private_umask`, and :func:`private_directory` also closes a directory that was there before. A file
whose contents the plugin acts on (the state file: it holds the commands that restart the server) is read
with :func:`read_trusted`, which refuses one that another user could have written.

``os`` only (no pathlib): the hooks that run before every job use it too.
"""

# os.path rather than pathlib, whose import costs the pre-job hook ~9 ms.
# ruff: noqa: PTH101, PTH103, PTH105, PTH108, PTH118

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Union

    PathLike = Union[str, "os.PathLike[str]"]


def write_atomically(path: PathLike, content: bytes, mode: int = 0o600) -> None:
    """Write ``content`` to a new file beside ``path`` (created with ``mode``), then rename it over ``path``.

    The temporary file is made exclusively (a link planted under its name is refused, not followed) and is
    removed when anything fails, e.g. a full disk.
    """
    target = os.fspath(path)
    directory, name = os.path.split(target)
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    if os.path.lexists(temporary):
        os.unlink(temporary)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(content)
        os.chmod(temporary, mode)  # the umask may have taken bits that ``mode`` asks for
        os.replace(temporary, target)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise


class UntrustedFileError(OSError):
    """A file that another user could have written (its owner, its mode, its directory): not read."""


def private_umask() -> None:
    """Files and directories this process creates are 0600/0700, whatever umask the glidein started with."""
    os.umask(0o077)


def private_directory(path: PathLike) -> None:
    """Make ``path`` (and missing parents) if needed, and make sure it is this user's, mode 0700.

    A directory that was there before is closed (0700) too; a link, or one owned by another user, is refused.
    """
    target = os.fspath(path)
    os.makedirs(target, mode=0o700, exist_ok=True)
    status = os.lstat(target)
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid():
        raise UntrustedFileError(f"{target} is not a directory of this user (uid {os.geteuid()})")
    if stat.S_IMODE(status.st_mode) != 0o700:
        os.chmod(target, 0o700)


def _untrusted(status: os.stat_result, what: str) -> str:
    """Why a file or directory with ``status`` may have been written by another user ("" when it cannot)."""
    if status.st_uid != os.geteuid():
        return f"{what} is owned by uid {status.st_uid}, not this user (uid {os.geteuid()})"
    if status.st_mode & 0o022:
        return f"{what} is writable by others (mode {stat.S_IMODE(status.st_mode):04o})"
    return ""


def read_trusted(path: PathLike) -> bytes:
    """The contents of ``path``, when only this user could have written it; else UntrustedFileError.

    Trusted: a regular file (not a link, one name only), owned by this user and mode 0600 (nothing for
    group or others), in a directory that is this user's and writable by no one else. The directory is opened
    first and the file within it, so neither can be swapped between the checks and the read.
    """
    target = os.fspath(path)
    directory, name = os.path.split(target)
    folder = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        problem = _untrusted(os.fstat(folder), f"the directory of {target}")
        if problem:
            raise UntrustedFileError(problem)
        descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    finally:
        os.close(folder)
    with os.fdopen(descriptor, "rb") as stream:
        status = os.fstat(descriptor)
        problem = _untrusted(status, target)
        if not problem and status.st_mode & 0o077:
            problem = f"{target} is open to others (mode {stat.S_IMODE(status.st_mode):04o})"
        if not problem and (not stat.S_ISREG(status.st_mode) or status.st_nlink != 1):
            problem = f"{target} is not a plain file with one name"
        if problem:
            raise UntrustedFileError(problem)
        return stream.read()


@contextlib.contextmanager
def short_unix_path(path: str) -> Iterator[str]:
    """``path`` as a name a Unix socket address can hold (108 bytes): through ``/proc/self/fd`` of its
    directory when it is longer."""
    if len(os.fsencode(path)) < 100:
        yield path
        return
    where = Path(path)
    directory = os.open(where.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory}/{where.name}"
    finally:
        os.close(directory)
