"""Faults injected into a simulated glidein on the real tritonserver: each row of docs/reliability.md.

Every test takes its expectations from ``glidein_triton.local.fault_table.FAULTS`` (the error_gen report and
detail, the exit code with and without GLIDEIN_TRITON_REQUIRED, HasTriton in the machine ad) and checks
with ``glidein_triton.local.leftovers`` that nothing of the glidein is left: after a failed startup (before cleanup)
and after cleanup.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from glidein_triton.local import demo
from glidein_triton.local import pytriton as local_server
from glidein_triton.local.fault_table import FAULTS, FAULTS_BY_KEY, Fault
from glidein_triton.local.glidein import (
    CRON_INCLUDE,
    UNREADABLE_REPORT,
    ScriptResult,
    SimulatedGlidein,
    read_report,
)
from glidein_triton.local.leftovers import Watch
from glidein_triton.operator import payload
from glidein_triton.worker import glidein_paths, processes, startup, startup_guard
from glidein_triton.worker import ports as port_allocation
from glidein_triton.worker.error_gen import Reporter
from glidein_triton.worker.glidein_config import GlideinConfig
from glidein_triton.worker.ports import Ports
from glidein_triton.worker.runtime import CONFIG_DIR_NAME, in_config_dir
from glidein_triton.worker.state import ServerState
from glidein_triton.worker.triton_api import Server

from .support import DEFAULT_INSTANCES, add_model

EXITING_MODEL = (
    "import os\n\nclass TritonPythonModel:\n    def initialize(self, args):\n        os._exit(3)\n"
)
SEGFAULTING_MODEL = "import ctypes\n\nclass TritonPythonModel:\n    def initialize(self, args):\n        ctypes.string_at(0)\n"
SERVER_KILLING_MODEL = (
    "import os\nimport signal\n\nclass TritonPythonModel:\n    def initialize(self, args):\n"
    "        os.kill(os.getppid(), signal.SIGKILL)\n"
)
SLOW_MODEL = (
    "import time\n\nclass TritonPythonModel:\n    def initialize(self, args):\n        time.sleep(60)\n"
)
#: Blank values mean the defaults: an empty repository, load every model (a server ready in 0.1 s).
NO_MODELS = {"GLIDEIN_TRITON_MODEL_REPOSITORY": "", "GLIDEIN_TRITON_MODELS": ""}

Watcher = Callable[[demo.DemoGlidein], Watch]
Mounter = Callable[[Path, str], Path]


@pytest.fixture
def watcher() -> Iterator[Watcher]:
    """Watches of glideins; whatever they saw still running at the end of a test is killed."""
    watches: list[Watch] = []

    def watch(prepared: demo.DemoGlidein) -> Watch:
        watches.append(Watch(prepared.glidein.root))
        return watches[-1]

    yield watch
    for started in watches:
        started.stop()
        started.kill_leftovers()


@pytest.fixture
def mounter() -> Iterator[Mounter]:
    """Mount small tmpfs file systems (root only); unmounted at the end of the test."""
    mounted: list[Path] = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "glidein-triton-test", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


def prepare(
    root: Path, runtime: str = "process", required: bool = False, **settings: str
) -> demo.DemoGlidein:
    return demo.prepare(root, runtime, {"GLIDEIN_TRITON_REQUIRED": str(required), **settings})


def container_runtime(prepared: demo.DemoGlidein) -> str:
    return prepared.glidein.config().get("SINGULARITY_PATH", "")


def assert_nothing_left(watch: Watch, prepared: demo.DemoGlidein) -> None:
    left = watch.leftovers(prepared.glidein.config_path, container_runtime(prepared), prepared.environment)
    assert left == []


def check_startup(fault: Fault, result: ScriptResult, required: bool = False) -> None:
    """The exit code, the error_gen report and its detail are the ones in the fault's row."""
    assert result.returncode == (fault.required_exit_code if required else fault.exit_code), result.stderr
    assert fault.detail in result.stderr
    if fault.report == "failure":
        if required:
            assert (result.status, result.failure) == ("ERROR", fault.failure)
            assert fault.detail in result.detail
        else:
            assert result.status == "OK"
            assert result.metrics["HasTriton"] == "False"
            assert result.metrics["TritonFailure"] == fault.failure
            assert fault.detail in result.metrics.get("TritonFailureDetail", result.stderr)
    elif fault.report == "ready":
        assert (result.status, result.metrics["HasTriton"]) == ("OK", "True")
    elif fault.report == "unreadable":
        assert result.status == UNREADABLE_REPORT
    else:
        assert result.status == ""
    if fault.report in ("none", "unreadable") and fault.failure:
        # error_gen could not write its report: the failure type is in stderr only
        assert f"Triton is not available ({fault.failure})" in result.stderr


