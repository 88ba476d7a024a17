"""Exact command lines of each runtime, and the stand-in apptainer's argument checks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glidein_triton.local.demo import STANDIN_APPTAINER
from glidein_triton.worker import door, processes, runtime, server
from glidein_triton.worker.errors import ConfigError, RuntimeNotFoundError, VOConfigError
from glidein_triton.worker.gpus import GPU
from glidein_triton.worker.ports import Ports, free_port
from glidein_triton.worker.state import LaunchPlan

from .support import data_limit, write_executable

PORTS = Ports(8000, 8001, 8002)
H100 = GPU(0, "GPU-abc", "NVIDIA H100 80GB HBM3", 81559, "590.48.01")


def test_process_plan_argv(tmp_path: Path) -> None:
    binary = write_executable(tmp_path / "bin" / "tritonserver", "#!/bin/sh\n")
    plan = runtime.process_plan(
        "tritonserver", "/repo", PORTS, ["simple"], ["--log-verbose=1"], [], search_path=str(tmp_path / "bin")
    )
    assert plan.server == [
        str(binary),
        "--model-repository=/repo",
        "--model-control-mode=explicit",
        "--http-address=127.0.0.1",
        "--http-port=8000",
        "--grpc-address=127.0.0.1",
        "--grpc-port=8001",
        "--metrics-address=127.0.0.1",
        "--metrics-port=8002",
        "--load-model=simple",
        "--log-verbose=1",
    ]
    assert plan.environment == {"CUDA_VISIBLE_DEVICES": ""}
    assert plan.prepare == []
    assert plan.teardown == []


def test_process_plan_without_binary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeNotFoundError, match="GLIDEIN_TRITON_SERVER_BINARY"):
        runtime.process_plan("tritonserver", "/repo", PORTS, [], [], [], search_path=str(tmp_path))


def test_container_plan_argv_with_gpu() -> None:
    plan = runtime.container_plan(
        "apptainer",
        "/usr/bin/apptainer",
        "/cvmfs/img",
        "/cvmfs/repo",
        PORTS,
        ["*"],
        [],
        [H100],
        "gt-1",
        config_dir="/glidein/triton/apptainer",
        door_dir="/glidein/triton/door",
    )
    in_config_dir = ["/usr/bin/env", "APPTAINER_CONFIGDIR=/glidein/triton/apptainer"]
    assert plan.prepare == [
        [
            "/usr/bin/env",
            "-u",
            "DBUS_SESSION_BUS_ADDRESS",
            "-u",
            "XDG_RUNTIME_DIR",
            "APPTAINER_CONFIGDIR=/glidein/triton/apptainer",
            "/usr/bin/apptainer",
            "instance",
            "start",
            "--nv",
            "--net",
            "--network",
            "none",
            "--bind",
            "/glidein/triton/door:/door",
            "--bind",
            f"{door.CODE_ROOT}:/glidein-triton-door:ro",
            "--bind",
            "/cvmfs/repo:/models:ro",
            "/cvmfs/img",
            "gt-1",
        ]
    ]
    served = server_part(plan.server)
    assert served[:8] == [
        *in_config_dir,
        "/usr/bin/apptainer",
        "exec",
        "--env",
        "CUDA_VISIBLE_DEVICES=GPU-abc",
        "instance://gt-1",
        "tritonserver",
    ]
    assert "--model-repository=/models" in served
    assert "--load-model=*" in served
    assert "--grpc-address=unix:/door/grpc.sock" in served
    assert plan.teardown == [[*in_config_dir, "/usr/bin/apptainer", "instance", "stop", "gt-1"]]
    # The front door on the host: the server's ports for the glidein's uid, to the door directory's sockets;
    # the relay in the instance, from its loopback to the HTTP and metrics sockets.
    relay = json.loads(plan.server[plan.server.index("--relay-command") + 1])
    assert plan.server[: plan.server.index("--relay-command")] == door.command(
        "--container",
        "--directory",
        "/glidein/triton/door",
        "--route",
        "http@127.0.0.1:8000=unix:http.sock",
        "--route",
        "metrics@127.0.0.1:8002=unix:metrics.sock",
        "--route",
        "grpc@127.0.0.1:8001=unix:grpc.sock:8001",
    )
    assert plan.plugin_socket == "/glidein/triton/door/http.sock"
    assert relay == [
        *in_config_dir,
        "/usr/bin/apptainer",
        "exec",
        "instance://gt-1",
        "python3",
        "-I",
        "-S",
        "-c",
        door.BOOTSTRAP,
        "/glidein-triton-door",
        "--relay",
        "unix:/door/http.sock=127.0.0.1:8000",
        "--relay",
        "unix:/door/metrics.sock=127.0.0.1:8002",
    ]
    assert runtime.behind_door(plan, Path("/glidein/triton/admin.sock")) == plan.server


def test_a_remote_grpc_server_is_behind_the_doors_remote_route() -> None:
    """Remote mode keeps the instance's network its own: HTTP is the door's filtered loopback route (where
    no other local user gets in), gRPC a remote route on the node's address to the server's socket."""
    plan = runtime.container_plan(
        "apptainer",
        "/a",
        "/img",
        "/repo",
        PORTS,
        [],
        [],
        [],
        "gt-4",
        "0.0.0.0",
        config_dir="/c",
        door_dir="/d",
    )
    assert "--net" in plan.prepare[0]
    routes = [plan.server[index + 1] for index, word in enumerate(plan.server) if word == "--route"]
    assert routes == [
        "http@127.0.0.1:8000=unix:http.sock",
        "metrics@127.0.0.1:8002=unix:metrics.sock",
        "remote@0.0.0.0:8001=unix:grpc.sock:8001",
    ]
    assert "--grpc-address=unix:/door/grpc.sock" in plan.server
    assert plan.plugin_socket == "/d/http.sock"


def server_part(argv: list[str]) -> list[str]:
    """The server's own command in the front door's command line (after its ``--``)."""
    return argv[argv.index("--") + 1 :]


def test_container_plan_cpu_has_no_nv() -> None:
    plan = runtime.container_plan(
        "singularity", "/s", "/img", "/repo", PORTS, [], [], [], "gt-2", config_dir="/c", door_dir="/d"
    )
    assert "--nv" not in plan.prepare[0]
    assert server_part(plan.server)[:6] == [
        "/usr/bin/env",
        "SINGULARITY_CONFIGDIR=/c",
        "/s",
        "exec",
        "--env",
        "CUDA_VISIBLE_DEVICES=",
    ]


def test_instance_names_are_valid_and_unique() -> None:
    names = {runtime.instance_name() for _ in range(20)}
    assert len(names) == 20
    assert all(re.fullmatch(r"[a-zA-Z0-9._-]+", name) for name in names)


def test_check_image(tmp_path: Path) -> None:
    runtime.check_image("docker://nvcr.io/nvidia/tritonserver:24.10-py3")
    runtime.check_image(str(tmp_path))
    with pytest.raises(VOConfigError, match="does not exist"):
        runtime.check_image(str(tmp_path / "missing.sif"))
    with pytest.raises(VOConfigError, match="GLIDEIN_TRITON_IMAGE"):
        runtime.check_image("")


def test_choose_runtime(tmp_path: Path) -> None:
    apptainer = write_executable(tmp_path / "apptainer", "#!/bin/sh\n")
    with_runtime = {"SINGULARITY_PATH": str(apptainer)}
    assert runtime.choose_runtime("auto", "/img", with_runtime, str(tmp_path / "none")) == "apptainer"
    assert runtime.choose_runtime("auto", "", with_runtime, None) == "process"
    assert runtime.choose_runtime("auto", "/img", {}, str(tmp_path / "none")) == "process"
    assert runtime.choose_runtime("singularity", "/img", {}, None) == "singularity"


def test_auto_names_the_runtime_it_found(tmp_path: Path) -> None:
    write_executable(tmp_path / "singularity", "#!/bin/sh\n")
    assert runtime.choose_runtime("auto", "/img", {}, str(tmp_path)) == "singularity"
    assert runtime.find_container_runtime("singularity", {}, str(tmp_path)) == str(tmp_path / "singularity")


def test_find_container_runtime(tmp_path: Path) -> None:
    write_executable(tmp_path / "singularity", "#!/bin/sh\n")
    assert runtime.find_container_runtime("auto", {}, str(tmp_path)) == str(tmp_path / "singularity")
    with pytest.raises(RuntimeNotFoundError, match="SINGULARITY_PATH"):
        runtime.find_container_runtime("apptainer", {}, str(tmp_path / "none"))


def run_argv(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def standin(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    """The stand-in with ``state`` as its config dir."""
    env = {"APPTAINER_CONFIGDIR": str(state), "PATH": "/usr/bin:/bin"}
    return run_argv([str(STANDIN_APPTAINER), *args], env)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    image = tmp_path / "image.sandbox"
    write_executable(image / "opt" / "tritonserver" / "bin" / "tritonserver", '#!/bin/sh\necho "args:$*"\n')
    (image / "usr" / "bin").mkdir(parents=True)
    (image / "usr" / "bin" / "python3").symlink_to(os.path.realpath(sys.executable))  # the relay's
    return image


def test_standin_accepts_the_plan_and_maps_binds(tmp_path: Path, sandbox: Path) -> None:
    repository = tmp_path / "repo"
    repository.mkdir()
    state = tmp_path / "plugin config dir"
    plan = runtime.container_plan(
        "apptainer",
        str(STANDIN_APPTAINER),
        str(sandbox),
        str(repository),
        Ports(free_port(), free_port(), free_port()),  # the front door binds them
        ["m"],
        [],
        [H100],
        "gt-ok",
        config_dir=str(state),
        door_dir=str(tmp_path / "door"),
    )
    (tmp_path / "door").mkdir(mode=0o700)
    # A pool account: HOME unusable, session variables pointing at nothing.
    (tmp_path / "file").write_text("")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "file" / "home"),
        "XDG_RUNTIME_DIR": "/run/user/nonexistent",
        "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/nonexistent/bus",
    }
    started = run_argv(plan.prepare[0], env)
    assert started.returncode == 0, started.stderr
    ran = run_argv(plan.server, env)
    assert ran.returncode == 0, ran.stderr
    # The server sees the bind destination (as a link to the source), never the host path.
    (seen,) = re.findall(r"--model-repository=(\S+)", ran.stdout)
    assert seen.endswith("/models")
    assert str(repository) not in ran.stdout
    assert Path(seen).resolve() == repository.resolve()
    listed = standin("instance", "list", state=state)
    assert "gt-ok" in listed.stdout
    assert "gt-ok" not in standin("instance", "list", state=tmp_path / "another").stdout
    assert run_argv(plan.teardown[0], env).returncode == 0
    assert "gt-ok" not in standin("instance", "list", state=state).stdout


def test_standin_needs_a_usable_config_dir_and_session(tmp_path: Path, sandbox: Path) -> None:
    (tmp_path / "file").write_text("")
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "file" / "home")}
    started = run_argv([str(STANDIN_APPTAINER), "instance", "start", str(sandbox), "gt-home"], base)
    assert started.returncode == 255
    assert "failed to create instance directory" in started.stderr
    with_dir = {**base, "APPTAINER_CONFIGDIR": str(tmp_path / "config")}
    bad_session = {**with_dir, "XDG_RUNTIME_DIR": str(tmp_path / "no-runtime-dir")}
    started = run_argv([str(STANDIN_APPTAINER), "instance", "start", str(sandbox), "gt-home"], bad_session)
    assert started.returncode == 255
    assert "dbus" in started.stderr
    started = run_argv([str(STANDIN_APPTAINER), "instance", "start", str(sandbox), "gt-home"], with_dir)
    assert started.returncode == 0, started.stderr
    assert run_argv([str(STANDIN_APPTAINER), "instance", "stop", "gt-home"], with_dir).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["instance", "start", "--gpu", "IMG", "n"], "unknown flag: --gpu"),
        (["instance", "start", "IMG", "bad name"], "is not a valid instance name"),
        (["instance", "start", "/nonexistent.sif", "n"], "could not open image"),
        (["instance", "start", "--bind", "/nonexistent:/models", "IMG", "n"], "mount source /nonexistent"),
        (["instance", "start", "--bind", "/tmp:models", "IMG", "n"], "destination must be an absolute path"),
        (["instance", "start", "IMG"], "requires at least 2 arg(s)"),
        (["exec", "instance://nothere", "tritonserver"], "no instance found with name nothere"),
        (["instance", "stop", "nothere"], "no instance found with name nothere"),
        (["run", "IMG"], "unknown command"),
        (["instance", "start", "--net", "IMG", "n"], "--network=none"),  # bridge, as Apptainer defaults to
        (["instance", "start", "--network", "bridge", "IMG", "n"], "--network=none"),
    ],
)
def test_standin_rejects_what_apptainer_rejects(
    tmp_path: Path, sandbox: Path, args: list[str], message: str
) -> None:
    result = standin(*[str(sandbox) if arg == "IMG" else arg for arg in args], state=tmp_path / "state")
    assert result.returncode == 255
    assert message in result.stderr


#: Binds the port sys.argv[1] of 127.0.0.1 (bound on the host already), connects to it over loopback, and
#: prints its network namespace.
OWN_LOOPBACK = """
import os, socket, sys
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
socket.create_connection(listener.getsockname(), timeout=5).close()
print(os.readlink("/proc/self/ns/net"))
"""


def test_standin_gives_network_none_a_loopback_of_its_own(tmp_path: Path, sandbox: Path) -> None:
    """As Apptainer's: the instance's loopback is up and apart from the host's."""
    state = tmp_path / "state"
    started = standin("instance", "start", "--net", "--network", "none", str(sandbox), "gt-net", state=state)
    assert started.returncode == 0, started.stderr
    script = tmp_path / "own_loopback.py"
    script.write_text(OWN_LOOPBACK)
    host = door.listen("127.0.0.1", 0)
    try:
        ran = standin(
            "exec", "instance://gt-net", "python3", str(script), str(host.getsockname()[1]), state=state
        )
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() != str(Path("/proc/self/ns/net").readlink())
        assert ran.stdout.strip().startswith("net:[")
    finally:
        host.close()
        assert standin("instance", "stop", "gt-net", state=state).returncode == 0


