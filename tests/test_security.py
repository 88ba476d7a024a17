"""Security on the real server: loopback only, private files, mutual TLS in remote mode, bounded cost.

Access goes through the front door (glidein_triton.worker.door): its attack tests are the door's own."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import re
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from glidein_triton.local import demo
from glidein_triton.worker import access, glidein_paths, processes
from glidein_triton.worker.errors import ConfigError
from glidein_triton.worker.settings import Settings
from glidein_triton.worker.triton_api import Server

from . import raw_h2
from .support import (
    assert_nothing_left,
    data_limit,
    make_certificate,
    peak_memory_kib,
    recorded_state,
)


def decode_address(hex_address: str) -> str:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host byte order), as text."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return str(ipaddress.IPv4Address(words))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped or address)


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on ``port`` (IPv4-mapped IPv6 shown as IPv4)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:
                found.add(decode_address(address))
    return found


def simple_inputs(module: object) -> list[object]:
    data = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]  # type: ignore[attr-defined]
    for tensor in inputs:
        tensor.set_data_from_numpy(data)
    return inputs


def test_settings_across_keys() -> None:
    with pytest.raises(ConfigError, match="REMOTE=True requires mutual TLS: set GLIDEIN_TRITON_TLS_CERT"):
        Settings.from_config({"GLIDEIN_TRITON_REMOTE": "True"})
    with pytest.raises(ConfigError, match="must be set together"):
        Settings.from_config({"GLIDEIN_TRITON_TLS_CERT": "/c.pem"})
    with pytest.raises(ConfigError, match="not an IPv4 address"):
        Settings.from_config({"GLIDEIN_TRITON_ADDRESS": "node.example.org"})


def test_node_address_is_not_loopback() -> None:
    with pytest.raises(access.NoAddressError, match="GLIDEIN_TRITON_ADDRESS"):
        access.node_address("localhost")


@pytest.mark.server
def test_loopback_private_files_and_unmodified_clients(served_glidein: demo.DemoGlidein) -> None:
    glidein, environment = served_glidein.glidein, served_glidein.environment
    result = glidein.run_startup(environment)
    assert result.returncode == 0, result.stderr
    attributes, job_environment = glidein.published()
    assert stat.S_IMODE((glidein_paths.state_file(glidein.root)).stat().st_mode) == 0o600
    # No token of any kind: not in the ad, the job environment, the plugin's directory or the server's argv.
    assert "TritonAuth" not in attributes
    assert "TRITON_TOKEN_FILE" not in job_environment
    assert not {"token", "admin_token"} & {
        path.name for path in glidein_paths.plugin_dir(glidein.root).iterdir()
    }

    state = recorded_state(glidein)
    assert state is not None
    assert not [word for word in state.argv if word.startswith(("--http-restricted", "--grpc-restricted"))]
    for port in (state.http_port, state.grpc_port):
        assert listening_addresses(port) == {"127.0.0.1"}, f"port {port} listens beyond 127.0.0.1"
    # Metrics are off unless the operator asks: nothing listens, no URL is published.
    assert state.metrics_port == 0
    assert "TritonMetricsURL" not in attributes
    assert "--allow-metrics=false" in state.argv
    # Files other local users must not read: the server log, the python backend's shared memory.
    assert stat.S_IMODE(Path(state.log_path).stat().st_mode) == 0o600
    regions = [Path(path) for path in state.shared_memory]
    assert regions, "the python model should have a shared-memory region"
    assert {stat.S_IMODE(region.stat().st_mode) for region in regions} == {0o600}

    # The glidein's jobs get in with unmodified clients: no header, no credential.
    http = httpclient.InferenceServerClient(job_environment["TRITON_HTTP_URL"])
    grpc = grpcclient.InferenceServerClient(job_environment["TRITON_GRPC_URL"])
    assert http.is_server_ready()
    assert http.infer("simple", simple_inputs(httpclient)).as_numpy("OUTPUT0")[0][3] == 6
    assert grpc.infer("simple", simple_inputs(grpcclient)).as_numpy("OUTPUT1").sum() == 0
    assert grpc.get_server_metadata().version
    http.close()
    grpc.close()
    glidein.run_cleanup(environment)
    assert_nothing_left(glidein, state)


@pytest.mark.server
def test_a_failure_report_carries_the_command_line_with_no_secret(tmp_path: Path) -> None:
    prepared = demo.prepare(
        tmp_path / "glidein",
        settings={"GLIDEIN_TRITON_MODELS": "absent_model", "GLIDEIN_TRITON_REQUIRED": "True"},
    )
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.returncode == 1
    assert "--load-model=absent_model" in result.detail
    assert "restricted" not in result.detail
    assert "token" not in result.detail


@pytest.mark.server
def test_remote_mode_with_tls(tmp_path: Path) -> None:
    address = "127.0.0.2"  # a second loopback address stands in for the node's address
    cert, key = make_certificate(tmp_path, address)
    # Self-signed: the server's certificate is also the root that signs the clients' (a job presents it).
    prepared = demo.prepare(
        tmp_path / "glidein",
        settings={
            "GLIDEIN_TRITON_REMOTE": "True",
            "GLIDEIN_TRITON_ADDRESS": address,
            "GLIDEIN_TRITON_TLS_CERT": str(cert),
            "GLIDEIN_TRITON_TLS_KEY": str(key),
            "GLIDEIN_TRITON_TLS_ROOT_CERT": str(cert),
        },
    )
    glidein = prepared.glidein
    result = glidein.run_startup(prepared.environment)
    assert result.returncode == 0, result.stderr
    state = recorded_state(glidein)
    assert state is not None
    attributes, _ = glidein.published()
    assert attributes["TritonGRPCURL"] == f'"{address}:{state.grpc_port}"'
    assert attributes["TritonRemote"] == "True"
    assert attributes["TritonGRPCTLS"] == "True"
    assert listening_addresses(state.grpc_port) == {"127.0.0.2"}
    assert listening_addresses(state.http_port) == {"127.0.0.1"}
    url = f"{address}:{state.grpc_port}"
    mutual = grpcclient.InferenceServerClient(
        url, ssl=True, root_certificates=str(cert), private_key=str(key), certificate_chain=str(cert)
    )
    assert mutual.is_server_ready()
    assert mutual.infer("simple", simple_inputs(grpcclient)).as_numpy("OUTPUT0") is not None
    # A job on another node (its certificate signed) may not do what local jobs may not: the categories are
    # closed by a key no client can send (gRPC sends lower-case names only; Triton compares them as given).
    header = f"triton-grpc-protocol-{access.UNSENDABLE_KEY}"  # the name Triton expects
    unsendable = {header.lower(): "1"}
    for forbidden in (
        lambda: mutual.load_model("simple", config='{"backend": "python"}', headers=unsendable),
        lambda: mutual.unload_model("simple"),
        lambda: mutual.register_system_shared_memory("x", "/x", 64),
        lambda: mutual.update_log_settings({"log_verbose_level": 1}),
        lambda: mutual.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]}),
    ):
        with pytest.raises(InferenceServerException, match=f"restricted, expecting header '{header}'"):
            forbidden()
    assert mutual.is_model_ready("simple")
    mutual.close()
    # Nor can a client that writes HTTP/2 itself send the name as Triton spells it: upper case is malformed
    # HTTP/2, and the server's gRPC ends such a call before Triton sees it.
    service = "/inference.GRPCInferenceService/"
    unload = b"\x12\x06simple"  # RepositoryModelUnloadRequest { model_name: "simple" }
    answers = {}
    for name, path, message in (
        (b"x-control", service + "ServerReady", b""),  # the raw client is a working gRPC client
        (header.lower().encode(), service + "RepositoryModelUnload", unload),
        (header.encode(), service + "RepositoryModelUnload", unload),
    ):
        with contextlib.closing(raw_h2.tls_connection(address, state.grpc_port, cert, key, cert)) as raw:
            answers[name] = raw_h2.call(raw, url, path, message, [(name, b"1")])
    assert answers[b"x-control"].grpc_status == "0", answers
    assert answers[header.lower().encode()].grpc_status == "14", answers  # UNAVAILABLE: restricted
    assert "restricted" in answers[header.lower().encode()].fields.get("grpc-message", "")
    upper = answers[header.encode()]
    assert upper.grpc_status not in ("", "0") or upper.reset is not None or upper.goaway is not None, upper
    assert Server(state.http_port, unix_socket=state.plugin_socket).is_model_ready("simple")
    # Anyone who reaches the node's address without a certificate the root signed gets nothing.
    for outsider in (
        grpcclient.InferenceServerClient(url, ssl=True, root_certificates=str(cert)),
        grpcclient.InferenceServerClient(url),
    ):
        with pytest.raises(InferenceServerException):
            outsider.is_server_ready(client_timeout=10)
        outsider.close()
    glidein.run_cleanup(prepared.environment)
    assert_nothing_left(glidein, state)


#: A python model that leaves a daemon behind: double fork, setsid, cwd /, a command line naming nothing of
#: the glidein (so only the process tag can find it); it writes the daemon's pid next to itself.
DAEMON_MODEL = """
import os, sys

