"""The files a factory serves to glideins: the startup script and the worker code tarball."""

from __future__ import annotations

import gzip
import importlib.util
import io
import marshal
import sys
import tarfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
SCRIPTS_DIR = PACKAGE_DIR / "scripts"
SETUP_SCRIPT = "glidein_triton_setup.sh"
#: The periodic (startd cron) script, run with ``period=`` seconds; served when it is in scripts/.
PERIODIC_SCRIPT = "glidein_triton_periodic.sh"
WORKER_TARBALL = "glidein_triton_worker.tgz"
#: ``<untar_options dir=...>``: the tarball is extracted into <file owner work dir>/<this>.
UNTAR_DIR = "triton_code"
#: ``<untar_options absdir_outattr=...>``: glidein_config gets <owner prefix>GLIDEIN_TRITON_DIR.
CODE_DIR_ATTRIBUTE = "GLIDEIN_TRITON_DIR"


def worker_files() -> list[tuple[str, Path]]:
    """(name in the tarball, file) for everything the worker side needs: standard-library Python only."""
    files = [("glidein_triton/__init__.py", PACKAGE_DIR / "__init__.py")]
    for path in sorted((PACKAGE_DIR / "worker").rglob("*.py")):
        files.append((path.relative_to(PACKAGE_DIR.parent).as_posix(), path))
    for path in sorted(SCRIPTS_DIR.glob("*.sh")):
        files.append((f"glidein_triton/scripts/{path.name}", path))
    return files


def bytecode(name: str, source: bytes) -> tuple[str, bytes] | None:
    """(name, data) of the checked-hash ``.pyc`` of ``source`` for the Python building the payload.

    A glidein whose Python has the same cache tag (e.g. ``cpython-39`` on an EL9 factory and worker) then
    imports the worker code without compiling it, ~35 ms of the startup script; any other Python ignores
    the file. The pyc holds a hash of its source (PEP 552), which the importer checks: a changed source is
    compiled again, whatever the file times after extraction.
    """
    if sys.implementation.cache_tag is None:
        return None
    code = compile(source, name, "exec", dont_inherit=True)
    flags = (0b11).to_bytes(4, "little")  # hash-based, checked
    data = importlib.util.MAGIC_NUMBER + flags + importlib.util.source_hash(source) + marshal.dumps(code)
    return importlib.util.cache_from_source(name), data


def worker_tarball_bytes() -> bytes:
    """The worker tarball, byte-for-byte reproducible (fixed owners, times and order), with the bytecode
    of its modules for the Python that builds it."""
    entries = []
    for name, path in worker_files():
        data = path.read_bytes()
        entries.append((name, data))
        compiled = bytecode(name, data) if name.endswith(".py") else None
        if compiled:
            entries.append(compiled)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            info.mtime = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


def write_worker_tarball(directory: Path) -> Path:
    target = directory / WORKER_TARBALL
    target.write_bytes(worker_tarball_bytes())
    return target