def check_published(fault: Fault, glidein: SimulatedGlidein) -> None:
    """HasTriton in the machine ad, and TritonFailure starting with the failure type."""
    attributes = glidein.published()[0]
    assert attributes.get("HasTriton", "") == fault.has_triton
    if fault.has_triton == "False" and fault.failure:
        assert attributes["TritonFailure"].startswith(f'"{fault.failure}: ')


@dataclass(frozen=True)
class Case:
    """One run of a fault's scenario: the fault's row, the runtime, whether the glidein requires Triton, and the
    test's fixtures."""

    fault: Fault
    runtime: str
    required: bool
    tmp_path: Path
    watcher: Watcher
    mounter: Mounter
    monkeypatch: pytest.MonkeyPatch
    caplog: pytest.LogCaptureFixture

    def prepare(self, root: Path | None = None, **settings: str) -> demo.DemoGlidein:
        """A glidein at ``root`` (``<tmp>/glidein`` by default) with the case's runtime and requirement."""
        return prepare(root or self.tmp_path / "glidein", self.runtime, self.required, **settings)

    def run_failure(
        self,
        prepared: demo.DemoGlidein,
        env: Mapping[str, str] | None = None,
        condor: bool = True,
        watch: Watch | None = None,
    ) -> ScriptResult:
        """Run the startup; check its row; nothing left, neither now nor after the cleanup scripts.

        ``condor``: follow the startup with condor_startup.sh's step in the work directory (False where the
        fault leaves the work directory unusable to HTCondor too).
        """
        if watch is None:
            watch = self.watcher(prepared)
        with watch:
            result = prepared.glidein.run_startup(env or prepared.environment, condor=condor)
            check_startup(self.fault, result, self.required)
            check_published(self.fault, prepared.glidein)
            assert_nothing_left(watch, prepared)
            prepared.glidein.run_cleanup(prepared.environment)
        assert_nothing_left(watch, prepared)
        return result


@dataclass(frozen=True)
class Scenario:
    """How the tests inject a fault: ``run`` checks its row; on the real server or not; the runtimes tried."""

    run: Callable[[Case], None]
    server: bool
    runtimes: tuple[str, ...]


#: fault key -> its scenario: every row of the fault table has one (test_fault fails for a row without).
SCENARIOS: dict[str, Scenario] = {}


def scenario(
    *keys: str, server: bool = False, runtimes: tuple[str, ...] = ("process",)
) -> Callable[[Callable[[Case], None]], Callable[[Case], None]]:
    """Register the decorated function as the scenario of the faults ``keys``."""

    def register(run: Callable[[Case], None]) -> Callable[[Case], None]:
        for key in keys:
            SCENARIOS[key] = Scenario(run, server, runtimes)
        return run

    return register


@scenario("image_missing", runtimes=("apptainer",))
def image_missing(case: Case) -> None:
    image = "/cvmfs/unpacked.cern.ch/registry.example.org/no/such/tritonserver:24.08"
    result = case.run_failure(case.prepare(GLIDEIN_TRITON_IMAGE=image))
    assert image in result.stderr


