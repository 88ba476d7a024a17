"""The three journeys (docs/journey-*.md): every command of their ``bash`` blocks is run, in order, in a
temporary directory, and must exit as the page says (0, or the code of a trailing ``# exit code N``).

Absolute paths of a real host (``/etc/gwms-factory``, ``/var/lib/gwms-factory``, ``/etc/gwms-frontend``,
``/cvmfs``, ``/opt/glidein-triton``) are moved under the temporary directory, which holds the worked-example
configurations of docs/examples, a server image directory, a copy of examples/ and, as ``glidein-triton``,
the clean copy of the tree where ``make dist`` built the wheel (tests/artefacts.py). Each page installs that
wheel, with its extra, in a new virtual environment (no system site-packages), and every later command runs
from it: the test environment's own ``glidein-triton`` is not on ``PATH``. ``apptainer`` is the stand-in
(glidein_triton/local/standins/apptainer). Commands that need PyPI, Apptainer, a factory or a pool are in
``shell`` blocks: each must be in NOT_RUN, with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from glidein_triton import __version__ as VERSION
from glidein_triton.worker.images import DEFAULT_SERVER_IMAGE

from .artefacts import VENV_TOOLS, Built, installed
from .support import STANDIN_APPTAINER

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = ["journey-factory.md", "journey-frontend.md", "journey-physicist.md", "journey-pool.md"]
HOST_PATHS = (
    "/etc/gwms-factory",
    "/var/lib/gwms-factory",
    "/etc/gwms-frontend",
    "/cvmfs",
    "/opt/glidein-triton",
)
#: the virtual environments the pages install into, under the temporary root, and the physicist's, under home
INSTALLED_BIN = ("opt/glidein-triton/bin", "home/glidein-triton-venv/bin")
EXPECTED_EXIT = re.compile(r"\s+# exit code ([0-9]+)\b.*$")
#: the first words of each kind of command that is shown but not run here, and why
NOT_RUN = {
    "cd glidein-triton": "the tests run make dist once a session, in a clean copy (tests/artefacts.py)",
    "make dist": "the tests run it once a session, in a clean copy (tests/artefacts.py)",
    "/opt/glidein-triton/bin/python3 -m pip install '.[operator]'": "tests/test_install.py installs the checkout",
    "sudo -u gfactory": "needs root and the factory's user",
    "systemctl": "needs the factory or frontend service",
    "condor_status": "needs a factory collector",
    "glidein-triton discover --pool": "needs an HTCondor pool (tests/test_discover.py runs it on ads)",
    "cd \"$(grep '^GLIDEIN_TRITON_CODE_DIR": "needs a running glidein (tests/test_check.py runs the check in one)",
    "glidein-triton submit-example": "the physicist's journey runs it (its condor_submit needs a pool)",
    "condor_submit": "needs an HTCondor pool",
    "cd myjob && condor_submit": "needs an HTCondor pool",
    "apptainer build": "needs Apptainer and network (tests/test_images.py checks the definition)",
    "apptainer run": "needs the built image",
}


def fenced(page: str, language: str) -> list[str]:
    """The blocks of ``language`` in ``page``, in order."""
    return re.findall(rf"```{language}\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.DOTALL)


def commands(block: str) -> list[tuple[str, int]]:
    """(command, expected exit code) for each command of a block; continuation lines are joined."""
    joined = block.replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        expected = EXPECTED_EXIT.search(line)
        found.append((line, int(expected.group(1)) if expected else 0))
    return found


def script(block: str, root: Path) -> str:
    """A bash script that runs the block's commands one by one, stopping at the first unexpected exit."""
    lines = ["set -u", f"cd {root / 'home'}"]
    for shown, expected in commands(block):
        command = shown
        for path in HOST_PATHS:
            command = command.replace(path, f"{root}{path}")
        lines.append(command)
        lines.append(
            f'status=$?; if [ "$status" -ne {expected} ]; then '
            f'echo "journey: exit code $status, not {expected}: {command!r}" >&2; exit 99; fi'
        )
    return "\n".join(lines) + "\n"


