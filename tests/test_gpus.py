"""GPU discovery on captured real nvidia-smi outputs (tests/fixtures/nvidia-smi)."""

from __future__ import annotations

from pathlib import Path

import pytest

from glidein_triton.worker import gpus

from .support import fake_nvidia_smi


def query_csv(fixtures: Path, name: str, extra_indexes: tuple[int, ...] = ()) -> str:
    """A fixture's --query-gpu CSV; extra rows copy the first with other indexes (a multi-GPU node)."""
    lines = (fixtures / name / "query-gpu-idle.csv").read_text().splitlines()
    header, row = lines[0], lines[1]
    columns = [c.strip() for c in header.split(",")]
    index_position = columns.index("index")
    rows = [row]
    for index in extra_indexes:
        cells = row.split(", ")
        cells[index_position] = str(index)
        cells[columns.index("uuid")] = f"GPU-0000000{index}-0000-0000-0000-00000000000{index}"
        rows.append(", ".join(cells))
    return "\n".join([header, *rows]) + "\n"


@pytest.mark.parametrize(
    ("name", "model", "memory", "driver"),
    [
        ("l40s", "NVIDIA L40S", 46068, "595.80"),
        ("h100", "NVIDIA H100 80GB HBM3", 81559, "590.48.01"),
        ("h200", "NVIDIA H200", 143771, "590.48.01"),
        ("rtx4080s", "NVIDIA GeForce RTX 4080 SUPER", 16376, "595.71.05"),
    ],
)
def test_one_gpu(nvidia_smi_fixtures: Path, name: str, model: str, memory: int, driver: str) -> None:
    found = gpus.parse_query_csv((nvidia_smi_fixtures / name / "query-gpu-idle.csv").read_text())
    assert len(found) == 1
    assert (found[0].index, found[0].name, found[0].memory_mib, found[0].driver) == (0, model, memory, driver)
    assert found[0].uuid.startswith("GPU-")


def test_several_gpus(nvidia_smi_fixtures: Path) -> None:
    found = gpus.parse_query_csv(query_csv(nvidia_smi_fixtures, "h100", (1, 2, 3)))
    assert [gpu.index for gpu in found] == [0, 1, 2, 3]
    assert len({gpu.uuid for gpu in found}) == 4


def test_missing_columns_are_an_error() -> None:
    with pytest.raises(ValueError, match=r"memory\.total"):
        gpus.parse_query_csv("index, uuid, name, driver_version\n0, GPU-1, X, 1\n")


def test_mig_slices_replace_their_gpu(nvidia_smi_fixtures: Path) -> None:
    found = gpus.parse_query_csv((nvidia_smi_fixtures / "h100-mig" / "query-gpu-idle.csv").read_text())
    slices = gpus.parse_list((nvidia_smi_fixtures / "h100-mig" / "list-L.txt").read_text())
    devices = gpus.devices(found, slices)
    assert [device.mig_profile for device in devices] == ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]
    assert all(device.uuid.startswith("MIG-") and device.parent_uuid == found[0].uuid for device in devices)
    assert devices[0].memory_mib == 40 * 1024
    assert devices[0].label == "NVIDIA H100 80GB HBM3 MIG 3g.40gb"


def test_eight_gpus_with_seven_slices_each(nvidia_smi_fixtures: Path) -> None:
    slices = gpus.parse_list((nvidia_smi_fixtures / "8xh100-mig" / "list-L.txt").read_text())
    assert len(slices) == 8
    assert all(len(gpu_slices) == 7 for gpu_slices in slices.values())
    assert slices["GPU-63d1e50a-b952-d15c-0740-12bc14859142"][1] == (
        "1g.10gb",
        "MIG-7d8b2e8d-57ea-5fe3-83bc-2026e5cb10fb",
    )


