"""docs/reliability.md is generated from the fault table that tests/test_faults.py checks on the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from glidein_triton.local import fault_table as reliability
from glidein_triton.local.fault_table import FAULTS, REPORTS

RELIABILITY_MD = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"


def test_docs_reliability_md_is_the_generated_text() -> None:
    assert RELIABILITY_MD.read_text(encoding="utf-8") == reliability.markdown(), (
        "docs/reliability.md is out of date: run .venv/bin/glidein-triton reliability-doc --output "
        "docs/reliability.md"
    )


def test_every_fault_has_a_row_that_says_what_happens() -> None:
    rows = [
        line for line in reliability.markdown().splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert len(rows) == len(FAULTS) + 1  # and the header
    assert len({fault.key for fault in FAULTS}) == len(FAULTS)
    for row, fault in zip(rows[1:], FAULTS):
        assert row.startswith(f"| {fault.fault} | ")
        assert fault.report in REPORTS
        if fault.report == "ready":
            assert (fault.failure, fault.has_triton) == ("", "True"), fault
        if fault.report == "failure":
            assert fault.failure
            assert fault.has_triton != "True"
            assert f"TritonFailure `{fault.failure}`" in row
            assert fault.exit_code == 0
            assert fault.required_exit_code == 1
    sigkill = reliability.FAULTS_BY_KEY["startup_sigkill"]
    assert reliability.exit_text(sigkill) == "killed (signal 9)"


def test_the_command_writes_and_checks_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "reliability.md"
    assert reliability.main(["--check", str(target)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert reliability.main(["--output", str(target)]) == 0
    assert reliability.main(["--check", str(target)]) == 0
    assert reliability.main([]) == 0
    assert capsys.readouterr().out == target.read_text(encoding="utf-8")
