"""Which GPUs the server is given: what the glidein was assigned, what the image can use, one MIG slice.

* ``auto`` uses GPUs only when the entry says its glideins have them (GLIDEIN_TRITON_ENTRY_GPUS) or the
  site's batch system assigned some (CUDA_VISIBLE_DEVICES naming a device): nvidia-smi lists every GPU of
  the node, most of them other jobs'.
* The node check's rules: the driver must run the CUDA of the image's release (forward compatibility does
  not apply: ``apptainer exec instance://`` skips the NGC entrypoint that would enable it), the compute
  capability must be at least the release's minimum, and ``--nv`` must find libcuda and NVML.
* CUDA lets one process use one MIG slice: the server gets the first, the others are counted idle.
* The site's CUDA_VISIBLE_DEVICES is passed on unchanged when the server uses every device it names (it may
  use CUDA's index order, which nvidia-smi does not show); otherwise the devices kept are named by uuid.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from glidein_triton.worker import cuda_support, reservation, runtime, triton_release
from glidein_triton.worker import gpus as gpu_discovery
from glidein_triton.worker.gpus import GPU
from glidein_triton.worker.settings import Settings

LOG = logging.getLogger(__name__)

#: Triton's default --min-supported-compute-capability: 6.0 up to 24.10, 7.5 from 24.11 (server CMakeLists).
OLD_MINIMUM_COMPUTE_CAPABILITY = 6.0
NEW_MINIMUM_COMPUTE_CAPABILITY = 7.5
NEW_MINIMUM_FROM_RELEASE = "24.11"
MINIMUM_OPTION = "--min-supported-compute-capability"


@dataclass(frozen=True)
class Selection:
    """The devices the server gets, the CUDA_VISIBLE_DEVICES value that gives them, and what was left out."""

    devices: list[GPU] = field(default_factory=list)
    cuda_visible_devices: str = ""
    idle: int = 0
    reason: str = ""


def site_assigned(environment: Mapping[str, str]) -> bool:
    """Whether the site's batch system gave this glidein GPUs (a CUDA_VISIBLE_DEVICES naming one)."""
    value = environment.get("CUDA_VISIBLE_DEVICES")
    return value is not None and value.split(",")[0].strip() not in gpu_discovery.NO_DEVICE_WORDS


def minimum_compute_capability(release: str, server_args: Sequence[str]) -> float:
    """The server's minimum compute capability: the operator's option, else the release's default."""
    for word in server_args:
        option, _, value = word.partition("=")
        if option == MINIMUM_OPTION:
            try:
                return float(value)
            except ValueError:
                break
    if release and release >= NEW_MINIMUM_FROM_RELEASE:
        return NEW_MINIMUM_COMPUTE_CAPABILITY
    return OLD_MINIMUM_COMPUTE_CAPABILITY


def device_problem(device: GPU, release: str, minimum: float) -> str:
    """Why the server could not use ``device`` ("" when it can, or when that cannot be known)."""
    if release:
        verdict = cuda_support.judge(device.driver, release)
        if verdict.status == "fail":
            return verdict.message
    try:
        capability = float(device.compute_capability)
    except ValueError:
        return ""
    if capability < minimum:
        return (
            f"{device.label} has compute capability {device.compute_capability}, below the {minimum:g} "
            f"this server needs ({MINIMUM_OPTION})"
        )
    return ""


