"""The hooks without a server: installation, the shell launchers, the pre-job's and periodic's decisions."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.operator import payload
from glidein_triton.worker import door, glidein_paths, periodic, runtime, server, supervisor
from glidein_triton.worker import install as hooks
from glidein_triton.worker.errors import ConfigError, ServerStartError
from glidein_triton.worker.gpus import GPU
from glidein_triton.worker.job_loader import requested_models
from glidein_triton.worker.job_request import read_request
from glidein_triton.worker.model_registry import Registry
from glidein_triton.worker.ports import Ports, free_port
from glidein_triton.worker.settings import Settings
from glidein_triton.worker.state import LaunchPlan, ServerState

from .support import PYTHON39, write_executable

SCRIPTS = payload.SCRIPTS_DIR
ENV_SNIPPET = """
exit_wrapper() { echo "exit_wrapper: $1 ($2)"; exit 7; }
glidein_triton_name=kept_by_the_wrapper
. "$1"
echo "status=$TRITON_MODELS_STATUS ready=$TRITON_MODELS_READY failed=$TRITON_MODELS_FAILED"
echo "other=${SECRET-unset} helper=${glidein_triton_name-unset} ${glidein_triton_dir-unset}"
echo "token=${TRITON_TOKEN_FILE-unset}"
"""


@pytest.fixture
def glidein(tmp_path: Path) -> SimulatedGlidein:
    simulated = SimulatedGlidein(tmp_path / "glidein").layout()
    simulated.install_payload()
    return simulated


def test_payload_ships_the_hooks() -> None:
    with tarfile.open(fileobj=io.BytesIO(payload.worker_tarball_bytes())) as tar:
        names = tar.getnames()
    for name in (
        "glidein_triton/scripts/glidein_triton_prejob.sh",
        "glidein_triton/scripts/glidein_triton_prejob_env.sh",
        "glidein_triton/scripts/glidein_triton_periodic.sh",
        "glidein_triton/worker/agent.py",
        "glidein_triton/worker/job_loader.py",
        "glidein_triton/worker/job_policy.py",
        "glidein_triton/worker/pbtxt.py",
        "glidein_triton/worker/model_snapshot.py",
        "glidein_triton/worker/periodic.py",
        "glidein_triton/worker/accounting.py",
    ):
        assert name in names


def test_hook_modules_import_on_the_oldest_python() -> None:
    modules = (
        "agent",
        "job_loader",
        "job_policy",
        "pbtxt",
        "model_snapshot",
        "periodic",
        "reaper",
        "accounting",
        "supervisor",
        "cleanup",
        "startup",
    )
    code = "import sys; sys.path.insert(0, sys.argv[1]); " + "; ".join(
        f"import glidein_triton.worker.{module}" for module in modules
    )
    result = subprocess.run(
        [PYTHON39 or sys.executable, "-I", "-c", code, str(Path(payload.PACKAGE_DIR).parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_install_prejob_hook_shell_only(tmp_path: Path) -> None:
    prejob_dir = hooks.install_prejob(tmp_path)
    executable = prejob_dir / "glidein_triton_1_prejob.sh"
    sourced = prejob_dir / "glidein_triton_2_prejob_env.sh"
    assert os.access(executable, os.X_OK)
    assert not os.access(sourced, os.X_OK)  # gwms_process_scripts sources it only if not executable
    assert sorted(path.name for path in prejob_dir.iterdir()) == [executable.name, sourced.name]
    assert not (tmp_path / ".gwms.d" / "lib").exists()  # no code travels with .gwms.d
    assert executable.read_text().startswith("#!/bin/sh\n")
    commands = [line for line in executable.read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in commands if "python" in line.lower()]


@pytest.mark.scripts
def test_prejob_without_request_returns_at_once(glidein: SimulatedGlidein) -> None:
    hooks.install_prejob(glidein.root)
    job = hooks_sim.start_job(
        glidein, ["sh", "-c", 'echo "[$TRITON_MODELS_STATUS]"'], {"PATH": "/usr/bin:/bin"}, {}
    )
    code, stdout, stderr = job.finish()
    assert (code, stdout, stderr) == (0, "[]\n", "")
    assert not (job.sandbox / ".glidein_triton").exists()


def posix_tools(directory: Path) -> str:
    """A PATH with only the tools a minimal job image has (no Python): the pre-job needs no more."""
    directory.mkdir()
    for tool in ("bash", "sh", "grep", "cut", "date", "sleep", "mkdir", "cat"):
        found = subprocess.run(
            ["sh", "-c", f"command -v {tool}"], capture_output=True, text=True, check=False
        )
        (directory / tool).symlink_to(found.stdout.strip())
    return str(directory)


@pytest.mark.scripts
def test_prejob_waits_for_the_agents_answer_without_python(glidein: SimulatedGlidein, tmp_path: Path) -> None:
    hooks.install_prejob(glidein.root)
    report = ["sh", "-c", 'echo "$TRITON_MODELS_STATUS|$TRITON_MODELS_FAILED|$TRITON_MODELS_ERRORS"']
    path = posix_tools(tmp_path / "bin")
    ad = {"TritonModels": '"simple"'}
    # An agent that noticed the job (pending: 1 s at most) and does not answer: the wait is bounded.
    started = time.monotonic()
    previous = os.umask(0o000)  # a glidein started with umask 000: what the pre-job writes stays private
    try:
        job = hooks_sim.start_job(glidein, ["sh", "-c", "sleep 0.3; echo late"], {"PATH": path}, ad)
        (job.sandbox / ".glidein_triton").mkdir()
        (job.sandbox / ".glidein_triton" / "pending").write_text("1\n")
        code, stdout, stderr = job.finish()
    finally:
        os.umask(previous)
    assert (code, stdout) == (0, "late\n")
    assert 1.0 <= time.monotonic() - started < 5.0
    assert "did not answer within 1 s" in stderr
    written = job.sandbox / ".glidein_triton" / "prejob.env"
    assert "TRITON_MODELS_STATUS=failed" in written.read_text()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    # An answer already there: exported to the job at once.
    job = hooks_sim.start_job(glidein, report, {"PATH": path}, ad)
    answer = "TRITON_MODELS_READY=\nTRITON_MODELS_FAILED=simple\nTRITON_MODELS_STATUS=failed\n"
    (job.sandbox / ".glidein_triton").mkdir()
    (job.sandbox / ".glidein_triton" / "prejob.env").write_text(
        answer + "TRITON_MODELS_ERRORS=simple: refused\n"
    )
    (job.sandbox / ".glidein_triton" / "pending").write_text("330\n")
    code, stdout, stderr = job.finish()
    assert (code, stdout) == (0, "failed|simple|simple: refused\n")
    assert "not available: simple: refused" in stderr


@pytest.mark.scripts
def test_a_long_wait_for_the_agent_says_what_it_waits_for(glidein: SimulatedGlidein, tmp_path: Path) -> None:
    """A clock that moves 4 s at each look (a fake ``date``): a 60 s wait takes no time and says every 10 s
    what it waits for, then ends with the reason."""
    hooks.install_prejob(glidein.root)
    path = posix_tools(tmp_path / "bin")
    clock = tmp_path / "clock"
    clock.write_text("1000\n")
    (tmp_path / "bin" / "date").unlink()
    write_executable(
        tmp_path / "bin" / "date",
        f'#!/bin/sh\nread -r now < "{clock}"\necho $((now + 4)) > "{clock}"\necho "$now"\n',
    )
    job = hooks_sim.start_job(
        glidein, ["sh", "-c", "true"], {"PATH": path}, {"TritonModels": '"simple,other"'}
    )
    (job.sandbox / ".glidein_triton").mkdir()
    (job.sandbox / ".glidein_triton" / "pending").write_text("60\n")
    code, _stdout, stderr = job.finish()
    assert code == 0
    waits = [line for line in stderr.splitlines() if "waiting for" in line]
    assert waits[0] == (
        "glidein-triton pre-job: waiting for the glidein's Triton agent to load the job's models (simple,other) "
        "(12 of 60 s)"
    )
    assert len(waits) == 5  # every 12 s (the first look at or after 10 s) of the 60
    assert "did not answer within 60 s" in stderr


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_env_snippet_exports_results_and_stops_required_jobs(tmp_path: Path, shell: str) -> None:
    sandbox = tmp_path / "sandbox"
    (sandbox / ".glidein_triton").mkdir(parents=True)
    env_file = sandbox / ".glidein_triton" / "prejob.env"
    snippet = str(SCRIPTS / "glidein_triton_prejob_env.sh")

    def source(text: str) -> subprocess.CompletedProcess[str]:
        env_file.write_text(text)
        return subprocess.run(
            [shell, "-c", ENV_SNIPPET, shell, snippet],
            env={"PATH": os.environ["PATH"], "_CONDOR_SCRATCH_DIR": str(sandbox)},
            capture_output=True,
            text=True,
            check=False,
        )

    result = source("TRITON_MODELS_READY=a,b\nTRITON_MODELS_FAILED=\nTRITON_MODELS_STATUS=ready\nSECRET=x\n")
    assert result.returncode == 0
    assert result.stdout.splitlines()[:2] == [
        "status=ready ready=a,b failed=",
        "other=unset helper=unset unset",
    ]
    result = source("TRITON_MODELS_READY=\nTRITON_MODELS_FAILED=c\nTRITON_MODELS_STATUS=failed\n")
    assert (result.returncode, result.stdout.splitlines()[0]) == (0, "status=failed ready= failed=c")
    assert result.stdout.splitlines()[2] == "token=unset"
    (sandbox / ".glidein_triton" / "token").write_text("x")  # as an older glidein's agent wrote it
    result = source(
        "TRITON_MODELS_READY=\nTRITON_MODELS_FAILED=c\nTRITON_MODELS_STATUS=required-failed\n"
        "TRITON_MODELS_ERRORS=c: refused\n"
    )
    assert result.returncode == 7
    assert result.stdout == (
        "exit_wrapper: glidein-triton: this job requires Triton models that could not be loaded: c: refused (1)\n"
    )
    result = source("TRITON_MODELS_STATUS=ready\n")
    assert result.stdout.splitlines()[2] == "token=unset"  # no token travels to the job any more
    env_file.unlink()
    result = subprocess.run(
        [shell, "-c", ENV_SNIPPET, shell, snippet],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.splitlines()[0] == "status= ready= failed="  # no file: nothing exported


def test_requested_models_lists_a_repository(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    for name in ("b", "a", ".hidden", "not a name"):
        (repository / name).mkdir(parents=True)
    (repository / "README").write_text("not a model")
    request = read_request(f'TritonModelRepository = "{repository}"\n')
    assert requested_models(request) == ["a", "b"]


@pytest.mark.scripts
def test_periodic_without_a_server(glidein: SimulatedGlidein) -> None:
    code, attributes, _ = hooks_sim.run_periodic(glidein, {"PATH": os.environ["PATH"]})
    assert (code, attributes) == (0, {"TritonReady": "False"})  # no startup ran: no code dir recorded
    glidein.set("GLIDEIN_TRITON_CODE_DIR", glidein.config()["ENTRY_GLIDEIN_TRITON_DIR"])
    glidein.set("GLIDEIN_TRITON_PYTHON", sys.executable)
    directory = glidein_paths.plugin_dir(glidein.root)
    ServerState(runtime="process", http_port=free_port(), pid=0).save(
        directory / glidein_paths.STATE_FILE_NAME
    )
    started = time.monotonic()
    code, attributes, stderr = hooks_sim.run_periodic(glidein, {"PATH": os.environ["PATH"]})
    assert code == 0, stderr
    assert time.monotonic() - started < 20
    assert attributes == {
        "HasTriton": "False",
        "TritonReady": "False",
        "TritonLoadedModels": '""',
        "TritonRestarts": "0",
        "TritonFailure": '"server down, not restarted: no launch plan recorded at startup"',
    }


def test_restart_refusals_and_hung_detection() -> None:
    state = ServerState(
        runtime="process",
        argv=["tritonserver"],
        environment={"PATH": "/bin"},
        restart_limit=3,
        restart_window=0,  # the glidein's whole life
    )
    now = 10_000.0
    assert supervisor.restart_refusal(state, now) == ""
    state.restart_times, state.restart_backoff = [now - 10], 60
    assert supervisor.restart_refusal(state, now).startswith("backing off until")
    assert supervisor.restart_refusal(state, now + 51) == ""
    state.restart_times = [now - 20, now - 10]  # the third restart waits 2 * 60 s
    assert supervisor.restart_refusal(state, now + 100).startswith("backing off")
    assert supervisor.restart_refusal(state, now + 111) == ""
    state.restart_times = [now - 30, now - 20, now - 10]
    assert (
        supervisor.restart_refusal(state, now + 10_000)
        == "restart limit reached (3, GLIDEIN_TRITON_RESTART_LIMIT)"
    )
    assert supervisor.gave_up(supervisor.restart_refusal(state, now))
    state.started_at, state.ready_timeout, state.health_misses = now - 100, 240, 5
    assert not supervisor.is_hung(state, now)  # still within its readiness timeout
    assert supervisor.is_hung(state, now + 200)
    state.health_misses = 2
    assert not supervisor.is_hung(state, now + 200)


def test_restarts_are_a_rate_that_requests_cannot_use_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four crashes by requests (1 GiB, no credential) used up the glidein's restarts: they come back."""
    state = ServerState(
        runtime="process",
        argv=["tritonserver"],
        environment={"PATH": "/bin"},
        restart_limit=3,
        restart_window=3600,
        restart_backoff=60,
    )
    path = tmp_path / "triton" / glidein_paths.STATE_FILE_NAME
    clock = [100_000.0]
    monkeypatch.setattr(supervisor.time, "time", lambda: clock[0])
    monkeypatch.setattr(supervisor, "stop_leftovers", lambda _state: None)

    def launch_fails(*_arguments: object) -> None:
        raise ServerStartError("the stand-in server does not start")

    monkeypatch.setattr(server, "run_prepare", launch_fails)
    for crash in range(4):
        refusal = supervisor.restart_refusal(state, clock[0])
        if crash < 3:
            assert refusal == ""
            supervisor.restart(state, path)
            clock[0] += 60 * 2**crash  # the back-off before the next one
        else:
            assert refusal.startswith("restart limit reached (3 in the last 3600 s")
            assert not supervisor.gave_up(refusal), "the limit of a window is not final"
    assert state.restarts == 3
    assert len(ServerState.load(path).restart_times) == 3  # type: ignore[union-attr]
    clock[0] = state.restart_times[0] + 3600  # the first restart leaves the window
    assert supervisor.restart_refusal(state, clock[0]) == ""
    supervisor.restart(state, path)
    assert (state.restarts, len(state.restart_times)) == (4, 3)  # no more kept than the limit needs


