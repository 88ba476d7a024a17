"""The server's GPUs: selection rules, MIG, the site's CUDA_VISIBLE_DEVICES, ownership against the startd."""

from __future__ import annotations

from pathlib import Path

import classad2
import pytest

from glidein_triton.local import startd_gpus
from glidein_triton.worker import access, gpu_ownership, gpu_selection, gpus, server_report, startup
from glidein_triton.worker import ports as port_allocation
from glidein_triton.worker.ports import Ports
from glidein_triton.worker.settings import Settings
from glidein_triton.worker.state import ServerState

from .support import fake_nvidia_smi

#: A job that asks HTCondor for a GPU: condor_submit adds TARGET.GPUs >= RequestGPUs to its Requirements.
REQUEST_GPUS_JOB = "RequestGPUs = 1\nRequirements = (TARGET.GPUs >= MY.RequestGPUs)\n"
#: A Triton job that wants a server with a GPU (and requests none itself).
TRITON_GPU_JOB = "RequestGPUs = 0\nRequirements = (TARGET.HasTriton =?= True) && (TARGET.TritonGPUs > 0)\n"
SERVER_ON_ONE_GPU = {"HasTriton": "True", "TritonGPUs": "1"}


def devices_of(fixtures: Path, name: str) -> list[gpus.GPU]:
    found = gpus.parse_query_csv((fixtures / name / "query-gpu-idle.csv").read_text())
    return gpus.devices(found, gpus.parse_list((fixtures / name / "list-L.txt").read_text()))


def settings(**values: str) -> Settings:
    return Settings.from_config({"GLIDEIN_TRITON": "True", **values})


def test_mig_one_slice_per_server(nvidia_smi_fixtures: Path) -> None:
    slices = devices_of(nvidia_smi_fixtures, "h100-mig")
    chosen = gpu_selection.select(slices, {}, "25.02", [])
    assert chosen.devices == [slices[0]]
    assert chosen.idle == 3
    assert chosen.cuda_visible_devices == slices[0].uuid


def test_site_value_passed_on_unchanged_when_all_is_used(nvidia_smi_fixtures: Path) -> None:
    h100 = devices_of(nvidia_smi_fixtures, "h100")
    environment = {"CUDA_VISIBLE_DEVICES": "0"}
    chosen = gpu_selection.select(gpus.visible_devices(h100, environment), environment, "25.02", [])
    assert (chosen.devices, chosen.cuda_visible_devices) == (h100, "0")


