"""docs/settings.md is generated from the SETTINGS table: it must say what the code does."""

from __future__ import annotations

from pathlib import Path

import pytest

from glidein_triton.operator import settings_doc
from glidein_triton.worker.settings import ALLOWED_SERVER_OPTIONS, RETIRED_SETTINGS, SETTINGS

SETTINGS_MD = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_docs_settings_md_is_the_generated_text() -> None:
    assert SETTINGS_MD.read_text(encoding="utf-8") == settings_doc.markdown(), (
        "docs/settings.md is out of date: run .venv/bin/glidein-triton settings-doc --output docs/settings.md"
    )


def test_every_setting_has_a_row_with_its_default() -> None:
    rows = [line for line in settings_doc.markdown().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [spec.key for spec in SETTINGS]
    for row, spec in zip(rows, SETTINGS):
        assert (spec.default_text or spec.default or "(none)") in row
        assert spec.description.replace("|", "\\|") in row
    assert all(f"- `{option}`" in settings_doc.markdown() for option in ALLOWED_SERVER_OPTIONS)
    retired = settings_doc.markdown().split("## Retired settings", 1)[1]
    assert all(f"- `{key}`: {why}." in retired for key, why in RETIRED_SETTINGS.items())


def test_the_command_writes_and_checks_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "settings.md"
    assert settings_doc.main(["--check", str(target)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert settings_doc.main(["--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == settings_doc.markdown()
    assert settings_doc.main(["--check", str(target)]) == 0
    assert settings_doc.main([]) == 0
    assert capsys.readouterr().out == settings_doc.markdown()
