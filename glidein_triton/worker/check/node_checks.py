"""The node check's host checks: Python, GPUs and driver, ports, disk space, model repository."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.worker import cuda_support, door, gpu_selection
from glidein_triton.worker import gpus as gpu_discovery
from glidein_triton.worker.check.findings import FAIL, INFO, OK, WARN, Finding
from glidein_triton.worker.gpus import GPU
from glidein_triton.worker.ports import LOOPBACK, Ports, allocate
from glidein_triton.worker.settings import Settings

MINIMUM_PYTHON = (3, 9)
GIB = 1024**3


@dataclass(frozen=True)
class NodeContext:
    """What every check may look at: the settings, glidein_config, the environment and the options."""

    settings: Settings
    config: Mapping[str, str]
    environment: Mapping[str, str]
    work_dir: Path
    release: str
    min_free_bytes: int


def gpu_problem(context: NodeContext, check: str, summary: str, notes: Sequence[str] = ()) -> Finding:
    """A GPU problem fails only with GLIDEIN_TRITON_GPU=gpu; in auto mode the server runs without GPUs."""
    if context.settings.gpu_mode == "gpu":
        return Finding(check, FAIL, summary, (*notes, "GLIDEIN_TRITON_GPU=gpu: no Triton without its GPUs"))
    return Finding(
        check, WARN, summary, (*notes, "GLIDEIN_TRITON_GPU=auto: the server would start without its GPUs")
    )


def check_python(version: Sequence[int] = sys.version_info[:3], executable: str = sys.executable) -> Finding:
    shown = ".".join(str(part) for part in version[:3])
    if tuple(version[:2]) < MINIMUM_PYTHON:
        return Finding("python", FAIL, f"Python {shown} at {executable}: the worker code needs >= 3.9")
    return Finding("python", OK, f"Python {shown} at {executable}")


def find_gpus(context: NodeContext) -> tuple[Finding, list[GPU]]:
    """The GPUs the server would be given, as the startup script finds them."""
    if context.settings.gpu_mode == "cpu":
        return Finding("gpus", INFO, "GLIDEIN_TRITON_GPU=cpu: GPUs are not used"), []
    nvidia_smi = shutil.which("nvidia-smi", path=context.environment.get("PATH"))
    if nvidia_smi is None:
        if context.settings.gpu_mode == "gpu":
            return Finding("gpus", FAIL, "GLIDEIN_TRITON_GPU=gpu but there is no nvidia-smi on PATH"), []
        return Finding("gpus", INFO, "no nvidia-smi on PATH: Triton runs on the CPU"), []
    try:
        found = gpu_discovery.query(nvidia_smi, context.environment)
    except gpu_discovery.QUERY_ERRORS as error:
        first_line = (str(error).strip().splitlines() or [""])[0]
        summary = "nvidia-smi failed: is the NVIDIA driver loaded?"
        return gpu_problem(context, "gpus", summary, (first_line,)), []
    if not found:
        summary = "nvidia-smi shows no GPU this glidein may use (see CUDA_VISIBLE_DEVICES)"
        return gpu_problem(context, "gpus", summary), []
    notes = tuple(f"{gpu.uuid}: {gpu.label}, {gpu.memory_mib} MiB" for gpu in found)
    count = len(found)
    summary = f"{count} GPU{'s' * (count != 1)} ({found[0].label}), driver {found[0].driver}"
    return Finding("gpus", OK, summary, notes), found


def check_driver(context: NodeContext, found: Sequence[GPU]) -> Finding:
    """Whether the driver is new enough for the CUDA of the configured Triton release."""
    if not found:
        return Finding("driver", INFO, "skipped: no GPU to use")
    driver = found[0].driver
    if not context.release:
        return Finding(
            "driver",
            WARN,
            f"driver {driver}; the Triton release is unknown: give --triton-release yy.mm, or an image whose "
            "name has it, to compare",
        )
    verdict = cuda_support.judge(driver, context.release)
    if verdict.status == "fail":
        return gpu_problem(context, "driver", verdict.message)
    # "unknown" (a release not in the table) is a warning: the driver may or may not do.
    return Finding("driver", OK if verdict.status == "ok" else WARN, verdict.message)


def check_compute_capability(context: NodeContext, found: Sequence[GPU]) -> Finding:
    """Whether every GPU reaches the compute capability the server needs (as the startup script decides)."""
    if not found:
        return Finding("compute", INFO, "skipped: no GPU to use")
    minimum = gpu_selection.minimum_compute_capability(context.release, context.settings.server_args)
    known = [gpu for gpu in found if gpu.compute_capability]
    if not known:
        return Finding("compute", WARN, "nvidia-smi gave no compute_cap (a driver older than 510?)")
    low = [gpu for gpu in known if gpu_selection.device_problem(gpu, "", minimum)]
    source = f"Triton {context.release}" if context.release else "the release unknown"
    if low:
        notes = tuple(f"{gpu.uuid}: {gpu.label}, {gpu.compute_capability}" for gpu in low)
        summary = f"{len(low)} of {len(found)} GPUs below compute capability {minimum:g} ({source}): left out"
        return gpu_problem(context, "compute", summary, notes)
    shown = ", ".join(sorted({gpu.compute_capability for gpu in known}))
    return Finding("compute", OK, f"compute capability {shown} >= {minimum:g} ({source})")


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could bind ``host:port`` now (with SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(context: NodeContext) -> Finding:
    """Three free ports on the loopback address, or the fixed ones free."""
    settings = context.settings
    requested = {
        "GLIDEIN_TRITON_HTTP_PORT": settings.http_port,
        "GLIDEIN_TRITON_GRPC_PORT": settings.grpc_port,
        "GLIDEIN_TRITON_METRICS_PORT": settings.metrics_port,
    }
    taken = [f"{key}={port}" for key, port in requested.items() if port and not port_is_free(port)]
    if taken:
        return Finding("ports", FAIL, f"in use on {LOOPBACK}: {', '.join(taken)}")
    ports = allocate(Ports(*requested.values()))
    return Finding(
        "ports",
        OK,
        f"free on {LOOPBACK}: http {ports.http}, grpc {ports.grpc}, metrics {ports.metrics}",
        ("ports set to 0 are chosen again at startup",),
    )


def check_front_door(runtime: str) -> Finding:
    """The front door's namespace: the process runtime's server runs in a user and network namespace of
    its own, or not at all."""
    if runtime != "process":
        return Finding("front door", OK, f"not needed by the {runtime} runtime's check here")
    problem = door.namespace_works()
    if problem:
        return Finding(
            "front door",
            FAIL,
            f"{door.NO_NAMESPACE}: {problem}",
            ("the node must allow unprivileged user namespaces (user.max_user_namespaces > 0)",),
        )
    return Finding("front door", OK, "the server gets a user and network namespace of its own")


def check_disk(
    work_dir: Path, min_free_bytes: int, usage: Callable[[Path], tuple[int, int, int]] = shutil.disk_usage
) -> Finding:
    """The work directory exists, is writable, and has at least ``min_free_bytes`` free."""
    if not work_dir.is_dir():
        return Finding("disk", FAIL, f"work directory {work_dir} does not exist")
    if not os.access(work_dir, os.W_OK | os.X_OK):
        return Finding("disk", FAIL, f"work directory {work_dir} is not writable")
    free = usage(work_dir)[2]
    shown = f"{free / GIB:.1f} GiB free in {work_dir}"
    if free < min_free_bytes:
        return Finding(
            "disk", FAIL, f"{shown}, below the {min_free_bytes / GIB:g} GiB asked for (--min-free-gb)"
        )
    return Finding("disk", OK, f"{shown} (at least {min_free_bytes / GIB:g} GiB asked for)")


def check_models(settings: Settings) -> Finding:
    """The model repository is a readable directory holding the models loaded at start."""
    repository = settings.model_repository
    if not repository:
        return Finding(
            "models", OK, "no repository set: an empty one in the work directory, jobs load models"
        )
    path = Path(repository)
    if not path.is_dir() or not os.access(path, os.R_OK | os.X_OK):
        return Finding(
            "models",
            FAIL,
            f"model repository {repository} is not a readable directory (GLIDEIN_TRITON_MODEL_REPOSITORY)",
        )
    models = sorted(entry.name for entry in path.iterdir() if entry.is_dir())
    missing = [name for name in settings.models if name != "*" and name not in models]
    if missing:
        return Finding(
            "models",
            FAIL,
            f"GLIDEIN_TRITON_MODELS names {', '.join(missing)}, not in {repository}: the server would not "
            "start",
        )
    return Finding("models", OK, f"{repository}: {len(models)} model{'s' * (len(models) != 1)}")
