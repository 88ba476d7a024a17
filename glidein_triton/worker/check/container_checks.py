"""The node check's server checks: the runtime the startup script would use, instances, image, ``--nv``."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.worker import images, runtime, triton_release
from glidein_triton.worker.check import nvidia_libraries
from glidein_triton.worker.check.findings import FAIL, INFO, OK, WARN, Finding
from glidein_triton.worker.check.node_checks import NodeContext, gpu_problem
from glidein_triton.worker.commands import run_quietly
from glidein_triton.worker.errors import RuntimeNotFoundError, TritonSetupError
from glidein_triton.worker.gpus import GPU

COMMAND_TIMEOUT = 30.0
#: Where a server image (a sandbox directory) keeps tritonserver: the NGC images' path first.
SERVER_PATHS = ("opt/tritonserver/bin", "usr/local/bin", "usr/bin", "bin")


@dataclass(frozen=True)
class ServerRuntime:
    """What the startup script would run: ``process`` with a binary, or a container runtime executable."""

    kind: str
    executable: str = ""


def run_command(argv: Sequence[str]) -> tuple[int, str]:
    """(exit code, stdout and stderr) of a short command; 127 when it cannot be run at all."""
    try:
        result = run_quietly(argv, COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 127, str(error)
    return result.returncode, (result.stdout + result.stderr).strip()


def last_line(text: str) -> str:
    return (text.splitlines() or [""])[-1][:300]


def check_process_binary(context: NodeContext) -> tuple[Finding, ServerRuntime]:
    """The process runtime: the tritonserver binary must be found."""
    settings = context.settings
    found = shutil.which(settings.server_binary, path=context.environment.get("PATH"))
    missing = f"no tritonserver binary {settings.server_binary!r} on PATH (GLIDEIN_TRITON_SERVER_BINARY)"
    if settings.runtime == "process":
        reason, status = "GLIDEIN_TRITON_RUNTIME=process", OK
    elif settings.image:
        reason, status = (
            f"no container runtime (SINGULARITY_PATH, apptainer, singularity) for {settings.image}",
            WARN,
        )
    else:
        reason, status = "no server image set (GLIDEIN_TRITON_IMAGE, --image)", OK
    if found is None:
        return Finding("runtime", FAIL, f"{reason}, and {missing}"), ServerRuntime("process")
    return Finding("runtime", status, f"{reason}: process runtime, {found}"), ServerRuntime("process", found)


def check_runtime(context: NodeContext) -> tuple[Finding, ServerRuntime]:
    """The runtime the startup script would choose, found, and its version."""
    settings, path = context.settings, context.environment.get("PATH")
    chosen = runtime.choose_runtime(settings.runtime, settings.image, context.config, path)
    if chosen == "process":
        return check_process_binary(context)
    try:
        executable = runtime.find_container_runtime(chosen, context.config, path)
    except RuntimeNotFoundError as error:
        notes: tuple[str, ...] = ()
        other = shutil.which("singularity", path=path)
        if chosen == "apptainer" and other:
            # GLIDEIN_TRITON_RUNTIME=apptainer asks for apptainer only.
            notes = (f"{other} is there: set SINGULARITY_PATH or GLIDEIN_TRITON_RUNTIME=singularity",)
        return Finding("runtime", FAIL, error.message, notes), ServerRuntime(chosen)
    code, output = run_command([executable, "--version"])
    if code != 0:
        summary = f"{executable} --version exited with {code}: {last_line(output)}"
        return Finding("runtime", FAIL, summary), ServerRuntime(chosen, executable)
    summary = f"{executable}: {last_line(output)}"
    return Finding("runtime", OK, summary), ServerRuntime(chosen, executable)


def check_instances(server: ServerRuntime) -> Finding:
    """``instance list`` runs: the runtime has the instance commands the startup script uses."""
    if server.kind == "process":
        return Finding("instance", INFO, "skipped: the process runtime needs no container instance")
    if not server.executable:
        return Finding("instance", FAIL, "no container runtime to start an instance with")
    code, output = run_command([server.executable, "instance", "list"])
    if code != 0:
        return Finding(
            "instance", FAIL, f"{server.executable} instance list exited with {code}: {last_line(output)}"
        )
    return Finding(
        "instance",
        OK,
        "instance list runs",
        ("instance start is not tried here: a test glidein starts one for real",),
    )


def sandbox_program(image: Path, name: str) -> str:
    """The program ``name`` inside a sandbox image directory (its path in the image), or ``""``."""
    for directory in SERVER_PATHS:
        candidate = image / directory / name
        if candidate.is_file() or candidate.is_symlink():  # /usr/bin/python3 is often a link
            return str(candidate.relative_to(image))
    return ""


def check_local_image(path: Path) -> Finding:
    """An image on this node's file system: a SIF file, or a sandbox directory holding tritonserver and the
    python3 that runs the front door's relay."""
    if not path.exists():
        notes: tuple[str, ...] = ()
        if str(path).startswith("/cvmfs/"):
            notes = ("is CVMFS mounted here? (autofs mounts a repository on first access)",)
        return Finding("image", FAIL, f"server image {path} does not exist on this node", notes)
    if not os.access(path, os.R_OK | os.X_OK if path.is_dir() else os.R_OK):
        return Finding("image", FAIL, f"server image {path} is not readable")
    if not path.is_dir():
        return Finding("image", OK, f"image file {path}, {path.stat().st_size / 1024**2:.0f} MiB, readable")
    inside = sandbox_program(path, "tritonserver")
    if not inside:
        return Finding(
            "image", FAIL, f"sandbox image {path} has no tritonserver in {', '.join(SERVER_PATHS)}"
        )
    if not sandbox_program(path, runtime.CONTAINER_PYTHON):
        return Finding(
            "image",
            FAIL,
            f"sandbox image {path} has no {runtime.CONTAINER_PYTHON} in {', '.join(SERVER_PATHS)}, "
            "which runs the front door's relay",
        )
    return Finding("image", OK, f"sandbox directory {path}, with /{inside}")


