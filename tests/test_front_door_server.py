"""The front door on the real server, as deployed: the glidein as an unprivileged pool account
(PILOT_UID), another local user (OTHER_UID) beside it, jobs with unmodified Triton clients (issue 22)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.worker import door, glidein_paths, processes
from glidein_triton.worker.state import PLUGIN_SOCKET_NAME, ServerState

from .support import (
    AS_ROOT,
    OTHER_UID,
    PILOT_UID,
    REPO,
    as_user,
    pilot_demo,
    run_as,
    run_script_as_pilot,
    stop_as_pilot,
    user_directory,
)

pytestmark = [pytest.mark.server, pytest.mark.skipif(not AS_ROOT, reason="switches users")]
DOOR_JOB = Path(__file__).with_name("door_job.py")
MODEL = "simple"
ALLOWED = ("ready", "metadata", "config", "index", "statistics", "infer", "infer after")
REFUSED = ("load", "unload", "shared-memory", "logging", "trace")
HEALTH_CLIENT = (
    "import sys, tritonclient.grpc as g, tritonclient.http as h\n"
    "for name, make in (('grpc', lambda: g.InferenceServerClient(sys.argv[1])),"
    " ('http', lambda: h.InferenceServerClient(sys.argv[2]))):\n"
    "    try: print(name, 'answered', make().is_server_live())\n"
    "    except Exception as e: print(name, 'refused', type(e).__name__)\n"
)


@pytest.fixture(scope="module")
def pilot_glidein() -> Iterator[tuple[SimulatedGlidein, dict[str, str], ServerState]]:
    """The demo glidein started by the pilot account (real server, agent), stopped at the end."""
    home = user_directory(PILOT_UID, 0o755)
    glidein, environment = pilot_demo(home)
    started = run_script_as_pilot(glidein, glidein.startup_script, environment)
    try:
        assert started.returncode == 0, started.stderr
        assert "ready" in started.stderr, started.stderr
        recorded = json.loads((glidein_paths.state_file(glidein.root)).read_text())
        fields = ServerState.__dataclass_fields__
        yield glidein, environment, ServerState(**{k: v for k, v in recorded.items() if k in fields})
    finally:
        stop_as_pilot(glidein, environment)
        shutil.rmtree(home)


def urls(state: ServerState) -> tuple[str, str]:
    return f"127.0.0.1:{state.grpc_port}", f"127.0.0.1:{state.http_port}"


def test_no_secret_in_any_command_line_and_only_the_door_listens_on_the_host(
    pilot_glidein: tuple[SimulatedGlidein, dict[str, str], ServerState],
) -> None:
    """Every process of the server's group: no restriction key in its argv (nothing to read from /proc),
    and the host's socket tables show listeners of the door alone; tritonserver's are in its namespace."""
    _, _, state = pilot_glidein
    members = processes.group_members(state.pgid)
    command_lines = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in members]
    assert any(b"tritonserver" in line for line in command_lines)
    for line in command_lines:
        assert b"restricted" not in line, line
        assert b"token" not in line, line
    listening = {inode for table in door.SOCKET_TABLES for inode in listening_inodes(table)}
    owners = {pid: socket_inodes(pid) & listening for pid in members}
    door_pid = state.pid
    assert owners.pop(door_pid), "the door listens on the host"
    assert not any(owners.values()), f"host listeners of other processes of the server: {owners}"


def listening_inodes(table: str) -> set[str]:
    rows = Path(table).read_text().splitlines()[1:]
    return {row.split()[9] for row in rows if row.split()[3] == "0A"}  # state LISTEN


def socket_inodes(pid: int) -> set[str]:
    found = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        target = str(descriptor.readlink())
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def test_another_user_gets_nothing(
    pilot_glidein: tuple[SimulatedGlidein, dict[str, str], ServerState],
) -> None:
    """Not even health on the job routes; the plugin's socket is out of its reach."""
    _, _, state = pilot_glidein
    result = run_as(OTHER_UID, [sys.executable, "-c", HEALTH_CLIENT, *urls(state)], cwd="/")
    lines = result.stdout.split("\n")
    assert [line.split()[:2] for line in lines[:2]] == [["grpc", "refused"], ["http", "refused"]], result
    assert state.plugin_socket == str(Path(state.log_path).parent / PLUGIN_SOCKET_NAME)
    probe = (
        "import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
        "try: s.connect(sys.argv[1]); print('connected')\nexcept OSError as e: print(type(e).__name__)"
    )
    reached = run_as(OTHER_UID, [sys.executable, "-c", probe, state.plugin_socket], cwd="/")
    assert reached.stdout.strip() == "PermissionError", reached


