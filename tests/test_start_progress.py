"""While the server loads its models, the startup log says what it is waiting for, a bounded number of times."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from glidein_triton.worker import server, server_report
from glidein_triton.worker.state import ServerState

LOADING_LOG = (
    'I1207 16:47:32.805914 1 model_lifecycle.cc:472] "loading: simple:1"\n'
    'I1207 16:47:32.806010 1 model_lifecycle.cc:472] "loading: slow:1"\n'
    "I1207 16:47:35.144419 1 model_lifecycle.cc:839] \"successfully loaded 'simple'\"\n"
)


class FakeClock:
    """time.monotonic and time.sleep of a wait that costs no time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_progress_names_what_loads_what_loaded_and_what_failed() -> None:
    assert server_report.loading_progress("") == "no model loading yet"
    assert server_report.loading_progress(LOADING_LOG) == "loading slow; loaded simple"
    failed = (
        LOADING_LOG + "E1207 16:47:36.1 1 model_lifecycle.cc:642] \"failed to load 'slow' version 1: x\"\n"
    )
    assert server_report.loading_progress(failed) == "loaded simple; failed slow"
    many = "".join(f'"loading: m{number}:1"\n' for number in range(12))
    assert server_report.loading_progress(many) == "loading m0, m1, m2, m3, m4, m5, m6, m7 and 4 more"


def test_a_long_wait_logs_its_progress_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "server.log").write_text(LOADING_LOG)
    state = ServerState(runtime="process", pid=4242, log_path=str(tmp_path / "server.log"))
    clock = FakeClock()
    monkeypatch.setattr(server.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(server.time, "sleep", clock.sleep)
    monkeypatch.setattr(server, "_exit_code", lambda pid: None)
    started = clock.now
    monkeypatch.setattr(server.Server, "is_ready", lambda self, timeout: clock.now - started >= 239)
    with caplog.at_level(logging.INFO, logger=server.LOG.name):
        server.wait_ready(state, 240)
    lines = [
        record.getMessage() for record in caplog.records if "waiting for tritonserver" in record.getMessage()
    ]
    assert lines[0] == (
        "waiting for tritonserver to be ready (5 of 240 s, GLIDEIN_TRITON_READY_TIMEOUT): loading slow; "
        "loaded simple"
    )
    assert len(lines) == 8
    seconds = [int(line.split("(")[1].split(" ")[0]) for line in lines]
    assert seconds == [5, 15, 35, 75, 115, 155, 195, 235]


def test_a_server_ready_at_once_logs_no_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    state = ServerState(runtime="process", pid=4242, log_path=str(tmp_path / "server.log"))
    monkeypatch.setattr(server.Server, "is_ready", lambda self, timeout: True)
    with caplog.at_level(logging.INFO, logger=server.LOG.name):
        server.wait_ready(state, 240)
    assert not [record for record in caplog.records if "waiting for" in record.getMessage()]
