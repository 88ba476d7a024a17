"""The agent stops the server when the glidein is gone without its cleanup, and only then; it runs even when
it does not follow the glidein (it serves the jobs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.worker import glidein_paths, log_files, processes

from .support import assert_nothing_left, recorded_state, wait_until

pytestmark = pytest.mark.server


def started(
    tmp_path: Path, glidein_pid: int, period: str = "0.2", runtime: str = "process"
) -> demo.DemoGlidein:
    prepared = demo.prepare(
        tmp_path / "glidein", runtime, settings={"GLIDEIN_TRITON_WATCHDOG_PERIOD": period}
    )
    prepared.glidein.set("GLIDEIN_STARTUP_PID", str(glidein_pid))
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.returncode == 0, result.stderr
    return prepared


def test_the_agent_cleans_up_after_a_vanished_glidein(tmp_path: Path) -> None:
    glidein_process = subprocess.Popen(["sleep", "600"])
    prepared = started(tmp_path, glidein_process.pid)
    state = recorded_state(prepared.glidein)
    assert state is not None
    assert processes.is_running(state.agent_pid, state.agent_ticks)
    assert processes.is_running(state.pid, state.start_ticks)
    glidein_process.kill()  # the glidein dies: no cleanup script will run
    glidein_process.wait()
    assert wait_until(lambda: recorded_state(prepared.glidein) is None)
    assert wait_until(lambda: not processes.is_running(state.agent_pid, state.agent_ticks))
    assert_nothing_left(prepared.glidein, state)
    log = (glidein_paths.plugin_dir(prepared.glidein.root) / "glidein_triton_agent.log").read_text()
    assert f"the glidein (pid {glidein_process.pid}) is gone without its cleanup" in log


@pytest.mark.parametrize("runtime", ["process", "apptainer"])
def test_the_agent_stops_the_server_after_the_work_dir_was_deleted(tmp_path: Path, runtime: str) -> None:
    glidein_process = subprocess.Popen(["sleep", "600"])
    prepared = started(tmp_path, glidein_process.pid, runtime=runtime)
    state = recorded_state(prepared.glidein)
    assert state is not None
    instance = {}
    if state.instance:
        (record,) = glidein_paths.plugin_dir(prepared.glidein.root).glob(
            f"apptainer/instances/app/*/*/{state.instance}.json"
        )
        instance = json.loads(record.read_text())
        assert processes.is_running(instance["pid"])
    log = glidein_paths.plugin_dir(prepared.glidein.root) / "glidein_triton_agent.log"
    assert wait_until(lambda: "following the glidein" in log.read_text())  # it knows what to stop
    # The batch system removes the job's scratch directory as it kills the glidein.
    shutil.rmtree(prepared.glidein.root)
    glidein_process.kill()
    glidein_process.wait()
    assert wait_until(lambda: not processes.is_running(state.agent_pid, state.agent_ticks))
    assert demo.leftovers(state) == []
    if instance:
        assert not processes.is_running(instance["pid"])  # its records went with the directory
    assert not log.exists()


def test_the_glidein_cleanup_stops_the_agent(tmp_path: Path) -> None:
    glidein_process = subprocess.Popen(["sleep", "600"])
    try:
        prepared = started(tmp_path, glidein_process.pid)
        state = recorded_state(prepared.glidein)
        assert state is not None
        assert processes.is_running(state.agent_pid, state.agent_ticks)
        time.sleep(1.0)  # several periods with the glidein alive: the agent must not act
        assert recorded_state(prepared.glidein) is not None
        prepared.glidein.run_cleanup(prepared.environment)
        assert not processes.is_running(state.agent_pid, state.agent_ticks)
        assert_nothing_left(prepared.glidein, state)
    finally:
        glidein_process.kill()
        glidein_process.wait()


def test_the_agent_runs_without_following_the_glidein(tmp_path: Path) -> None:
    prepared = started(tmp_path, glidein_pid=1, period="0")
    state = recorded_state(prepared.glidein)
    assert state is not None
    assert processes.is_running(state.agent_pid, state.agent_ticks)
    log = (glidein_paths.plugin_dir(prepared.glidein.root) / "glidein_triton_agent.log").read_text()
    assert "gone without its cleanup" not in log
    prepared.glidein.run_cleanup(prepared.environment)
    assert_nothing_left(prepared.glidein, state)


def test_the_agent_caps_the_server_log_within_seconds(tmp_path: Path) -> None:
    """A connection flood made server.log grow ~20 MB/s while the periodic script cut it once a period."""
    prepared = started(tmp_path, glidein_pid=1, period="0")
    state = recorded_state(prepared.glidein)
    assert state is not None
    log = Path(state.log_path)
    try:
        with log.open("r+b") as stream:  # as if the server had written past the cap since the last run
            stream.truncate(log_files.SIZE_LIMIT + 4096)
        assert wait_until(
            lambda: log.stat().st_size <= log_files.KEPT_BYTES + 1024,
            timeout=3.0,  # agent.LOG_CHECK: 1 s
        )
        assert log.read_bytes().startswith(log_files.CUT_NOTE % log_files.SIZE_LIMIT)
    finally:
        prepared.glidein.run_cleanup(prepared.environment)
    assert_nothing_left(prepared.glidein, state)