def test_unmodified_clients_of_the_glideins_jobs_get_in_and_load_nothing(
    pilot_glidein: tuple[SimulatedGlidein, dict[str, str], ServerState],
) -> None:
    """tritonclient gRPC and HTTP, no header: inference, metadata, configuration, statistics and the
    index work; a load with a ``file:`` override (a python model uploaded), an unload, shared memory,
    logging and trace settings are refused, and the server's models stay as they were."""
    _, _, state = pilot_glidein
    result = run_as(PILOT_UID, [sys.executable, str(DOOR_JOB), *urls(state), MODEL], cwd="/", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for protocol in ("grpc", "http"):
        outcomes = report[protocol]
        assert all(outcomes[call] == "ok" for call in ALLOWED), (protocol, outcomes)
        for call in REFUSED:
            assert "not allowed for jobs" in outcomes[call], (protocol, call, outcomes[call])
    index = (  # through the plugin's socket, as the pilot (root is another user to the door)
        "import json, sys; from glidein_triton.worker.triton_api import Server; "
        "print(json.dumps(Server(0, unix_socket=sys.argv[1]).index()))"
    )
    listed = run_as(PILOT_UID, [sys.executable, "-c", index, state.plugin_socket], cwd=str(REPO))
    assert listed.returncode == 0, listed.stderr
    names = {entry.get("name"): entry.get("state") for entry in json.loads(listed.stdout)}
    assert "planted" not in names, names
    assert names.get(MODEL) == "READY", names
    assert not Path("/tmp/planted-by-a-job").exists()


def test_idle_connections_do_not_shut_the_jobs_out(
    pilot_glidein: tuple[SimulatedGlidein, dict[str, str], ServerState],
) -> None:
    """1100 idle connections (over the server's own descriptor limit of 1024) cost the door, not the
    server: a job still gets inference while they are open."""
    _, _, state = pilot_glidein
    idle = [socket.create_connection(("127.0.0.1", state.grpc_port)) for _ in range(1100)]
    try:
        result = run_as(PILOT_UID, [sys.executable, str(DOOR_JOB), *urls(state), MODEL], cwd="/", timeout=120)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["grpc"]["infer"] == "ok"
    finally:
        for connection in idle:
            connection.close()


#: How GlideinWMS runs a job in a container (singularity_lib.sh: ``--contain --ipc --pid``; unprivileged
#: Apptainer: a user namespace), with no container image: the job's own process, IPC and mount namespaces
#: and a /proc of its own, on the host's loopback network.
CONTAINER = ["unshare", "--user", "--map-current-user", "--pid", "--ipc", "--fork", "--mount-proc"]
#: A containerized job: what it sees of /proc, curl's health and metadata (the DiCOS test scripts), then
#: the unmodified Triton clients of door_job.py. Run as ``python -c CONTAINED_JOB DOOR_JOB GRPC HTTP MODEL``.
CONTAINED_JOB = (
    "import json, os, runpy, subprocess, sys\n"
    "seen = [open(f'/proc/{p}/cmdline', 'rb').read() for p in os.listdir('/proc') if p.isdigit()]\n"
    "codes = [subprocess.run(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', f'http://{sys.argv[3]}{path}'],"
    " capture_output=True, text=True, timeout=30).stdout for path in ('/v2/health/ready', '/v2/models/' + sys.argv[4])]\n"
    "print(json.dumps({'processes': [line.split(b'\\0')[0].decode() for line in seen], 'curl': codes}))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_a_job_in_a_container_gets_in_and_sees_no_server(
    pilot_glidein: tuple[SimulatedGlidein, dict[str, str], ServerState],
) -> None:
    """A job of the glidein in a container (its own PID namespace: it sees neither the server nor the
    door) reaches the door on the loopback ports: curl's health and metadata, the unmodified clients'
    calls; what jobs may not do is refused. Another uid in the same kind of container gets nothing."""
    _, _, state = pilot_glidein
    job = [*CONTAINER, sys.executable, "-c", CONTAINED_JOB, str(DOOR_JOB), *urls(state), MODEL]
    result = run_as(PILOT_UID, job, cwd="/", timeout=120)
    assert result.returncode == 0, result.stderr
    seen, report = map(json.loads, result.stdout.strip().split("\n"))
    assert seen["processes"] == [sys.executable], seen  # itself alone
    assert seen["curl"] == ["200", "200"], seen
    for protocol in ("grpc", "http"):
        outcomes = report[protocol]
        assert all(outcomes[call] == "ok" for call in ALLOWED), (protocol, outcomes)
        for call in REFUSED:
            assert "not allowed for jobs" in outcomes[call], (protocol, call, outcomes[call])
    other = run_as(OTHER_UID, [*CONTAINER, sys.executable, "-c", HEALTH_CLIENT, *urls(state)], cwd="/")
    assert [line.split()[:2] for line in other.stdout.split("\n")[:2]] == [
        ["grpc", "refused"],
        ["http", "refused"],
    ], other


#: A job that opens ``COUNT`` connections to ``PORT`` and never speaks; on a line on its stdin it prints how
#: many of them the door has closed. Run as ``python -c HOLDER PORT COUNT``.
HOLDER = (
    "import resource, socket, sys\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)\n"
    "held = [socket.create_connection(('127.0.0.1', int(sys.argv[1]))) for _ in range(int(sys.argv[2]))]\n"
    "print('holding', flush=True)\n"
    "sys.stdin.readline()\n"
    "def closed(c):\n"
    "    try: return c.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b''\n"
    "    except BlockingIOError: return False\n"
    "    except OSError: return True\n"
    "print(sum(map(closed, held)), flush=True)\n"
)


def test_a_jobs_idle_connections_stay_at_the_door_and_are_closed(
    pilot_glidein: tuple[SimulatedGlidein, dict[str, str], ServerState],
) -> None:
    """1100 idle connections of the glidein's own uid (a job's: admitted) are held by the door, never
    forwarded: another job still gets inference, the server's log does not grow, and after the door's
    first-bytes timeout every one of them is closed."""
    _, _, state = pilot_glidein
    log_size = Path(state.log_path).stat().st_size
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state.grpc_port), "1100"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
        **as_user(PILOT_UID),  # type: ignore[call-overload]
    )
    try:
        assert holder.stdin is not None
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        opened = time.monotonic()
        result = run_as(PILOT_UID, [sys.executable, str(DOOR_JOB), *urls(state), MODEL], cwd="/", timeout=120)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["grpc"]["infer"] == "ok"
        assert Path(state.log_path).stat().st_size - log_size < 4096
        time.sleep(max(0.0, opened + door.DEFAULT_FIRST_BYTES_TIMEOUT + 2 - time.monotonic()))
        holder.stdin.write("check\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "1100"
    finally:
        holder.kill()
        holder.communicate()
