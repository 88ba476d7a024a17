"""The front door of the container runtime: the relay, the door's container mode, and on the real server the
whole glidein as an unprivileged pilot account beside another local user (the stand-in apptainer gives the
instance a network namespace of its own, ``--net --network none``, as Apptainer does)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from glidein_triton.local import demo
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import door, glidein_paths, processes, runtime
from glidein_triton.worker.ports import free_port
from glidein_triton.worker.state import ServerState

from .support import (
    AS_ROOT,
    OTHER_UID,
    PILOT_UID,
    PYTHON39,
    echo_server,
    make_certificate,
    run_as,
    user_directory,
    wait_until,
)

needs_root = pytest.mark.skipif(not AS_ROOT, reason="switching to the pilot and other users needs root")

#: A job's HTTP and gRPC inference (the demo's job: tritonclient, the endpoints of the job environment).
JOB = "import json, sys; from glidein_triton.local import demo; print(demo.run_sample_job(json.loads(sys.argv[1]), 2))"
#: Connects to 127.0.0.1:PORT, sends an HTTP request and prints what came back (or the error's name).
KNOCK = """
import socket, sys
try:
    connection = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    connection.sendall(b"GET /v2/health/ready HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    print(repr(connection.recv(100)))
except OSError as error:
    print(type(error).__name__)
"""
#: An HTTP request over the Unix socket ``sys.argv[1]`` (headers: the JSON ``sys.argv[4]``): prints the
#: status line (or the error's name).
UNIX_REQUEST = """
import json, os, socket, sys
try:
    os.chdir(os.path.dirname(sys.argv[1]))  # a socket path may be longer than 107 bytes
    connection = socket.socket(socket.AF_UNIX)
    connection.settimeout(30)
    connection.connect(os.path.basename(sys.argv[1]))
    method, path = sys.argv[2:4]
    headers = "".join(f"{name}: {value}\\r\\n" for name, value in json.loads(sys.argv[4]).items())
    connection.sendall(f"{method} {path} HTTP/1.1\\r\\nHost: x\\r\\n{headers}Content-Length: 0\\r\\n\\r\\n".encode())
    print(connection.recv(100).split(b"\\r\\n")[0].decode())
except OSError as error:
    print(type(error).__name__)
"""


def start_relay(argv: list[str]) -> subprocess.Popen[str]:
    relay = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert relay.stdout is not None
    assert relay.stdout.readline() == "ready\n"
    return relay


@pytest.mark.parametrize("python", [sys.executable, PYTHON39], ids=["python", "python3.9"])
def test_the_relay_forwards_its_socket_and_never_takes_over_a_live_one(
    tmp_path: Path, python: str | None
) -> None:
    """Also with the oldest Python an image may have (the relay runs the image's python3)."""
    if python is None:
        pytest.skip("no Python 3.9 on this machine")
    backend, _ = echo_server()
    directory = tmp_path / "door"
    directory.mkdir(mode=0o700)
    path = directory / runtime.HTTP_SOCKET
    argv = [python, "-I", "-S", "-c", door.BOOTSTRAP, str(door.CODE_ROOT), door.RELAY_MODE]
    argv.append(f"unix:{path}=127.0.0.1:{backend.getsockname()[1]}")
    relay = start_relay(argv)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))
            client.sendall(b"GET / HTTP/1.1\r\n\r\n")
            assert client.recv(100) == b"GET / HTTP/1.1\r\n\r\n"
        second = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert second.returncode == 2
        assert "is in use by another server or relay" in second.stderr
    finally:
        relay.kill()
        relay.communicate()
    assert path.is_socket()  # a killed relay leaves its socket: the next one replaces it
    relay = start_relay(argv)
    relay.terminate()
    relay.communicate()
    backend.close()