def check_image(context: NodeContext, server: ServerRuntime) -> Finding:
    """The server image is readable here (a path, e.g. on CVMFS), or a URI the runtime will pull."""
    image = context.settings.image
    if server.kind == "process":
        detail = f"image {image} is not used" if image else "no image needed"
        return Finding("image", INFO, f"skipped: the process runtime runs tritonserver directly; {detail}")
    if not image:
        return Finding("image", FAIL, f"{images.NO_IMAGE}; or give --image")
    if images.is_remote(image):
        runtime_name = Path(server.executable).name or "the runtime"
        return Finding(
            "image",
            WARN,
            f"{image} will be pulled by {runtime_name} at startup",
            (images.remote_warning(image),),
        )
    return check_local_image(Path(image))


def check_release(context: NodeContext, server: ServerRuntime) -> Finding:
    """The server's Triton release, and whether it takes the options the startup script would give it."""
    settings = context.settings
    if server.kind == "process":
        if not server.executable:
            return Finding("triton", INFO, "skipped: no tritonserver binary")
        release = triton_release.from_help([server.executable], dict(context.environment))
    elif settings.image:
        release = triton_release.from_image(settings.image)
    else:
        return Finding("triton", INFO, "skipped: no server image")
    if not release.known:
        why = (
            f"{server.executable} --help lists no tritonserver options"
            if server.kind == "process"
            else f"{settings.image} is an image file or URI without yy.mm in its name"
        )
        return Finding(
            "triton",
            WARN,
            f"the Triton release is unknown: {why}; an option it lacks stops the server at startup",
        )
    lacking = [option for option in triton_release.OPTION_RELEASES if not release.supports(option)]
    notes = tuple(f"no {option} (since {triton_release.first_release(option)})" for option in lacking)
    wanted = ["--metrics-address"]
    try:
        fitted = triton_release.fit_options(release, [*wanted, *settings.server_args], settings.server_args)
    except TritonSetupError as error:
        return Finding("triton", FAIL, error.message, notes)
    if triton_release.METRICS_OFF in fitted:
        notes += ("the server's metrics are switched off (they would listen on every interface)",)
    summary = f"{release.describe()}: " + (
        "takes every option the plugin uses" if not lacking else "takes the options this glidein needs"
    )
    return Finding("triton", WARN if triton_release.METRICS_OFF in fitted else OK, summary, notes)


def check_nv(context: NodeContext, server: ServerRuntime, found: Sequence[GPU]) -> Finding:
    """What ``--nv`` would bind: the NVIDIA libraries of nvliblist.conf in the linker cache, nvidia-smi."""
    if server.kind == "process" or not server.executable:
        return Finding("--nv", INFO, "skipped: no container runtime")
    if not found:
        return Finding("--nv", INFO, "skipped: no GPU, so no --nv")
    config = nvidia_libraries.find_config(server.executable)
    if config is None:
        wanted: list[str] = list(nvidia_libraries.ESSENTIAL_LIBRARIES)
        notes = [
            f"no {nvidia_libraries.CONFIG_NAME} found for {server.executable}: checked "
            f"{', '.join(wanted)} only"
        ]
    else:
        wanted = nvidia_libraries.parse_nvliblist(config.read_text(errors="replace"))[1]
        notes = [f"libraries listed in {config}"]
    try:
        cached = nvidia_libraries.ldconfig_cache(context.environment.get("PATH"))
    except (OSError, RuntimeError) as error:
        return Finding("--nv", WARN, f"cannot read the linker cache, so --nv is not verified: {error}")
    have = nvidia_libraries.present(wanted, cached)
    missing = [
        library
        for library in nvidia_libraries.ESSENTIAL_LIBRARIES
        if not nvidia_libraries.present([library], cached)
    ]
    if missing:
        summary = f"ldconfig -p lists no {', '.join(missing)}: --nv would give the container no usable GPU"
        return gpu_problem(context, "--nv", summary, notes)
    return Finding(
        "--nv",
        OK,
        f"ldconfig -p lists {len(have)} of {len(wanted)} NVIDIA libraries, with libcuda and NVML",
        tuple(notes),
    )


def check_containers(context: NodeContext) -> Finding:
    """The frontend's GLIDEIN_Singularity_Use, as this glidein got it: GlideinWMS's Apptainer set-up."""
    if not context.config:
        summary = "no --glidein-config: the frontend's GLIDEIN_Singularity_Use is not known here"
        return Finding("containers", INFO, summary)
    use = context.config.get("GLIDEIN_Singularity_Use", "") or "DISABLE_GWMS"
    if use in runtime.CONTAINER_USES:
        published = context.config.get("HAS_SINGULARITY", "") or "not published yet"
        summary = (
            f"GLIDEIN_Singularity_Use = {use}: GlideinWMS sets up Apptainer (HAS_SINGULARITY {published})"
        )
        return Finding("containers", OK, summary)
    summary = (
        f"GLIDEIN_Singularity_Use = {use}: GlideinWMS sets up no Apptainer (no SINGULARITY_PATH for the "
        "server) and ignores the jobs' +SingularityImage"
    )
    notes = ("the frontend group needs OPTIONAL, PREFERRED or REQUIRED: glidein-triton frontend-xml --group",)
    return Finding("containers", INFO if context.settings.runtime == "process" else WARN, summary, notes)