def host(root: Path, built: Built) -> dict[str, str]:
    """The temporary host under ``root``, and the environment of its commands."""
    for directory in ("home", "etc/gwms-factory", "etc/gwms-frontend", "var/lib/gwms-factory", "bin"):
        (root / directory).mkdir(parents=True)
    shutil.copy(DOCS / "examples" / "glideinWMS.xml", root / "etc" / "gwms-factory")
    shutil.copy(DOCS / "examples" / "frontend.xml", root / "etc" / "gwms-frontend")
    shutil.copytree(REPO / "examples", root / "home" / "examples")
    (root / "home" / "glidein-triton").symlink_to(built.source)
    image = root / DEFAULT_SERVER_IMAGE.lstrip("/")
    server = image / "opt" / "tritonserver" / "bin" / "tritonserver"
    server.parent.mkdir(parents=True)
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    python = image / "usr" / "bin" / "python3"  # the front door's relay runs the image's python3
    python.parent.mkdir(parents=True)
    python.symlink_to(os.path.realpath(sys.executable))
    (root / "bin" / "apptainer").symlink_to(STANDIN_APPTAINER)
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TRITON_", "_CONDOR_", "SINGULARITY_", "APPTAINER_", "CUDA_", "NVIDIA_"))
    }
    installed = ":".join(str(root / directory) for directory in INSTALLED_BIN)
    environment["PATH"] = f"{installed}:{root / 'bin'}:/usr/bin:/bin"
    environment["HOME"] = str(root / "home")
    environment["APPTAINER_STANDIN_STATE"] = str(root / "apptainer-standin-state")
    return environment


