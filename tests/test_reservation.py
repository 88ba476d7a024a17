"""The server's share of the slot: what the plugin reserves, and what the startd makes of it.

The condor_config comes from the simulated glidein's model of condor_startup.sh's resource lines (after
glidein_memory_setup.sh and glidein_cpus_setup.sh, which run after the plugin); HTCondor's own config reader
(the htcondor2 bindings, as the startd subsystem) evaluates it. The startd then subtracts RESERVED_MEMORY
from MEMORY (sysapi_phys_memory): that step needs a running startd and is computed here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import publish, reservation
from glidein_triton.worker.errors import ConfigError
from glidein_triton.worker.glidein_config import GlideinConfig
from glidein_triton.worker.glidein_config import publish as publish_config
from glidein_triton.worker.settings import Settings

STARTD_PARAMS = ("NUM_CPUS", "SLOT_TYPE_1", "NUM_SLOTS_TYPE_1", "MEMORY", "RESERVED_MEMORY")
READ_CONFIG = """
import json, sys
import htcondor2
htcondor2.set_subsystem(sys.argv[1])
htcondor2.reload_config()
print(json.dumps({name: str(htcondor2.param.get(name, "")) for name in sys.argv[2:]}))
"""


def startd_view(condor_config: Path, subsystem: str = "STARTD") -> dict[str, str]:
    """The resource parameters as HTCondor's config reader gives them to ``subsystem``."""
    environment = {key: value for key, value in os.environ.items() if not key.upper().startswith("_CONDOR_")}
    environment["CONDOR_CONFIG"] = str(condor_config)
    result = subprocess.run(
        [sys.executable, "-c", READ_CONFIG, subsystem, *STARTD_PARAMS],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    view: dict[str, str] = json.loads(result.stdout)
    return view


def job_memory(view: dict[str, str]) -> int:
    """The startd's memory for jobs: MEMORY less RESERVED_MEMORY (HTCondor's sysapi_phys_memory)."""
    return int(view["MEMORY"]) - int(view["RESERVED_MEMORY"] or 0)


def glidein_with(tmp_path: Path, **keys: str) -> SimulatedGlidein:
    glidein = SimulatedGlidein(tmp_path / "glidein").layout()
    for key, value in keys.items():
        glidein.set(key, value)
    return glidein


def publish_reservation(glidein: SimulatedGlidein, share: reservation.Reservation) -> None:
    """What the startup script publishes for the reservation (startup.announce)."""
    values = share.values()
    publish_config(GlideinConfig.read(glidein.config_path), values, publish.condor_vars(values))


def test_the_default_reservation(tmp_path: Path) -> None:
    settings = Settings.from_config({"GLIDEIN_TRITON": "True"})
    assert (settings.reserved_cpus, settings.reserved_memory) == (1, None)
    config = {"GLIDEIN_CPUS": "8", "GLIDEIN_MaxMemMBs": "16000"}
    cpu = reservation.reserve(settings.reserved_cpus, settings.reserved_memory, False, config, 16000)
    assert (cpu.cpus, cpu.memory, cpu.slot_cpus, cpu.notes) == (1, reservation.CPU_SERVER_MEMORY, 7, [])
    gpu = reservation.reserve(1, None, True, config, 16000)
    assert gpu.memory == reservation.GPU_SERVER_MEMORY
    with pytest.raises(ConfigError, match="GLIDEIN_TRITON_RESERVED_MEMORY='lots' is not a memory"):
        Settings.from_config({"GLIDEIN_TRITON_RESERVED_MEMORY": "lots"})
    with pytest.raises(ConfigError, match="GLIDEIN_TRITON_RESERVED_CPUS='-1' is not a whole number"):
        Settings.from_config({"GLIDEIN_TRITON_RESERVED_CPUS": "-1"})


@pytest.mark.parametrize(
    ("config", "note"),
    [
        ({"GLIDEIN_CPUS": "auto"}, "GLIDEIN_CPUS=auto is counted after the plugin runs"),
        ({"GLIDEIN_CPUS": "node"}, "GLIDEIN_CPUS=node is counted after"),
        ({"GLIDEIN_CPUS": "0"}, "GLIDEIN_CPUS=0 is counted after"),
        ({}, "the glidein has 1, its jobs need one"),
        ({"GLIDEIN_CPUS": "4", "GLIDEIN_OVERLOAD_ENABLED": "True"}, "with GLIDEIN_OVERLOAD_ENABLED"),
    ],
)
def test_cpus_are_reserved_only_from_a_count_known_before_condor(config: dict[str, str], note: str) -> None:
    share = reservation.reserve(1, 0, False, config, 8000)
    assert (share.cpus, share.slot_cpus) == (0, 0)
    assert any(note in line for line in share.notes), share.notes
    assert ("TRITON_CONDOR_STARTD_CPUS", "") in share.values()


def test_memory_is_at_most_half_of_the_glidein() -> None:
    share = reservation.reserve(0, 3000, False, {"GLIDEIN_MaxMemMBs": "4000"}, 4000)
    assert share.memory == 2000
    assert "2000 MiB of memory reserved for the server, not 3000" in share.notes[0]
    unknown = reservation.reserve(0, 3000, False, {}, 0)
    assert unknown.memory == 0
    assert unknown.values()[2] == ("TRITON_CONDOR_RESERVED_MEMORY", "")


def test_glidein_memory_is_its_own_share(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24684084 kB\nMemFree:        1000 kB\n")
    no_cgroup = str(tmp_path / "no_cgroup")  # not this machine's
    assert reservation.glidein_memory({}, str(meminfo), no_cgroup) == 24684084 // 1024
    assert reservation.glidein_memory({"GLIDEIN_MaxMemMBs": "6000"}, str(meminfo), no_cgroup) == 6000
    assert (
        reservation.glidein_memory({"GLIDEIN_MaxMemMBs": "auto"}, str(meminfo), no_cgroup) == 24684084 // 1024
    )
    assert reservation.glidein_memory({}, str(tmp_path / "missing"), no_cgroup) == 0
    # Four glideins in one job (glidein_startup.sh's glidein_dir<i>): a quarter each.
    assert (
        reservation.glidein_memory({"GLIDEIN_MULTIGLIDEIN": "4"}, str(meminfo), no_cgroup)
        == 24684084 // 1024 // 4
    )


@pytest.mark.parametrize("version", [1, 2])
def test_glidein_memory_is_bounded_by_the_batch_systems_cgroup(tmp_path: Path, version: int) -> None:
    """A pilot's cgroup (HTCondor, Slurm) is its share of the node: the tightest limit on the way up counts."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24684084 kB\n")
    root = tmp_path / "cgroup"
    base, name = (root / "memory", "memory.limit_in_bytes") if version == 1 else (root, "memory.max")
    job = base / "slurm" / "job_7" / "step_0"
    job.mkdir(parents=True)
    (base / "slurm" / name).write_text("max\n" if version == 2 else f"{1 << 62}\n")
    (base / "slurm" / "job_7" / name).write_text(f"{6000 * 1024 * 1024}\n")
    (job / name).write_text(f"{8000 * 1024 * 1024}\n")
    own = tmp_path / "self_cgroup"
    own.write_text("4:memory:/slurm/job_7/step_0\n0::/\n" if version == 1 else "0::/slurm/job_7/step_0\n")
    assert reservation.glidein_memory({}, str(meminfo), str(own), str(root)) == 6000
    assert (
        reservation.glidein_memory({"GLIDEIN_MULTIGLIDEIN": "2"}, str(meminfo), str(own), str(root)) == 3000
    )
    assert (
        reservation.glidein_memory({"GLIDEIN_MaxMemMBs": "5000"}, str(meminfo), str(own), str(root)) == 5000
    )
    own.write_text("0::/elsewhere\n")  # no limit where this process is
    assert reservation.glidein_memory({}, str(meminfo), str(own), str(root)) == 24684084 // 1024


@pytest.mark.parametrize("layout", ["partitionable", "fixed"])
def test_the_startd_keeps_the_reservation_from_jobs(tmp_path: Path, layout: str) -> None:
    glidein = glidein_with(tmp_path, GLIDEIN_CPUS="4", GLIDEIN_MaxMemMBs="8000", SLOTS_LAYOUT=layout)
    share = reservation.reserve(1, None, False, glidein.config(), 8000)
    publish_reservation(glidein, share)
    glidein.setup_resources()  # after the plugin: GLIDEIN_CPUS and MEMORY are written last
    condor_config = tmp_path / "condor_config"
    condor_config.write_text(glidein.condor_config(layout))
    view = startd_view(condor_config)
    if layout == "partitionable":
        assert (view["NUM_CPUS"], view["SLOT_TYPE_1"]) == ("3", "cpus=3")
    else:  # every fixed slot stays: condor_startup.sh's idle shutdown counts GLIDEIN_CPUS of them
        assert (view["NUM_CPUS"], view["SLOT_TYPE_1"], view["NUM_SLOTS_TYPE_1"]) == ("4", "cpus=1", "4")
        assert "SLOTS_LAYOUT=fixed" in share.notes[0]
    assert job_memory(view) == 8000 - reservation.CPU_SERVER_MEMORY
    # Only the startd: the master (and the glidein's own GLIDEIN_CPUS) keep the glidein's count.
    assert startd_view(condor_config, "MASTER")["NUM_CPUS"] == "4"
    attributes, _environment = glidein.published()
    assert attributes["TritonReservedCpus"] == ("1" if layout == "partitionable" else "0")
    assert attributes["TritonReservedMemory"] == str(reservation.CPU_SERVER_MEMORY)
    assert "RESERVED_MEMORY" not in attributes  # a knob, not an attribute


def test_a_plain_glidein_cpus_line_would_be_overwritten(tmp_path: Path) -> None:
    """Why the startd-qualified name: glidein_cpus_setup.sh's later GLIDEIN_CPUS line wins over a plain one."""
    glidein = glidein_with(tmp_path, GLIDEIN_CPUS="4", TRITON_SLOT_CPUS="3")
    with (glidein.main_dir / "condor_vars.lst").open("a") as condor_vars:
        condor_vars.write("TRITON_SLOT_CPUS C - GLIDEIN_CPUS N N -\n")
    glidein.setup_resources()
    condor_config = tmp_path / "condor_config"
    condor_config.write_text(glidein.condor_config())
    assert startd_view(condor_config)["NUM_CPUS"] == "4"


def test_no_reservation_without_a_server(tmp_path: Path) -> None:
    """A failed startup clears every server key (publish.cleared_values): the startd keeps nothing."""
    glidein = glidein_with(tmp_path, GLIDEIN_CPUS="4", GLIDEIN_MaxMemMBs="8000")
    publish_reservation(glidein, reservation.reserve(1, None, False, glidein.config(), 8000))
    publish_config(GlideinConfig.read(glidein.config_path), publish.cleared_values(), [])
    glidein.setup_resources()
    condor_config = tmp_path / "condor_config"
    condor_config.write_text(glidein.condor_config())
    view = startd_view(condor_config)
    assert (view["NUM_CPUS"], view["SLOT_TYPE_1"], job_memory(view)) == ("4", "cpus=4", 8000)
    assert "TritonReservedCpus" not in glidein.published()[0]
