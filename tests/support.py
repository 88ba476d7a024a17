"""Helpers shared by the tests (tests import this module, never each other): the XML fixtures and what a
patch changed line by line, a stand-in nvidia-smi, the oldest Python to run the worker code with, a process's
limits and memory."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
from pathlib import Path

from lxml import etree

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
FACTORY_XML = FIXTURES / "factory" / "glideinWMS.xml"
CONFIG_D_XML = FIXTURES / "factory" / "config.d" / "10-gpu-sites.xml"
FRONTEND_XML = FIXTURES / "frontend" / "frontend.xml"


def _opcodes(
    before: bytes, after: bytes
) -> tuple[list[bytes], list[bytes], list[tuple[str, int, int, int, int]]]:
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    return old, new, difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()


def removed_lines(before: bytes, after: bytes) -> list[str]:
    """The lines of ``before`` that are not in ``after`` any more (deleted or replaced)."""
    old, _, opcodes = _opcodes(before, after)
    return [
        line.decode() for tag, i1, i2, _, _ in opcodes if tag in ("delete", "replace") for line in old[i1:i2]
    ]


def added_lines(before: bytes, after: bytes) -> list[str]:
    """The lines of ``after`` that were not in ``before`` (inserted or replacing others)."""
    _, new, opcodes = _opcodes(before, after)
    return [
        line.decode() for tag, _, _, j1, j2 in opcodes if tag in ("insert", "replace") for line in new[j1:j2]
    ]


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def values(element: etree._Element) -> dict[str, str]:
    return {str(key): str(value) for key, value in element.attrib.items()}


def named(root: etree._Element, path: str, name: str) -> list[etree._Element]:
    return [element for element in root.iterfind(path) if element.get("name") == name]


def fake_nvidia_smi(directory: Path, fixture: Path, failing: bool = False) -> str:
    """An nvidia-smi on PATH that prints a captured output (or the no-driver failure)."""
    if failing:
        body = f'cat "{fixture}/stdout.txt"; exit "$(cat "{fixture}/exit-status.txt")"'
    else:
        body = f'case "$1" in -L) cat "{fixture}/list-L.txt";; *) cat "{fixture}/query-gpu-idle.csv";; esac'
    script = directory / "nvidia-smi"
    directory.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!/bin/bash\n{body}\n")
    script.chmod(0o755)
    return f"{directory}:/usr/bin:/bin"


def find_python39() -> str | None:
    """A working Python 3.9 interpreter: on PATH, or one installed by pyenv."""
    candidates = [shutil.which("python3.9") or ""]
    candidates += sorted(
        str(p)
        for p in Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob(
            "versions/3.9*/bin/python3.9"
        )
    )
    for candidate in candidates:
        if (
            candidate
            and subprocess.run([candidate, "-c", "pass"], capture_output=True, check=False).returncode == 0
        ):
            return candidate
    return None


PYTHON39 = find_python39()


#: The stand-in apptainer of the local glidein.
STANDIN_APPTAINER = REPO / "glidein_triton" / "local" / "standins" / "apptainer"
#: The image definitions.
APPTAINER = REPO / "apptainer"
SECTIONS = {"arguments", "files", "post", "test", "labels", "help", "environment", "runscript", "startscript"}


def parse_definition(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(header keywords, section name -> its non-blank, non-comment lines), as Apptainer reads a def file."""
    header: dict[str, str] = {}
    sections: dict[str, list[str]] = {}
    current = ""
    for line in path.read_text().splitlines():
        if line.startswith("%"):
            current = line[1:].split()[0]
            assert current not in sections, f"{path.name}: %{current} twice"
            sections[current] = []
        elif not line.strip() or line.lstrip().startswith("#"):
            continue
        elif current:
            sections[current].append(line.strip())
        else:
            keyword, _, value = line.partition(":")
            header[keyword.strip()] = value.strip()
    return header, sections


def arguments(sections: dict[str, list[str]]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in sections.get("arguments", []))


def make_certificate(directory: Path, address: str) -> tuple[Path, Path]:
    cert, key = directory / "server.pem", directory / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={address}",
            "-addext",
            f"subjectAltName=IP:{address}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def data_limit(pid: int) -> str:
    """The soft "Max data size" of a running process, as /proc/<pid>/limits shows it."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max data size"):
            return line.split()[3]
    raise AssertionError(f"no data size limit in /proc/{pid}/limits")


def peak_memory_kib(pid: int) -> int | None:
    """VmHWM (peak resident memory) of a process, None once it is gone (or a zombie, which has none)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in lines if line.startswith("VmHWM:")), None)
