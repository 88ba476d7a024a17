"""A glidein killed at any time leaves no server, agent or instance, on nodes whose batch system kills only
glidein_startup.sh (not the process tree) and where no cleanup script runs.

glidein_startup.sh traps signals only once its last script (condor_startup.sh) runs, so a kill during the
custom scripts ends it at once; the plugin's startup script runs on as an orphan. The stand-in for
glidein_startup.sh here is a ``sleep``, whose pid is GLIDEIN_STARTUP_PID; it gets SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local.glidein import ScriptResult, SimulatedGlidein
from glidein_triton.worker import glidein_paths, processes
from glidein_triton.worker.agent_launch import LOG_FILE_NAME
from glidein_triton.worker.state import ServerState

from .support import add_model, assert_nothing_left, recorded_state, wait_until

pytestmark = pytest.mark.server

#: Loads for a few seconds: the startup waits for it, so that the kill lands while the server loads.
LOADING_MODEL = """
import time

class TritonPythonModel:
    def initialize(self, args):
        time.sleep(4)

    def execute(self, requests):
        return []
"""


def launched(glidein: SimulatedGlidein) -> ServerState | None:
    """The recorded server once it is launched (the state is recorded before the launch too, without it)."""
    state = recorded_state(glidein)
    return state if state is not None and state.pid else None


def test_a_glidein_killed_during_the_startup_leaves_nothing(tmp_path: Path) -> None:
    glidein_startup = subprocess.Popen(["sleep", "600"])
    prepared = demo.prepare(
        tmp_path / "glidein",
        settings={"GLIDEIN_TRITON_WATCHDOG_PERIOD": "0.2", "GLIDEIN_TRITON_MODELS": "simple,loading"},
    )
    add_model(tmp_path / "glidein" / "model_repository", "loading", LOADING_MODEL)
    glidein = prepared.glidein
    glidein.set("GLIDEIN_STARTUP_PID", str(glidein_startup.pid))
    outcome: list[ScriptResult] = []
    startup = threading.Thread(
        target=lambda: outcome.append(glidein.run_startup(prepared.environment, condor=False))
    )
    startup.start()
    try:
        # The server is launched and recorded, still loading: glidein_startup.sh is killed.
        assert wait_until(lambda: launched(glidein) is not None, 60)
        state = launched(glidein)
        assert state is not None
        assert processes.is_running(state.pid, state.start_ticks)
        assert state.agent_pid == 0
    finally:
        glidein_startup.kill()
        glidein_startup.wait()
        startup.join(120)
    result = outcome[0]
    assert result.returncode == 0, result.stderr  # not required: the (dead) glidein is not failed
    assert result.metrics["HasTriton"] == "False"
    assert "ended during the startup: the server was stopped" in result.metrics["TritonFailureDetail"]
    assert not processes.is_running(state.pid, state.start_ticks)
    assert_nothing_left(glidein, state)


def test_a_glidein_killed_after_the_startup_leaves_nothing(tmp_path: Path) -> None:
    """The agent follows glidein_startup.sh: three misses in a row, then it stops the server and ends."""
    glidein_startup = subprocess.Popen(["sleep", "600"])
    prepared = demo.prepare(tmp_path / "glidein", settings={"GLIDEIN_TRITON_WATCHDOG_PERIOD": "0.2"})
    prepared.glidein.set("GLIDEIN_STARTUP_PID", str(glidein_startup.pid))
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.returncode == 0, result.stderr
    state = recorded_state(prepared.glidein)
    assert isinstance(state, ServerState)
    assert processes.is_running(state.agent_pid, state.agent_ticks)
    glidein_startup.kill()  # condor_startup.sh's own trap and the cleanup scripts never run
    glidein_startup.wait()
    assert wait_until(lambda: not processes.is_running(state.agent_pid, state.agent_ticks), 30)
    assert_nothing_left(prepared.glidein, state)


def test_a_startup_killed_with_its_process_group_leaves_nothing(tmp_path: Path) -> None:
    """The batch system kills the glidein's process group while the server loads: the startup script dies
    with glidein_startup.sh; its guard, in a session of its own, stops the server."""
    prepared = demo.prepare(tmp_path / "glidein", settings={"GLIDEIN_TRITON_MODELS": "simple,loading"})
    add_model(tmp_path / "glidein" / "model_repository", "loading", LOADING_MODEL)
    glidein = prepared.glidein
    # The stand-in glidein_startup.sh records its pid as the real one does, then runs the script.
    script = subprocess.Popen(
        [
            "bash",
            "-c",
            'echo "GLIDEIN_STARTUP_PID $$" >> glidein_config; "$0" glidein_config main; sleep 600',
            str(glidein.startup_script),
        ],
        cwd=glidein.root,
        env=prepared.environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the glidein's process group, apart from pytest's
    )
    try:
        assert wait_until(lambda: launched(glidein) is not None, 60)
        state = launched(glidein)
        assert state is not None
        assert state.agent_pid == 0
    finally:
        os.killpg(script.pid, signal.SIGKILL)
        script.wait()
    assert wait_until(lambda: not processes.is_running(state.pid, state.start_ticks), 30)
    assert wait_until(lambda: recorded_state(glidein) is None, 30)
    assert_nothing_left(glidein, state)
    log = (glidein_paths.plugin_dir(glidein.root) / LOG_FILE_NAME).read_text()
    assert "was killed before the agent ran, and the glidein is gone: stopping the Triton server" in log