@scenario("runtime_missing", runtimes=("apptainer",))
def runtime_missing(case: Case) -> None:
    prepared = case.prepare(
        GLIDEIN_TRITON_RUNTIME="apptainer",
        SINGULARITY_PATH="/cvmfs/oasis.opensciencegrid.org/mis/apptainer/current/bin/no-such-apptainer",
    )
    search_path = [
        directory
        for directory in prepared.environment["PATH"].split(os.pathsep)
        if not any((Path(directory) / name).exists() for name in ("apptainer", "singularity"))
    ]
    env = {**prepared.environment, "PATH": os.pathsep.join(search_path)}
    result = case.run_failure(prepared, env)
    assert "no-such-apptainer" in result.stderr


@scenario("server_binary_missing")
def server_binary_missing(case: Case) -> None:
    binary = "/opt/tritonserver/bin/no-such-tritonserver"
    result = case.run_failure(case.prepare(GLIDEIN_TRITON_SERVER_BINARY=binary))
    assert binary in result.stderr


@scenario("instance_start_fails", runtimes=("apptainer",))
def instance_start_fails(case: Case) -> None:
    image = case.tmp_path / "images" / "tritonserver.sif"
    image.parent.mkdir()
    image.write_bytes(os.urandom(4096))
    prepared = case.prepare(GLIDEIN_TRITON_IMAGE=str(image))
    result = case.run_failure(prepared)
    # The evidence: the instance start command and what the container runtime said.
    assert "could not open image" in result.stderr
    assert "instance start --net --network none --bind" in result.stderr
    assert f"--bind {prepared.glidein.root}/model_repository:/models:ro" in result.stderr


@scenario("image_without_server", runtimes=("apptainer",))
def image_without_server(case: Case) -> None:
    image = case.tmp_path / "images" / "python.sandbox"
    (image / "usr" / "bin").mkdir(parents=True)
    (image / "usr" / "bin" / "python3").symlink_to(os.path.realpath(sys.executable))  # the relay starts
    result = case.run_failure(case.prepare(GLIDEIN_TRITON_IMAGE=str(image)))
    assert '"tritonserver": executable file not found' in result.stderr
    assert "exit code 255" in result.stderr


@scenario("image_without_python", runtimes=("apptainer",))
def image_without_python(case: Case) -> None:
    prepared = case.prepare()
    image = Path(prepared.glidein.config()["GLIDEIN_TRITON_IMAGE"])
    (image / "usr" / "bin" / "python3").unlink()
    result = case.run_failure(prepared)
    assert '"python3": executable file not found' in result.stderr


@scenario("unbindable_repository", runtimes=("apptainer",))
def unbindable_repository(case: Case) -> None:
    repository = shutil.copytree(demo.MODELS_DIR, case.tmp_path / "models:v2")
    result = case.run_failure(case.prepare(GLIDEIN_TRITON_MODEL_REPOSITORY=str(repository)))
    assert "GLIDEIN_TRITON_MODEL_REPOSITORY" in result.stderr


#: fault key -> (the model that crashes, what the startup's stderr says).
CRASHING_MODELS = {
    "model_exits_at_load": (EXITING_MODEL, "Stub process 'crash_0' is not healthy"),
    "model_segfaults_at_load": (SEGFAULTING_MODEL, "Stub process 'crash_0' is not healthy"),
    "model_kills_server_at_load": (SERVER_KILLING_MODEL, "exit code -9"),
}


@scenario(*CRASHING_MODELS, server=True)
def model_crashes_at_load(case: Case) -> None:
    source, evidence = CRASHING_MODELS[case.fault.key]
    prepared = case.prepare(GLIDEIN_TRITON_MODELS="crash")
    add_model(prepared.glidein.root / "model_repository", "crash", source, DEFAULT_INSTANCES)
    watch = case.watcher(prepared)
    result = case.run_failure(prepared, watch=watch)
    assert evidence in result.stderr
    assert "--load-model=crash" in result.stderr
    assert any("triton_python_backend_stub" in " ".join(p.argv) for p in watch.seen.values())


