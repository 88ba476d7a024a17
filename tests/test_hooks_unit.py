"""The hooks without a server: installation, the shell launchers, the pre-job's and periodic's decisions."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from glidein_triton.local import jobs as hooks_sim
from glidein_triton.local.glidein import SimulatedGlidein, cron_lines
from glidein_triton.operator import payload
from glidein_triton.worker import install as hooks
from glidein_triton.worker import prejob, runtime, supervisor
from glidein_triton.worker.errors import ConfigError
from glidein_triton.worker.gpus import GPU
from glidein_triton.worker.periodic import ad_line
from glidein_triton.worker.ports import Ports, free_port
from glidein_triton.worker.settings import Settings
from glidein_triton.worker.state import STATE_FILE_NAME, LaunchPlan, ServerState, state_dir

from .hooks_support import oldest_python

SCRIPTS = payload.SCRIPTS_DIR
ENV_SNIPPET = """
exit_wrapper() { echo "exit_wrapper: $1 ($2)"; exit 7; }
glidein_triton_name=kept_by_the_wrapper
. "$1"
echo "status=$TRITON_MODELS_STATUS ready=$TRITON_MODELS_READY failed=$TRITON_MODELS_FAILED"
echo "other=${SECRET-unset} helper=${glidein_triton_name-unset} ${glidein_triton_file-unset}"
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
        "glidein_triton/worker/prejob.py",
        "glidein_triton/worker/periodic.py",
        "glidein_triton/worker/accounting.py",
    ):
        assert name in names


