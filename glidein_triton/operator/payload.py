"""The files a factory serves to glideins: the startup script and the worker code tarball."""

from __future__ import annotations

import functools
import gzip
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
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


class PayloadError(RuntimeError):
    """The payload cannot be built as asked (an interpreter that cannot compile the worker code)."""


@functools.lru_cache(maxsize=8)
def bytecode_of(python: str, sources: tuple[tuple[str, bytes], ...]) -> list[tuple[str, bytes]]:
    """(name, data) of the checked-hash ``.pyc`` files that ``python`` makes of ``sources``, named with its
    cache tag (e.g. ``cpython-39``).

    A glidein whose Python has that tag imports the worker code without compiling it (~35 ms of the startup
    script); any other Python ignores the files. Each holds a hash of its source (PEP 552), which the importer
    checks: a changed source is compiled again, whatever the file times after extraction. A fixed hash seed
    keeps the bytes reproducible (the order of set constants follows it).
    """
    with tempfile.TemporaryDirectory(prefix="glidein-triton-bytecode-") as directory:
        root = Path(directory)
        for name, data in sources:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        argv = [python, "-s", "-m", "compileall", "-q", "--invalidation-mode", "checked-hash"]
        argv += ["-s", str(root), str(root / "glidein_triton")]
        environment = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"}
        try:
            result = subprocess.run(
                argv, capture_output=True, text=True, timeout=300, check=False, env=environment
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PayloadError(f"cannot compile the worker code with {python}: {error}") from error
        if result.returncode != 0:
            raise PayloadError(
                f"{python} cannot compile the worker code (a Python >= 3.9 is needed): "
                f"{(result.stdout + result.stderr).strip()[-500:]}"
            )
        compiled = sorted(root.rglob("*.pyc"))
        return [(path.relative_to(root).as_posix(), path.read_bytes()) for path in compiled]


def worker_tarball_bytes(pythons: Sequence[str] = ()) -> bytes:
    """The worker tarball, byte-for-byte reproducible (fixed owners, times and order), with the bytecode
    of its modules (:func:`bytecode_of`) for the Python that builds it and for each of ``pythons``."""
    files = tuple(worker_files())
    stamps = tuple((name, (stat := path.stat()).st_mtime_ns, stat.st_size) for name, path in files)
    return _tarball(files, stamps, tuple(pythons))


@functools.lru_cache(maxsize=4)
def _tarball(
    files: tuple[tuple[str, Path], ...], _stamps: tuple[tuple[str, int, int], ...], pythons: tuple[str, ...]
) -> bytes:
    """The tarball of ``files`` as they are (``_stamps``: their times and sizes, which key the cache)."""
    entries = [(name, path.read_bytes()) for name, path in files]
    sources = tuple((name, data) for name, data in entries if name.endswith(".py"))
    for python in (sys.executable, *pythons):
        entries += bytecode_of(python, sources)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in dict(entries).items():  # one entry a name: a Python given twice adds nothing
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
