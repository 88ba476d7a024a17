"""Release artifacts: ``python -m build`` gives an sdist and a wheel built from it, with everything that ships.

The build is ``make dist``, run offline (``--no-isolation``, with the setuptools and wheel of the test
environment) on a clean copy of the tree, once a session (tests/artefacts.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import jinja2
import lxml
import markupsafe
import pytest

import glidein_triton
from glidein_triton.operator.xmlpatch import templates

from . import artefacts
from .artefacts import Built

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: the copy setuptools carries
    from setuptools._vendor import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
VERSION = glidein_triton.__version__
#: Files the scripts and stand-ins are run as: executable in both artifacts.
EXECUTABLES = (
    "glidein_triton/scripts/glidein_triton_setup.sh",
    "glidein_triton/scripts/glidein_triton_cleanup.sh",
    "glidein_triton/scripts/publish_config.sh",
    "glidein_triton/local/standins/apptainer",
    "glidein_triton/local/standins/condor_status",
    "glidein_triton/local/standins/condor_advertise",
    "glidein_triton/local/glidein_doubles/error_gen.sh",
)


class Artifacts:
    def __init__(self, sdist: Path, wheel: Path, log: str) -> None:
        self.sdist = sdist
        self.wheel = wheel
        self.log = log
        self.wheel_files = {info.filename: info for info in zipfile.ZipFile(wheel).infolist()}
        with tarfile.open(sdist) as archive:
            prefix = f"glidein_triton-{VERSION}/"
            self.sdist_files = {
                member.name.removeprefix(prefix): member for member in archive.getmembers() if member.isfile()
            }
            self.pkg_info = archive.extractfile(f"{prefix}PKG-INFO").read().decode()  # type: ignore[union-attr]
        self.metadata = zipfile.ZipFile(wheel).read(f"glidein_triton-{VERSION}.dist-info/METADATA").decode()


@pytest.fixture(scope="module")
def artifacts(built: Built) -> Artifacts:
    return Artifacts(built.sdist, built.wheel, built.log)


def shipped_data(source: bool = False) -> list[str]:
    """Every data file the package ships: its path in the installed package, or in the source tree."""
    mapped = "" if source else "glidein_triton/"
    names = [f"{mapped}{name}" for name in templates.template_names()]
    names += [f"{mapped}apptainer/{path.name}" for path in sorted((REPO / "apptainer").glob("*.def"))]
    names += [f"{mapped}apptainer/tritonclient.Dockerfile"]
    package = REPO / "glidein_triton"
    for pattern in (
        "scripts/*.sh",
        "worker/*.py",
        "worker/check/*.py",
        "local/glidein_doubles/*",
        "local/standins/*",
        "job/templates/*.py",
    ):
        names += [f"glidein_triton/{path.relative_to(package)}" for path in sorted(package.glob(pattern))]
    names += [
        "glidein_triton/local/models/simple/config.pbtxt",
        "glidein_triton/local/models/simple/1/model.py",
    ]
    return names


def test_every_importable_directory_is_a_listed_package() -> None:
    """setuptools counts every directory with an importable name as a package: none may be left out."""
    found = {"glidein_triton"} | {
        ".".join(path.relative_to(REPO).parts)
        for path in (REPO / "glidein_triton").rglob("*")
        if path.is_dir()
        and path.name != "__pycache__"
        and all(part.isidentifier() for part in path.relative_to(REPO).parts)
    }
    mapped = SETUPTOOLS["package-dir"]
    assert set(SETUPTOOLS["packages"]) == found | set(mapped)
    assert all((REPO / directory / "__init__.py").is_file() for directory in mapped.values())
    assert set(templates.TEMPLATE_PACKAGES.values()) <= set(mapped)
    assert "glidein_triton.operator.xmlpatch.templates" not in SETUPTOOLS["packages"], (
        "templates.py is a module"
    )


@pytest.mark.scripts
def test_the_build_is_clean_and_the_wheel_comes_from_the_sdist(artifacts: Artifacts) -> None:
    assert "Building wheel from sdist" in artifacts.log
    assert "is absent from the `packages` configuration" not in artifacts.log
    assert "BuildBackendWarning" not in artifacts.log


@pytest.mark.scripts
def test_the_wheel_carries_templates_images_scripts_models_and_doubles(artifacts: Artifacts) -> None:
    files = artifacts.wheel_files
    missing = [name for name in shipped_data() if name not in files]
    assert missing == []
    assert "glidein_triton/worker/check/command.py" in files
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    assert not [name for name in files if name.startswith(("tests/", "benchmarks/", "docs/"))]
    for name in EXECUTABLES:
        assert files[name].external_attr >> 16 & 0o777 == 0o755, name


@pytest.mark.scripts
def test_the_sdist_carries_the_sources_docs_and_tests(artifacts: Artifacts) -> None:
    files = artifacts.sdist_files
    expected = [
        "pyproject.toml",
        "setup.cfg",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "Makefile",
        "mkdocs.yml",
        ".dockerignore",  # tests/test_images.py reads it
        "docs/hooks.py",
        "docs/troubleshooting.md",
        "docs/settings.md",
        "docs/examples/glideinWMS.xml",
        "tests/test_packaging.py",
        "tests/fixtures/factory/glideinWMS.xml",
        "examples/README.md",
        "benchmarks/overhead.py",
        "factory_xml/__init__.py",
        "apptainer/__init__.py",
        *shipped_data(source=True),
    ]
    missing = [name for name in expected if name not in files]
    assert missing == []
    assert not [name for name in files if "__pycache__" in name or name.endswith(".pyc")]
    for name in EXECUTABLES:
        assert files[name].mode & 0o777 == 0o755, name


@pytest.mark.scripts
def test_one_version_everywhere(artifacts: Artifacts) -> None:
    source = (REPO / "glidein_triton" / "__init__.py").read_text()
    assert re.findall(r'^__version__ = "([^"]+)"$', source, re.MULTILINE) == [VERSION]
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert "version" not in PYPROJECT["project"]
    assert SETUPTOOLS["dynamic"]["version"] == {"attr": "glidein_triton.__version__"}
    assert f"\nVersion: {VERSION}\n" in artifacts.metadata
    assert f"\nVersion: {VERSION}\n" in artifacts.pkg_info
    assert artifacts.wheel.name == f"glidein_triton-{VERSION}-py3-none-any.whl"
    assert "\nLicense-Expression: Apache-2.0\n" in artifacts.metadata
    command = shutil.which("glidein-triton", path=str(Path(sys.executable).parent))
    assert command is not None
    printed = subprocess.run([command, "--version"], capture_output=True, text=True, check=True).stdout
    assert printed == f"glidein-triton {VERSION}\n"
    assert f"\n## [{VERSION}] - " in (REPO / "CHANGELOG.md").read_text(), "CHANGELOG.md has no entry for it"


def test_the_editable_install_finds_the_templates_in_the_top_level_directories() -> None:
    for name in templates.template_names():
        directory, _, file_name = name.partition("/")
        assert templates.template_source(name) == (REPO / directory / file_name).read_text(encoding="utf-8")
    assert templates.template_source("factory_xml/nope.j2") is None
    assert templates.template_source("elsewhere/x.j2") is None


@pytest.mark.scripts
def test_the_wheel_alone_renders_the_templates_and_has_the_image_definitions(artifacts: Artifacts) -> None:
    # -S: no site, so no editable-install finder; the wheel first, then where this Python finds the
    # operator's dependencies (site-packages, or a directory a .pth file names).
    dependency_paths = sorted(
        {str(Path(module.__file__ or "").parent.parent) for module in (lxml, jinja2, markupsafe)}
    )
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "import glidein_triton\n"
        "assert glidein_triton.__file__.startswith(sys.argv[1]), glidein_triton.__file__\n"
        "from importlib import resources\n"
        "from glidein_triton.operator.xmlpatch import templates\n"
        "from glidein_triton.operator.factory_patch import FactoryOptions, snippet\n"
        "definition = resources.files('glidein_triton.apptainer').joinpath('tritonserver.def').read_text()\n"
        "print(len(templates.template_names()), snippet(FactoryOptions(('E',), '/p')).count('<file '),\n"
        "      definition.splitlines()[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(artifacts.wheel), *dependency_paths],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    first_line = (REPO / "apptainer" / "tritonserver.def").read_text().splitlines()[0]
    assert result.stdout.rstrip("\n").split(maxsplit=2) == [
        str(len(templates.template_names())),
        "3",
        first_line,
    ]


def test_the_sdists_tree_copies_without_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a git checkout (the unpacked sdist) the copy make dist builds from holds what git would list."""
    if not artefacts.in_git_checkout():
        pytest.skip("not a git checkout: the copy is made without git already")
    listed = set(artefacts.source_files())
    monkeypatch.setattr(artefacts, "in_git_checkout", lambda: False)
    walked = set(artefacts.source_files())
    assert listed <= walked
    assert (
        not [name for name in walked - listed if not name.startswith(".ci/")]
        or sorted(walked - listed)[:5] == []
    )


def dry_run(target: str, venv: Path) -> list[str]:
    """The commands ``make -n TARGET`` would run for a new virtual environment at ``venv``."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-n", target, f"VENV={venv}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def test_make_demo_installs_only_the_local_extra_and_says_so_first(tmp_path: Path) -> None:
    commands = dry_run("demo", tmp_path / "venv")
    installs = [number for number, line in enumerate(commands) if " -m pip install" in line]
    assert [commands[number].split()[-1] for number in installs] == ["'.[local]'"]
    said = [number for number, line in enumerate(commands) if line.startswith('echo "make demo: installing')]
    assert said
    assert said[0] < installs[0]
    assert commands[-1] == f"{tmp_path / 'venv'}/bin/glidein-triton demo"


def test_make_test_installs_the_test_toolchain(tmp_path: Path) -> None:
    commands = dry_run("test", tmp_path / "venv")
    assert [line.split()[-1] for line in commands if " -m pip install -" in line and "-e" in line] == [
        "'.[test]'"
    ]
