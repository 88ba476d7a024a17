"""GPU discovery with nvidia-smi, restricted to the devices this glidein may use."""

from __future__ import annotations

import csv
import logging
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from glidein_triton.worker.commands import run_quietly

LOG = logging.getLogger(__name__)

QUERY_FIELDS = ("index", "uuid", "name", "memory.total", "driver_version")
QUERY_ARGS = [f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv"]
LIST_ARGS = ["-L"]
NVIDIA_SMI_TIMEOUT = 20.0

GPU_LINE = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>GPU-[0-9a-fA-F-]+)\)\s*$")
MIG_LINE = re.compile(
    r"^\s+MIG (?P<profile>\S+)\s+Device\s+(?P<index>\d+): \(UUID: (?P<uuid>MIG-[0-9a-fA-F-]+)\)\s*$"
)


@dataclass(frozen=True)
class GPU:
    """One device a CUDA process can be given: a whole GPU or one MIG slice of it."""

    index: int
    uuid: str
    name: str
    memory_mib: int
    driver: str
    mig_profile: str = ""
    parent_uuid: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} MIG {self.mig_profile}" if self.mig_profile else self.name


def _number(text: str) -> int:
    """An integer from an nvidia-smi value such as ``81559 MiB``; 0 for ``[N/A]`` and the like."""
    match = re.match(r"\s*(\d+)", text)
    return int(match.group(1)) if match else 0


def parse_query_csv(text: str) -> list[GPU]:
    """Parse ``nvidia-smi --query-gpu=... --format=csv`` output (header line, one row per GPU).

    Columns are found by header name, so any superset of QUERY_FIELDS, with or without units, is read.
    """
    rows = [row for row in csv.reader(text.splitlines(), skipinitialspace=True) if row]
    if not rows:
        return []
    header = [re.sub(r"\s*\[.*\]$", "", name.strip()) for name in rows[0]]
    missing = [field for field in QUERY_FIELDS if field not in header]
    if missing:
        raise ValueError(f"nvidia-smi output lacks the columns {', '.join(missing)}")
    column = {name: position for position, name in enumerate(header)}
    gpus = []
    for row in rows[1:]:
        if len(row) != len(header):
            continue
        gpus.append(
            GPU(
                index=_number(row[column["index"]]),
                uuid=row[column["uuid"]].strip(),
                name=row[column["name"]].strip(),
                memory_mib=_number(row[column["memory.total"]]),
                driver=row[column["driver_version"]].strip(),
            )
        )
    return gpus


def parse_list(text: str) -> dict[str, list[tuple[str, str]]]:
    """Parse ``nvidia-smi -L``: for each GPU uuid, its MIG slices as (profile, MIG uuid)."""
    slices: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for line in text.splitlines():
        gpu = GPU_LINE.match(line)
        if gpu:
            current = gpu.group("uuid")
            slices[current] = []
            continue
        mig = MIG_LINE.match(line)
        if mig and current:
            slices[current].append((mig.group("profile"), mig.group("uuid")))
    return slices


def devices(gpus: Sequence[GPU], slices: Mapping[str, Sequence[tuple[str, str]]]) -> list[GPU]:
    """Every usable CUDA device: whole GPUs, and the MIG slices in place of a GPU that has them."""
    result = []
    for gpu in gpus:
        gpu_slices = slices.get(gpu.uuid, [])
        if not gpu_slices:
            result.append(gpu)
            continue
        for profile, uuid in gpu_slices:
            memory = _number(profile.split(".")[-1]) * 1024 if profile.endswith("gb") else 0
            result.append(
                GPU(gpu.index, uuid, gpu.name, memory, gpu.driver, mig_profile=profile, parent_uuid=gpu.uuid)
            )
    return result


def visible_devices(all_devices: Sequence[GPU], environment: Mapping[str, str]) -> list[GPU]:
    """The devices allowed by CUDA_VISIBLE_DEVICES, else NVIDIA_VISIBLE_DEVICES, in their order.

    Entries are indexes, GPU uuids or MIG uuids (a GPU uuid selects all its slices). An empty value,
    ``-1``, ``none``, ``void`` or ``NoDevFiles`` selects none; ``all`` or no variable selects all.
    """
    for variable in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
        if variable in environment:
            value = environment[variable].strip()
            break
    else:
        return list(all_devices)
    if value.lower() == "all":
        return list(all_devices)
    chosen: list[GPU] = []
    for entry in (item.strip() for item in value.split(",")):
        if entry in ("", "-1", "none", "void", "NoDevFiles"):
            break
        matches = [
            device
            for device in all_devices
            if entry in (str(device.index), device.uuid, device.parent_uuid)
            or (device.uuid.startswith(entry) and entry.startswith(("GPU-", "MIG-")))
        ]
        chosen.extend(device for device in matches if device not in chosen)
    return chosen


def _run(argv: Sequence[str]) -> str:
    result = run_quietly(argv, NVIDIA_SMI_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {result.returncode}: {result.stdout.strip()[:300]}")
    return result.stdout


#: What :func:`query` raises when nvidia-smi cannot be run or its output cannot be read.
QUERY_ERRORS = (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired)


def query(nvidia_smi: str, environment: Mapping[str, str]) -> list[GPU]:
    """The devices ``nvidia_smi`` reports that the environment lets this glidein use; raises QUERY_ERRORS."""
    gpus = parse_query_csv(_run([nvidia_smi, *QUERY_ARGS]))
    slices = parse_list(_run([nvidia_smi, *LIST_ARGS]))
    return visible_devices(devices(gpus, slices), environment)


def detect(environment: Mapping[str, str]) -> list[GPU]:
    """The GPUs this glidein may use; none when nvidia-smi is missing or fails (then CPU mode)."""
    nvidia_smi = shutil.which("nvidia-smi", path=environment.get("PATH"))
    if nvidia_smi is None:
        LOG.info("no nvidia-smi on PATH: CPU mode")
        return []
    try:
        found = query(nvidia_smi, environment)
    except QUERY_ERRORS as error:
        LOG.warning("nvidia-smi failed, so no GPU is used: %s", error)
        return []
    LOG.info("GPUs for Triton: %s", ", ".join(f"{gpu.uuid} ({gpu.label})" for gpu in found) or "none")
    return found
