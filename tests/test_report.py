"""error_gen reporting: -ok and -error with metrics, XML escaping, failure types."""

from __future__ import annotations

from pathlib import Path

import pytest

from glidein_triton.local.glidein import SimulatedGlidein, read_report
from glidein_triton.worker.error_gen import Reporter, shorten, xml_escape


def test_escape() -> None:
    assert xml_escape("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"


def test_ok_with_metrics(glidein: SimulatedGlidein, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(glidein.root)
    Reporter(str(glidein.main_dir / "error_gen.sh"), "s.sh").ok([("HasTriton", "True"), ("Note", "x<y")])
    status, metrics, detail = read_report(glidein.root / "otrb_output.xml")
    assert (status, metrics, detail) == ("OK", {"HasTriton": "True", "Note": "x<y"}, "")


def test_error_with_detail(glidein: SimulatedGlidein, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(glidein.root)
    reporter = Reporter(str(glidein.main_dir / "error_gen.sh"), "s.sh")
    reporter.error("Network", "ports <taken> & gone", [("HasTriton", "False")])
    status, metrics, detail = read_report(glidein.root / "otrb_output.xml")
    assert status == "ERROR"
    assert metrics == {"failure": "Network", "HasTriton": "False"}
    assert detail == "ports <taken> & gone"


def test_unknown_failure_type_is_a_bug() -> None:
    with pytest.raises(ValueError, match="WN_Resource"):
        Reporter("/bin/true", "s.sh").error("Disk", "x")


def test_without_error_gen_only_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    Reporter("", "s.sh").ok()
    assert "not reported" in caplog.text
    assert not (tmp_path / "otrb_output.xml").exists()


def test_long_details_keep_their_start_and_end() -> None:
    text = "message\ncommand: tritonserver --x\n" + "log line\n" * 1000 + "error: the cause"
    short = shorten(text, limit=500)
    assert len(short) <= 500 + len("\n[...]\n")
    assert short.startswith("message\ncommand: tritonserver --x")
    assert short.endswith("error: the cause")
    assert shorten("short") == "short"
