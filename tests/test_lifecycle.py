"""End to end on the real tritonserver: startup -> ready -> inference -> ClassAd match -> cleanup."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import glidein_paths, processes, runtime, server, startup
from glidein_triton.worker import ports as port_allocation
from glidein_triton.worker.errors import PortInUseError, ReadinessTimeoutError, ServerStartError
from glidein_triton.worker.glidein_config import GlideinConfig
from glidein_triton.worker.ports import Ports, is_listening
from glidein_triton.worker.settings import Settings
from glidein_triton.worker.state import ServerState

from .support import DEFAULT_INSTANCES, PYTHON39, add_model, assert_nothing_left, recorded_state

pytestmark = pytest.mark.server

FAILING_MODEL = """
class TritonPythonModel:
    def initialize(self, args):
        raise RuntimeError("this model cannot load: weights missing")
"""
SLOW_MODEL = """
import time

class TritonPythonModel:
    def initialize(self, args):
        time.sleep(60)
"""


def standin_instances(environment: dict[str, str], glidein: SimulatedGlidein) -> str:
    """The stand-in's ``instance list`` with the glidein's Apptainer config dir."""
    config_dir = glidein_paths.plugin_dir(glidein.root) / runtime.CONFIG_DIR_NAME
    listed = subprocess.run(
        [str(demo.STANDIN_APPTAINER), "instance", "list"],
        env={**environment, "APPTAINER_CONFIGDIR": str(config_dir)},
        capture_output=True,
        text=True,
        check=True,
    )
    return listed.stdout


def test_process_runtime_whole_lifecycle(served_glidein: demo.DemoGlidein) -> None:
    glidein, environment = served_glidein.glidein, served_glidein.environment
    result = glidein.run_startup(environment)
    assert result.returncode == 0, result.stderr
    assert result.status == "OK"
    assert result.metrics["HasTriton"] == "True"
    attributes, job_environment = glidein.published()
    assert attributes["HasTriton"] == "True"
    assert attributes["TritonRuntime"] == '"process"'
    assert attributes["TritonVersion"] == '"2.51.0"'
    assert attributes["TritonGPUs"] == "0"
    assert attributes["TritonGRPCURL"] == f'"{job_environment["TRITON_GRPC_URL"]}"'
    # The published ad matches a job that asks for Triton, and not one that needs a GPU.
    assert demo.job_requirements_match(attributes)
    assert not demo.job_requirements_match(attributes, "HasTriton =?= True && TritonGPUs > 0")
    # condor_startup.sh found the work directory as it needs it (run_startup models it: GlideinDied else).
    assert (glidein.root / "log").is_dir()
    assert (glidein.root / "execute").is_dir()
    lines = demo.run_sample_job(job_environment, requests=3)
    assert [line.split()[0] for line in lines] == ["gRPC", "HTTP"]
    state = recorded_state(glidein)
    assert state is not None
    assert processes.is_running(state.pid, state.start_ticks)
    cleanups = glidein.run_cleanup(environment)
    assert [c.returncode for c in cleanups] == [0]
    assert "nothing left running" in cleanups[0].stderr, cleanups[0].stderr
    assert_nothing_left(glidein, state)
    # Cleanup is safe to run twice.
    again = glidein.run_cleanup(environment)
    assert [c.returncode for c in again] == [0]
    assert "nothing to clean up" in again[0].stderr


def test_apptainer_runtime_through_the_standin(tmp_path: Path) -> None:
    prepared = demo.prepare(tmp_path / "glidein", runtime="apptainer")
    glidein, environment = prepared.glidein, prepared.environment
    result = glidein.run_startup(environment)
    assert result.returncode == 0, result.stderr
    state = recorded_state(glidein)
    assert state is not None
    assert state.runtime == "apptainer"
    config_dir = glidein_paths.plugin_dir(glidein.root) / runtime.CONFIG_DIR_NAME
    in_config_dir = ["/usr/bin/env", f"APPTAINER_CONFIGDIR={config_dir}", str(demo.STANDIN_APPTAINER)]
    served = state.argv[state.argv.index("--") + 1 :]  # the front door runs the server's exec
    assert served[:6] == [*in_config_dir, "exec", "--env", "CUDA_VISIBLE_DEVICES="]
    assert served[6] == f"instance://{state.instance}"
    assert "--model-repository=/models" in served
    assert state.teardown == [[*in_config_dir, "instance", "stop", state.instance]]
    assert state.prepare[0][:5] == ["/usr/bin/env", "-u", "DBUS_SESSION_BUS_ADDRESS", "-u", "XDG_RUNTIME_DIR"]
    assert state.instance in standin_instances(environment, glidein)
    assert glidein.published()[0]["TritonRuntime"] == '"apptainer"'
    demo.run_sample_job(glidein.published()[1], requests=2)
    glidein.run_cleanup(environment)
    assert_nothing_left(glidein, state)
    assert state.instance not in standin_instances(environment, glidein)


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port that something else is listening on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("required", [False, True])
def test_fixed_port_taken(tmp_path: Path, held_port: int, required: bool) -> None:
    prepared = demo.prepare(
        tmp_path / "glidein",
        settings={"GLIDEIN_TRITON_HTTP_PORT": str(held_port), "GLIDEIN_TRITON_REQUIRED": str(required)},
    )
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.returncode == (1 if required else 0)
    failure = result.failure if required else result.metrics["TritonFailure"]
    assert failure == "Network"
    assert prepared.glidein.published()[0]["HasTriton"] == "False"
    assert "could not bind its ports" in result.stderr
    assert recorded_state(prepared.glidein) is None


def test_auto_ports_retry_after_a_clash(
    tmp_path: Path, held_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = demo.prepare(tmp_path / "glidein")
    config = GlideinConfig.read(prepared.glidein.config_path)
    settings = Settings.from_config(config)
    chosen: list[Ports] = []

    def allocate_first_taken(requested: Ports) -> Ports:
        # The first probe hands out a port another process takes before tritonserver binds it.
        ports = port_allocation.allocate(requested)
        ports = Ports(held_port, ports.grpc, ports.metrics) if not chosen else ports
        chosen.append(ports)
        return ports

    monkeypatch.setattr(startup, "allocate", allocate_first_taken)
    running = startup.start_server(config, settings, prepared.environment)
    try:
        assert len(chosen) == 2
        assert running.state.http_port == chosen[1].http != held_port
        assert is_listening(running.state.grpc_port)
    finally:
        assert server.stop(running.state, prepared.environment) == []
    assert not processes.group_members(running.state.pgid)


def test_model_failing_to_load_reports_the_server_log(tmp_path: Path) -> None:
    prepared = demo.prepare(tmp_path / "glidein", settings={"GLIDEIN_TRITON_MODELS": "broken"})
    add_model(prepared.glidein.root / "model_repository", "broken", FAILING_MODEL, DEFAULT_INSTANCES)
    config = GlideinConfig.read(prepared.glidein.config_path)
    with pytest.raises(ServerStartError) as raised:
        startup.start_server(config, Settings.from_config(config), prepared.environment)
    assert "could not load its startup models" in raised.value.message
    assert "weights missing" in raised.value.message
    assert "--load-model=broken" in raised.value.evidence
    assert recorded_state(prepared.glidein) is None
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.metrics["TritonFailure"] == "VO_Config"
    assert prepared.glidein.published()[0]["HasTriton"] == "False"


def test_a_memory_limit_below_the_servers_own_need_names_the_setting(tmp_path: Path) -> None:
    """The server maps more than 256 MiB of data at start (469 MiB on 2 cores): under that limit it exits
    (thread creation fails) or waits for a backend thread that never started; either error names the limit."""
    settings = {"GLIDEIN_TRITON_SERVER_MEMORY_LIMIT": "256", "GLIDEIN_TRITON_READY_TIMEOUT": "15"}
    prepared = demo.prepare(tmp_path / "glidein", settings=settings)
    config = GlideinConfig.read(prepared.glidein.config_path)
    with pytest.raises(ServerStartError) as raised:
        startup.start_server(config, Settings.from_config(config), prepared.environment)
    assert "its data limited to 256 MiB: GLIDEIN_TRITON_SERVER_MEMORY_LIMIT)" in raised.value.message
    assert recorded_state(prepared.glidein) is None


def test_readiness_timeout_stops_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared = demo.prepare(
        tmp_path / "glidein", settings={"GLIDEIN_TRITON_MODELS": "slow", "GLIDEIN_TRITON_READY_TIMEOUT": "3"}
    )
    add_model(prepared.glidein.root / "model_repository", "slow", SLOW_MODEL, DEFAULT_INSTANCES)
    config = GlideinConfig.read(prepared.glidein.config_path)
    launched: list[ServerState] = []
    real_launch = server.launch
    monkeypatch.setattr(server, "launch", lambda *args: launched.append(real_launch(*args)) or launched[-1])
    with pytest.raises(ReadinessTimeoutError) as raised:
        startup.start_server(config, Settings.from_config(config), prepared.environment)
    assert "not ready after 3 s" in raised.value.message
    assert "GLIDEIN_TRITON_READY_TIMEOUT" in raised.value.message
    assert len(launched) == 1
    assert processes.group_members(launched[0].pgid) == []
    assert not is_listening(launched[0].http_port)
    assert recorded_state(prepared.glidein) is None


def test_port_in_use_error_is_a_network_failure() -> None:
    assert PortInUseError("x").failure_type == "Network"


def test_cleanup_without_startup(glidein: SimulatedGlidein) -> None:
    startup.install_cleanup_script(glidein.root)
    results = glidein.run_cleanup()
    assert [r.returncode for r in results] == [0]
    assert "nothing to clean up" in results[0].stderr


@pytest.mark.skipif(PYTHON39 is None, reason="no Python 3.9 on this machine to check the worker code with")
def test_worker_code_runs_on_python_3_9(served_glidein: demo.DemoGlidein) -> None:
    assert PYTHON39 is not None
    glidein = served_glidein.glidein
    glidein.set("GLIDEIN_TRITON_PYTHON", PYTHON39)
    result = glidein.run_startup(served_glidein.environment)
    assert result.returncode == 0, result.stderr
    assert glidein.config()["GLIDEIN_TRITON_PYTHON"] == PYTHON39
    assert glidein.published()[0]["HasTriton"] == "True"
    assert Path(PYTHON39).name == "python3.9"


def test_forced_stop_removes_the_shared_memory_of_the_killed_server(tmp_path: Path) -> None:
    prepared = demo.prepare(tmp_path / "glidein", settings={"GLIDEIN_TRITON_STOP_GRACE": "0"})
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.returncode == 0, result.stderr
    state = recorded_state(prepared.glidein)
    assert state is not None
    mapped = processes.shared_memory_files(processes.group_members(state.pgid))
    assert mapped, "the python backend maps its shared-memory regions from /dev/shm"
    assert all(path.exists() for path in mapped)
    prepared.glidein.run_cleanup(prepared.environment)
    assert_nothing_left(prepared.glidein, state)
    assert [path for path in mapped if path.exists()] == []