class TritonPythonModel:
    def initialize(self, args):
        pid_file = os.path.join(args["model_repository"], "daemon.pid")
        child = os.fork()
        if child == 0:
            os.setsid()
            if os.fork() == 0:
                os.chdir("/")
                with open(pid_file, "w") as stream:
                    stream.write(str(os.getpid()))
                os.execv("/bin/sleep", ["sleep", "600"])
            os._exit(0)
        os.waitpid(child, 0)

    def execute(self, requests):
        return []
"""


@pytest.mark.server
def test_a_daemon_that_left_the_server_process_group_is_stopped_at_cleanup(tmp_path: Path) -> None:
    prepared = demo.prepare(tmp_path / "glidein", settings={"GLIDEIN_TRITON_MODELS": "simple,daemon"})
    model = tmp_path / "glidein" / "model_repository" / "daemon"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: 0\n')
    (model / "1" / "model.py").write_text(DAEMON_MODEL)
    glidein = prepared.glidein
    result = glidein.run_startup(prepared.environment)
    daemon = 0
    try:
        assert result.returncode == 0, result.stderr
        assert glidein.published()[0]["HasTriton"] == "True", result.stderr
        daemon = int((model / "daemon.pid").read_text())
        state = recorded_state(glidein)
        assert state is not None
        assert processes.is_running(daemon)
        assert daemon not in processes.group_members(state.pgid)  # out of the server's process group
        assert daemon in processes.tagged(state.process_tag)
        cleanups = glidein.run_cleanup(prepared.environment)
        deadline = time.monotonic() + 5
        while processes.is_running(daemon) and time.monotonic() < deadline:
            time.sleep(0.05)
        logs = "".join(result.stderr for result in cleanups)
        assert not processes.is_running(daemon), f"cleanup left the model's daemon running: {logs}"
        assert_nothing_left(glidein, state)
    finally:
        if daemon and processes.is_running(daemon):
            os.kill(daemon, signal.SIGKILL)


#: The server's data limit in the tests below (MiB): above its own 469 MiB on 2 cores, below the request.
TEST_MEMORY_LIMIT = 640
#: A request body of 1 GiB: Triton reads a request whole before it looks at it.
OVERSIZED_BODY = 1 << 30


def limited_glidein(root: Path) -> demo.DemoGlidein:
    """The demo glidein, started, with its server's data limited to TEST_MEMORY_LIMIT."""
    prepared = demo.prepare(root, settings={"GLIDEIN_TRITON_SERVER_MEMORY_LIMIT": str(TEST_MEMORY_LIMIT)})
    result = prepared.glidein.run_startup(prepared.environment)
    assert result.returncode == 0, result.stderr
    return prepared


