"""Server images on worker nodes: CVMFS copies, remote images' conversion caches, the instance start limit."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import images, server
from glidein_triton.worker.errors import ServerStartError
from glidein_triton.worker.runtime import LaunchPlan

from .support import write_executable

REPO = Path(__file__).resolve().parent.parent


def test_the_known_images_are_on_cvmfs_and_documented() -> None:
    documented = (REPO / "docs" / "images.md").read_text()
    for known in images.CVMFS_SERVER_IMAGES:
        assert known.path.startswith("/cvmfs/")
        assert not images.is_remote(known.path)
        assert f"`{known.path}`" in documented
    assert (
        images.DEFAULT_SERVER_IMAGE
        == "/cvmfs/singularity.opensciencegrid.org/ml4gw/hermes/tritonserver:24.01"
    )


@pytest.mark.parametrize(
    ("image", "remote"),
    [
        ("docker://nvcr.io/nvidia/tritonserver:24.08-py3", True),
        ("oras://ghcr.io/x/triton:1", True),
        ("https://example.org/triton.sif", True),
        ("/cvmfs/unpacked.cern.ch/registry.hub.docker.com/fastml/triton-torchgeo:22.07-py3-geometric", False),
        ("/home/me/triton.sif", False),
    ],
)
def test_remote_images(image: str, remote: bool) -> None:
    assert images.is_remote(image) is remote


def test_conversion_caches_go_under_the_glideins_local_tmp_dir(tmp_path: Path) -> None:
    local = tmp_path / "glide_local"
    found = images.conversion_environment({"GLIDEIN_LOCAL_TMP_DIR": str(local)}, {})
    assert found == {
        "APPTAINER_CACHEDIR": f"{local}/apptainer/cache",
        "APPTAINER_TMPDIR": f"{local}/apptainer/tmp",
        "SINGULARITY_CACHEDIR": f"{local}/apptainer/cache",
        "SINGULARITY_TMPDIR": f"{local}/apptainer/tmp",
    }
    assert (local / "apptainer" / "cache").is_dir()
    assert (local / "apptainer" / "tmp").is_dir()


def test_a_cache_the_site_set_is_kept(tmp_path: Path) -> None:
    """As singularity_exec's ``${APPTAINER_CACHEDIR-...}``: a value already there (even empty) wins."""
    site = str(tmp_path / "site-cache")
    found = images.conversion_environment(
        {"GLIDEIN_LOCAL_TMP_DIR": str(tmp_path)}, {"APPTAINER_CACHEDIR": site, "APPTAINER_TMPDIR": ""}
    )
    assert found["APPTAINER_CACHEDIR"] == found["SINGULARITY_CACHEDIR"] == site
    assert found["APPTAINER_TMPDIR"] == ""
    assert images.conversion_environment({}, {}) == {}


@pytest.mark.scripts
def test_the_instance_start_gets_the_caches_and_its_time_limit(
    glidein: SimulatedGlidein, tmp_path: Path
) -> None:
    """Through the startup script: ``instance start`` runs with the caches, and is stopped at the limit."""
    seen = tmp_path / "instance-start.env"
    apptainer = write_executable(
        tmp_path / "bin" / "apptainer",
        f'#!/bin/bash\n[ "$1 $2" = "instance start" ] || exit 0\nenv > {seen}\nexec sleep 30\n',
    )
    image = tmp_path / "image.sif"
    image.write_bytes(b"SIF")
    for key, value in {
        "GLIDEIN_TRITON": "True",
        "GLIDEIN_TRITON_RUNTIME": "apptainer",
        "SINGULARITY_PATH": str(apptainer),
        "GLIDEIN_TRITON_IMAGE": str(image),
        "GLIDEIN_TRITON_INSTANCE_START_TIMEOUT": "1",
    }.items():
        glidein.set(key, value)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("APPTAINER_", "SINGULARITY_"))
    }
    result = glidein.run_startup(environment, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.metrics["TritonFailure"] == "WN_Resource"
    failure = glidein.published()[0]["TritonFailure"]
    assert "apptainer instance start took more than 1 s (GLIDEIN_TRITON_INSTANCE_START_TIMEOUT" in failure
    local = glidein.config()["GLIDEIN_LOCAL_TMP_DIR"]
    variables = dict(line.split("=", 1) for line in seen.read_text().splitlines() if re.match(r"^\w+=", line))
    assert variables["APPTAINER_CACHEDIR"] == f"{local}/apptainer/cache"
    assert variables["APPTAINER_TMPDIR"] == f"{local}/apptainer/tmp"


def test_run_prepare_reports_a_failed_start_with_its_output() -> None:
    plan = LaunchPlan(
        runtime="apptainer", server=["x"], prepare=[["sh", "-c", "echo FATAL: no space >&2; exit 255"]]
    )
    with pytest.raises(ServerStartError) as raised:
        server.run_prepare(plan, dict(os.environ), 10)
    assert raised.value.message == "apptainer instance could not be started"
    assert "exit code 255\nFATAL: no space" in raised.value.evidence


@pytest.mark.scripts
def test_a_remote_image_is_warned_about_at_startup(glidein: SimulatedGlidein, tmp_path: Path) -> None:
    apptainer = write_executable(
        tmp_path / "bin" / "apptainer", "#!/bin/bash\necho 'FATAL: offline' >&2\nexit 255\n"
    )
    for key, value in {
        "GLIDEIN_TRITON": "True",
        "GLIDEIN_TRITON_RUNTIME": "apptainer",
        "SINGULARITY_PATH": str(apptainer),
        "GLIDEIN_TRITON_IMAGE": "docker://nvcr.io/nvidia/tritonserver:24.08-py3",
    }.items():
        glidein.set(key, value)
    result = glidein.run_startup(timeout=60)
    assert result.returncode == 0
    assert (
        "docker://nvcr.io/nvidia/tritonserver:24.08-py3 is a remote image: every glidein downloads"
        in result.stderr
    )
    assert (
        "FATAL: offline" in glidein.published()[0]["TritonFailure"]
        or result.metrics["TritonFailure"] == "WN_Resource"
    )
