"""The startd's GPUs as condor_startup.sh configures them from GLIDEIN_Resource_Slots: a model for tests.

A stand-in for what real HTCondor would advertise, modelled on GlideinWMS's condor_startup.sh
(creation/web_base, the resource-slots section): the value is read from glidein_config once, after every
startup script (last line wins); empty means ``MACHINE_RESOURCE_GPUs = 0``; each ``;`` item is
``name[,number[,memory[,type[,disk]]]]`` (or ``name=value`` fields); GPUs with no number are discovered
(``condor_gpu_discovery``, one id per device), with a number they are a count without ids; ``type=main``
adds them to the main slot, ``partitionable``/``static`` (or no type and a number above 1) make a slot
type of their own that starts only jobs with ``RequestGPUs > 0``. (With no type and a number of 1,
condor_startup.sh only declares the resource: with one main slot it gets it, as modelled here.)
condor_submit adds ``TARGET.GPUs >= RequestGPUs`` to the Requirements of a job with ``request_gpus``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from glidein_triton.worker.gpus import GPU

FIELDS = ("name", "number", "memory", "type", "disk")


@dataclass(frozen=True)
class Slot:
    """One slot type of the startd and the GPUs it holds."""

    type_id: int
    gpus: int
    assigned: tuple[str, ...] = ()
    start: str = "True"

    def ad(self, published: Mapping[str, str]) -> str:
        """The slot's machine ad (old ClassAd syntax), with the glidein's published attributes."""
        lines = {
            **published,
            "SlotTypeID": str(self.type_id),
            "GPUs": str(self.gpus),
            "Requirements": self.start,
        }
        if self.assigned:
            lines["AssignedGPUs"] = '"' + ",".join(self.assigned) + '"'
        return "".join(f"{name} = {value}\n" for name, value in lines.items())


def discovery_ids(devices: Sequence[GPU]) -> list[str]:
    """condor_gpu_discovery's ids in its default short-uuid form: ``GPU-<8 hex>``; MIG slices by uuid."""
    return [device.uuid if device.mig_profile else device.uuid[:12] for device in devices]


def fix_param(item: str) -> dict[str, str]:
    """One resource item's fields, positional or ``name=value`` (condor_startup.sh's fix_param)."""
    values = dict.fromkeys(FIELDS, "")
    for position, field in enumerate(item.split(",")):
        key, separator, value = field.strip().partition("=")
        if separator and key in FIELDS:
            values[key] = value.strip()
        elif position < len(FIELDS):
            values[FIELDS[position]] = field.strip()
    return values


def slots(config: Mapping[str, str], detected: Sequence[GPU]) -> list[Slot]:
    """The slot types and their GPUs for the glidein_config ``config`` on a node with ``detected`` GPUs."""
    main = Slot(1, 0)
    extra: list[Slot] = []
    for item in (part for part in config.get("GLIDEIN_Resource_Slots", "").split(";") if part.strip()):
        fields = fix_param(item)
        if fields["name"].lower() != "gpus":
            continue
        ids = discovery_ids(detected) if not fields["number"] else []
        count = len(ids) if not fields["number"] else int(fields["number"])
        kind = fields["type"] or ("partitionable" if count > 1 else "main")
        if kind == "main":
            main = Slot(1, count, tuple(ids))
        else:
            extra.append(Slot(3 + len(extra), count, tuple(ids), "TARGET.RequestGPUs > 0"))
    return [main, *extra]