@scenario("readiness_timeout", server=True)
def readiness_timeout(case: Case) -> None:
    prepared = case.prepare(GLIDEIN_TRITON_MODELS="slow", GLIDEIN_TRITON_READY_TIMEOUT="3")
    add_model(prepared.glidein.root / "model_repository", "slow", SLOW_MODEL, DEFAULT_INSTANCES)
    watch = case.watcher(prepared)
    case.run_failure(prepared, watch=watch)
    assert watch.seen, "the server and its stub were seen while they ran"


@contextlib.contextmanager
def listeners(count: int) -> Iterator[list[int]]:
    """``count`` loopback ports that something else listens on."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for listener in sockets:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
        yield [int(listener.getsockname()[1]) for listener in sockets]


@scenario("fixed_ports_taken", server=True)
def fixed_ports_taken(case: Case) -> None:
    with listeners(3) as (http, grpc, metrics):
        prepared = case.prepare(
            **NO_MODELS,
            GLIDEIN_TRITON_HTTP_PORT=str(http),
            GLIDEIN_TRITON_GRPC_PORT=str(grpc),
            GLIDEIN_TRITON_METRICS_PORT=str(metrics),
        )
        watch = case.watcher(prepared)
        with watch:
            result = prepared.glidein.run_startup(prepared.environment)
        check_startup(case.fault, result, case.required)
        check_published(case.fault, prepared.glidein)
        assert f"--http-port={http}" in result.stderr
    assert_nothing_left(watch, prepared)
    prepared.glidein.run_cleanup(prepared.environment)
    assert_nothing_left(watch, prepared)


@scenario("auto_ports_taken", server=True)
def auto_ports_taken(case: Case) -> None:
    prepared = case.prepare(**NO_MODELS)
    glidein = prepared.glidein
    case.caplog.set_level(logging.INFO, logger="glidein_triton")
    case.monkeypatch.chdir(glidein.root)  # error_gen writes otrb_output.xml in the current directory
    watch = case.watcher(prepared)
    with listeners(3 * startup.PORT_ATTEMPTS) as held:
        probe = iter(held)
        chosen: list[Ports] = []

        def allocate_taken(requested: Ports) -> Ports:
            chosen.append(port_allocation.allocate(requested, probe=lambda: next(probe)))
            return chosen[-1]

        case.monkeypatch.setattr(startup, "allocate", allocate_taken)
        config = GlideinConfig.read(glidein.config_path)
        with watch:
            code = startup.run(
                config, Reporter.from_config(config, startup.SCRIPT_NAME), prepared.environment
            )
    assert [set(vars(ports).values()) for ports in chosen] == [set(held[i : i + 3]) for i in (0, 3, 6)]
    result = ScriptResult(code, "", case.caplog.text)
    result.status, result.metrics, result.detail = read_report(glidein.root / "otrb_output.xml")
    check_startup(case.fault, result, case.required)
    check_published(case.fault, glidein)
    assert case.caplog.text.count("were taken before tritonserver bound them") == startup.PORT_ATTEMPTS - 1
    assert_nothing_left(watch, prepared)


def start_startup(glidein: SimulatedGlidein, env: Mapping[str, str], stderr: Path) -> subprocess.Popen[bytes]:
    """The startup script started as glidein_startup.sh starts it, without waiting for it."""
    with stderr.open("wb") as output:
        return subprocess.Popen(
            [str(glidein.startup_script), "glidein_config", "main"],
            cwd=glidein.root,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )


def wait_for_launch(glidein: SimulatedGlidein, process: subprocess.Popen[bytes]) -> ServerState:
    """The state file once it records the launched server and the endpoint is published (the last condor_vars
    line is there): the script is then waiting for the server to get ready."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = ServerState.load(glidein_paths.state_file(glidein.root))
        if (
            state is not None
            and state.pid
            and "TritonVersion" in " ".join(map(" ".join, glidein.condor_vars()))
        ):
            return state
        assert process.poll() is None, "the startup script ended before it launched the server"
        time.sleep(0.05)
    raise AssertionError("the startup script did not record a server in time")