def post_infer(port: int, body: bytes) -> int:
    """The status of an inference request (OSError when the server cuts it off)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/v2/models/simple/infer", body=body)
        return connection.getresponse().status
    finally:
        connection.close()


@contextlib.contextmanager
def watched_peaks(pid: int) -> Iterator[list[int]]:
    """The peak resident memory (KiB) of ``pid``, sampled until the block ends or the process does."""
    peaks: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and (peak := peak_memory_kib(pid)) is not None:
            peaks.append(peak)
            done.wait(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield peaks
    finally:
        done.set()
        watcher.join(30)


@pytest.mark.server
def test_an_unauthenticated_http_request_over_the_memory_limit_is_cut_off(tmp_path: Path) -> None:
    """Under the limit the request gets no answer. Which allocation is refused first depends on timing: the
    read buffer's (the connection is reset and the server stays up), or only the body's: the parser still
    reaches the request's end, and the error answer it then writes fails to allocate and ends the server (SIGSEGV in
    EVBufferAddErrorJson, or SIGABRT on a std::bad_alloc). Either way memory stays bounded and jobs are served again, after at most one
    periodic run."""
    prepared = limited_glidein(tmp_path / "glidein")
    glidein = prepared.glidein
    state = recorded_state(glidein)
    served = state
    try:
        assert state is not None
        assert data_limit(state.pid) == str(TEST_MEMORY_LIMIT << 20)
        # No answer at all, not even an error answer (http.client's RemoteDisconnected is a ConnectionResetError).
        with watched_peaks(state.pid) as peaks, pytest.raises((ConnectionResetError, BrokenPipeError)):
            post_infer(state.http_port, bytes(OVERSIZED_BODY))
        assert peaks
        assert max(peaks) < TEST_MEMORY_LIMIT << 10
        if processes.is_running(state.pid, state.start_ticks):
            assert Server(state.http_port).is_ready()
        else:
            # SIGSEGV in the error answer, or SIGABRT on a std::bad_alloc elsewhere in the server
            assert re.search(r"Signal \((11|6)\) received", Path(state.log_path).read_text())
            (run,) = glidein.run_cron(prepared.environment)
            assert run.attributes["TritonReady"] == "True", run.stderr
            served = recorded_state(glidein)
            assert served is not None
        # Jobs are served on as before.
        client = httpclient.InferenceServerClient(f"127.0.0.1:{served.http_port}")
        answer = client.infer("simple", simple_inputs(httpclient))
        assert answer.as_numpy("OUTPUT0")[0][3] == 6
        client.close()
    finally:
        glidein.run_cleanup(prepared.environment)
    assert_nothing_left(glidein, served)


@pytest.mark.server
def test_an_unauthenticated_grpc_request_over_the_memory_limit_costs_one_restart(tmp_path: Path) -> None:
    """gRPC does not survive the refused allocation: the server ends, bounded, and the periodic script's
    next run starts it again and reports it; the glidein and its agent live on."""
    prepared = limited_glidein(tmp_path / "glidein")
    glidein = prepared.glidein
    state = recorded_state(glidein)
    restarted = None
    try:
        assert state is not None
        peaks: list[int] = []

        def watch() -> None:
            while (peak := peak_memory_kib(state.pid)) is not None:
                peaks.append(peak)
                time.sleep(0.005)

        watcher = threading.Thread(target=watch)
        watcher.start()
        channel = grpc.insecure_channel(
            f"127.0.0.1:{state.grpc_port}", options=[("grpc.max_send_message_length", -1)]
        )
        request = service_pb2.ModelInferRequest(
            model_name="simple", raw_input_contents=[bytes(OVERSIZED_BODY)]
        )
        with pytest.raises(grpc.RpcError):
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        channel.close()
        watcher.join(30)
        assert not processes.is_running(state.pid, state.start_ticks), "the server survived the request"
        assert peaks
        assert max(peaks) < TEST_MEMORY_LIMIT << 10
        started = time.monotonic()
        (run,) = glidein.run_cron(prepared.environment)
        assert time.monotonic() - started < 30
        assert run.attributes["TritonReady"] == "True", run.stderr
        assert run.attributes["TritonRestarts"] == "1"
        assert "restart 1 of" in (glidein.root / "exit_message").read_text()
        restarted = recorded_state(glidein)
        assert restarted is not None
        assert restarted.pid != state.pid
        assert Server(restarted.http_port).is_ready()
        assert data_limit(restarted.pid) == str(TEST_MEMORY_LIMIT << 20)  # limited again
        assert processes.is_running(restarted.agent_pid, restarted.agent_ticks)
    finally:
        glidein.run_cleanup(prepared.environment)
    assert_nothing_left(glidein, restarted or state)