def test_compute_capability_below_the_release_minimum(nvidia_smi_fixtures: Path) -> None:
    mixed = devices_of(nvidia_smi_fixtures, "mixed-synthetic")
    environment = {"CUDA_VISIBLE_DEVICES": "0,1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    # 24.11 raised Triton's minimum to 7.5: the V100 (7.0) is left out, the L40S named by uuid.
    chosen = gpu_selection.select(mixed, environment, "24.12", [])
    assert chosen.devices == [mixed[1]]
    assert chosen.cuda_visible_devices == mixed[1].uuid
    assert "compute capability 7.0, below the 7.5" in chosen.reason
    # Before 24.11 the minimum was 6.0; the operator's option wins over the release's default.
    assert gpu_selection.select(mixed, environment, "24.10", []).devices == mixed
    assert (
        gpu_selection.select(mixed, environment, "24.12", ["--min-supported-compute-capability=7.0"]).devices
        == mixed
    )


def test_unknown_cuda_order_keeps_the_site_value(nvidia_smi_fixtures: Path) -> None:
    mixed = devices_of(nvidia_smi_fixtures, "mixed-synthetic")
    environment = {"CUDA_VISIBLE_DEVICES": "0,1"}
    chosen = gpu_selection.select(mixed, environment, "24.12", [], order_known=False)
    assert chosen.cuda_visible_devices == "0,1"
    assert "CUDA's index order unknown" in chosen.reason


def test_driver_too_old_for_the_image(nvidia_smi_fixtures: Path) -> None:
    h100 = devices_of(nvidia_smi_fixtures, "h100")  # driver 590.48.01
    chosen = gpu_selection.select(h100, {}, "26.02", [])  # CUDA 13.1.1 needs 590.48.01: fine
    assert chosen.devices == h100
    old = [gpus.GPU(0, "GPU-1", "NVIDIA H100", 81559, "520.61.05", compute_capability="9.0")]
    refused = gpu_selection.select(old, {}, "25.02", [])
    assert refused.devices == []
    assert "too old for CUDA 12.8.0" in refused.reason


def test_missing_nv_libraries_leave_no_gpu(nvidia_smi_fixtures: Path) -> None:
    h100 = devices_of(nvidia_smi_fixtures, "h100")
    refused = gpu_selection.select(h100, {}, "25.02", [], "ldconfig -p lists no libcuda.so")
    assert (refused.devices, refused.reason) == ([], "ldconfig -p lists no libcuda.so")


@pytest.mark.parametrize(
    ("environment", "values", "expected"),
    [
        ({}, {}, 0),  # auto: nvidia-smi shows the node's GPUs, but none is this glidein's
        ({}, {"GLIDEIN_TRITON_ENTRY_GPUS": "True"}, 1),
        ({"CUDA_VISIBLE_DEVICES": "GPU-00000000"}, {}, 1),  # the site assigned one
        ({"CUDA_VISIBLE_DEVICES": "-1"}, {}, 0),
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, {}, 0),  # a container setting, not an assignment
        ({}, {"GLIDEIN_TRITON_GPU": "cpu", "GLIDEIN_TRITON_ENTRY_GPUS": "True"}, 0),
    ],
)
def test_auto_uses_gpus_only_when_the_glidein_has_them(
    tmp_path: Path,
    nvidia_smi_fixtures: Path,
    environment: dict[str, str],
    values: dict[str, str],
    expected: int,
) -> None:
    path = fake_nvidia_smi(tmp_path, nvidia_smi_fixtures / "h100")
    chosen = gpu_selection.choose(settings(**values), {}, {"PATH": path, **environment})
    assert len(chosen.devices) == expected


def test_choose_without_a_driver(tmp_path: Path, nvidia_smi_fixtures: Path) -> None:
    path = fake_nvidia_smi(tmp_path, nvidia_smi_fixtures / "no-driver", failing=True)
    chosen = gpu_selection.choose(settings(GLIDEIN_TRITON_ENTRY_GPUS="True"), {}, {"PATH": path})
    assert chosen.devices == []
    assert chosen.reason.startswith("nvidia-smi failed")


@pytest.mark.parametrize(
    ("slots", "expected"),
    [
        ("GPUs,1,type=main", ""),
        ("GPUs,type=main", ""),
        ("ioslots,2;GPUs,type=main", "ioslots,2"),
        ("type=partitionable,name=GPUs,number=2;ioslots,1", "ioslots,1"),
        ("ioslots,1", "ioslots,1"),
    ],
)
def test_without_gpus(slots: str, expected: str) -> None:
    assert gpu_ownership.without_gpus(slots) == expected


def matches(slot: startd_gpus.Slot, published: dict[str, str], job: str) -> bool:
    machine = classad2.parseOne(slot.ad(published))
    return bool(machine.symmetricMatch(classad2.parseOne(job)))


@pytest.mark.parametrize("slots", ["GPUs,1,type=main", "GPUs,type=main", "GPUs,2,type=partitionable"])
def test_the_server_owns_its_gpus(nvidia_smi_fixtures: Path, slots: str) -> None:
    """Before: HTCondor would give the server's GPU to a request_gpus job; after the startup script's
    GLIDEIN_Resource_Slots line, no slot has a GPU to give, and the Triton job matches on TritonGPUs."""
    node = devices_of(nvidia_smi_fixtures, "h100")
    config = {"GLIDEIN_Resource_Slots": slots}
    before = startd_gpus.slots(config, node)
    assert any(matches(slot, SERVER_ON_ONE_GPU, REQUEST_GPUS_JOB) for slot in before)
    config.update(gpu_ownership.startd_values(config, server_gpus=1))
    after = startd_gpus.slots(config, node)
    assert [slot.gpus for slot in after] == [0]
    assert not any(matches(slot, SERVER_ON_ONE_GPU, REQUEST_GPUS_JOB) for slot in after)
    assert matches(after[0], SERVER_ON_ONE_GPU, TRITON_GPU_JOB)


