"""Installing glidein-triton as the pages say: the wheel of ``make dist`` in a clean virtual environment, with
each side's extra, and from a checkout; every install command of every page is one of those.

Each test makes a new virtual environment (no system site-packages) and installs with pip from the package
index (pip's cache makes a repeated run quick): about 5 s for the bare wheel, 5 s with [operator], 8 s from
the checkout, 15 s with [job] on an idle machine. The [local] extra (~400 MB) is installed by the physicist's journey
(tests/test_journeys.py), the job image's packages by tests/test_submit_example.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from glidein_triton import __version__

from .artefacts import REPO, VENV_TOOLS, Built, installed, new_venv, pip_install

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: the copy setuptools carries
    from setuptools._vendor import tomli as tomllib  # type: ignore[no-redef]

EXTRAS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
WHEEL = f"dist/glidein_triton-{__version__}-py3-none-any.whl"
#: the pages a user reads
PAGES = [REPO / "README.md", REPO / "examples" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: packages the pages name that are not glidein-triton (the physicist's own tools)
OTHER_PACKAGES = {"onnxruntime"}
PIP_INSTALL = re.compile(r"pip install[ \t]+((?:'[^']*'|[^\s`'\"]+)(?:[ \t]+(?:'[^']*'|[^\s`'\"]+))*)")


def run(bin_dir: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "glidein-triton"), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.scripts
def test_the_wheel_alone_has_no_dependencies_and_each_command_names_its_extra(
    built: Built, tmp_path: Path
) -> None:
    bin_dir = new_venv(tmp_path / "venv")
    result = pip_install(bin_dir, str(built.wheel), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert installed(bin_dir) - VENV_TOOLS == {"glidein-triton"}
    assert run(bin_dir, "--version", cwd=tmp_path).stdout == f"glidein-triton {__version__}\n"
    written = run(bin_dir, "submit-example", "--models", "m", "--directory", "job", cwd=tmp_path)
    assert written.returncode == 0, written.stderr  # standard library only, as check
    assert run(bin_dir, "check", "--help", cwd=tmp_path).returncode == 0
    for argv, extra in (
        (["factory-xml", "--entry", "E", "glideinWMS.xml"], "operator"),
        (["payload", "out"], "operator"),
        (["discover", "--pool", "x"], "job"),
        (["local-job", "--", "true"], "local"),
        (["demo"], "local"),
    ):
        missing = run(bin_dir, *argv, cwd=tmp_path)
        assert missing.returncode == 1, missing.stderr
        assert missing.stderr.startswith(
            f"glidein-triton {argv[0]}: needs the [{extra}] extra of glidein-triton"
        )
        assert f"pip install '{WHEEL}[{extra}]'" in missing.stderr


@pytest.mark.scripts
def test_the_checkout_installs_the_operator_side_alone(built: Built, tmp_path: Path) -> None:
    checkout = shutil.copytree(
        built.source, tmp_path / "glidein-triton", ignore=shutil.ignore_patterns("dist")
    )
    bin_dir = new_venv(tmp_path / "venv")
    result = pip_install(bin_dir, ".[operator]", cwd=checkout)
    assert result.returncode == 0, result.stderr
    assert installed(bin_dir) - VENV_TOOLS == {"glidein-triton", "lxml", "jinja2", "markupsafe"}
    payload = run(bin_dir, "payload", str(tmp_path / "payload"), cwd=tmp_path)
    assert payload.returncode == 0, payload.stderr
    assert "glidein_triton_worker.tgz" in payload.stdout


@pytest.mark.scripts
def test_the_job_extra_gives_discover_and_no_server(built: Built, tmp_path: Path) -> None:
    bin_dir = new_venv(tmp_path / "venv")
    result = pip_install(bin_dir, f"{built.wheel}[job]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {"tritonclient", "numpy", "htcondor"} <= installed(bin_dir)
    assert not {"lxml", "jinja2", "nvidia-pytriton"} & installed(bin_dir)
    assert run(bin_dir, "discover", "--help", cwd=tmp_path).returncode == 0
    local_job = run(bin_dir, "local-job", "--", "true", cwd=tmp_path)
    assert local_job.returncode == 1
    assert "needs the [local] extra" in local_job.stderr


def install_commands() -> list[tuple[str, str]]:
    """(page, requirement) for every ``pip install`` of every page."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8").replace("\\\n", " ")
        for match in PIP_INSTALL.finditer(text):
            for word in match.group(1).split():
                if not word.startswith("-") and word != "#":
                    found.append((page.name, word.strip("'\"")))
                if word.startswith("#"):
                    break
    return found


def test_every_install_command_of_every_page_is_one_that_works() -> None:
    """The wheel of make dist or the checkout, with an extra that exists; the index only where the page says
    glidein-triton is not on PyPI yet."""
    commands = install_commands()
    assert ("journey-factory.md", f"{WHEEL}[operator]") in commands
    for page, requirement in commands:
        name, _, extras = requirement.partition("[")
        extras, _, _ = extras.partition("]")
        for extra in filter(None, extras.split(",")):
            assert extra in EXTRAS, (page, requirement)
        if name in OTHER_PACKAGES or name.startswith("/opt/glidein-triton-src"):
            continue
        if name.startswith("glidein-triton"):
            text = " ".join(
                (REPO / "docs" / page if page != "README.md" else REPO / page).read_text().split()
            )
            assert "not on PyPI yet" in text, (page, requirement)
            continue
        assert name in (WHEEL, "."), (page, requirement)
