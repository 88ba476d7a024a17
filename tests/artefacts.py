"""The release artefacts of this tree, built once a session by ``make dist``, and clean virtual environments
that install them as the documentation's install commands do.

The copy that ``make dist`` runs in holds the files git knows (tracked, and new but not ignored), or, outside a
git checkout (the unpacked sdist), every file but the build outputs and caches .gitignore names.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: what clean_copy leaves out when there is no git to ask (the build outputs and caches of .gitignore)
NOT_SOURCES = (
    ".git",
    ".venv",
    ".dist-venv",
    "build",
    "dist",
    "site",
    "demo-output",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".hypothesis",
)


def in_git_checkout() -> bool:
    """Whether this tree is a git checkout that git can list."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return False
    return subprocess.run(["git", "rev-parse"], cwd=REPO, capture_output=True, check=False).returncode == 0


def source_files() -> list[str]:
    """The tree's source files, relative to it."""
    if in_git_checkout():
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return [name for name in listed.split("\0") if name and (REPO / name).is_file()]
    return sorted(
        str(path.relative_to(REPO))
        for path in REPO.rglob("*")
        if path.is_file()
        and not any(
            part in NOT_SOURCES or part.endswith(".egg-info") for part in path.relative_to(REPO).parts
        )
        and not path.name.endswith((".pyc", ".pyo"))
    )


def clean_copy(target: Path) -> Path:
    """The tree's source files, copied to ``target``."""
    for name in source_files():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    return target


@dataclass(frozen=True)
class Built:
    """A clean copy of the tree, and what ``make dist`` built in it."""

    source: Path
    sdist: Path
    wheel: Path
    log: str


def make_dist(root: Path) -> Built:
    """``make dist`` in a clean copy under ``root``, with this Python's build tools (offline)."""
    source = clean_copy(root / "glidein-triton")
    result = subprocess.run(
        ["make", "--no-print-directory", "dist", f"DIST_PYTHON={sys.executable}"],
        cwd=source,
        capture_output=True,
        text=True,
        check=False,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    (sdist,) = (source / "dist").glob("glidein_triton-*.tar.gz")
    (wheel,) = (source / "dist").glob("glidein_triton-*-py3-none-any.whl")
    return Built(source, sdist, wheel, log)


def new_venv(path: Path) -> Path:
    """A new virtual environment at ``path`` (no system site-packages); its bin directory."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True)
    return path.absolute() / "bin"


def pip_install(bin_dir: Path, *requirements: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python3 -m pip install`` of ``requirements`` in the environment of ``bin_dir``."""
    return subprocess.run(
        [str(bin_dir / "python3"), "-m", "pip", "install", "--quiet", *requirements],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


#: what a new virtual environment holds before anything is installed
VENV_TOOLS = frozenset({"pip", "setuptools", "wheel"})


def installed(bin_dir: Path) -> set[str]:
    """The normalised names of the distributions installed in the environment of ``bin_dir``."""
    listed = subprocess.run(
        [str(bin_dir / "python3"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split("==")[0].lower().replace("_", "-") for line in listed.splitlines() if "==" in line}