def select(
    visible: Sequence[GPU],
    environment: Mapping[str, str],
    release: str,
    server_args: Sequence[str],
    missing_libraries: str = "",
    order_known: bool = True,
) -> Selection:
    """Apply the rules to the glidein's devices (``visible``, in the site's order).

    ``order_known``: whether the site's CUDA indexes name the devices in ``visible``'s order (see
    :func:`gpus.index_order_known`); when not, the site's value is passed on as it is.
    """
    if not visible:
        return Selection()
    if missing_libraries:
        return Selection(reason=missing_libraries)
    minimum = minimum_compute_capability(release, server_args)
    problems = [device_problem(device, release, minimum) for device in visible]
    usable = [device for device, problem in zip(visible, problems) if not problem]
    reason = "; ".join(dict.fromkeys(problem for problem in problems if problem))
    slices = [device for device in usable if device.mig_profile]
    kept = slices[:1] if slices else usable
    idle = len(visible) - len(kept)
    if len(slices) > 1:
        LOG.info("CUDA uses one MIG slice per process: the server gets %s, %d idle", kept[0].uuid, idle)
    site_value = environment.get("CUDA_VISIBLE_DEVICES")
    if not kept:
        return Selection(idle=idle, reason=reason)
    if site_value is not None and kept == list(visible):
        return Selection(kept, site_value, idle, reason)
    if site_value is not None and not order_known:
        LOG.warning("CUDA's device order is not nvidia-smi's here: CUDA_VISIBLE_DEVICES=%s kept", site_value)
        return Selection(list(visible), site_value, 0, f"{reason} (not applied: CUDA's index order unknown)")
    return Selection(kept, ",".join(device.uuid for device in kept), idle, reason)


def container_libraries_missing(runtime_name: str, search_path: str | None) -> str:
    """Why ``--nv`` would give a container server no GPU ("" when it would, and for the process runtime)."""
    from glidein_triton.worker.check import nvidia_libraries  # noqa: PLC0415 (only container runs need it)

    if runtime_name == "process":
        return ""
    try:
        cached = nvidia_libraries.ldconfig_cache(search_path)
    except (OSError, RuntimeError) as error:
        LOG.warning("cannot read the linker cache to check --nv (%s): GPUs used as found", error)
        return ""
    missing = [
        library
        for library in nvidia_libraries.ESSENTIAL_LIBRARIES
        if library not in nvidia_libraries.present(nvidia_libraries.ESSENTIAL_LIBRARIES, cached)
    ]
    if missing:
        return f"ldconfig -p lists no {', '.join(missing)}: --nv would give the container no usable GPU"
    return ""


def choose(settings: Settings, config: Mapping[str, str], environment: Mapping[str, str]) -> Selection:
    """The GPUs for the server, by GLIDEIN_TRITON_GPU, the entry, the site's assignment and the rules."""
    if settings.gpu_mode == "cpu":
        return Selection()
    if settings.gpu_mode == "auto" and not (settings.entry_gpus or site_assigned(environment)):
        LOG.info("no GPU: the entry gives none (GLIDEIN_TRITON_ENTRY_GPUS) and the site assigned none")
        return Selection()
    nvidia_smi = shutil.which("nvidia-smi", path=environment.get("PATH"))
    if nvidia_smi is None:
        return Selection(reason="no nvidia-smi on PATH")
    try:
        every = gpu_discovery.devices(*gpu_discovery.query_all(nvidia_smi))
    except gpu_discovery.QUERY_ERRORS as error:
        return Selection(reason=f"nvidia-smi failed: {str(error).strip()[:200]}")
    visible = gpu_discovery.visible_devices(every, environment)
    index, count = reservation.multiglidein_place(config)
    if count > 1:  # the glideins of one job (glidein_dir<i>) share its GPUs: every count-th is this one's
        visible = visible[index - 1 :: count]
        LOG.info("glidein %d of %d of this job: its share of the job's GPUs", index, count)
        # kept GPUs are then named by uuid: the site's CUDA_VISIBLE_DEVICES names the whole job's
        environment = {name: value for name, value in environment.items() if name != "CUDA_VISIBLE_DEVICES"}
    if not visible:
        return Selection(reason="nvidia-smi shows no GPU this glidein may use (CUDA_VISIBLE_DEVICES)")
    search_path = environment.get("PATH")
    runtime_name = runtime.choose_runtime(settings.runtime, settings.image, config, search_path)
    # The image's release (its environment, TRITON_VERSION file or name), as the launch reads it.
    release = "" if runtime_name == "process" else triton_release.from_image(settings.image).container
    selection = select(
        visible,
        environment,
        release,
        settings.server_args,
        container_libraries_missing(runtime_name, search_path),
        gpu_discovery.index_order_known(every, environment),
    )
    LOG.info(
        "GPUs for Triton: %s%s",
        ", ".join(f"{gpu.uuid} ({gpu.label})" for gpu in selection.devices) or "none",
        f"; left out: {selection.reason}" if selection.reason else "",
    )
    return selection