def walk(page: str, tmp_path: Path, built: Built) -> list[subprocess.CompletedProcess[str]]:
    """Run every bash block of ``page`` in order; each block starts in the home directory."""
    environment = host(tmp_path, built)
    results = []
    for block in fenced(page, "bash"):
        result = subprocess.run(
            ["bash", "-c", script(block, tmp_path)],
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"{page}:\n{block}\n{result.stdout}\n{result.stderr}"
        results.append(result)
    return results


@pytest.mark.parametrize("page", PAGES)
def test_each_journey_is_in_the_site_and_the_readme(page: str) -> None:
    assert page in (REPO / "mkdocs.yml").read_text()
    assert f"docs/{page}" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("page", PAGES)
def test_every_command_not_run_says_why(page: str) -> None:
    shown = [command for block in fenced(page, "shell") for command, _ in commands(block)]
    unexplained = [command for command in shown if not command.startswith(tuple(NOT_RUN))]
    assert unexplained == []
    assert fenced(page, "bash"), "a journey has commands that the test runs"


def test_the_parser_reads_continuations_and_expected_codes() -> None:
    block = "# a comment\nglidein-triton x \\\n    --y  # exit code 1: changes\n\nls\n"
    assert commands(block) == [("glidein-triton x      --y  # exit code 1: changes", 1), ("ls", 0)]


def test_a_command_that_exits_otherwise_stops_the_journey(tmp_path: Path) -> None:
    block = "true\nfalse\necho not reached\n"
    (tmp_path / "home").mkdir()
    result = subprocess.run(
        ["bash", "-c", script(block, tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 99
    assert "exit code 1, not 0: 'false'" in result.stderr
    assert "not reached" not in result.stdout


@pytest.mark.scripts
def test_the_factory_journey(tmp_path: Path, built: Built) -> None:
    _, version, payload, check, patch = walk("journey-factory.md", tmp_path, built)
    assert f"glidein-triton {VERSION}" in version.stdout
    # the factory side only: the wheel, lxml and jinja2 (and markupsafe, jinja2's), nothing of the job side
    assert installed(tmp_path / INSTALLED_BIN[0]) - VENV_TOOLS == {
        "glidein-triton",
        "lxml",
        "jinja2",
        "markupsafe",
    }
    assert "glidein_triton_worker.tgz: OK" in payload.stdout
    assert "Triton can run on this node" in check.stdout
    patched = (tmp_path / "etc" / "gwms-factory" / "glideinWMS.xml").read_text()
    assert 'name="GLIDEIN_TRITON_IMAGE"' in patched
    assert f"{tmp_path}/cvmfs/singularity.opensciencegrid.org/ml4gw/hermes/tritonserver:24.01" in patched
    assert (tmp_path / "etc" / "gwms-factory" / "glideinWMS.xml.orig").read_text() != patched
    assert '+            <attr name="GLIDEIN_TRITON"' in patch.stdout


@pytest.mark.scripts
def test_the_frontend_journey(tmp_path: Path, built: Built) -> None:
    _, _, patch, excluded = walk("journey-frontend.md", tmp_path, built)
    assert installed(tmp_path / INSTALLED_BIN[0]) - VENV_TOOLS == {
        "glidein-triton",
        "lxml",
        "jinja2",
        "markupsafe",
    }
    assert patch.stdout.splitlines()[-1] == "1"  # GLIDEIN_Singularity_Use, once, in the new group
    assert "does not leave out Triton jobs" in patch.stderr  # the packaged group 'main' counts them
    assert excluded.stdout.splitlines()[-1] == "1"  # the query of group 'main' leaves them out, once
    patched = (tmp_path / "etc" / "gwms-frontend" / "frontend.xml").read_text()
    assert '<group name="triton" enabled="True">' in patched
    assert "default_singularity_wrapper.sh" in patched
    assert (
        f'name="GLIDEIN_TRITON_IMAGE" glidein_publish="False" job_publish="False" parameter="True" type="string" value="{DEFAULT_SERVER_IMAGE}"'
        in patched
    )


@pytest.mark.scripts
def test_the_pool_journey(tmp_path: Path, built: Built) -> None:
    _, factory, refused, frontend = walk("journey-pool.md", tmp_path, built)
    assert factory.stdout.splitlines()[-1] == "2"  # one GLIDEIN_TRITON_POOL per entry, never twice
    assert "it is always remote, so GLIDEIN_TRITON_REMOTE=False contradicts --pool server" in refused.stderr
    assert "--address is where a pool server listens" in refused.stderr
    assert frontend.stdout.splitlines()[-1] == "2"  # one per pool group
    patched = (tmp_path / "etc" / "gwms-factory" / "glideinWMS.xml").read_text()
    for value in ("server", "client"):
        assert (
            '<attr name="GLIDEIN_TRITON_POOL" const="False" glidein_publish="False" job_publish="False" '
            f'parameter="True" publish="True" type="string" value="{value}"/>'
        ) in patched
    assert patched.count('name="GLIDEIN_TRITON_POOL_NAME"') == 2
    groups = (tmp_path / "etc" / "gwms-frontend" / "frontend.xml").read_text()
    assert "MY.TritonPoolRole =?= &quot;client&quot;" in groups
    assert "(GlideinParamGLIDEIN_TRITON_POOL =?= &quot;server&quot;)" in groups


@pytest.mark.server
def test_the_physicists_journey(tmp_path: Path, built: Built) -> None:
    _, _, client, job = walk("journey-physicist.md", tmp_path, built)
    assert {"glidein-triton", "nvidia-pytriton", "tritonclient", "numpy"} <= installed(
        tmp_path / INSTALLED_BIN[1]
    )
    assert "my_classifier: IMAGE [10, 3, 224, 224] FP32 in, PROBABILITIES [10, 1000] out" in client.stdout
    assert "my_classifier_ts: INPUT__0 [10, 3, 224, 224] FP32 in, OUTPUT__0 [10, 1000] out" in client.stdout
    submit = (tmp_path / "home" / "myjob" / "triton_job.sub").read_text()
    assert '+TritonModels = "my_classifier"' in submit
    assert "my_classifier" in job.stdout
