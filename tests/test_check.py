"""``glidein-triton check`` on the captured nvidia-smi outputs, the stand-in apptainer and fakes for the rest."""

from __future__ import annotations

import ast
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.operator import payload
from glidein_triton.worker.check import command as check
from glidein_triton.worker.ports import LOOPBACK
from glidein_triton.worker.settings import RETIRED_SETTINGS

from .support import PYTHON39, STANDIN_APPTAINER, fake_nvidia_smi, write_executable

ESSENTIAL_CACHE = ("libcuda.so.1", "libnvidia-ml.so.1")


class Node:
    """A fake worker node under tmp_path: a bin/ directory first on PATH, images, a work directory."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.work = root / "work"
        self.work.mkdir()
        self.config_lines: dict[str, str] = {}
        monkeypatch.setenv("PATH", f"{self.bin}:/usr/bin:/bin")
        monkeypatch.setenv("APPTAINER_CONFIGDIR", str(root / "apptainer-config"))
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        monkeypatch.delenv("NVIDIA_VISIBLE_DEVICES", raising=False)
        monkeypatch.delenv("SINGULARITY_PATH", raising=False)
        monkeypatch.chdir(self.work)

    def apptainer(self, nvliblist: str | None = None) -> Path:
        """The stand-in apptainer installed as <prefix>/bin/apptainer, with etc/apptainer/nvliblist.conf."""
        target = self.root / "apptainer" / "bin" / "apptainer"
        target.parent.mkdir(parents=True)
        shutil.copy2(STANDIN_APPTAINER, target)
        if nvliblist is not None:
            config = self.root / "apptainer" / "etc" / "apptainer" / "nvliblist.conf"
            config.parent.mkdir(parents=True)
            config.write_text(nvliblist)
        (self.bin / "apptainer").symlink_to(target)
        return target

    def ldconfig(self, libraries: tuple[str, ...]) -> None:
        """An ldconfig whose ``-p`` lists ``libraries`` as the real one lists its cache."""
        cache = self.root / "ld.so.cache.txt"
        lines = [f"{len(libraries)} libs found in cache `/etc/ld.so.cache'"]
        lines += [f"\t{name} (libc6,x86-64) => /usr/lib64/{name}" for name in libraries]
        cache.write_text("\n".join(lines) + "\n")
        write_executable(self.bin / "ldconfig", f'#!/bin/sh\ncat "{cache}"\n')

    def gpus(self, fixtures: Path, name: str, driver: str = "") -> None:
        """nvidia-smi printing a captured output, its driver version replaced by ``driver`` if given."""
        fixture = self.root / "nvidia-smi" / name
        shutil.copytree(fixtures / name, fixture)
        if driver:
            csv = fixture / "query-gpu-idle.csv"
            original = (fixtures / name / "query-gpu-idle.csv").read_text()
            csv.write_text(original.replace("590.48.01", driver))
        fake_nvidia_smi(self.bin, fixture, failing=name == "no-driver")

    def image(self, name: str = "tritonserver-25.08-py3.sandbox") -> Path:
        image = self.root / "images" / name
        write_executable(image / "opt" / "tritonserver" / "bin" / "tritonserver", "#!/bin/sh\n")
        write_executable(image / "usr" / "bin" / "python3", "#!/bin/sh\n")  # the front door's relay's
        return image

    def glidein_config(self, **values: str) -> Path:
        path = self.work / "glidein_config"
        path.write_text("".join(f"{key} {value}\n" for key, value in values.items()))
        return path


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Node:
    return Node(tmp_path, monkeypatch)


def run_check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = check.main(["--json", *argv])
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == code
    return code, report


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {finding["check"]: finding for finding in report["checks"]}


NVLIBLIST = """# NVLIBLIST.CONF, as Apptainer ships it (excerpt)
# put binaries here
nvidia-smi
nvidia-persistenced
# put libs here (must end in .so)
libcuda.so
libnvidia-ml.so
libnvidia-ptxjitcompiler.so
libGLX_nvidia.so # a trailing comment
# put non-library file paths here (must be absolute path)
/usr/share/glvnd/egl_vendor.d/10_nvidia.json
"""


def test_gpu_node_with_apptainer_can_run(
    node: Node, nvidia_smi_fixtures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node.apptainer(NVLIBLIST)
    node.gpus(nvidia_smi_fixtures, "h100")
    node.ldconfig((*ESSENTIAL_CACHE, "libnvidia-ptxjitcompiler.so.1"))
    image = node.image()
    code, report = run_check(capsys, "--image", str(image))
    checks = by_name(report)
    assert code == 0, report
    assert report["can_run"] is True
    assert report["failures"] == []
    assert report["warnings"] == []
    assert report["triton_release"] == "25.08"
    assert list(checks) == [
        "python",
        "settings",
        "keys",
        "containers",
        "runtime",
        "instance",
        "image",
        "triton",
        "gpus",
        "driver",
        "compute",
        "--nv",
        "ports",
        "front door",
        "disk",
        "models",
    ]
    assert checks["triton"]["summary"] == (
        f"Triton 25.08, from the image name {image}: takes every option the plugin uses"
    )
    assert "apptainer version 1.3.6 (glidein-triton stand-in)" in checks["runtime"]["summary"]
    assert checks["instance"]["status"] == "ok"
    assert checks["image"]["summary"] == f"sandbox directory {image}, with /opt/tritonserver/bin/tritonserver"
    assert checks["gpus"]["summary"] == "1 GPU (NVIDIA H100 80GB HBM3), driver 590.48.01"
    assert (
        checks["driver"]["summary"] == "driver 590.48.01 >= 580.65.06, needed by CUDA 13.0.0 of Triton 25.08"
    )
    assert checks["compute"]["summary"] == "compute capability 9.0 >= 7.5 (Triton 25.08)"
    assert checks["--nv"]["summary"].startswith("ldconfig -p lists 3 of 4 NVIDIA libraries")
    assert checks["--nv"]["notes"] == [
        f"libraries listed in {node.root}/apptainer/etc/apptainer/nvliblist.conf"
    ]


def test_the_default_output_is_a_table_with_failures_and_warnings_apart(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    node.apptainer()
    code = check.main(["--image", "docker://nvcr.io/nvidia/tritonserver:24.08-py3", "--min-free-gb", "1e9"])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("glidein-triton 0.1.0 node check on ")
    assert lines[2].split() == ["STATUS", "CHECK", "RESULT"]
    assert any(line.startswith("WARN    image") for line in lines)
    assert any(line.startswith("FAIL    disk") for line in lines)
    failures = lines.index("Failures (Triton cannot run until they are fixed):")
    warnings = lines.index("Warnings:")
    assert lines[failures + 1].startswith("  - disk: ")
    assert lines[warnings + 1] == (
        "  - image: docker://nvcr.io/nvidia/tritonserver:24.08-py3 will be pulled by apptainer at startup"
    )
    assert lines[-1] == "Triton cannot run on this node (1 failure, 1 warning)."


def test_singularity_from_singularity_path_in_glidein_config(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    singularity = write_executable(
        node.root / "singularity-ce" / "bin" / "singularity",
        '#!/bin/sh\ncase "$*" in\n  --version) echo "singularity-ce version 3.11.4";;\n'
        '  "instance list") echo "INSTANCE NAME    PID      IP    IMAGE";;\n  *) exit 255;;\nesac\n',
    )
    config = node.glidein_config(SINGULARITY_PATH=str(singularity), GLIDEIN_TRITON_IMAGE=str(node.image()))
    code, report = run_check(capsys, "--glidein-config", str(config))
    checks = by_name(report)
    assert code == 0, report
    assert checks["runtime"]["summary"] == f"{singularity}: singularity-ce version 3.11.4"
    assert checks["instance"]["summary"] == "instance list runs"
    assert checks["gpus"] == {
        "check": "gpus",
        "status": "info",
        "summary": "no nvidia-smi on PATH: Triton runs on the CPU",
        "notes": [],
    }
    assert checks["--nv"]["summary"] == "skipped: no GPU, so no --nv"
    assert report["work_dir"] == str(node.work)


def test_a_runtime_without_instance_support_fails(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    old = write_executable(
        node.bin / "singularity",
        '#!/bin/sh\ncase "$1" in\n  --version) echo "singularity version 2.3.1";;\n'
        "  *) echo \"ERROR: Unknown command '$1'\" >&2; exit 1;;\nesac\n",
    )
    config = node.glidein_config(GLIDEIN_TRITON_RUNTIME="singularity", GLIDEIN_TRITON_IMAGE=str(node.image()))
    code, report = run_check(capsys, "--glidein-config", str(config))
    assert code == 1
    assert report["failures"] == ["instance"]
    assert by_name(report)["instance"]["summary"] == (
        f"{old} instance list exited with 1: ERROR: Unknown command 'instance'"
    )


def test_auto_with_singularity_on_path_only_uses_it(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    singularity = write_executable(node.bin / "singularity", "#!/bin/sh\necho singularity version 3.8.7\n")
    _, report = run_check(capsys, "--image", str(node.image()))
    assert by_name(report)["runtime"]["status"] != "fail"
    assert str(singularity) in by_name(report)["runtime"]["summary"]


def test_apptainer_asked_for_with_singularity_on_path_only(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    singularity = write_executable(node.bin / "singularity", "#!/bin/sh\necho singularity version 3.8.7\n")
    config = node.glidein_config(GLIDEIN_TRITON_RUNTIME="apptainer", GLIDEIN_TRITON_IMAGE=str(node.image()))
    code, report = run_check(capsys, "--glidein-config", str(config))
    runtime = by_name(report)["runtime"]
    assert code == 1
    assert runtime["status"] == "fail"
    assert runtime["notes"] == [
        f"{singularity} is there: set SINGULARITY_PATH or GLIDEIN_TRITON_RUNTIME=singularity"
    ]


def test_missing_container_runtime(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    config = node.glidein_config(GLIDEIN_TRITON_RUNTIME="apptainer", GLIDEIN_TRITON_IMAGE=str(node.image()))
    code, report = run_check(capsys, "--glidein-config", str(config))
    checks = by_name(report)
    assert code == 1
    assert report["failures"] == ["runtime", "instance"]
    assert checks["runtime"]["summary"] == (
        "no container runtime: SINGULARITY_PATH='' is not executable and apptainer or singularity is not on PATH"
    )
    assert checks["--nv"]["summary"] == "skipped: no container runtime"


def test_auto_without_a_container_runtime_falls_back_to_the_process_runtime(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    image = node.image()
    code, report = run_check(capsys, "--image", str(image))
    assert code == 1
    assert by_name(report)["runtime"]["summary"] == (
        f"no container runtime (SINGULARITY_PATH, apptainer, singularity) for {image}, "
        "and no tritonserver binary 'tritonserver' on PATH (GLIDEIN_TRITON_SERVER_BINARY)"
    )
    server = write_executable(node.bin / "tritonserver", "#!/bin/sh\n")
    code, report = run_check(capsys, "--image", str(image))
    checks = by_name(report)
    assert code == 0
    assert report["warnings"] == ["runtime", "triton"]
    assert checks["runtime"]["summary"].endswith(f": process runtime, {server}")
    assert checks["triton"]["summary"] == (
        f"the Triton release is unknown: {server} --help lists no tritonserver options; "
        "an option it lacks stops the server at startup"
    )
    assert checks["image"]["summary"] == (
        f"skipped: the process runtime runs tritonserver directly; image {image} is not used"
    )


@pytest.mark.parametrize(("mode", "status", "code"), [("auto", "warn", 0), ("gpu", "fail", 1)])
def test_no_driver(
    node: Node,
    nvidia_smi_fixtures: Path,
    capsys: pytest.CaptureFixture[str],
    mode: str,
    status: str,
    code: int,
) -> None:
    node.apptainer()
    node.gpus(nvidia_smi_fixtures, "no-driver")
    config = node.glidein_config(GLIDEIN_TRITON_GPU=mode, GLIDEIN_TRITON_IMAGE=str(node.image()))
    returned, report = run_check(capsys, "--glidein-config", str(config))
    gpus = by_name(report)["gpus"]
    assert returned == code
    assert gpus["status"] == status
    assert gpus["summary"] == "nvidia-smi failed: is the NVIDIA driver loaded?"
    assert "exited with 9: NVIDIA-SMI has failed because it couldn't communicate" in gpus["notes"][0]
    assert by_name(report)["driver"]["summary"] == "skipped: no GPU to use"


@pytest.mark.parametrize(
    ("driver", "image", "mode", "status", "code", "text"),
    [
        (
            "535.104.05",
            "tritonserver-25.08-py3.sandbox",
            "gpu",
            "fail",
            1,
            "too old for CUDA 13.0.0 of Triton 25.08",
        ),
        (
            "535.104.05",
            "tritonserver-25.08-py3.sandbox",
            "auto",
            "warn",
            0,
            "needs >= 580.65.06, at least 580",
        ),
        ("550.54.15", "tritonserver-24.08-py3.sandbox", "gpu", "warn", 0, "minor version compatibility"),
        (
            "560.28.03",
            "tritonserver-24.08-py3.sandbox",
            "gpu",
            "ok",
            0,
            ">= 560.28.03, needed by CUDA 12.6.0",
        ),
    ],
)
def test_old_driver_against_new_image(
    node: Node,
    nvidia_smi_fixtures: Path,
    capsys: pytest.CaptureFixture[str],
    driver: str,
    image: str,
    mode: str,
    status: str,
    code: int,
    text: str,
) -> None:
    node.apptainer()
    node.gpus(nvidia_smi_fixtures, "h200", driver)
    node.ldconfig(ESSENTIAL_CACHE)
    config = node.glidein_config(GLIDEIN_TRITON_GPU=mode, GLIDEIN_TRITON_IMAGE=str(node.image(image)))
    returned, report = run_check(capsys, "--glidein-config", str(config))
    finding = by_name(report)["driver"]
    assert (returned, finding["status"]) == (code, status), report
    assert text in finding["summary"]
    if status == "fail":
        assert "forward-compatibility" in finding["summary"]


def test_the_release_option_wins_over_the_image_name(
    node: Node, nvidia_smi_fixtures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node.apptainer()
    node.gpus(nvidia_smi_fixtures, "l40s")
    node.ldconfig(ESSENTIAL_CACHE)
    code, report = run_check(capsys, "--image", str(node.image("server.sif.d")), "--triton-release", "26.02")
    assert report["triton_release"] == "26.02"
    assert by_name(report)["driver"]["summary"] == (
        "driver 595.80 >= 590.48.01, needed by CUDA 13.1.1 of Triton 26.02"
    )
    assert code == 0
    code, report = run_check(capsys, "--image", str(node.image("server.sif.d")))
    assert by_name(report)["driver"]["status"] == "warn"
    assert "the Triton release is unknown" in by_name(report)["driver"]["summary"]


@pytest.mark.parametrize(("release", "status"), [("24.10", "ok"), ("24.12", "warn")])
def test_compute_capability_below_the_release_minimum(
    node: Node, nvidia_smi_fixtures: Path, capsys: pytest.CaptureFixture[str], release: str, status: str
) -> None:
    """A V100 (7.0) next to an L40S (8.9): Triton 24.11 and later need 7.5, so the V100 is left out."""
    node.apptainer()
    node.gpus(nvidia_smi_fixtures, "mixed-synthetic")
    node.ldconfig(ESSENTIAL_CACHE)
    _code, report = run_check(capsys, "--image", str(node.image(f"tritonserver-{release}-py3.sandbox")))
    finding = by_name(report)["compute"]
    assert finding["status"] == status
    if status == "ok":
        assert finding["summary"] == f"compute capability 7.0, 8.9 >= 6 (Triton {release})"
    else:
        assert finding["summary"] == f"1 of 2 GPUs below compute capability 7.5 (Triton {release}): left out"
        assert finding["notes"][0] == "GPU-5f1c2a3b-0d4e-4a1f-9b2c-3d4e5f6a7b8c: Tesla V100-SXM2-32GB, 7.0"


@pytest.mark.parametrize(("mode", "status"), [("auto", "warn"), ("gpu", "fail")])
def test_nv_without_the_driver_libraries_in_the_linker_cache(
    node: Node, nvidia_smi_fixtures: Path, capsys: pytest.CaptureFixture[str], mode: str, status: str
) -> None:
    node.apptainer()
    node.gpus(nvidia_smi_fixtures, "h100-mig")
    node.ldconfig(("libnvidia-ml.so.1", "libc.so.6"))
    config = node.glidein_config(GLIDEIN_TRITON_GPU=mode, GLIDEIN_TRITON_IMAGE=str(node.image()))
    _, report = run_check(capsys, "--glidein-config", str(config))
    checks = by_name(report)
    assert checks["gpus"]["summary"] == "4 GPUs (NVIDIA H100 80GB HBM3 MIG 3g.40gb), driver 590.48.01"
    assert checks["--nv"]["status"] == status
    assert checks["--nv"]["summary"] == (
        "ldconfig -p lists no libcuda.so: --nv would give the container no usable GPU"
    )
    assert checks["--nv"]["notes"][0].startswith("no nvliblist.conf found for ")


def test_cpu_mode_skips_the_gpu_checks(
    node: Node, nvidia_smi_fixtures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node.apptainer()
    node.gpus(nvidia_smi_fixtures, "no-driver")
    config = node.glidein_config(GLIDEIN_TRITON_GPU="cpu", GLIDEIN_TRITON_IMAGE=str(node.image()))
    code, report = run_check(capsys, "--glidein-config", str(config))
    assert code == 0
    assert by_name(report)["gpus"]["summary"] == "GLIDEIN_TRITON_GPU=cpu: GPUs are not used"


@pytest.mark.parametrize(
    ("image", "status", "text"),
    [
        ("/cvmfs/unpacked.cern.ch/nowhere/tritonserver:24.08-py3", "fail", "does not exist on this node"),
        ("docker://nvcr.io/nvidia/tritonserver:25.02-py3", "warn", "will be pulled by apptainer at startup"),
        ("", "fail", "no server image: set GLIDEIN_TRITON_IMAGE"),
    ],
)
def test_image(node: Node, capsys: pytest.CaptureFixture[str], image: str, status: str, text: str) -> None:
    node.apptainer()
    config = node.glidein_config(GLIDEIN_TRITON_RUNTIME="apptainer", GLIDEIN_TRITON_IMAGE=image)
    code, report = run_check(capsys, "--glidein-config", str(config))
    finding = by_name(report)["image"]
    assert finding["status"] == status
    assert text in finding["summary"]
    assert code == (1 if status == "fail" else 0)
    if image.startswith("/cvmfs/"):
        assert finding["notes"] == ["is CVMFS mounted here? (autofs mounts a repository on first access)"]


def test_image_files_and_sandboxes(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    node.apptainer()
    sif = node.root / "images" / "tritonserver_24.12.sif"
    sif.parent.mkdir(parents=True)
    sif.write_bytes(b"\0" * 3 * 1024 * 1024)
    _, report = run_check(capsys, "--image", str(sif))
    assert by_name(report)["image"]["summary"] == f"image file {sif}, 3 MiB, readable"
    assert report["triton_release"] == "24.12"
    empty = node.root / "images" / "empty.sandbox"
    empty.mkdir()
    code, report = run_check(capsys, "--image", str(empty))
    assert code == 1
    assert by_name(report)["image"]["summary"].startswith(f"sandbox image {empty} has no tritonserver in ")
    write_executable(empty / "opt" / "tritonserver" / "bin" / "tritonserver", "#!/bin/sh\n")
    code, report = run_check(capsys, "--image", str(empty))
    assert code == 1
    assert by_name(report)["image"]["summary"] == (
        f"sandbox image {empty} has no python3 in opt/tritonserver/bin, usr/local/bin, usr/bin, bin, "
        "which runs the front door's relay"
    )


def test_disk_threshold(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    write_executable(node.bin / "tritonserver", "#!/bin/sh\n")
    code, report = run_check(capsys, "--min-free-gb", "0")
    assert code == 0
    assert by_name(report)["disk"]["summary"].endswith(f" GiB free in {node.work} (at least 0 GiB asked for)")
    code, report = run_check(capsys, "--min-free-gb", "1e9", "--work-dir", str(node.root))
    assert code == 1
    assert report["failures"] == ["disk"]
    assert by_name(report)["disk"]["summary"].endswith(
        f" GiB free in {node.root}, below the 1e+09 GiB asked for (--min-free-gb)"
    )
    code, report = run_check(capsys, "--work-dir", str(node.root / "missing"))
    assert by_name(report)["disk"]["summary"] == f"work directory {node.root / 'missing'} does not exist"


def test_a_fixed_port_in_use_fails(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    write_executable(node.bin / "tritonserver", "#!/bin/sh\n")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        port = listener.getsockname()[1]
        config = node.glidein_config(GLIDEIN_TRITON_GRPC_PORT=str(port))
        code, report = run_check(capsys, "--glidein-config", str(config))
    assert code == 1
    assert by_name(report)["ports"]["summary"] == f"in use on 127.0.0.1: GLIDEIN_TRITON_GRPC_PORT={port}"
    code, report = run_check(capsys, "--glidein-config", str(config))
    ports = by_name(report)["ports"]
    assert ports["status"] == "ok"
    assert f"grpc {port}," in ports["summary"]


def test_invalid_settings_and_models(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    write_executable(node.bin / "tritonserver", "#!/bin/sh\n")
    config = node.glidein_config(GLIDEIN_TRITON_GPU="maybe")
    code, report = run_check(capsys, "--glidein-config", str(config))
    assert code == 1
    assert by_name(report)["settings"]["summary"] == (
        "GLIDEIN_TRITON_GPU='maybe' is not allowed: use one of auto, gpu, cpu"
    )
    repository = node.root / "models"
    (repository / "simple").mkdir(parents=True)
    config = node.glidein_config(
        GLIDEIN_TRITON="True",
        GLIDEIN_TRITON_MODEL_REPOSITORY=str(repository),
        GLIDEIN_TRITON_MODELS="simple,other",
    )
    code, report = run_check(capsys, "--glidein-config", str(config))
    assert code == 1
    assert by_name(report)["settings"]["summary"] == f"{config}: runtime auto, GPU auto; GLIDEIN_TRITON is on"
    assert by_name(report)["models"]["summary"] == (
        f"GLIDEIN_TRITON_MODELS names other, not in {repository}: the server would not start"
    )
    config = node.glidein_config(GLIDEIN_TRITON_MODEL_REPOSITORY=str(node.root / "absent"))
    _, report = run_check(capsys, "--glidein-config", str(config))
    assert by_name(report)["models"]["status"] == "fail"
    assert by_name(report)["settings"]["summary"].endswith("GLIDEIN_TRITON is off (checked as if on)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--triton-release", "24.8"], "'24.8' is not a Triton release: use yy.mm"),
        (["--triton-release", "24.13"], "'24.13' is not a Triton release"),
        (["--min-free-gb", "-1"], "'-1' is not a number of GiB >= 0"),
        (["--glidein-config", "/nonexistent/glidein_config"], "cannot read glidein_config /nonexistent"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        check.main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_cli_runs_the_check(node: Node) -> None:
    node.apptainer()
    result = subprocess.run(
        [sys.executable, "-m", "glidein_triton.cli", "check", "--image", str(node.image()), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["can_run"] is True
    usage = subprocess.run(
        [sys.executable, "-m", "glidein_triton.cli", "check", "--triton-release", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert usage.returncode == 2
    assert usage.stderr.startswith("usage: glidein-triton check")


@pytest.mark.parametrize("python", [sys.executable, PYTHON39])
def test_runs_inside_a_test_glidein_from_the_untarred_payload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python: str | None
) -> None:
    """The check ships in the worker tarball and runs there on the standard library alone (``-S``)."""
    if python is None:
        pytest.skip("no Python 3.9 on this machine")
    assert "glidein_triton/worker/check/command.py" in [name for name, _ in payload.worker_files()]
    glidein = SimulatedGlidein(tmp_path / "glidein").layout()
    glidein.install_payload()
    node = Node(tmp_path / "node", monkeypatch)
    glidein.set("GLIDEIN_TRITON", "True")
    glidein.set("GLIDEIN_Singularity_Use", "PREFERRED")  # singularity_setup.sh then publishes the path
    glidein.set("SINGULARITY_PATH", str(STANDIN_APPTAINER))
    glidein.set("GLIDEIN_TRITON_IMAGE", str(node.image()))
    code_dir = glidein.config()["ENTRY_GLIDEIN_TRITON_DIR"]
    result = subprocess.run(
        [
            python,
            "-S",
            "-m",
            "glidein_triton.worker.check",
            "--glidein-config",
            str(glidein.config_path),
        ],
        cwd=code_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        f"ok      settings   {glidein.config_path}: runtime auto, GPU auto; GLIDEIN_TRITON is on"
        in result.stdout
    )
    assert f"ok      runtime    {STANDIN_APPTAINER}: apptainer version 1.3.6" in result.stdout
    assert "GLIDEIN_Singularity_Use = PREFERRED: GlideinWMS sets up Apptainer" in result.stdout
    assert result.stdout.endswith("Triton can run on this node (0 failures, 0 warnings).\n")


def test_the_release_of_an_old_sandbox_image_is_used_with_its_metrics_off(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    node.apptainer()
    image = node.image("triton-cms")
    (image / ".singularity.d" / "env").mkdir(parents=True)
    (image / ".singularity.d" / "env" / "10-docker2singularity.sh").write_text(
        'export TRITON_SERVER_VERSION="${TRITON_SERVER_VERSION:-"2.24.0"}"\n'
    )
    config = node.glidein_config(GLIDEIN_TRITON_IMAGE=str(image))
    _, report = run_check(capsys, "--glidein-config", str(config))
    triton = by_name(report)["triton"]
    assert triton["status"] == "warn"
    assert triton["summary"] == (
        f"Triton 2.24, from {image}/.singularity.d/env/10-docker2singularity.sh: takes the options this "
        "glidein needs"
    )
    assert "no --metrics-address (since Triton 2.34 (23.05))" in triton["notes"]
    assert (
        triton["notes"][-1] == "the server's metrics are switched off (they would listen on every interface)"
    )


def test_the_check_module_tells_python_3_6_what_to_use() -> None:
    """EL8's python3 is 3.6: the entry point must get as far as its advice there."""
    main = Path(check.__file__).with_name("__main__.py")
    ast.parse(main.read_text(), feature_version=(3, 6))
    for python in sorted(Path.home().glob(".pyenv/versions/3.6*/bin/python3.6")):
        result = subprocess.run(
            [str(python), "-m", "glidein_triton.worker.check"],
            cwd=main.parent.parent.parent.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 1
        assert "is too old: the worker code needs Python >= 3.9. On EL8" in result.stderr
        assert "GLIDEIN_TRITON_PYTHON" in result.stderr


@pytest.mark.parametrize(
    ("values", "status", "summary"),
    [
        ({}, "warn", "GLIDEIN_Singularity_Use = DISABLE_GWMS: GlideinWMS sets up no Apptainer"),
        (
            {"GLIDEIN_Singularity_Use": "NEVER"},
            "warn",
            "GLIDEIN_Singularity_Use = NEVER: GlideinWMS sets up no",
        ),
        (
            {"GLIDEIN_Singularity_Use": "NEVER", "GLIDEIN_TRITON_RUNTIME": "process"},
            "info",
            "GLIDEIN_Singularity_Use = NEVER",
        ),
        (
            {"GLIDEIN_Singularity_Use": "REQUIRED", "HAS_SINGULARITY": "True"},
            "ok",
            "GLIDEIN_Singularity_Use = REQUIRED: GlideinWMS sets up Apptainer (HAS_SINGULARITY True)",
        ),
    ],
)
def test_the_frontends_container_setting_is_checked_in_a_glidein(
    node: Node, capsys: pytest.CaptureFixture[str], values: dict[str, str], status: str, summary: str
) -> None:
    config = node.glidein_config(GLIDEIN_TRITON="True", **values)
    _, report = run_check(capsys, "--glidein-config", str(config))
    containers = by_name(report)["containers"]
    assert containers["status"] == status
    assert containers["summary"].startswith(summary)


def test_without_a_glidein_config_the_container_setting_is_not_known(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    _, report = run_check(capsys)
    assert by_name(report)["containers"]["status"] == "info"


def test_a_misspelled_setting_is_a_warning_with_the_close_name(
    node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    write_executable(node.bin / "tritonserver", "#!/bin/sh\n")
    config = node.glidein_config(
        GLIDEIN_TRITON="True",
        GLIDEIN_TRITON_READY_TIMOUT="5",
        ENTRY_GLIDEIN_TRITON_DIR="/x",
        GLIDEIN_TRITON_ZZZ="1",
    )
    _, report = run_check(capsys, "--glidein-config", str(config))
    names = by_name(report)["keys"]
    assert names["status"] == "warn"
    assert names["summary"] == "not settings, ignored: GLIDEIN_TRITON_READY_TIMOUT, GLIDEIN_TRITON_ZZZ"
    assert names["notes"] == [
        "GLIDEIN_TRITON_READY_TIMOUT: did you mean GLIDEIN_TRITON_READY_TIMEOUT?",
        "GLIDEIN_TRITON_ZZZ: no setting is close (docs/settings.md)",
    ]
    config = node.glidein_config(GLIDEIN_TRITON="True", GLIDEIN_TRITON_TOKEN="True")
    _, report = run_check(capsys, "--glidein-config", str(config))
    names = by_name(report)["keys"]
    assert (names["status"], names["summary"]) == ("warn", "not settings, ignored: GLIDEIN_TRITON_TOKEN")
    assert names["notes"] == [f"GLIDEIN_TRITON_TOKEN: retired, {RETIRED_SETTINGS['GLIDEIN_TRITON_TOKEN']}"]
    config = node.glidein_config(GLIDEIN_TRITON="True", GLIDEIN_TRITON_READY_TIMEOUT="5")
    _, report = run_check(capsys, "--glidein-config", str(config))
    assert by_name(report)["keys"]["status"] == "ok"