def container_door(tmp_path: Path, relay_seconds: float, ready_after: float = 0.0) -> subprocess.Popen[str]:
    """The container runtime's door with a relay that says ready (after ``ready_after`` s) and lives
    ``relay_seconds``, and a sleeper for server."""
    relay = f"import time; time.sleep({ready_after}); print('ready', flush=True); time.sleep({relay_seconds})"
    argv = door.command(door.CONTAINER_MODE, "--directory", str(tmp_path))
    argv += ["--route", f"http@127.0.0.1:{free_port()}=unix:{runtime.HTTP_SOCKET}"]
    argv += ["--relay-command", json.dumps([sys.executable, "-c", relay]), "--", "sleep", "600"]
    return subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)


def test_the_door_stops_the_server_when_its_relay_ends_and_both_when_it_is_stopped(tmp_path: Path) -> None:
    """A server nobody can reach is not left running; a stopped door leaves neither child behind."""
    ended = container_door(tmp_path, 0.5)
    _, said = ended.communicate(timeout=30)
    assert "the relay ended (exit code 0)" in said
    assert ended.returncode == -signal.SIGTERM  # the server's exit, as the door's own: stopped by SIGTERM
    stopped = container_door(tmp_path, 600)
    assert wait_until(lambda: len(children(stopped.pid)) == 2)
    started = children(stopped.pid)
    stopped.terminate()
    stopped.communicate(timeout=30)
    assert [pid for pid in started if processes.is_running(pid)] == []


@pytest.mark.parametrize("after", [0.0, 0.1, 0.3, 0.6])
def test_a_door_stopped_while_it_starts_leaves_no_child(tmp_path: Path, after: float) -> None:
    """SIGTERM at any moment of the start (before, while and after the relay and the server start)."""
    starting = container_door(tmp_path, 600, ready_after=0.4)
    seen: set[int] = set()
    deadline = time.monotonic() + after
    while time.monotonic() < deadline:
        seen.update(children(starting.pid))
        time.sleep(0.005)
    starting.terminate()
    starting.communicate(timeout=30)  # a child left alive would hold the door's stderr open
    assert [pid for pid in seen if processes.is_running(pid)] == []


