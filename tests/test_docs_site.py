"""The documentation site builds strictly, shows the version, fails on broken links."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import glidein_triton

REPO = Path(__file__).resolve().parent.parent


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(config),
            "--site-dir",
            str(site),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_site_builds_strictly_and_shows_the_version(tmp_path: Path) -> None:
    result = build(REPO / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    for page in ("operator-guide", "user-guide", "pytorch-to-triton", "settings", "troubleshooting", "check"):
        assert (tmp_path / "site" / page / "index.html").is_file(), page
    index = (tmp_path / "site" / "index.html").read_text()
    assert re.search(rf'<div class="version">\s*{re.escape(glidein_triton.__version__)}\s*</div>', index)


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    shutil.copy2(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    check_page = tmp_path / "docs" / "check.md"
    check_page.write_text(check_page.read_text() + "\nSee [the guide](operator-guid.md).\n")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 1
    assert "contains a link 'operator-guid.md', but the target is not found" in result.stderr
    check_page.write_text(
        check_page.read_text().replace("operator-guid.md", "operator-guide.md#no-such-part")
    )
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 1
    assert "does not contain an anchor '#no-such-part'" in result.stderr