def test_standin_refuses_a_second_instance_of_the_same_name(tmp_path: Path, sandbox: Path) -> None:
    state = tmp_path / "state"
    assert standin("instance", "start", str(sandbox), "twice", state=state).returncode == 0
    again = standin("instance", "start", str(sandbox), "twice", state=state)
    assert again.returncode == 255
    assert "already exists" in again.stderr
    assert standin("instance", "stop", "twice", state=state).returncode == 0


def test_standin_exec_needs_the_command_in_the_image(tmp_path: Path, sandbox: Path) -> None:
    state = tmp_path / "state"
    standin("instance", "start", str(sandbox), "cmd", state=state)
    missing = standin("exec", "instance://cmd", "nosuchprogram", state=state)
    assert missing.returncode == 255
    assert "executable file not found" in missing.stderr
    standin("instance", "stop", "cmd", state=state)


@pytest.mark.parametrize("name", ["model repo", "modèles", "repo$HOME", "repo;ls"])
def test_python_backend_models_need_a_shell_safe_path(tmp_path: Path, name: str) -> None:
    repository = tmp_path / name
    (repository / "onnx_model").mkdir(parents=True)
    (repository / "onnx_model" / "config.pbtxt").write_text('backend: "onnxruntime"\n')
    runtime.check_python_backend_path(str(repository), ["*"])
    (repository / "py_model").mkdir()
    (repository / "py_model" / "config.pbtxt").write_text('name: "py_model"\n  backend : "python"\n')
    runtime.check_python_backend_path(str(repository), ["onnx_model"])
    with pytest.raises(VOConfigError, match="model py_model uses Triton's python backend, which cannot load"):
        runtime.check_python_backend_path(str(repository), ["*"])
    with pytest.raises(VOConfigError, match="GLIDEIN_TRITON_MODEL_REPOSITORY"):
        runtime.check_python_backend_path(str(repository), ["py_model"])