def test_visible_devices(nvidia_smi_fixtures: Path) -> None:
    devices = gpus.parse_query_csv(query_csv(nvidia_smi_fixtures, "l40s", (1, 2)))
    uuid1 = devices[1].uuid
    assert gpus.visible_devices(devices, {}) == devices
    assert gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": "2,0"}) == [devices[2], devices[0]]
    assert gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": uuid1}) == [devices[1]]
    assert gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": uuid1[:12]}) == [devices[1]]
    for none in ("", "-1", "NoDevFiles", "none", "void"):
        assert gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": none}) == []
    # NVIDIA_VISIBLE_DEVICES is the container toolkit's setting, not a CUDA filter.
    assert gpus.visible_devices(devices, {"NVIDIA_VISIBLE_DEVICES": "void"}) == devices
    assert gpus.visible_devices(devices, {"NVIDIA_VISIBLE_DEVICES": "1"}) == devices
    assert gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": "0", "NVIDIA_VISIBLE_DEVICES": "all"}) == [
        devices[0]
    ]


def test_visible_devices_stop_at_the_first_invalid_entry(nvidia_smi_fixtures: Path) -> None:
    """As CUDA reads the list: a wrong index, an unknown uuid or a repeat ends it."""
    devices = gpus.parse_query_csv(query_csv(nvidia_smi_fixtures, "l40s", (1, 2)))
    assert gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": "1,7,0"}) == [devices[1]]
    assert gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": "2,GPU-ffff,0"}) == [devices[2]]
    assert gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": "0,-1,1"}) == [devices[0]]
    assert gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": "0,0,1"}) == [devices[0]]


def test_index_order_is_known_only_for_one_model_or_pci_order(nvidia_smi_fixtures: Path) -> None:
    same = gpus.parse_query_csv(query_csv(nvidia_smi_fixtures, "l40s", (1,)))
    mixed = gpus.parse_query_csv((nvidia_smi_fixtures / "mixed-synthetic" / "query-gpu-idle.csv").read_text())
    assert gpus.index_order_known(same, {})
    assert not gpus.index_order_known(mixed, {})
    assert gpus.index_order_known(mixed, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})


@pytest.mark.parametrize(
    ("name", "capability"),
    [("l40s", "8.9"), ("h100", "9.0"), ("h200", "9.0"), ("rtx4080s", "8.9"), ("h100-mig", "9.0")],
)
def test_compute_capability_from_real_captures(nvidia_smi_fixtures: Path, name: str, capability: str) -> None:
    found = gpus.parse_query_csv((nvidia_smi_fixtures / name / "query-gpu-idle.csv").read_text())
    assert found[0].compute_capability == capability
    slices = gpus.parse_list((nvidia_smi_fixtures / name / "list-L.txt").read_text())
    assert all(device.compute_capability == capability for device in gpus.devices(found, slices))


def test_compute_capability_is_optional() -> None:
    found = gpus.parse_query_csv("index, uuid, name, memory.total, driver_version\n0, GPU-1, X, 1, 510.1\n")
    assert found[0].compute_capability == ""


def test_visible_mig_slice(nvidia_smi_fixtures: Path) -> None:
    found = gpus.parse_query_csv((nvidia_smi_fixtures / "h100-mig" / "query-gpu-idle.csv").read_text())
    devices = gpus.devices(
        found, gpus.parse_list((nvidia_smi_fixtures / "h100-mig" / "list-L.txt").read_text())
    )
    chosen = gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": devices[2].uuid})
    assert chosen == [devices[2]]
    # The parent GPU's uuid selects all its slices.
    assert gpus.visible_devices(devices, {"CUDA_VISIBLE_DEVICES": found[0].uuid}) == devices


def test_query_runs_nvidia_smi(tmp_path: Path, nvidia_smi_fixtures: Path) -> None:
    path = fake_nvidia_smi(tmp_path, nvidia_smi_fixtures / "h100-mig")
    found = gpus.query(
        f"{tmp_path}/nvidia-smi",
        {"PATH": path, "CUDA_VISIBLE_DEVICES": "MIG-00000001-0000-0000-0000-000000000001"},
    )
    assert [device.mig_profile for device in found] == ["2g.20gb"]
