"""The templates ship in the wheel as package data and load from there; no package is left out."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from glidein_triton import templates

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: the copy setuptools carries
    from setuptools._vendor import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_python_package_is_listed_in_pyproject() -> None:
    listed = set(PYPROJECT["packages"])
    found = {
        ".".join(path.parent.relative_to(REPO).parts)
        for path in (REPO / "glidein_triton").rglob("__init__.py")
        if "models" not in path.parts
    }
    mapped = {
        package
        for package, directory in PYPROJECT["package-dir"].items()
        if (REPO / directory / "__init__.py").is_file()
    }
    assert listed == found | mapped
    assert mapped == set(templates.TEMPLATE_PACKAGES.values())


def test_the_editable_install_finds_the_templates_in_the_top_level_directories() -> None:
    for name in templates.template_names():
        directory, _, file_name = name.partition("/")
        assert templates.template_source(name) == (REPO / directory / file_name).read_text(encoding="utf-8")
    assert templates.template_source("factory_xml/nope.j2") is None
    assert templates.template_source("elsewhere/x.j2") is None


def test_a_built_wheel_carries_the_templates_and_renders_them(tmp_path: Path) -> None:
    """Build the wheel offline from the files git knows, then render every template from the wheel alone."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    source = tmp_path / "source"
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("glidein_triton-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in templates.template_names():
        directory, _, file_name = name.partition("/")
        assert f"glidein_triton/{directory}/{file_name}" in names
    # -S: no site, so no editable-install finder; the wheel first, then the dependencies.
    code = (
        "import sys; sys.path[:0] = sys.argv[1:3]\n"
        "import glidein_triton\n"
        "assert glidein_triton.__file__.startswith(sys.argv[1]), glidein_triton.__file__\n"
        "from glidein_triton import templates\n"
        "from glidein_triton.factory_patch import FactoryOptions, snippet\n"
        "print(len(templates.template_names()), snippet(FactoryOptions(('E',), '/p')).count('<file '))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(wheel), sysconfig.get_paths()["purelib"]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(templates.template_names())), "3"]