def test_an_idle_server_with_high_resident_memory_is_due_for_a_restart() -> None:
    state = ServerState(runtime="process", idle_memory_growth=1024)
    assert not supervisor.memory_restart_due(state, 800, idle=True)
    assert state.idle_memory_floor == 0  # no launch plan: nothing to restart with
    state.argv, state.environment = ["tritonserver"], {"PATH": "/bin"}
    assert not supervisor.memory_restart_due(state, 800, idle=True)
    assert state.idle_memory_floor == 800
    assert not supervisor.memory_restart_due(state, 1800, idle=True)  # within the growth
    assert not supervisor.memory_restart_due(state, 5800, idle=False)  # a job holds a model: never
    assert not supervisor.memory_restart_due(state, 5800, idle=True)  # once is not "stays"
    assert supervisor.memory_restart_due(state, 5800, idle=True)
    assert not supervisor.memory_restart_due(state, 5800, idle=False)
    assert state.memory_high_checks == 0
    state.idle_memory_growth = 0  # off
    assert not supervisor.memory_restart_due(state, 5800, idle=True)
    assert not supervisor.memory_restart_due(state, 5800, idle=True)


def test_record_launch_keeps_no_secrets_but_the_outer_process_family_markers() -> None:
    plan = LaunchPlan(
        runtime="process", server=["tritonserver"], environment={"CUDA_VISIBLE_DEVICES": "GPU-1"}
    )
    settings = Settings.from_config({"GLIDEIN_TRITON": "True", "GLIDEIN_TRITON_RESTART_LIMIT": "5"})
    state = ServerState(runtime="process", started_at=123.0)
    environment = {"PATH": "/bin", "BEARER_TOKEN": "x", "MY_PASSWORD": "y", "_CONDOR_ANCESTOR_1": "z"}
    gpu = GPU(0, "GPU-1", "NVIDIA A100", 40960, "550")
    supervisor.record_launch(state, plan, environment, settings, [gpu], "/repo")
    assert state.environment == {"PATH": "/bin", "_CONDOR_ANCESTOR_1": "z", "CUDA_VISIBLE_DEVICES": "GPU-1"}
    # The startup script's markers are the outer batch system's: a restarted server keeps them.
    assert supervisor.launch_environment(state) == state.environment
    assert (state.restart_limit, state.launched_at) == (5, 123.0)
    assert state.gpus == ["NVIDIA A100 (GPU-1)"]
    assert state.pinned_models == ["*"]