def finished(glidein: SimulatedGlidein, process: subprocess.Popen[bytes], stderr: Path) -> ScriptResult:
    result = ScriptResult(process.wait(timeout=120), "", stderr.read_text())
    report = glidein.root / "otrb_output.xml"
    if report.exists():
        result.status, result.metrics, result.detail = read_report(report)
    return result


def slow_glidein(case: Case) -> demo.DemoGlidein:
    prepared = case.prepare(GLIDEIN_TRITON_MODELS="slow")
    add_model(prepared.glidein.root / "model_repository", "slow", SLOW_MODEL, DEFAULT_INSTANCES)
    return prepared


@scenario("startup_sigterm", server=True)
def startup_sigterm(case: Case) -> None:
    prepared = slow_glidein(case)
    glidein = prepared.glidein
    watch = case.watcher(prepared)
    with watch:
        process = start_startup(glidein, prepared.environment, case.tmp_path / "stderr")
        state = wait_for_launch(glidein, process)
        assert processes.is_running(state.pid, state.start_ticks)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        process.send_signal(signal.SIGTERM)  # a second one must not cut the stop short
        result = finished(glidein, process, case.tmp_path / "stderr")
    check_startup(case.fault, result, case.required)
    check_published(case.fault, glidein)
    assert not processes.is_running(state.pid, state.start_ticks)
    assert_nothing_left(watch, prepared)  # the script's own handler stopped everything
    glidein.run_cleanup(prepared.environment)
    assert_nothing_left(watch, prepared)


@scenario("startup_sigkill", server=True, runtimes=("process", "apptainer"))
def startup_sigkill(case: Case) -> None:
    prepared = slow_glidein(case)
    glidein = prepared.glidein
    watch = case.watcher(prepared)
    with watch:
        process = start_startup(glidein, prepared.environment, case.tmp_path / "stderr")
        state = wait_for_launch(glidein, process)
        assert not Server(state.http_port).is_ready()  # killed while it waits, before the server is ready
        process.kill()
        result = finished(glidein, process, case.tmp_path / "stderr")
        check_startup(case.fault, result)
        check_published(case.fault, glidein)
        # Nothing could run in the script: the server is still there, and recorded.
        assert processes.is_running(state.pid, state.start_ticks)
        assert (glidein_paths.state_file(glidein.root)).exists()
        if case.runtime == "apptainer":
            config_dir = glidein_paths.plugin_dir(glidein.root) / CONFIG_DIR_NAME
            stop = [*in_config_dir("apptainer", str(config_dir)), str(demo.STANDIN_APPTAINER)]
            assert state.teardown == [[*stop, "instance", "stop", state.instance]]
        assert watch.leftovers(glidein.config_path, container_runtime(prepared), prepared.environment)
        cleanups = glidein.run_cleanup(prepared.environment)
    assert [cleanup.returncode for cleanup in cleanups] == [0]
    assert f"stopped tritonserver (pid {state.pid}" in cleanups[0].stderr
    # The guard ends on its own once it has seen the killed script gone and the glidein alive.
    deadline = time.monotonic() + startup_guard.POLL * startup_guard.MISSES + 2.0
    while leftover_processes(watch, prepared) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert_nothing_left(watch, prepared)


def leftover_processes(watch: Watch, prepared: demo.DemoGlidein) -> list[str]:
    left = watch.leftovers(prepared.glidein.config_path, container_runtime(prepared), prepared.environment)
    return [problem for problem in left if problem.startswith("process ")]