def test_a_cpu_server_leaves_the_gpus_to_the_startd(nvidia_smi_fixtures: Path) -> None:
    node = devices_of(nvidia_smi_fixtures, "h100")
    config = {"GLIDEIN_Resource_Slots": "GPUs,type=main"}
    assert gpu_ownership.startd_values(config, server_gpus=0) == []
    (main,) = startd_gpus.slots(config, node)
    assert (main.gpus, main.assigned) == (1, ("GPU-00000000",))
    assert matches(main, {"HasTriton": "True", "TritonGPUs": "0"}, REQUEST_GPUS_JOB)


def test_log_tells_the_gpus_initialised() -> None:
    log = (
        'I1201 10:00:00.1 1 cuda_memory_manager.cc:107] "CUDA memory pool is created on device 0 with size 67108864"\n'
        'I1201 10:00:00.1 1 cuda_memory_manager.cc:107] "CUDA memory pool is created on device 1 with size 67108864"\n'
    )
    assert server_report.initialised_gpus(log) == [0, 1]
    assert (
        server_report.initialised_gpus('I1201 cuda_memory_manager.cc:117] "CUDA memory pool disabled"') == []
    )


def test_gpu_failure_only_from_error_lines() -> None:
    warning = (
        'W1201 1 pinned_memory_manager.cc:273] "Unable to allocate: CUDA driver version is insufficient"'
    )
    failed = (
        "E1201 1 model_lifecycle.cc:642] \"failed to load 'm' version 1: Invalid argument: instance group m_0 "
        'of model m has kind KIND_GPU but no GPUs are available"'
    )
    assert server_report.gpu_failure(warning) == ""
    assert server_report.gpu_failure(f"{warning}\n{failed}") == failed
    assert server_report.gpu_failure("error: creating server: Internal - failed to load all models") == ""


def running_on(tmp_path: Path, log: str, devices: list[gpus.GPU], idle: int = 0) -> startup.RunningServer:
    """A launched server's record, its log written; nothing listens on its port (the index is empty)."""
    (tmp_path / "server.log").write_text(log)
    state = ServerState(runtime="process", http_port=port_allocation.allocate(Ports(0, 0, 0)).http)
    state.log_path = str(tmp_path / "server.log")
    selection = gpu_selection.Selection(devices, "0,1", idle)
    return startup.RunningServer(state, devices, "2.51.0", "/r", access.Access(), selection)


def test_the_server_report_takes_the_gpus_it_initialised_from_the_startd(
    tmp_path: Path, nvidia_smi_fixtures: Path
) -> None:
    two = devices_of(nvidia_smi_fixtures, "mixed-synthetic")
    log = 'I1201 cuda_memory_manager.cc:107] "CUDA memory pool is created on device 1 with size 67108864"\n'
    running = running_on(tmp_path, log, two)
    report = startup.report_server(running, settings())
    assert report.used == [two[1]]
    values = dict(report.values(running, {"GLIDEIN_Resource_Slots": "ioslots,1;GPUs,2,type=main"}))
    assert (values["TRITON_GPUS"], values["TRITON_GPUS_IDLE"]) == ("1", "1")
    assert values["TRITON_GPU_NAMES"] == "NVIDIA L40S"
    assert values["GLIDEIN_Resource_Slots"] == "ioslots,1"


def test_a_server_that_initialised_no_gpu_says_so_and_leaves_them(
    tmp_path: Path, nvidia_smi_fixtures: Path
) -> None:
    h100 = devices_of(nvidia_smi_fixtures, "h100")
    running = running_on(tmp_path, 'I1201 cuda_memory_manager.cc:117] "CUDA memory pool disabled"\n', h100)
    report = startup.report_server(running, settings())
    assert report.used == []
    assert report.fallback.startswith("tritonserver initialised none of the 1 GPUs")
    values = dict(report.values(running, {"GLIDEIN_Resource_Slots": "GPUs,1,type=main"}))
    assert "GLIDEIN_Resource_Slots" not in values
    # With a memory pool size set by the operator, the log cannot tell: the GPUs given count as used.
    sized = startup.report_server(
        running, settings(GLIDEIN_TRITON_SERVER_ARGS="--cuda-memory-pool-byte-size=0:0")
    )
    assert sized.used == h100