def test_old_state_files_load_without_a_restart_plan(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"runtime": "process", "pid": 5, "http_port": 8000, "an_unknown_field": 1}')
    path.chmod(0o600)  # as every version wrote it
    state = ServerState.load(path)
    assert state is not None
    assert (state.pid, state.restart_limit, state.environment) == (5, 0, {})
    assert supervisor.restart_refusal(state, time.time()) == "no launch plan recorded at startup"


def test_container_plan_serves_job_models_and_binds_shared_paths() -> None:
    plan = runtime.container_plan(
        "apptainer",
        "/usr/bin/apptainer",
        "/img",
        "/repo",
        Ports(8000, 8001, 8002),
        ["simple"],
        ["--strict-readiness=false"],
        [],
        "gt-1",
        more_repositories=["/glidein/triton/job_models"],
        same_path_binds=["/glidein", "/cvmfs"],
        config_dir="/glidein/triton/apptainer",
        door_dir="/glidein/triton/door",
    )
    assert plan.prepare[0][6:] == [
        "/usr/bin/apptainer",
        "instance",
        "start",
        "--net",
        "--network",
        "none",
        "--bind",
        "/glidein/triton/door:/door",
        "--bind",
        f"{door.CODE_ROOT}:/glidein-triton-door:ro",
        "--bind",
        "/repo:/models:ro",
        "--bind",
        "/glidein:/glidein:ro",
        "--bind",
        "/cvmfs:/cvmfs:ro",
        "/img",
        "gt-1",
    ]
    assert "--model-repository=/models" in plan.server
    assert plan.server[plan.server.index("--model-repository=/models") + 1] == (
        "--model-repository=/glidein/triton/job_models"
    )


