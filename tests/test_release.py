"""One Triton release everywhere: glidein_triton/__init__.py's, and no other release in the docs, the
templates, the image definitions or frontend-xml's defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import glidein_triton as release
from glidein_triton.local.local_job import local_glidein
from glidein_triton.worker.images import CVMFS_SERVER_IMAGES

from .support import APPTAINER, arguments, parse_definition

REPO = Path(__file__).resolve().parent.parent
#: where a release may be written: what users and operators read, and what builds images
SEARCHED = [
    REPO / "README.md",
    *sorted((REPO / "docs").rglob("*.md")),
    *sorted((REPO / "docs" / "examples").glob("*.xml")),
    *sorted((REPO / "examples").rglob("*.md")),
    *sorted((REPO / "examples").rglob("*.py")),
    *sorted(APPTAINER.iterdir()),
    *sorted((REPO / "factory_xml").glob("*.j2")),
    *sorted((REPO / "frontend_config").glob("*.j2")),
    *sorted((REPO / "glidein_triton" / "operator").rglob("*.py")),
    *sorted((REPO / "glidein_triton" / "job").rglob("*.py")),
]
#: NGC release -> Triton version, from server/build.py's TRITON_VERSION_MAP at each tag
KNOWN_RELEASES = {
    "24.01": "2.42.0",
    "24.05": "2.46.0",
    "24.10": "2.51.0",
    "24.11": "2.52.0",
    "25.01": "2.54.0",
}
#: (pattern whose group 1 names a release or version, what it must be)
RELEASE_PATTERNS = [
    (re.compile(r"tritonserver[:_-]([0-9]{2}\.[0-9]{2})"), release.TRITON_RELEASE),
    (re.compile(r"TRITON_RELEASE=([0-9.]+)"), release.TRITON_RELEASE),
    (re.compile(r"NGC ([0-9]{2}\.[0-9]{2})"), release.TRITON_RELEASE),
    (re.compile(r"TRITONCLIENT_VERSION=([0-9.]+)"), release.TRITON_VERSION),
    (re.compile(r"tritonclient(?:\[[a-z,]+\])?(?:==|:)([0-9][0-9.]*)"), release.TRITON_VERSION),
    (re.compile(r"tritonserver ([0-9]+\.[0-9]+(?:\.[0-9]+)?)"), release.TRITON_VERSION),
]


def releases_in(text: str) -> list[tuple[str, str]]:
    """(what was found, what it should be) for every release-like string of ``text``; the verified CVMFS
    images (glidein_triton/worker/images.py) keep their own releases."""
    for image in CVMFS_SERVER_IMAGES:
        short = "/".join(image.path.split("/")[-2:])  # e.g. hermes/tritonserver:24.01
        built_from = f"nvcr.io/nvidia/tritonserver:{image.container}-py3"  # the NGC image of a copy
        text = text.replace(image.path, "").replace(short, "").replace(built_from, "")
    return [
        (match.group(0), wanted)
        for pattern, wanted in RELEASE_PATTERNS
        for match in pattern.finditer(text)
        if not wanted.startswith(match.group(1))
    ]


def test_the_release_and_the_version_belong_together() -> None:
    assert re.fullmatch(r"[0-9]{2}\.[0-9]{2}", release.TRITON_RELEASE)
    assert re.fullmatch(r"2\.[0-9]+\.[0-9]+", release.TRITON_VERSION)
    assert KNOWN_RELEASES[release.TRITON_RELEASE] == release.TRITON_VERSION


def test_the_search_finds_other_releases() -> None:
    found = releases_in(
        "FROM tritonserver:24.08-py3\nTRITONCLIENT_VERSION=2.49.0\ntritonclient[grpc,http]==2.52.0\n"
        "tritonserver_24.10.sif tritonclient:2.51.0 /cvmfs/singularity.opensciencegrid.org/ml4gw/hermes/tritonserver:24.01"
    )
    assert [text for text, _ in found] == [
        "tritonserver:24.08",
        "TRITONCLIENT_VERSION=2.49.0",
        "tritonclient[grpc,http]==2.52.0",
    ]


@pytest.mark.parametrize("path", SEARCHED, ids=lambda path: str(path.relative_to(REPO)))
def test_no_other_release_is_named(path: Path) -> None:
    assert releases_in(path.read_text(encoding="utf-8")) == []


def test_the_searched_files_name_the_release() -> None:
    named = [path for path in SEARCHED if release.TRITON_RELEASE in path.read_text(encoding="utf-8")]
    assert len(named) >= 4


def test_image_definitions_default_to_the_release() -> None:
    _, server = parse_definition(APPTAINER / "tritonserver.def")
    assert arguments(server)["TRITON_RELEASE"] == release.TRITON_RELEASE
    _, client = parse_definition(APPTAINER / "tritonclient.def")
    assert arguments(client)["TRITONCLIENT_VERSION"] == release.TRITON_VERSION
    dockerfile = (APPTAINER / "tritonclient.Dockerfile").read_text()
    assert f"ARG TRITONCLIENT_VERSION={release.TRITON_VERSION}\n" in dockerfile


@pytest.mark.server
def test_the_local_server_is_of_the_release_version(tmp_path: Path) -> None:
    with local_glidein(tmp_path, models="simple") as local:
        assert local.attributes["TritonVersion"] == f'"{release.TRITON_VERSION}"'
