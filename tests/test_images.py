"""Sanity of the Apptainer definition files (no Apptainer here): headers, sections, build arguments,
copied files, and agreement between the client's .def and its Dockerfile."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from .support import APPTAINER, SECTIONS, arguments, parse_definition

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["tritonserver.def", "tritonclient.def", "localtest.def"])
def test_definition_is_well_formed(name: str) -> None:
    path = APPTAINER / name
    first = next(line for line in path.read_text().splitlines() if line.strip())
    assert first == "Bootstrap: docker"  # Apptainer requires Bootstrap first
    header, sections = parse_definition(path)
    assert set(header) == {"Bootstrap", "From"}
    assert set(sections) <= SECTIONS
    assert sections["test"], "a %test section checks the build"
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", path.read_text()))
    defaults = arguments(sections)
    assert used == set(defaults), "every {{ variable }} has a default in %arguments, and no default is unused"
    assert all(value for value in defaults.values())


def test_server_image_is_a_triton_release_without_a_startscript() -> None:
    header, sections = parse_definition(APPTAINER / "tritonserver.def")
    assert header["From"] == "nvcr.io/nvidia/tritonserver:{{ TRITON_RELEASE }}-py3"
    assert re.fullmatch(r"[0-9]{2}\.[0-9]{2}", arguments(sections)["TRITON_RELEASE"])
    assert "startscript" not in sections  # `instance start` must not start a server of its own
    assert "mkdir -p /models" in sections["post"]  # the bind target of the model repository
    assert "command -v tritonserver" in sections["test"]


def test_client_image_copies_existing_files_and_installs_the_client_packages() -> None:
    header, sections = parse_definition(APPTAINER / "tritonclient.def")
    assert header["From"] == "python:{{ PYTHON_VERSION }}-slim"
    for line in sections["files"]:
        source, destination = line.split()
        assert (REPO / source).exists(), f"%files source {source} is missing"
        assert destination.startswith("/opt/glidein-triton/")
    post = " ".join(sections["post"])
    assert '"tritonclient[grpc,http]=={{ TRITONCLIENT_VERSION }}"' in post
    assert '"numpy=={{ NUMPY_VERSION }}"' in post
    assert (
        "import numpy, tritonclient.grpc, tritonclient.http, glidein_triton.job.client" in sections["test"][0]
    )


def test_client_dockerfile_builds_the_same_image() -> None:
    dockerfile = (APPTAINER / "tritonclient.Dockerfile").read_text()
    _, sections = parse_definition(APPTAINER / "tritonclient.def")
    for name, value in arguments(sections).items():
        assert f"ARG {name}={value}\n" in dockerfile, f"{name} differs between the .def and the Dockerfile"
    copied = {line.split()[0] for line in sections["files"]}
    dockerfile_copies = {
        word for line in dockerfile.splitlines() if line.startswith("COPY") for word in line.split()[1:-1]
    }
    assert copied == dockerfile_copies
    assert '"tritonclient[grpc,http]==${TRITONCLIENT_VERSION}" "numpy==${NUMPY_VERSION}"' in dockerfile


def test_client_helper_in_the_image_needs_nothing_else_from_the_package() -> None:
    """The image copies the client helper and the sandbox protocol, and what they import of the package."""
    _, sections = parse_definition(APPTAINER / "tritonclient.def")
    copied = {line.split()[0] for line in sections["files"]}
    for module in (
        "glidein_triton/job/client.py",
        "glidein_triton/job/pool.py",
        "glidein_triton/worker/sandbox_protocol.py",
    ):
        assert module in copied
        for node in ast.walk(ast.parse((REPO / module).read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("glidein")):
                assert node.level == 0, f"{module}: a relative import"
                for alias in node.names:
                    name = f"{node.module}.{alias.name}".replace(".", "/")
                    assert f"{name}.py" in copied or f"{name}/__init__.py" in copied, (module, name)
            elif isinstance(node, ast.Import):
                assert not any(alias.name.startswith("glidein_triton") for alias in node.names), module
    assert "glidein_triton/worker/__init__.py" in copied


def test_local_test_image_has_the_glibc_of_the_local_server_and_runs_local_job() -> None:
    header, sections = parse_definition(APPTAINER / "localtest.def")
    # Debian bookworm: glibc 2.36, what the nvidia-pytriton wheel needs (>= 2.35); EL8/EL9 have 2.28/2.34
    assert header["From"] == "python:{{ PYTHON_VERSION }}-slim-bookworm"
    for line in sections["files"]:
        source, _ = line.split()
        assert (REPO / source).exists(), f"%files source {source} is missing"
    assert 'python3 -m pip install --no-cache-dir "/opt/glidein-triton-src[local]"' in sections["post"]
    assert sections["runscript"] == ['exec glidein-triton local-job "$@"']
    assert "import pytriton" in sections["test"][0]


def test_the_docker_context_leaves_out_the_environment_and_build_outputs() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", "build", "dist", "site"} <= set(ignored)


def test_the_client_image_stops_on_a_python_without_numpy_wheels() -> None:
    _, sections = parse_definition(APPTAINER / "tritonclient.def")
    assert "sys.version_info >= (3, 13)" in sections["post"][0]
    assert "(3, 13)" in (APPTAINER / "tritonclient.Dockerfile").read_text()
