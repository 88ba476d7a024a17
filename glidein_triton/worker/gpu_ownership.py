"""Who owns the glidein's GPUs: the server, when it uses them; the startd then has none to give to jobs.

With ``GLIDEIN_Resource_Slots`` naming GPUs (OSG GPU entries: ``GPUs,1,type=main``), condor_startup.sh
gives the GPUs to a slot, and HTCondor hands them to any job with ``request_gpus``, which cannot see the
server already on them. condor_startup.sh reads ``GLIDEIN_Resource_Slots`` from glidein_config after every
startup script, and the last line of a key wins: so the startup script appends the value without its GPUs
resource, condor_startup.sh writes ``MACHINE_RESOURCE_GPUs = 0``, and jobs match the server's GPUs through
``TritonGPUs`` instead. (``OFFLINE_MACHINE_RESOURCE_GPUs`` cannot do this: it takes the ids of HTCondor's
GPU discovery, ``GPU-<uuid prefix>`` or ``CUDA<n>``, and is ignored for the usual ``GPUs,1`` count, which
has no ids.) Other resources of the value are kept.
"""

from __future__ import annotations

from collections.abc import Mapping

SLOTS_KEY = "GLIDEIN_Resource_Slots"


def is_gpus(resource: str) -> bool:
    """Whether one ``;`` item of GLIDEIN_Resource_Slots is GPUs (``GPUs,...`` or ``name=GPUs``)."""
    fields = [field.strip().lower() for field in resource.split(",")]
    return fields[0] in ("gpus", "name=gpus") or "name=gpus" in fields


def without_gpus(slots: str) -> str:
    """The value without its GPUs resources."""
    return ";".join(item for item in slots.split(";") if item.strip() and not is_gpus(item))


def startd_values(config: Mapping[str, str], server_gpus: int) -> list[tuple[str, str]]:
    """The glidein_config line that takes the GPUs from the startd, when the server uses some."""
    slots = config.get(SLOTS_KEY, "")
    if server_gpus <= 0 or not any(is_gpus(item) for item in slots.split(";") if item.strip()):
        return []
    return [(SLOTS_KEY, without_gpus(slots))]