def test_hook_settings_and_server_defaults() -> None:
    settings = Settings.from_config({"GLIDEIN_TRITON": "True"})
    assert (settings.load_timeout, settings.restart_limit, settings.restart_backoff) == (300.0, 3, 60.0)
    with pytest.raises(
        ConfigError, match="GLIDEIN_TRITON_RESTART_LIMIT='-1' is not a whole number from 0 to 100"
    ):
        Settings.from_config({"GLIDEIN_TRITON_RESTART_LIMIT": "-1"})
    with pytest.raises(ConfigError, match="GLIDEIN_TRITON_LOAD_TIMEOUT='0'"):
        Settings.from_config({"GLIDEIN_TRITON_LOAD_TIMEOUT": "0"})
    assert hooks.default_server_args([]) == ["--strict-readiness=false", "--exit-on-error=false"]
    assert hooks.default_server_args(["--strict-readiness=true", "--log-verbose=1"]) == [
        "--exit-on-error=false"
    ]
    assert hooks.default_server_args(["--exit-on-error=true", "--strict-readiness=true"]) == []
    # Models named one by one are required: Triton's own --exit-on-error=true stays.
    assert hooks.default_server_args([], ["simple", "mlp"]) == ["--strict-readiness=false"]


def test_a_state_keeps_its_plan_to_start_the_server_again() -> None:
    plan = LaunchPlan(
        runtime="apptainer",
        server=["apptainer", "exec", "instance://gt", "tritonserver"],
        prepare=[["apptainer", "instance", "start", "image.sif", "gt"]],
        teardown=[["apptainer", "instance", "stop", "gt"]],
        instance="gt",
    )
    state = ServerState.from_plan(plan, pid=42, http_port=8000)
    assert (state.pid, state.http_port, state.argv, state.instance) == (42, 8000, plan.server, "gt")
    assert state.launch_plan() == plan


