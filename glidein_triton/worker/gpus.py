"""GPU discovery with nvidia-smi, restricted to the devices this glidein may use."""

from __future__ import annotations

import csv
import logging
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from glidein_triton.worker.commands import run_quietly

LOG = logging.getLogger(__name__)

QUERY_FIELDS = ("index", "uuid", "name", "memory.total", "driver_version")
#: Read when present: compute_cap is known to drivers since 510 (older ones are too old for CUDA 12 anyway).
OPTIONAL_FIELDS = ("compute_cap",)
QUERY_ARGS = [f"--query-gpu={','.join((*QUERY_FIELDS, *OPTIONAL_FIELDS))}", "--format=csv"]
#: CUDA_VISIBLE_DEVICES words that select no device (CUDA stops at the first entry it cannot use).
NO_DEVICE_WORDS = ("", "-1", "none", "void", "NoDevFiles")
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
    compute_capability: str = ""

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
                compute_capability=row[column["compute_cap"]].strip() if "compute_cap" in column else "",
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
                GPU(
                    gpu.index,
                    uuid,
                    gpu.name,
                    memory,
                    gpu.driver,
                    mig_profile=profile,
                    parent_uuid=gpu.uuid,
                    compute_capability=gpu.compute_capability,
                )
            )
    return result


def _matches(entry: str, device: GPU) -> bool:
    """Whether a CUDA_VISIBLE_DEVICES uuid entry names ``device`` (a GPU uuid names all its MIG slices)."""
    if not entry.startswith(("GPU-", "MIG-")):
        return False
    return entry in (device.uuid, device.parent_uuid) or device.uuid.startswith(entry)


def index_order_known(all_devices: Sequence[GPU], environment: Mapping[str, str]) -> bool:
    """Whether CUDA's device indexes are nvidia-smi's (PCI bus) order.

    They are with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; in CUDA's default order (fastest first, ties by PCI bus)
    only when every GPU is the same model.
    """
    if environment.get("CUDA_DEVICE_ORDER", "").strip() == "PCI_BUS_ID":
        return True
    return len({device.name for device in all_devices}) <= 1


def visible_devices(all_devices: Sequence[GPU], environment: Mapping[str, str]) -> list[GPU]:
    """The devices CUDA_VISIBLE_DEVICES (set by the site's batch system) gives, in its order.

    As CUDA reads it: entries are CUDA indexes or GPU/MIG uuid prefixes (a GPU uuid selects all its
    slices), and the list ends at the first entry that names no device (``-1``, ``none``, a wrong index);
    unset selects every device. NVIDIA_VISIBLE_DEVICES is the container toolkit's setting (which devices
    a container gets), not a CUDA filter: it is not read. Indexes are mapped in nvidia-smi's order, which
    is CUDA's only when :func:`index_order_known`.
    """
    if "CUDA_VISIBLE_DEVICES" not in environment:
        return list(all_devices)
    chosen: list[GPU] = []
    for entry in (item.strip() for item in environment["CUDA_VISIBLE_DEVICES"].split(",")):
        if entry.isdigit():
            matches = [all_devices[int(entry)]] if int(entry) < len(all_devices) else []
        else:
            matches = [device for device in all_devices if _matches(entry, device)]
        if entry in NO_DEVICE_WORDS or not matches or any(device in chosen for device in matches):
            break
        chosen.extend(matches)
    return chosen


def _run(argv: Sequence[str]) -> str:
    result = run_quietly(argv, NVIDIA_SMI_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {result.returncode}: {result.stdout.strip()[:300]}")
    return result.stdout


#: What :func:`query` raises when nvidia-smi cannot be run or its output cannot be read.
QUERY_ERRORS = (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired)


def query_all(nvidia_smi: str) -> tuple[list[GPU], dict[str, list[tuple[str, str]]]]:
    """Every GPU of the node and the MIG slices of each, from ``nvidia_smi``; raises QUERY_ERRORS."""
    return parse_query_csv(_run([nvidia_smi, *QUERY_ARGS])), parse_list(_run([nvidia_smi, *LIST_ARGS]))


def query(nvidia_smi: str, environment: Mapping[str, str]) -> list[GPU]:
    """The devices ``nvidia_smi`` reports that the environment lets this glidein use; raises QUERY_ERRORS."""
    return visible_devices(devices(*query_all(nvidia_smi)), environment)
