"""The node check's parts: the release and driver tables, nvliblist.conf and ldconfig parsing, the report."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from glidein_triton.worker import cuda_support, door
from glidein_triton.worker.check import findings as check_report
from glidein_triton.worker.check import node_checks, nvidia_libraries, pool_checks
from glidein_triton.worker.check.container_checks import ServerRuntime
from glidein_triton.worker.check.findings import FAIL, OK, Finding
from glidein_triton.worker.check.node_checks import NodeContext
from glidein_triton.worker.settings import Settings


def test_every_release_has_a_cuda_version_with_a_driver_row() -> None:
    releases = list(cuda_support.TRITON_CUDA)
    assert releases == sorted(releases)
    assert all(cuda_support.valid_release(release) for release in releases)
    assert {"23.04", "24.08", "25.10"} <= set(releases)
    for cuda in cuda_support.TRITON_CUDA.values():
        assert cuda in cuda_support.TOOLKIT_DRIVERS
        assert cuda.split(".")[0] in cuda_support.MINOR_COMPATIBILITY
    drivers = [
        cuda_support.version_tuple(cuda_support.TOOLKIT_DRIVERS[c]) for c in cuda_support.TRITON_CUDA.values()
    ]
    assert drivers == sorted(drivers), "a later release never needs an older driver"


@pytest.mark.parametrize(
    ("image", "release"),
    [
        ("docker://nvcr.io/nvidia/tritonserver:24.08-py3", "24.08"),
        ("/cvmfs/unpacked.cern.ch/registry.hub.docker.com/nvcr.io/nvidia/tritonserver:25.02-py3", "25.02"),
        ("/cvmfs/images/v1.23.45/tritonserver_23.10.sif", "23.10"),
        ("/images/tritonserver-24.13.sif", ""),
        ("/images/tritonserver.sif", ""),
        ("/cvmfs/x/1.2.3/server", ""),
    ],
)
def test_release_from_image(image: str, release: str) -> None:
    assert cuda_support.release_from_image(image) == release


@pytest.mark.parametrize(
    ("driver", "release", "status"),
    [
        ("580.65.06", "25.08", "ok"),
        ("580.65.05", "25.08", "warn"),  # an R580 driver: minor version compatibility
        ("579.99", "25.08", "fail"),  # CUDA 13 needs an R580 driver at least
        ("570.124.06", "25.03", "ok"),
        ("570.86.10", "25.03", "warn"),
        ("525.60.13", "23.04", "warn"),
        ("520.61.05", "23.04", "fail"),
        ("595.80", "26.02", "ok"),
        ("590.48.01", "23.03", "unknown"),
    ],
)
def test_judge(driver: str, release: str, status: str) -> None:
    verdict = cuda_support.judge(driver, release)
    assert verdict.status == status, verdict.message
    assert driver in verdict.message


def test_judge_says_why() -> None:
    assert cuda_support.judge("535.104.05", "25.08").message == (
        "driver 535.104.05 is too old for CUDA 13.0.0 of Triton 25.08 (needs >= 580.65.06, at least 580 with "
        f"minor version compatibility); {cuda_support.FORWARD_COMPATIBILITY_NOTE}"
    )
    assert cuda_support.judge("590.48.01", "23.03").message.startswith(
        "Triton 23.03 is not in the release table (23.04 to 26.02"
    )


def test_version_tuple() -> None:
    assert cuda_support.version_tuple("570.124.06") == (570, 124, 6)
    assert cuda_support.version_tuple(" 595.80 ") == (595, 80)
    assert cuda_support.version_tuple("[N/A]") == ()


def test_nvliblist_and_ldconfig_parsing() -> None:
    binaries, libraries = nvidia_libraries.parse_nvliblist(
        "# comment\nnvidia-smi\n\nlibcuda.so\nlibnvidia-ml.so  # NVML\n/usr/share/x.json\nnvidia-debugdump\n"
    )
    assert binaries == ["nvidia-smi", "nvidia-debugdump"]
    assert libraries == ["libcuda.so", "libnvidia-ml.so"]
    cached = nvidia_libraries.parse_ldconfig(
        "612 libs found in cache `/etc/ld.so.cache'\n"
        "\tlibcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1\n"
        "\tlibcuda.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so\n"
        "\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6\n"
    )
    assert cached == {"libcuda.so.1", "libcuda.so", "libc.so.6"}
    assert nvidia_libraries.present(["libcuda.so", "libnvidia-ml.so"], cached) == ["libcuda.so"]


def test_nvliblist_locations(tmp_path: Path) -> None:
    executable = tmp_path / "opt" / "apptainer" / "bin" / "apptainer"
    assert nvidia_libraries.config_candidates(str(executable)) == [
        tmp_path / "opt" / "apptainer" / "etc" / "apptainer" / "nvliblist.conf",
        Path("/etc/apptainer/nvliblist.conf"),
    ]
    assert nvidia_libraries.config_candidates("/usr/bin/singularity")[-1] == Path(
        "/etc/singularity/nvliblist.conf"
    )
    assert nvidia_libraries.find_config(str(executable)) is None
    config = tmp_path / "opt" / "apptainer" / "etc" / "apptainer" / "nvliblist.conf"
    config.parent.mkdir(parents=True)
    config.write_text("libcuda.so\n")
    assert nvidia_libraries.find_config(str(executable)) == config


def test_python_version() -> None:
    assert node_checks.check_python((3, 9, 18), "/usr/bin/python3.9").status == "ok"
    old = node_checks.check_python((3, 8, 10), "/usr/bin/python3")
    assert (old.status, old.summary) == (
        "fail",
        "Python 3.8.10 at /usr/bin/python3: the worker code needs >= 3.9",
    )


def test_disk_space_against_the_threshold(tmp_path: Path) -> None:
    def usage(_path: Path) -> tuple[int, int, int]:
        return (100 * node_checks.GIB, 98 * node_checks.GIB, 2 * node_checks.GIB)

    assert node_checks.check_disk(tmp_path, 2 * node_checks.GIB, usage).status == "ok"
    short = node_checks.check_disk(tmp_path, 3 * node_checks.GIB, usage)
    assert short.summary == f"2.0 GiB free in {tmp_path}, below the 3 GiB asked for (--min-free-gb)"


def test_report() -> None:
    findings = [
        Finding("python", "ok", "Python 3.11"),
        Finding("image", "warn", "will be pulled", ("slow",)),
        Finding("disk", "fail", "full"),
        Finding("gpus", "info", "none"),
    ]
    assert check_report.exit_code(findings) == 1
    assert check_report.exit_code([findings[0], findings[1], findings[3]]) == 0
    text = check_report.table(findings, "title")
    assert text.splitlines()[3:9] == [
        "ok      python Python 3.11",
        "WARN    image  will be pulled",
        "                 slow",
        "FAIL    disk   full",
        "info    gpus   none",
        "",
    ]
    assert text.endswith(
        "Failures (Triton cannot run until they are fixed):\n  - disk: full\n\nWarnings:\n  - image: will be pulled\n\n"
        "Triton cannot run on this node (1 failure, 1 warning).\n"
    )
    document = json.loads(check_report.as_json(findings, {"host": "h"}))
    assert (document["can_run"], document["failures"], document["warnings"]) == (False, ["disk"], ["image"])
    assert document["checks"][1] == {
        "check": "image",
        "status": "warn",
        "summary": "will be pulled",
        "notes": ["slow"],
    }
    with pytest.raises(ValueError, match="unknown status 'bad'"):
        Finding("x", "bad", "y")


def test_the_front_door_check_fails_without_user_namespaces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process runtime's server needs a namespace of its own (the door); the row says so and why."""
    monkeypatch.setattr(
        door,
        "UNSHARE",
        ["sh", "-c", "echo 'unshare: unshare failed: Operation not permitted' >&2; exit 1", "--"],
    )
    finding = node_checks.check_front_door("process")
    assert finding.status == FAIL
    assert "unshare failed: Operation not permitted" in finding.summary
    assert "user.max_user_namespaces" in finding.notes[0]
    monkeypatch.undo()
    assert node_checks.check_front_door("process").status == OK