def test_periodic_restarts_an_idle_server_whose_memory_stays_high(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refused requests left the server 5 GB resident, unreported: published, and an idle server restarted."""
    work_dir = tmp_path / "glidein"
    path = glidein_paths.state_file(work_dir)
    plan = {"argv": ["tritonserver"], "environment": {"PATH": "/bin"}}
    ServerState(runtime="process", pgid=12345, idle_memory_growth=1024, **plan).save(path)
    restarts: list[bool] = []

    def restart(_state: ServerState, _path: Path, _budget: float, counted: bool = True) -> str:
        restarts.append(counted)
        return ""

    monkeypatch.setattr(supervisor, "restart", restart)

    def periodic_run(
        resident: int, requests: int
    ) -> None:  # each run a process of its own: state from the file
        state = ServerState.load(path)
        assert state is not None
        periodic.Check(work_dir, state).watch_memory(resident, requests)

    registry = Registry(str(glidein_paths.plugin_dir(work_dir)))
    with registry.editing() as document:
        document["models"] = {"big": {"holders": ["dir_1"]}}
    for resident, requests in ((800, 0), (5800, 0), (5800, 0), (5800, 0)):
        periodic_run(resident, requests)
    assert restarts == []  # a job holds a model: never while it does
    with registry.editing() as document:
        document["models"] = {}
    # Requests served between two runs: not idle, the count of runs in a row starts again.
    for resident, requests in ((800, 0), (5800, 0), (5800, 10), (5800, 10)):
        periodic_run(resident, requests)
    assert restarts == []
    periodic_run(5800, 10)
    assert restarts == [False], "an idle server high for two runs in a row is restarted, not counted"


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_a_required_failed_job_in_a_container_reaches_the_starters_failure_file(
    tmp_path: Path, shell: str
) -> None:
    """Inside GlideinWMS's container the scratch directory is /srv and $_CONDOR_WRAPPER_ERROR_FILE still
    names the starter's outside path: exit_wrapper (as GlideinWMS writes it) must still write the file the
    starter reads (<scratch>/.job_wrapper_failure), through the scratch directory the job sees."""
    outside = tmp_path / "execute" / "dir_12" / "scratch"  # the starter's path: not in the container
    inside = tmp_path / "srv"  # the same directory, as the container binds it
    (inside / ".glidein_triton").mkdir(parents=True)
    (inside / ".glidein_triton" / "prejob.env").write_text(
        "TRITON_MODELS_STATUS=required-failed\nTRITON_MODELS_ERRORS=c: refused\n"
    )
    wrapper = (
        'exit_wrapper() { echo "Wrapper script failed: $1" >> "$_CONDOR_WRAPPER_ERROR_FILE"; exit "$2"; }\n'
        '. "$1"\necho not stopped\n'
    )
    environment = {
        "PATH": os.environ["PATH"],
        "_CONDOR_SCRATCH_DIR": str(inside),
        "_CONDOR_WRAPPER_ERROR_FILE": str(outside / ".job_wrapper_failure"),
    }
    snippet = str(SCRIPTS / "glidein_triton_prejob_env.sh")
    result = subprocess.run(
        [shell, "-c", wrapper, shell, snippet], env=environment, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert (inside / ".job_wrapper_failure").read_text() == (
        "Wrapper script failed: glidein-triton: this job requires Triton models that could not be loaded: "
        "c: refused\n"
    )
    # Outside a container the starter's own path is there and kept.
    outside.mkdir(parents=True)
    result = subprocess.run(
        [shell, "-c", wrapper, shell, snippet], env=environment, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert (outside / ".job_wrapper_failure").is_file()
