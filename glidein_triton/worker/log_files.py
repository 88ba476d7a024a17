"""The plugin's log files (server.log, the agent's): private to the glidein user, and capped in size.

tritonserver writes its log to its standard output and error, which :func:`open_private` opens in append
mode. Another local user must not read it (it names models, paths and clients), and the server must not
fill the disk with it (a client that reaches the server can raise its verbosity): the periodic script calls
:func:`cap`, which keeps the end of the log (the evidence for error reports) once it grows past a limit.
"""

from __future__ import annotations

import os
from pathlib import Path

from glidein_triton.worker.files import private_directory

#: server.log may grow to this many bytes between two periodic runs before it is cut.
SIZE_LIMIT = 64 * 1024 * 1024
#: How much of its end a cut log keeps.
KEPT_BYTES = 1024 * 1024
CUT_NOTE = b"[glidein-triton: the log was over %d bytes; earlier lines were removed]\n"


def open_private(path: Path) -> int:
    """A descriptor to append to ``path``, mode 0600 (also when the file was there before)."""
    private_directory(path.parent)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)
    return descriptor


def cap(path: Path, limit: int = SIZE_LIMIT, kept: int = KEPT_BYTES) -> bool:
    """Cut ``path`` to its last ``kept`` bytes (from a line start) when it is over ``limit``; True if cut.

    The writer appends (``O_APPEND``), so it goes on writing at the new end. Lines it writes between the
    read of the end and the truncation are lost; that is the price of not stopping the server.
    """
    try:
        size = path.stat().st_size
        if size <= limit:
            return False
        with path.open("r+b") as log:
            log.seek(max(0, size - kept))
            end = log.read(kept)
            end = end[end.find(b"\n") + 1 :] if b"\n" in end else end
            log.seek(0)
            log.truncate()
            log.write(CUT_NOTE % limit + end)
    except OSError:
        return False
    return True