def children(pid: int) -> list[int]:
    try:
        return [int(word) for word in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.fixture
def pilot_home() -> Iterator[Path]:
    path = user_directory(PILOT_UID, 0o755)
    yield path
    shutil.rmtree(path)


def host_listeners() -> dict[int, int]:
    """Socket inode -> port of every listening TCP socket of this (the host's) network namespace."""
    found = {}
    for table in door.SOCKET_TABLES:
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A":  # LISTEN
                found[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return found


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            target = str(descriptor.readlink())
            if target.startswith("socket:["):
                inodes.add(int(target[len("socket:[") : -1]))
    except OSError:
        pass
    return inodes


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def as_pilot(glidein: SimulatedGlidein, script: Path, environment: dict[str, str]) -> str:
    """A script of the glidein as GlideinWMS runs it, as the pilot (umask 000, as seen); its output (it must
    succeed)."""
    argv = [str(script), "glidein_config", "main"]
    result = run_as(PILOT_UID, argv, cwd=glidein.root, env=environment, umask=0)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@needs_root
@pytest.mark.server
@pytest.mark.parametrize("metrics", [False, True], ids=["metrics off", "metrics on"])
def test_only_the_door_listens_and_only_the_glideins_uid_gets_in(pilot_home: Path, metrics: bool) -> None:
    settings = {"GLIDEIN_TRITON_REQUIRED": "True", "GLIDEIN_TRITON_METRICS": str(metrics)}
    prepared = demo.prepare(pilot_home / "glidein", "apptainer", settings)
    for root, directories, names in os.walk(pilot_home):
        for name in [*directories, *names]:
            os.chown(Path(root) / name, PILOT_UID, PILOT_UID, follow_symlinks=False)
    glidein, environment = prepared.glidein, {**prepared.environment, "HOME": "/nonexistent"}
    as_pilot(glidein, glidein.startup_script, environment)
    recorded = json.loads((glidein_paths.state_file(glidein.root)).read_text())  # the pilot's file
    state = ServerState(**{name: recorded[name] for name in ServerState.__dataclass_fields__})
    members: list[int] = []
    door_dir = glidein_paths.plugin_dir(glidein.root) / runtime.DOOR_DIR_NAME
    try:
        attributes, job_environment = glidein.published()
        assert attributes["HasTriton"] == "True"
        members = processes.group_members(state.pgid)
        servers = [pid for pid in members if command_name(pid).endswith("tritonserver")]
        assert servers, f"no tritonserver among {[command_name(pid) for pid in members]}"
        # On the host, the door's listeners are the only ones of the server's processes: the server's HTTP
        # and metrics listen in the instance's network namespace, its gRPC on a Unix socket.
        listening = host_listeners()
        held = {
            (pid, listening[inode]) for pid in members for inode in socket_inodes(pid) if inode in listening
        }
        routes = [state.argv[index + 1] for index, word in enumerate(state.argv) if word == "--route"]
        ports = {int(route.split("=")[0].rsplit(":", 1)[1]) for route in routes}
        assert (
            {state.http_port, state.grpc_port}
            <= ports
            <= {state.http_port, state.grpc_port, state.metrics_port}
        )
        assert held == {(state.pid, port) for port in ports}
        assert Path(f"/proc/{servers[0]}/ns/net").readlink() != Path("/proc/self/ns/net").readlink()
        sockets = {runtime.HTTP_SOCKET, f"{runtime.GRPC_SOCKET}:{state.grpc_port}"}
        if state.metrics_port in ports:
            sockets.add(runtime.METRICS_SOCKET)
        assert {path.name for path in door_dir.iterdir()} == sockets
        assert [oct(path.stat().st_mode) for path in door_dir.iterdir() if path.stat().st_mode & 0o077] == []
        assert stat.S_IMODE(door_dir.stat().st_mode) == 0o700
        # Another local user gets nothing: not even health, on any port, nor through the sockets.
        for port in ports:
            other = run_as(OTHER_UID, [sys.executable, "-c", KNOCK, str(port)])
            assert other.stdout.strip() in ("ConnectionResetError", "b''"), other
        assert (state.metrics_port in ports) is metrics
        if metrics:  # the glidein's uid reaches the metrics, through the relay's metrics socket
            scraped = run_as(PILOT_UID, [sys.executable, "-c", KNOCK, str(state.metrics_port)])
            assert scraped.stdout.startswith("b'HTTP/1.1 "), scraped
        admin = str(door_dir / runtime.HTTP_SOCKET)
        plugin_headers = "{}"
        ready = [sys.executable, "-c", UNIX_REQUEST, admin, "GET", "/v2/health/ready", plugin_headers]
        refused = run_as(OTHER_UID, ready)
        assert refused.stdout.strip() == "PermissionError", refused
        # The glidein's jobs (its uid) get inference, over HTTP and gRPC, with unmodified tritonclient.
        job = run_as(PILOT_UID, [sys.executable, "-c", JOB, json.dumps(job_environment)], timeout=120)
        assert job.returncode == 0, job.stderr
        assert "gRPC 127.0.0.1" in job.stdout, job.stdout
        assert "HTTP 127.0.0.1" in job.stdout, job.stdout
        # The plugin's own route, its socket: readiness and a model load.
        for method, path in (("GET", "/v2/health/ready"), ("POST", "/v2/repository/models/simple/load")):
            request = [sys.executable, "-c", UNIX_REQUEST, admin, method, path, plugin_headers]
            answer = run_as(PILOT_UID, request)
            assert answer.stdout.strip() == "HTTP/1.1 200 OK", answer
        periodic = as_pilot(
            glidein,
            glidein.main_dir / "glidein_triton_periodic.sh",
            {**environment, "GLIDEIN_PERIODIC_SCRIPT": "true"},
        )
        assert "TritonReady = True" in periodic
    finally:
        run_as(
            PILOT_UID,
            [str(glidein.root / ".gwms.d/exec/cleanup/00_glidein_triton_cleanup.sh"), "glidein_config"],
            cwd=glidein.root,
            env=environment,
        )
    assert not door_dir.exists()  # nor its sockets
    left = [pid for pid in [state.pid, *members] if processes.is_running(pid)]
    assert left == [], [command_name(pid) for pid in left]
    # Nor the instance's own process, the relay or the agent (which ends within a second or two).
    assert wait_until(lambda: not glidein_processes(pilot_home)), glidein_processes(pilot_home)


def glidein_processes(home: Path) -> list[str]:
    """The command lines of the running processes that name a path under ``home``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and processes.is_running(int(entry.name)):
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(home) in line:
                found.append(line)
    return found


#: An unloading request to 127.0.0.1:PORT over HTTP (as any local user could send): the status line, or
#: the error's name.
UNLOAD = KNOCK.replace("GET /v2/health/ready", "POST /v2/repository/models/simple/unload").replace(
    "Host: x\\r\\n", "Host: x\\r\\nContent-Length: 0\\r\\n"
)


@needs_root
@pytest.mark.server
def test_in_remote_mode_another_user_gets_nothing_on_the_loopback_ports(pilot_home: Path) -> None:
    """Remote mode in the container runtime (gRPC on the node's address, mutual TLS): HTTP still listens on
    the host's loopback; another local user must not reach it (an unload, a load with a ``file:``
    override: code run as the pilot)."""
    address = "127.0.0.2"  # a second loopback address stands in for the node's address
    cert, key = make_certificate(pilot_home, address)
    settings = {
        "GLIDEIN_TRITON_REQUIRED": "True",
        "GLIDEIN_TRITON_REMOTE": "True",
        "GLIDEIN_TRITON_ADDRESS": address,
        "GLIDEIN_TRITON_TLS_CERT": str(cert),
        "GLIDEIN_TRITON_TLS_KEY": str(key),
        "GLIDEIN_TRITON_TLS_ROOT_CERT": str(cert),
    }
    prepared = demo.prepare(pilot_home / "glidein", "apptainer", settings)
    for root, directories, names in os.walk(pilot_home):
        for name in [*directories, *names]:
            os.chown(Path(root) / name, PILOT_UID, PILOT_UID, follow_symlinks=False)
    glidein, environment = prepared.glidein, {**prepared.environment, "HOME": "/nonexistent"}
    as_pilot(glidein, glidein.startup_script, environment)
    recorded = json.loads(glidein_paths.state_file(glidein.root).read_text())
    try:
        other = run_as(OTHER_UID, [sys.executable, "-c", UNLOAD, str(recorded["http_port"])])
        assert other.stdout.strip() in ("ConnectionResetError", "b''"), other
        # A job on another node, with a certificate the root signed, infers through the door's remote route
        # to the server's gRPC socket (TLS end to end); without one it gets nothing.
        url = f"{address}:{recorded['grpc_port']}"
        mutual = grpcclient.InferenceServerClient(
            url, ssl=True, root_certificates=str(cert), private_key=str(key), certificate_chain=str(cert)
        )
        assert mutual.is_server_ready()
        assert mutual.get_model_metadata("simple").name == "simple"
        mutual.close()
        outsider = grpcclient.InferenceServerClient(url, ssl=True, root_certificates=str(cert))
        with pytest.raises(InferenceServerException):
            outsider.is_server_ready(client_timeout=10)
        outsider.close()
        # The glidein's jobs get HTTP on loopback (its uid, through the filter).
        job = run_as(PILOT_UID, [sys.executable, "-c", KNOCK, str(recorded["http_port"])])
        assert job.stdout.startswith("b'HTTP/1.1 200 OK"), job
    finally:
        run_as(
            PILOT_UID,
            [str(glidein.root / ".gwms.d/exec/cleanup/00_glidein_triton_cleanup.sh"), "glidein_config"],
            cwd=glidein.root,
            env=environment,
        )
