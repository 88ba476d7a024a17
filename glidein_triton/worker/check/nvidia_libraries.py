"""What Apptainer's ``--nv`` would bind: the NVIDIA files listed in nvliblist.conf, found on the host.

With ``--nv``, Apptainer (and SingularityCE) reads ``<sysconfdir>/apptainer/nvliblist.conf`` (or
``singularity/``): names ending in ``.so`` are libraries, looked up in the ``ldconfig -p`` cache; other names
are binaries, looked up on PATH. Everything found is bound into the container. Without libcuda.so and
libnvidia-ml.so there, the server in the container sees no GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from glidein_triton.worker.commands import run_quietly

#: Libraries without which CUDA (libcuda) and Triton's GPU discovery and metrics (NVML) do not work.
ESSENTIAL_LIBRARIES = ("libcuda.so", "libnvidia-ml.so")
CONFIG_NAME = "nvliblist.conf"
LDCONFIG_DIRECTORIES = "/sbin:/usr/sbin"
LDCONFIG_TIMEOUT = 20.0


def config_candidates(runtime: str) -> list[Path]:
    """Where the nvliblist.conf of the runtime at ``runtime`` may be: its prefix's etc/, then /etc/."""
    flavour = "apptainer" if "apptainer" in Path(runtime).name else "singularity"
    candidates = []
    for executable in (Path(runtime), Path(os.path.realpath(runtime))):
        prefix = executable.parent.parent
        candidates.append(prefix / "etc" / flavour / CONFIG_NAME)
    candidates.append(Path("/etc") / flavour / CONFIG_NAME)
    return list(dict.fromkeys(candidates))


def find_config(runtime: str) -> Path | None:
    """The first readable nvliblist.conf for ``runtime``, if any."""
    for candidate in config_candidates(runtime):
        if candidate.is_file() and os.access(candidate, os.R_OK):
            return candidate
    return None


def parse_nvliblist(text: str) -> tuple[list[str], list[str]]:
    """(binaries, libraries) named in nvliblist.conf; absolute paths of other files are left out."""
    binaries: list[str] = []
    libraries: list[str] = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry or entry.startswith("/"):
            continue
        (libraries if entry.endswith(".so") else binaries).append(entry)
    return binaries, libraries


def parse_ldconfig(text: str) -> set[str]:
    """The library file names in ``ldconfig -p`` output (``\\tlibcuda.so.1 (libc6,x86-64) => /path``)."""
    names = set()
    for line in text.splitlines():
        if "=>" in line:
            names.add(line.split()[0])
    return names


def present(wanted: list[str] | tuple[str, ...], cached: set[str]) -> list[str]:
    """The wanted libraries (``libcuda.so``) that the cache has in some version (``libcuda.so.1``)."""
    return [library for library in wanted if any(name.startswith(library) for name in cached)]


def ldconfig_cache(search_path: str | None) -> set[str]:
    """Library names in the dynamic linker cache; raises OSError or RuntimeError when it cannot be read."""
    directories = f"{search_path}:{LDCONFIG_DIRECTORIES}" if search_path else LDCONFIG_DIRECTORIES
    ldconfig = shutil.which("ldconfig", path=directories)
    if ldconfig is None:
        raise RuntimeError(f"no ldconfig on PATH or in {LDCONFIG_DIRECTORIES}")
    try:
        result = run_quietly([ldconfig, "-p"], LDCONFIG_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"{ldconfig} -p did not answer in {LDCONFIG_TIMEOUT:g} s") from error
    if result.returncode != 0:
        raise RuntimeError(f"{ldconfig} -p exited with {result.returncode}: {result.stderr.strip()[:200]}")
    return parse_ldconfig(result.stdout)