def simple_inputs() -> list[grpcclient.InferInput]:
    data = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [
        grpcclient.InferInput("INPUT0", [1, 16], "INT32"),
        grpcclient.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    for tensor in inputs:
        tensor.set_data_from_numpy(data)
    return inputs


@scenario("server_killed_mid_job", server=True)
def server_killed_mid_job(case: Case) -> None:
    prepared = case.prepare()
    glidein = prepared.glidein
    watch = case.watcher(prepared)
    with watch:
        result = glidein.run_startup(prepared.environment)
        check_startup(case.fault, result)
        state = ServerState.load(glidein_paths.state_file(glidein.root))
        assert state is not None
        assert state.shared_memory, "the state records the server's /dev/shm regions once it is ready"
        job_environment = glidein.published()[1]
        client = grpcclient.InferenceServerClient(url=job_environment["TRITON_GRPC_URL"])
        answered: list[int] = []
        errors: list[InferenceServerException] = []

        def job() -> None:
            try:
                while True:
                    client.infer("simple", simple_inputs(), client_timeout=30)
                    answered.append(1)
            except InferenceServerException as error:
                errors.append(error)

        sender = threading.Thread(target=job)
        sender.start()
        deadline = time.monotonic() + 60
        while len(answered) < 5 and sender.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(state.pgid, signal.SIGKILL)
        sender.join(timeout=60)
        client.close()
        assert not sender.is_alive()
        assert len(answered) >= 5
        assert len(errors) == 1  # the job sees the failure as an error, not a hang
        check_published(case.fault, glidein)  # HasTriton stays True until the periodic check
        # The killed server could not remove its shared memory; cleanup does, from the state file.
        assert all(Path(path).exists() for path in state.shared_memory)
        glidein.run_cleanup(prepared.environment)
    assert not any(Path(path).exists() for path in state.shared_memory)
    assert_nothing_left(watch, prepared)


@scenario("cleanup_twice", server=True)
def cleanup_twice(case: Case) -> None:
    prepared = case.prepare()
    glidein = prepared.glidein
    watch = case.watcher(prepared)
    with watch:
        assert glidein.run_startup(prepared.environment).returncode == 0
        first = glidein.run_cleanup(prepared.environment)
        second = glidein.run_cleanup(prepared.environment)
    assert "nothing left running" in first[0].stderr
    assert [cleanup.returncode for cleanup in second] == [0]
    assert case.fault.detail in second[0].stderr
    check_published(case.fault, glidein)
    assert_nothing_left(watch, prepared)


@scenario("cleanup_without_startup")
def cleanup_without_startup(case: Case) -> None:
    glidein = SimulatedGlidein(case.tmp_path / "glidein").layout()
    glidein.install_payload()
    startup.install_cleanup_script(glidein.root)
    shell_only = glidein.run_cleanup()
    assert [cleanup.returncode for cleanup in shell_only] == [0]
    assert case.fault.detail in shell_only[0].stderr
    # With the code found but no state file: a startup killed before it recorded a server.
    glidein.set("GLIDEIN_TRITON_CODE_DIR", str(glidein.entry_dir / payload.UNTAR_DIR))
    glidein.set("GLIDEIN_TRITON_PYTHON", sys.executable)
    glidein_paths.plugin_dir(glidein.root).mkdir()
    python = glidein.run_cleanup()
    assert [cleanup.returncode for cleanup in python] == [0]
    assert "no Triton server recorded" in python[0].stderr
    assert case.fault.detail in python[0].stderr
    check_published(case.fault, glidein)


@scenario("two_glideins", server=True, runtimes=("apptainer",))
def two_glideins(case: Case) -> None:
    first, second = (case.prepare(case.tmp_path / name) for name in ("first", "second"))
    first_watch, second_watch = case.watcher(first), case.watcher(second)
    with second_watch:
        with first_watch, ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda p: p.glidein.run_startup(p.environment), (first, second)))
            for result, prepared in zip(results, (first, second)):
                check_startup(case.fault, result)
                check_published(case.fault, prepared.glidein)
            states = [ServerState.load(glidein_paths.state_file(p.glidein.root)) for p in (first, second)]
            assert states[0] is not None
            assert states[1] is not None
            ports = [{state.http_port, state.grpc_port, state.metrics_port} - {0} for state in states]
            assert ports[0] & ports[1] == set()
            assert states[0].instance != states[1].instance
            first.glidein.run_cleanup(first.environment)
        assert_nothing_left(first_watch, first)
        # The other glidein's server and instance are untouched.
        assert processes.is_running(states[1].pid, states[1].start_ticks)
        assert Server(states[1].http_port).is_ready()
        demo.run_sample_job(second.glidein.published()[1], requests=2)
        left = second_watch.leftovers(
            second.glidein.config_path, container_runtime(second), second.environment
        )
        assert any(f"instance {states[1].instance} " in problem for problem in left)
        second.glidein.run_cleanup(second.environment)
    assert_nothing_left(second_watch, second)


