"""The server's share of the slot: the CPUs and memory the startd must not hand to jobs.

condor_startup.sh writes ``NUM_CPUS = $(GLIDEIN_CPUS)`` and the slot layout from ``$(GLIDEIN_CPUS)``, and
the memory from ``MEMORY`` (glidein_memory_setup.sh: ``GLIDEIN_MaxMemMBs``) or the node's. Both setup
scripts run after the plugin's (GlideinWMS runs them after the after_entry user scripts) and write
``GLIDEIN_CPUS`` and ``MEMORY`` last, so the plugin changes neither. It adds condor_vars.lst lines that
nothing writes later:

* ``RESERVED_MEMORY``: the startd subtracts it from ``MEMORY`` (configured or detected) before it makes
  the slots (HTCondor's sysapi_phys_memory);
* ``STARTD.GLIDEIN_CPUS``: a subsystem-qualified macro wins over the plain one in every ``$(GLIDEIN_CPUS)``
  the startd expands (``NUM_CPUS``, ``SLOT_TYPE_1 = cpus=...``, ``NUM_SLOTS_TYPE_1``), whatever the order
  in condor_config. HTCondor has no reserved-CPUs knob, and the qualified macro cannot refer to the plain
  one, so the CPUs are reserved only when ``GLIDEIN_CPUS`` is already a number when the plugin runs
  (glidein_cpus_setup.sh then keeps it); ``auto``, ``node`` and ``slot`` are counted later: none reserved.
  Nor with fixed slots: condor_startup.sh's shutdown expression asks each of ``GLIDEIN_CPUS`` slots (its
  shell value) to be idle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

#: Reserved memory with GPUs (MiB): not measurable here. A CUDA context takes ~0.5-1 GiB of host memory
#: per GPU, the pinned-memory pool 256 MiB (tritonserver's default), the backends' libraries 1-2 GiB.
GPU_SERVER_MEMORY = 3072
#: Reserved memory of a CPU server (MiB). Measured on 2 cores with the bundled python model: 54 MiB PSS
#: (71 RSS) idle, 60 PSS (77 RSS) busy for server and stub; each further python-backend model adds its stub
#: (~170 MiB mapped): room for two more, rounded up. Its CPU: 0.24 of a core for one job inferring back to
#: back, up to every core with many (docs/benchmarks.md).
CPU_SERVER_MEMORY = 512
MEMINFO = "/proc/meminfo"
OWN_CGROUP = "/proc/self/cgroup"
CGROUP_ROOT = "/sys/fs/cgroup"


def whole_number(text: str) -> int | None:
    """A glidein_config value that is a plain non-negative integer, else None."""
    word = text.strip()
    return int(word) if word.isdigit() else None


def multiglidein_place(config: Mapping[str, str], proc: str = "/proc") -> tuple[int, int]:
    """(this glidein's number i, the number N of glideins of its job), 1-based; (1, 1) for a single glidein.

    glidein_startup.sh ``-multiglidein N`` starts ``glidein_startup.sh -multirestart <i> <its arguments>`` in
    ``glidein_dir<i>`` and writes neither number into glidein_config: both are read from the command line of
    the glidein's own glidein_startup.sh (``GLIDEIN_STARTUP_PID``), N also from ``GLIDEIN_MULTIGLIDEIN``.
    ``-multirestart 0`` (all glideins started by one launcher) says nothing of i: (1, 1)."""
    pid = whole_number(config.get("GLIDEIN_STARTUP_PID", ""))
    try:
        words = (
            Path(proc, str(pid), "cmdline").read_bytes().decode(errors="replace").split("\0") if pid else []
        )
    except OSError:
        words = []
    found = {word: whole_number(value) for word, value in zip(words, words[1:])}
    index = found.get("-multirestart") or 0
    count = whole_number(config.get("GLIDEIN_MULTIGLIDEIN", "")) or found.get("-multiglidein") or 1
    return (index, count) if 1 <= index <= count else (1, 1)


def glidein_memory(
    config: Mapping[str, str],
    meminfo: str = MEMINFO,
    own_cgroup: str = OWN_CGROUP,
    cgroup_root: str = CGROUP_ROOT,
) -> int:
    """The glidein's memory in MiB, as the startd will see it (0: unknown): ``GLIDEIN_MaxMemMBs`` when the
    factory set it (glidein_memory_setup.sh makes it ``MEMORY``), else the node's as HTCondor detects it,
    bounded by the batch system's memory cgroup limit of this process, and shared by the
    ``GLIDEIN_MULTIGLIDEIN`` glideins of one job (glidein_startup.sh's ``glidein_dir<i>``)."""
    configured = whole_number(config.get("GLIDEIN_MaxMemMBs", ""))
    if configured:
        return configured
    try:
        with Path(meminfo).open() as lines:
            node = next(int(line.split()[1]) for line in lines if line.startswith("MemTotal:")) // 1024
    except (OSError, ValueError, IndexError, StopIteration):
        return 0
    share = min(node, cgroup_limit(own_cgroup, cgroup_root) or node)
    return share // max(whole_number(config.get("GLIDEIN_MULTIGLIDEIN", "")) or 1, 1)


def cgroup_limit(own_cgroup: str = OWN_CGROUP, cgroup_root: str = CGROUP_ROOT) -> int:
    """The tightest memory limit (MiB) of this process's cgroup and its parents, v2 (``memory.max``) or v1
    (the memory controller's ``memory.limit_in_bytes``); 0: none or unreadable."""
    try:
        lines = Path(own_cgroup).read_text().splitlines()
    except OSError:
        return 0
    places = []
    for line in lines:
        _number, controllers, path = [*line.split(":", 2), "", ""][:3]
        if controllers == "":
            places.append((Path(cgroup_root), path, "memory.max"))
        elif "memory" in controllers.split(","):
            places.append((Path(cgroup_root) / "memory", path, "memory.limit_in_bytes"))
    limits = []
    for base, path, name in places:
        directory = base / path.strip("/")
        while True:
            try:
                text = (directory / name).read_text().strip()
            except OSError:
                text = ""
            if text.isdigit() and int(text) < 1 << 60:  # v1 writes a huge number for "none"
                limits.append(int(text) // (1024 * 1024))
            if directory == base or base not in directory.parents:
                break
            directory = directory.parent
    return min(limits, default=0)


@dataclass(frozen=True)
class Reservation:
    """What the startd keeps from jobs for the server, and the startd's CPU count (0: unchanged)."""

    cpus: int
    memory: int
    slot_cpus: int = 0
    notes: list[str] = field(default_factory=list)

    def values(self) -> list[tuple[str, str]]:
        """The glidein_config values: the published ``TritonReserved*`` and the two HTCondor knobs
        (empty: condor_startup.sh writes nothing for them)."""
        return [
            ("TRITON_RESERVED_CPUS", str(self.cpus)),
            ("TRITON_RESERVED_MEMORY", str(self.memory)),
            ("TRITON_CONDOR_RESERVED_MEMORY", str(self.memory) if self.memory else ""),
            ("TRITON_CONDOR_STARTD_CPUS", str(self.slot_cpus) if self.slot_cpus else ""),
        ]


def reserve(cpus: int, memory: int | None, gpus: bool, config: Mapping[str, str], total: int) -> Reservation:
    """The reservation for GLIDEIN_TRITON_RESERVED_CPUS=``cpus`` and ..._MEMORY=``memory`` (None: auto) in a
    glidein of ``total`` MiB (:func:`glidein_memory`; 0: unknown)."""
    notes = []
    wanted = (GPU_SERVER_MEMORY if gpus else CPU_SERVER_MEMORY) if memory is None else memory
    kept = min(wanted, total // 2) if total else 0
    if kept < wanted:
        notes.append(
            f"{kept} MiB of memory reserved for the server, not {wanted}: at most half of the glidein's "
            f"{total} MiB"
            if total
            else "no memory reserved: the glidein's memory is unknown"
        )
    slot_cpus = 0
    if cpus:
        given = config.get("GLIDEIN_CPUS", "").strip() or "1"
        counted = whole_number(given)
        overload = config.get("GLIDEIN_OVERLOAD_ENABLED", "").strip().lower() == "true"
        if "fixed" in config.get("SLOTS_LAYOUT", "").lower():
            # condor_startup.sh's DAEMON_SHUTDOWN needs every one of its GLIDEIN_CPUS fixed slots idle: with
            # a slot fewer it would never hold, and an idle glidein would not end.
            notes.append("no CPU reserved for the server: SLOTS_LAYOUT=fixed (one slot per CPU)")
        elif counted is None or counted == 0 or overload:
            notes.append(
                f"no CPU reserved for the server: GLIDEIN_CPUS={given}"
                f"{' with GLIDEIN_OVERLOAD_ENABLED' if overload else ''} is counted after the plugin runs"
            )
        elif counted - cpus < 1:
            notes.append(f"no CPU reserved for the server: the glidein has {counted}, its jobs need one")
        else:
            slot_cpus = counted - cpus
    return Reservation(cpus if slot_cpus else 0, kept, slot_cpus, notes)