def pool_context(tmp_path: Path, settings: dict[str, str], path: str) -> NodeContext:
    return NodeContext(
        Settings.from_config({"GLIDEIN_TRITON_POOL": "server", **settings}),
        {},
        {"PATH": path},
        tmp_path,
        "",
        0,
    )


def test_a_pool_servers_rows(tmp_path: Path) -> None:
    here = os.environ["PATH"]
    public = pool_context(tmp_path, {"GLIDEIN_TRITON_ADDRESS": "131.225.1.2"}, here)
    old = pool_context(tmp_path, {"GLIDEIN_TRITON_IMAGE": "/images/tritonserver:24.09-py3.sif"}, here)
    rows = pool_checks.check_pool(public, ServerRuntime("apptainer", "/bin/true"))
    assert [(row.check, row.status) for row in rows] == [
        ("pool openssl", "ok"),
        ("pool triton", "warn"),  # no image: nothing to read the release from
        ("pool address", "ok"),
    ]
    assert pool_checks.check_pool_release(old, ServerRuntime("apptainer", "/bin/true")).status == "fail"
    new = pool_context(tmp_path, {"GLIDEIN_TRITON_IMAGE": "/images/tritonserver:24.10-py3.sif"}, here)
    assert pool_checks.check_pool_release(new, ServerRuntime("apptainer", "/bin/true")).status == "ok"
    private = pool_context(tmp_path, {"GLIDEIN_TRITON_ADDRESS": "10.1.2.3"}, here)
    assert pool_checks.check_address(private).status == "warn"
    loopback = pool_context(tmp_path, {"GLIDEIN_TRITON_ADDRESS": "127.0.0.2"}, here)
    assert pool_checks.check_address(loopback).status == "fail"
    no_openssl = pool_context(tmp_path, {}, str(tmp_path))
    assert pool_checks.check_openssl(no_openssl).status == "fail"
    assert (
        pool_checks.check_pool(
            pool_context(tmp_path, {"GLIDEIN_TRITON_POOL": "off"}, here), ServerRuntime("process")
        )
        == []
    )
