"""Replacing a file whole: readers see the old file or the new one, never half of one.

``os`` only (no pathlib): the hooks that run before every job use it too.
"""

# os.path rather than pathlib, whose import costs the pre-job hook ~9 ms.
# ruff: noqa: PTH101, PTH105, PTH108, PTH118

from __future__ import annotations

import os

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
