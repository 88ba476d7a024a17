"""A real tritonserver on this machine, from the nvidia-pytriton wheel (CPU, python backend).

PyTriton ships a complete ``tritonserver`` binary. :func:`prepare` lays out what it needs next to a small
launcher script, ``<home>/bin/tritonserver``, which the ``process`` runtime runs like any installed
tritonserver (and which the stand-in Apptainer image puts at ``/opt/tritonserver/bin/tritonserver``).
Used by the demo, the tests and the benchmarks; production nodes run the server from an Apptainer image.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

from glidein_triton import install_hint

LAUNCHER = """#!/bin/bash
# Launcher for the real tritonserver of the nvidia-pytriton wheel, made by glidein_triton.local.pytriton.
export LD_LIBRARY_PATH={libs}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}
export PATH={python_bin}:$PATH
exec {binary} --backend-directory={backends} "$@"
"""


class ServerNotInstalledError(RuntimeError):
    """The nvidia-pytriton wheel is not installed in this environment."""


def wheel_root() -> Path:
    """``<site-packages>/pytriton/tritonserver`` of the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise ServerNotInstalledError(
            "the local Triton server needs nvidia-pytriton (Linux, glibc >= 2.35), of the [local] extra: "
            f"{install_hint('local')}; or use the container of apptainer/localtest.def"
        )
    return Path(spec.origin).parent / "tritonserver"


def prepare(home: Path, python: str = sys.executable) -> Path:
    """Lay out a backend directory and a launcher under ``home``; returns the launcher's path.

    The python backend stub matching ``python``'s version runs the models with that interpreter (it
    needs numpy), so ``python``'s directory is put first on PATH.
    """
    root = wheel_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerNotInstalledError(f"nvidia-pytriton has no python backend stub for Python {version}")
    backend = home / "backends" / "python"
    backend.mkdir(parents=True, exist_ok=True)
    for source in [*sorted((root / "backends" / "python").glob("*.*")), stub]:
        link = backend / source.name
        if not link.exists():
            link.symlink_to(source)
    launcher = home / "bin" / "tritonserver"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(
        LAUNCHER.format(
            libs=shlex.quote(str(root.parent.parent / "nvidia_pytriton.libs")),
            python_bin=shlex.quote(str(Path(python).parent)),
            binary=shlex.quote(str(root / "bin" / "tritonserver")),
            backends=shlex.quote(str(home / "backends")),
        )
    )
    launcher.chmod(0o755)
    return launcher