def fill(directory: Path) -> None:
    """Write into ``directory`` until its file system is full."""
    try:
        with (directory / "filler").open("wb", buffering=0) as filler:
            while True:
                filler.write(bytes(65536))
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise


def damage(directory: Path, fault: Fault) -> None:
    """Remount ``directory`` (a tmpfs) read-only, or fill it, as the fault's key says."""
    if fault.key.endswith("read_only"):
        subprocess.run(["mount", "-o", "remount,ro", str(directory)], check=True)
    else:
        fill(directory)


@scenario("workdir_read_only", "workdir_full")
def work_directory_read_only_or_full(case: Case) -> None:
    root = case.mounter(case.tmp_path / "glidein", "4m")
    prepared = case.prepare(root)
    damage(root, case.fault)
    # HTCondor cannot start in this work directory either: only the plugin's part is checked here.
    case.run_failure(prepared, condor=False)


@scenario("state_dir_read_only", "state_dir_full")
def plugin_directory_read_only_or_full(case: Case) -> None:
    prepared = case.prepare()
    directory = case.mounter(glidein_paths.plugin_dir(prepared.glidein.root), "64k")
    damage(directory, case.fault)
    result = case.run_failure(prepared)
    assert f"cannot write the plugin's files in {directory}" in result.stderr


@scenario("unusual_paths", server=True, runtimes=("process", "apptainer"))
def unusual_paths(case: Case) -> None:
    root = case.tmp_path / "glidein work ü 漢字"
    # The server's own files are outside the work directory, as on a node or in an image.
    launcher = local_server.prepare(case.tmp_path / "tritonserver-home")
    repository = shutil.copytree(demo.MODELS_DIR, case.tmp_path / "model_repository")
    prepared = case.prepare(
        root,
        GLIDEIN_TRITON_MODEL_REPOSITORY=str(repository),
        GLIDEIN_TRITON_SERVER_BINARY=str(launcher),
    )
    image = demo.make_standin_image(root / "images", launcher)
    glidein = prepared.glidein
    watch = case.watcher(prepared)
    with watch:
        result = glidein.run_startup(prepared.environment)
        check_startup(case.fault, result)
        check_published(case.fault, glidein)
        state = ServerState.load(glidein_paths.state_file(root))
        assert state is not None
        assert state.log_path.startswith(str(root))
        if case.runtime == "apptainer":
            assert (
                str(image) in state.teardown[0][0] or str(image) in glidein.config()["GLIDEIN_TRITON_IMAGE"]
            )
        job_environment = glidein.published()[1]
        assert [line.split()[0] for line in demo.run_sample_job(job_environment, requests=2)] == [
            "gRPC",
            "HTTP",
        ]
        glidein.run_cleanup(prepared.environment)
    assert_nothing_left(watch, prepared)


@scenario("python_backend_unusual_path")
def python_backend_unusual_path(case: Case) -> None:
    prepared = case.prepare()
    repository = shutil.copytree(demo.MODELS_DIR, prepared.glidein.root / "model repo é ☃")
    prepared.glidein.set("GLIDEIN_TRITON_MODEL_REPOSITORY", str(repository))
    result = case.run_failure(prepared)
    assert (
        f"model simple uses Triton's python backend, which cannot load models from {repository}"
        in result.stderr
    )


def cut_config(glidein: SimulatedGlidein, text: str) -> None:
    """glidein_config ending in ``text``, without a final newline: a file cut while it was written."""
    glidein.config_path.write_text(glidein.config_path.read_text() + text)


def drop_key(glidein: SimulatedGlidein, key: str) -> None:
    lines = glidein.config_path.read_text().splitlines(keepends=True)
    glidein.config_path.write_text("".join(line for line in lines if not line.startswith(f"{key} ")))


