"""Several glideins on one node: glidein_startup.sh's ``glidein_dir<i>`` or several pilots of a batch system.

Each glidein has its own server, ports, state, memory share and reservation, and its cleanup stops
only its own server. The glideins start at the same time, as a multi-glidein job starts them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.worker import gpu_selection, processes, reservation
from glidein_triton.worker.settings import MEMORY_LIMIT_AUTO_FLOOR, Settings

from .support import assert_nothing_left, fake_nvidia_smi, recorded_state

NODE_MEMORY = 32000  # MiB, shared by the node's glideins (the factory's GLIDEIN_MaxMemMBs for each)


@pytest.mark.server
@pytest.mark.parametrize("count", [2, 4])
def test_glideins_side_by_side_on_one_node(tmp_path: Path, count: int) -> None:
    share = NODE_MEMORY // count
    glideins = [
        demo.prepare(
            tmp_path / f"glidein_dir{i}", settings={"GLIDEIN_MaxMemMBs": str(share), "GLIDEIN_CPUS": "2"}
        )
        for i in range(1, count + 1)
    ]
    states = []
    try:
        with ThreadPoolExecutor(count) as pool:
            results = list(
                pool.map(lambda prepared: prepared.glidein.run_startup(prepared.environment), glideins)
            )
        assert [result.returncode for result in results] == [0] * count, [r.stderr for r in results]
        assert [result.metrics["HasTriton"] for result in results] == ["True"] * count
        states = [recorded_state(prepared.glidein) for prepared in glideins]
        ports = [
            port
            for state in states
            if state
            for port in (state.http_port, state.grpc_port, state.metrics_port)
            if port  # 0: metrics off
        ]
        assert len(ports) >= 2 * count
        assert len(set(ports)) == len(ports)
        # The automatic limit follows each glidein's own share, not the node's.
        assert {state.memory_limit for state in states if state} == {max(share // 2, MEMORY_LIMIT_AUTO_FLOOR)}
        published = [prepared.glidein.published() for prepared in glideins]
        for attributes, _environment in published:
            assert attributes["TritonReservedCpus"] == "1"
            assert attributes["TritonReservedMemory"] == str(reservation.CPU_SERVER_MEMORY)
        job_environments = [environment for _attributes, environment in published]
        for environment in job_environments:
            assert len(demo.run_sample_job(environment, requests=1)) == 2
        # The first glidein's cleanup stops its own server only.
        first = glideins[0]
        assert [result.returncode for result in first.glidein.run_cleanup(first.environment)] == [0]
        assert_nothing_left(first.glidein, states[0])
        for state in states[1:]:
            assert state is not None
            assert processes.is_running(state.pid, state.start_ticks)
        assert len(demo.run_sample_job(job_environments[-1], requests=1)) == 2
    finally:
        for prepared, state in zip(glideins, states or [None] * count):
            prepared.glidein.run_cleanup(prepared.environment)
            assert_nothing_left(prepared.glidein, state)


def test_pilots_on_one_node_use_only_their_own_gpus(tmp_path: Path, nvidia_smi_fixtures: Path) -> None:
    """Each pilot's batch system assigns it GPUs (CUDA_VISIBLE_DEVICES, by index or uuid): its server gets
    those only, though nvidia-smi lists every GPU of the node."""
    path = fake_nvidia_smi(tmp_path, nvidia_smi_fixtures / "mixed-synthetic")
    settings = Settings.from_config({"GLIDEIN_TRITON": "True"})
    chosen = [
        gpu_selection.choose(settings, {}, {"PATH": path, "CUDA_VISIBLE_DEVICES": visible})
        for visible in ("0", "GPU-a0b1c2d3-e4f5-4617-8293-a4b5c6d7e8f9")
    ]
    assert [[device.name for device in selection.devices] for selection in chosen] == [
        ["Tesla V100-SXM2-32GB"],
        ["NVIDIA L40S"],
    ]


def started_with(arguments: list[str]) -> subprocess.Popen[bytes]:
    """A stand-in glidein_startup.sh with ``arguments`` on its command line, once it is there to read (a
    loaded machine can show the new command line a moment after Popen returns)."""
    startup = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *arguments])
    cmdline = Path("/proc", str(startup.pid), "cmdline")
    deadline = time.monotonic() + 10
    while arguments[-1].encode() not in cmdline.read_bytes().split(b"\0") and time.monotonic() < deadline:
        time.sleep(0.01)
    return startup


@pytest.mark.parametrize(
    ("arguments", "config", "place"),
    [
        (["-multirestart", "2", "-multiglidein", "2"], {}, (2, 2)),
        (["-multirestart", "1"], {"GLIDEIN_MULTIGLIDEIN": "2"}, (1, 2)),
        (["-multirestart", "0", "-multiglidein", "2"], {}, (1, 1)),  # one launcher for all: unknown
        (["-dir", "."], {}, (1, 1)),
    ],
)
def test_the_glideins_of_one_job_are_told_apart_by_their_glidein_startup(
    tmp_path: Path, arguments: list[str], config: dict[str, str], place: tuple[int, int]
) -> None:
    """glidein_startup.sh -multiglidein N runs 'glidein_startup.sh -multirestart <i> ...' in glidein_dir<i>:
    the number is on that process's command line, nowhere in glidein_config."""
    startup = started_with(arguments)
    try:
        found = reservation.multiglidein_place({**config, "GLIDEIN_STARTUP_PID": str(startup.pid)})
    finally:
        startup.kill()
        startup.wait()
    assert found == place


def test_the_glideins_of_one_job_split_its_gpus(tmp_path: Path, nvidia_smi_fixtures: Path) -> None:
    """Two glideins of one job (glidein_dir1, glidein_dir2) that the batch system gave two GPUs: one each,
    named by uuid (the job's CUDA_VISIBLE_DEVICES names both)."""
    path = fake_nvidia_smi(tmp_path, nvidia_smi_fixtures / "mixed-synthetic")
    settings = Settings.from_config({"GLIDEIN_TRITON": "True"})
    chosen = []
    for index in ("1", "2"):
        startup = started_with(["-multirestart", index, "-multiglidein", "2"])
        try:
            config = {"GLIDEIN_STARTUP_PID": str(startup.pid)}
            chosen.append(
                gpu_selection.choose(settings, config, {"PATH": path, "CUDA_VISIBLE_DEVICES": "0,1"})
            )
        finally:
            startup.kill()
            startup.wait()
    assert [[device.name for device in selection.devices] for selection in chosen] == [
        ["Tesla V100-SXM2-32GB"],
        ["NVIDIA L40S"],
    ]
    assert [selection.cuda_visible_devices for selection in chosen] == [
        "GPU-5f1c2a3b-0d4e-4a1f-9b2c-3d4e5f6a7b8c",
        "GPU-a0b1c2d3-e4f5-4617-8293-a4b5c6d7e8f9",
    ]