def test_python_backend_paths_that_work(tmp_path: Path) -> None:
    repository = tmp_path / "models_v2.1-cms+gpu@site"
    (repository / "py_model").mkdir(parents=True)
    (repository / "py_model" / "config.pbtxt").write_text('backend: "python"\n')
    runtime.check_python_backend_path(str(repository), ["*"])


@pytest.mark.parametrize("repository", ["/cvmfs/repo:v2", "/data/a,b"])
def test_container_plan_refuses_paths_apptainer_cannot_bind(repository: str) -> None:
    with pytest.raises(VOConfigError, match="cannot be bound into the container"):
        runtime.container_plan(
            "apptainer", "/a", "/img", repository, PORTS, [], [], [], "gt-3", config_dir="/c", door_dir="/d"
        )
    with pytest.raises(ConfigError, match="GLIDEIN_TRITON_TLS_"):
        runtime.container_plan(
            "apptainer",
            "/a",
            "/img",
            "/repo",
            PORTS,
            [],
            [],
            [],
            "gt-3",
            same_path_binds=[repository],
            config_dir="/c",
            door_dir="/d",
        )


def sleepers(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that run ``sleep`` (the stand-in server)."""
    found = []
    for pid in processes.group_members(pgid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"sleep":
                found.append(pid)
    return found


@pytest.mark.parametrize("chosen", ["process", "apptainer"])
def test_the_memory_limit_is_set_on_the_server_alone(tmp_path: Path, sandbox: Path, chosen: str) -> None:
    """The server gets RLIMIT_DATA (also through the stand-in's exec); the instance start, the launching
    process and a launch without a limit do not."""
    sleeper = "#!/bin/sh\nexec sleep 60\n"
    write_executable(sandbox / "opt" / "tritonserver" / "bin" / "tritonserver", sleeper)
    repository = tmp_path / "repo"
    repository.mkdir()
    env = {"PATH": "/usr/bin:/bin"}
    config_dir = tmp_path / "config"
    binary = write_executable(tmp_path / "bin" / "tritonserver", sleeper)

    def plan_for(name: str, limit: int) -> LaunchPlan:
        """A plan on ports of its own (its front door binds them), in an instance of its own."""
        ports = Ports(free_port(), free_port(), free_port())
        if chosen == "process":
            return runtime.process_plan(str(binary), str(repository), ports, [], [], [], memory_limit=limit)
        (tmp_path / name).mkdir(mode=0o700)
        return runtime.container_plan(
            chosen,
            str(STANDIN_APPTAINER),
            str(sandbox),
            str(repository),
            ports,
            [],
            [],
            [],
            name,
            config_dir=str(config_dir),
            door_dir=str(tmp_path / name),
            memory_limit=limit,
        )

    ours = data_limit(os.getpid())
    plan, unlimited_plan = plan_for("gt-limit", 300), plan_for("gt-unlimited", 0)
    server.run_prepare(plan, env, 30)
    server.run_prepare(unlimited_plan, env, 30)
    state = server.launch(plan, tmp_path / "server.log", env, 1.0)
    unlimited = server.launch(unlimited_plan, tmp_path / "other.log", env, 1.0)
    try:
        deadline = time.monotonic() + 30  # the front door starts each one: slow on a loaded machine
        while not (sleeping := sleepers(state.pgid)) or not sleepers(unlimited.pgid):
            assert time.monotonic() < deadline, "the servers did not start"
            time.sleep(0.02)
        assert [data_limit(pid) for pid in sleeping] == [str(300 << 20)]
        assert data_limit(state.pid) == str(300 << 20)  # the front door that runs it
        assert state.memory_limit == 300
        assert state.launch_plan().memory_limit == 300  # kept for restarts
        assert data_limit(os.getpid()) == ours
        assert [data_limit(pid) for pid in [unlimited.pid, *sleepers(unlimited.pgid)]] == [ours, ours]
        if chosen != "process":
            rows = json.loads(standin("instance", "list", "--json", state=config_dir).stdout)["instances"]
            assert [data_limit(row["pid"]) for row in rows] == [ours, ours]  # the instances' own processes
    finally:
        server.stop(unlimited, env)
        server.stop(state, env)


def door_routes(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv[: argv.index("--")]) if word == "--route"]


def test_the_process_server_runs_behind_the_door(tmp_path: Path) -> None:
    """Job routes for gRPC and HTTP (filtered), metrics only when on, the plugin's Unix socket; in remote
    mode the node's gRPC port goes to the server as it is and the server listens on its loopback."""
    options = ["--http-address=127.0.0.1", "--http-port=8000", "--grpc-address=127.0.0.1", "--grpc-port=8001"]
    options += ["--metrics-address=127.0.0.1", "--metrics-port=8002"]
    plan = LaunchPlan(runtime="process", server=["/bin/tritonserver", *options])
    argv = runtime.behind_door(plan, tmp_path / "admin.sock")
    assert argv[argv.index("--") + 1 :] == plan.server
    assert door_routes(argv) == [
        "grpc@127.0.0.1:8001",
        "http@127.0.0.1:8000",
        "metrics@127.0.0.1:8002",
        f"plugin@unix:{tmp_path / 'admin.sock'}=127.0.0.1:8000",
    ]
    quiet = LaunchPlan(runtime="process", server=[*plan.server, "--allow-metrics=false"])
    assert not any(r.startswith("metrics@") for r in door_routes(runtime.behind_door(quiet, tmp_path / "a")))
    remote = [o.replace("--grpc-address=127.0.0.1", "--grpc-address=10.1.2.3") for o in plan.server]
    argv = runtime.behind_door(LaunchPlan(runtime="process", server=remote), tmp_path / "admin.sock")
    assert door_routes(argv)[0] == "remote@10.1.2.3:8001=127.0.0.1:8001"
    assert "--grpc-address=127.0.0.1" in argv[argv.index("--") + 1 :]
    container = LaunchPlan(runtime="apptainer", server=plan.server)
    assert runtime.behind_door(container, tmp_path / "admin.sock") == plan.server