def test_hook_modules_import_on_the_oldest_python() -> None:
    modules = ("prejob", "periodic", "reaper", "accounting", "supervisor", "cleanup", "startup")
    code = "import sys; sys.path.insert(0, sys.argv[1]); " + "; ".join(
        f"import glidein_triton.worker.{module}" for module in modules
    )
    result = subprocess.run(
        [oldest_python(), "-I", "-c", code, str(Path(payload.PACKAGE_DIR).parent)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_install_prejob_hook_and_code_copy(tmp_path: Path) -> None:
    prejob_dir = hooks.install_prejob(tmp_path, "/usr/bin/python3.11")
    executable = prejob_dir / "glidein_triton_1_prejob.sh"
    sourced = prejob_dir / "glidein_triton_2_prejob_env.sh"
    assert os.access(executable, os.X_OK)
    assert not os.access(sourced, os.X_OK)  # gwms_process_scripts sources it only if not executable
    assert sorted(path.name for path in prejob_dir.iterdir()) == [executable.name, sourced.name]
    code = tmp_path / ".gwms.d" / "lib" / "glidein_triton"
    assert (code / "python").read_text() == "/usr/bin/python3.11\n"
    assert (code / "glidein_triton" / "worker" / "prejob.py").read_bytes() == Path(
        prejob.__file__
    ).read_bytes()
    check = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); import glidein_triton.worker.prejob",
            str(code),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_prejob_launcher_without_request_does_not_start_python(
    glidein: SimulatedGlidein, tmp_path: Path
) -> None:
    hooks.install_prejob(glidein.root, "/nonexistent/python3")
    job = hooks_sim.start_job(
        glidein, ["sh", "-c", 'echo "[$TRITON_MODELS_STATUS]"'], {"PATH": "/usr/bin:/bin"}, {}
    )
    code, stdout, stderr = job.finish()
    assert (code, stdout, stderr) == (0, "[]\n", "")
    assert not (job.sandbox / ".glidein_triton").exists()


def test_prejob_launcher_reports_a_missing_or_old_python(glidein: SimulatedGlidein, tmp_path: Path) -> None:
    hooks.install_prejob(glidein.root, "/nonexistent/python3")
    report = ["sh", "-c", 'echo "$TRITON_MODELS_STATUS|$TRITON_MODELS_FAILED"']
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "grep", "sh", "mkdir"):
        found = subprocess.run(
            ["sh", "-c", f"command -v {tool}"], capture_output=True, text=True, check=False
        )
        if found.stdout.strip().startswith("/"):
            (bin_dir / tool).symlink_to(found.stdout.strip())
    ad = {"TritonModels": '"simple"'}
    job = hooks_sim.start_job(glidein, report, {"PATH": str(bin_dir)}, ad)
    code, stdout, stderr = job.finish()
    assert (code, stdout) == (0, "failed|all\n")
    assert "no python3 found (Python >= 3.9 is needed)" in stderr
    old = bin_dir / "python3"
    old.write_text("#!/bin/sh\nexit 3\n")  # what the version check does on Python 3.6
    old.chmod(0o755)
    job = hooks_sim.start_job(glidein, report, {"PATH": str(bin_dir)}, ad)
    code, stdout, stderr = job.finish()
    assert (code, stdout) == (0, "failed|all\n")
    assert f"{old} is older than Python 3.9" in stderr
    # Even a job that requires its models runs: no Python in its container is not the job's failure.
    required = {**ad, "TritonModelsRequired": "True"}
    job = hooks_sim.start_job(glidein, report, {"PATH": str(bin_dir)}, required)
    code, stdout, stderr = job.finish()
    assert (code, stdout) == (0, "failed|all\n")


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
    assert result.stdout.splitlines() == ["status=ready ready=a,b failed=", "other=unset helper=unset unset"]
    result = source("TRITON_MODELS_READY=\nTRITON_MODELS_FAILED=c\nTRITON_MODELS_STATUS=failed\n")
    assert (result.returncode, result.stdout.splitlines()[0]) == (0, "status=failed ready= failed=c")
    result = source("TRITON_MODELS_READY=\nTRITON_MODELS_FAILED=c\nTRITON_MODELS_STATUS=required-failed\n")
    assert result.returncode == 7
    assert result.stdout == (
        "exit_wrapper: glidein-triton: this job requires Triton models that could not be loaded: c (1)\n"
    )
    env_file.unlink()
    result = subprocess.run(
        [shell, "-c", ENV_SNIPPET, shell, snippet],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.splitlines()[0] == "status= ready= failed="  # no file: nothing exported


def test_prejob_request_errors_and_no_server(tmp_path: Path) -> None:
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    env_file = sandbox / ".glidein_triton" / "prejob.env"
    environment = {"_CONDOR_SCRATCH_DIR": str(sandbox), "TRITON_MODELS": "a", "TRITON_MODELS_REQUIRED": "yes"}
    assert prejob.run(str(tmp_path / "glidein_config"), environment) == 1  # no server, and required
    assert (
        env_file.read_text()
        == "TRITON_MODELS_READY=\nTRITON_MODELS_FAILED=a\nTRITON_MODELS_STATUS=required-failed\n"
    )
    assert prejob.run("", {**environment, "TRITON_MODELS_REQUIRED": "no"}) == 0
    assert "TRITON_MODELS_STATUS=failed\n" in env_file.read_text()
    assert prejob.run("", {**environment, "TRITON_MODELS": "bad/name"}) == 1
    assert prejob.run("", {"TRITON_MODELS": "a", "TRITON_JOB_MODEL_REPOSITORY": "relative"}) == 0
    assert prejob.run("", {}) == 0


def test_prejob_lists_a_repository_and_translates_sandbox_paths(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    for name in ("b", "a", ".hidden", "not a name"):
        (repository / name).mkdir(parents=True)
    (repository / "README").write_text("not a model")
    request = prejob.read_request({"TRITON_JOB_MODEL_REPOSITORY": str(repository)}, "")
    assert prejob.requested_models(request) == ["a", "b"]
    inside = {"GWMS_SINGULARITY_REEXEC": "1", "GWMS_SINGULARITY_OUTSIDE_PWD": "/glidein/execute/dir_9"}
    context = prejob.Context("/srv/", {**inside, "_CONDOR_SCRATCH_DIR": "/srv"})
    assert context.registry is None  # the glidein directory is not visible
    assert context.host_path("/srv/models/a") == "/glidein/execute/dir_9/models/a"
    assert context.host_path("/srvx/a") == "/srvx/a"
    assert context.host_path("/cvmfs/repo/a") == "/cvmfs/repo/a"
    name, record = context.holder(prejob.JobRequest("", ["a"], False, ""), inside)
    assert name == "sandbox:/glidein/execute/dir_9"
    assert "pid" not in record  # pids inside a container are not the host's


def test_periodic_without_a_server(glidein: SimulatedGlidein) -> None:
    code, attributes, _ = hooks_sim.run_periodic(glidein, {"PATH": os.environ["PATH"]})
    assert (code, attributes) == (0, {"TritonReady": "False"})  # no startup ran: no code dir recorded
    glidein.set("GLIDEIN_TRITON_CODE_DIR", glidein.config()["ENTRY_GLIDEIN_TRITON_DIR"])
    glidein.set("GLIDEIN_TRITON_PYTHON", sys.executable)
    directory = state_dir(glidein.root)
    ServerState(runtime="process", http_port=free_port(), pid=0).save(directory / STATE_FILE_NAME)
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
        runtime="process", argv=["tritonserver"], environment={"PATH": "/bin"}, restart_limit=3
    )
    now = 10_000.0
    assert supervisor.restart_refusal(state, now) == ""
    state.restarts, state.last_restart_at, state.restart_backoff = 1, now - 10, 60
    assert supervisor.restart_refusal(state, now).startswith("backing off until")
    assert supervisor.restart_refusal(state, now + 51) == ""
    state.restarts = 2  # the third restart waits 2 * 60 s
    assert supervisor.restart_refusal(state, now + 100).startswith("backing off")
    assert supervisor.restart_refusal(state, now + 111) == ""
    state.restarts = 3
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


def test_record_launch_keeps_no_secrets_but_the_outer_process_family_markers() -> None:
    plan = LaunchPlan(
        runtime="process", server=["tritonserver"], environment={"CUDA_VISIBLE_DEVICES": "GPU-1"}
    )
    settings = Settings.from_config({"GLIDEIN_TRITON": "True", "GLIDEIN_TRITON_RESTART_LIMIT": "5"})
    state = ServerState(runtime="process", started_at=123.0)
    environment = {"PATH": "/bin", "BEARER_TOKEN": "x", "MY_PASSWORD": "y", "_CONDOR_ANCESTOR_1": "z"}
    gpu = GPU(0, "GPU-1", "NVIDIA A100", 40960, "550")
    supervisor.record_launch(state, plan, environment, settings, [gpu], "/repo", ["/glidein", "/cvmfs"])
    assert state.environment == {"PATH": "/bin", "_CONDOR_ANCESTOR_1": "z", "CUDA_VISIBLE_DEVICES": "GPU-1"}
    # The startup script's markers are the outer batch system's: a restarted server keeps them.
    assert supervisor.launch_environment(state) == state.environment
    assert (state.restart_limit, state.launched_at, state.visible_roots) == (5, 123.0, [])
    assert state.gpus == ["NVIDIA A100 (GPU-1)"]
    assert state.pinned_models == ["*"]


def test_old_state_files_load_without_a_restart_plan(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"runtime": "process", "pid": 5, "http_port": 8000, "an_unknown_field": 1}')
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
    )
    assert plan.prepare[0][6:] == [
        "/usr/bin/apptainer",
        "instance",
        "start",
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


def test_ad_lines() -> None:
    assert ad_line("TritonReady", True) == "TritonReady = True"
    assert ad_line("TritonInferenceCount", 12) == "TritonInferenceCount = 12"
    assert ad_line("TritonGPUUtilization", 0.25) == "TritonGPUUtilization = 0.25"
    assert ad_line("TritonFailure", 'say "no"\\\nnow') == 'TritonFailure = "say no now"'
    assert cron_lines('A = 1\nB = "x = y"\nnoise\n') == {"A": "1", "B": '"x = y"'}


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_env_snippet_points_containerised_jobs_at_the_token_copy(tmp_path: Path, shell: str) -> None:
    # The job wrapper copied .gwms.d into the job's sandbox; the glidein's own token file is not visible.
    prejob_dir = tmp_path / ".gwms.d" / "exec" / "prejob"
    prejob_dir.mkdir(parents=True)
    copy = tmp_path / ".gwms.d" / "lib" / "glidein_triton" / "token"
    copy.parent.mkdir(parents=True)
    copy.write_text("secret")
    snippet = str(SCRIPTS / "glidein_triton_prejob_env.sh")
    show = f'. "{snippet}"; echo "$TRITON_TOKEN_FILE"'

    def token_file(published: str) -> str:
        env = {"PATH": os.environ["PATH"], "TRITON_TOKEN_FILE": published}
        result = subprocess.run(
            [shell, "-c", show], cwd=prejob_dir, env=env, capture_output=True, text=True, check=True
        )
        return result.stdout.strip()

    assert token_file("/glidein/on/the/host/triton/token") == str(copy)
    visible = tmp_path / "visible-token"
    visible.write_text("secret")
    assert token_file(str(visible)) == str(visible)  # a visible glidein token file is kept


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