@scenario("config_cut_in_value")
def config_cut_in_value(case: Case) -> None:
    prepared = case.prepare()
    repository = str(prepared.glidein.root / "model_repository")
    cut_config(prepared.glidein, f"GLIDEIN_TRITON_MODEL_REPOSITORY {repository[: len(repository) // 2]}")
    result = case.run_failure(prepared)
    assert f"model repository {repository[: len(repository) // 2]} is not a directory" in result.stderr
    # The lines written after the cut are whole: the cleanup script finds the code.
    assert prepared.glidein.config()["GLIDEIN_TRITON_CODE_DIR"].endswith(payload.UNTAR_DIR)


@scenario("config_cut_in_switch")
def config_cut_in_switch(case: Case) -> None:
    prepared = case.prepare()
    cut_config(prepared.glidein, "GLIDEIN_TRITON Tr")
    result = case.run_failure(prepared)
    assert "GLIDEIN_TRITON='Tr'" in result.stderr


@scenario("config_without_add_config_line_source")
def config_without_add_config_line_source(case: Case) -> None:
    prepared = case.prepare()
    drop_key(prepared.glidein, "ADD_CONFIG_LINE_SOURCE")
    before = prepared.glidein.config_path.read_text()
    case.run_failure(prepared)
    # The plugin wrote nothing; glidein_startup.sh itself records the periodic script it scheduled.
    scheduled = f"GLIDEIN_condor_config_startd_cron_include {CRON_INCLUDE}\n"
    assert prepared.glidein.config_path.read_text().replace(scheduled, "") == before


@scenario("config_without_condor_vars_file")
def config_without_condor_vars_file(case: Case) -> None:
    prepared = case.prepare()
    drop_key(prepared.glidein, "CONDOR_VARS_FILE")
    result = case.run_failure(prepared)
    assert "CONDOR_VARS_FILE is not set in glidein_config" in result.stderr


@scenario("config_without_error_gen", server=True)
def config_without_error_gen(case: Case) -> None:
    prepared = case.prepare()
    drop_key(prepared.glidein, "ERROR_GEN_PATH")
    watch = case.watcher(prepared)
    with watch:
        result = prepared.glidein.run_startup(prepared.environment)
        check_startup(case.fault, result)
        check_published(case.fault, prepared.glidein)
        prepared.glidein.run_cleanup(prepared.environment)
    assert not (prepared.glidein.root / "otrb_output.xml").exists()
    assert_nothing_left(watch, prepared)


def fault_cases() -> list[object]:
    """Each row of the table with each runtime of its scenario, with and without GLIDEIN_TRITON_REQUIRED
    where the row says what happens when it is required; a row without a scenario too (its test fails)."""
    cases: list[object] = []
    for fault in FAULTS:
        found = SCENARIOS.get(fault.key)
        runtimes = found.runtimes if found else ("process",)
        required = [False, True] if fault.required_exit_code is not None else [False]
        for runtime in runtimes:
            for requiring in required:
                words = [fault.key]
                words += ["required" if requiring else "not-required"] if len(required) > 1 else []
                words += [runtime] if len(runtimes) > 1 else []
                marks = [pytest.mark.server] if found and found.server else [pytest.mark.scripts]
                cases.append(pytest.param(fault.key, runtime, requiring, id="-".join(words), marks=marks))
    return cases


@pytest.mark.parametrize(("key", "runtime", "required"), fault_cases())
def test_fault(
    key: str,
    runtime: str,
    required: bool,
    tmp_path: Path,
    watcher: Watcher,
    mounter: Mounter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fault ``key`` injected: its scenario checks every column of its row and that nothing is left."""
    assert key in SCENARIOS, f"no scenario in tests/test_faults.py injects the fault {key}"
    case = Case(FAULTS_BY_KEY[key], runtime, required, tmp_path, watcher, mounter, monkeypatch, caplog)
    SCENARIOS[key].run(case)


def test_every_fault_has_a_test() -> None:
    assert set(SCENARIOS) == set(FAULTS_BY_KEY)
