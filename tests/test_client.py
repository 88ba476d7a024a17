"""glidein_triton.job.client without a server: where it looks, what it says and sends, fallback, light import."""

from __future__ import annotations

import http.server
import importlib
import logging
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import pytest

from glidein_triton.job import client
from glidein_triton.job.client import (
    Endpoint,
    ServerNotFoundError,
    ServerNotReadyError,
    connect,
    find_endpoint,
    parse_ad,
)
from glidein_triton.worker.ports import free_port

from .support import PYTHON39

MACHINE_AD = """\
Name = "slot1@glidein_1234@wn01.example.org"
HasTriton = true
TritonGRPCURL = "127.0.0.1:40001"
TritonHTTPURL = "127.0.0.1:40000"
TritonGPUs = 1
TritonFailure = "a \\"quoted\\" word"
this line is not an attribute
"""


def write_ad(tmp_path: Path, text: str = MACHINE_AD) -> Path:
    path = tmp_path / ".machine.ad"
    path.write_text(text)
    return path


def test_parse_ad_unquotes_strings_and_keys_by_lower_case_name() -> None:
    ad = parse_ad(MACHINE_AD)
    assert ad["tritongrpcurl"] == "127.0.0.1:40001"
    assert ad["hastriton"] == "true"
    assert ad["tritongpus"] == "1"
    assert ad["tritonfailure"] == 'a "quoted" word'
    assert "this" not in ad


def test_explicit_url_wins_over_environment_and_machine_ad(tmp_path: Path) -> None:
    environment = {"TRITON_GRPC_URL": "10.0.0.1:1", "_CONDOR_MACHINE_AD": str(write_ad(tmp_path))}
    assert find_endpoint("grpc", "grpc://example.org:8001/", environment) == Endpoint(
        "grpc", "example.org:8001", "the url argument"
    )


def test_environment_wins_over_machine_ad(tmp_path: Path) -> None:
    environment = {"TRITON_HTTP_URL": "10.0.0.1:8000", "_CONDOR_MACHINE_AD": str(write_ad(tmp_path))}
    assert find_endpoint("http", None, environment) == Endpoint("http", "10.0.0.1:8000", "$TRITON_HTTP_URL")


@pytest.mark.parametrize(("protocol", "address"), [("grpc", "127.0.0.1:40001"), ("http", "127.0.0.1:40000")])
def test_machine_ad_is_the_last_resort(tmp_path: Path, protocol: str, address: str) -> None:
    ad = write_ad(tmp_path)
    endpoint = find_endpoint(protocol, None, {"_CONDOR_MACHINE_AD": str(ad)})
    assert endpoint.url == address
    assert str(ad) in endpoint.source


def test_malformed_address_names_its_source() -> None:
    with pytest.raises(ValueError, match=r"\$TRITON_GRPC_URL = 'not an address' is not a server address"):
        find_endpoint("grpc", None, {"TRITON_GRPC_URL": "not an address"})


def test_unknown_protocol_is_refused() -> None:
    with pytest.raises(ValueError, match="protocol 'rest' is not one of grpc, http"):
        find_endpoint("rest", None, {})


def test_nothing_found_lists_every_place_tried() -> None:
    with pytest.raises(ServerNotFoundError) as raised:
        find_endpoint("grpc", None, {})
    message = str(raised.value)
    assert "no Triton gRPC server found" in message
    assert "1. the url argument: not given" in message
    assert "2. $TRITON_GRPC_URL: not set" in message
    assert "3. $_CONDOR_MACHINE_AD: not set" in message
    assert raised.value.attempts[1] == ("$TRITON_GRPC_URL", "not set")


def test_a_machine_ad_without_triton_says_why(tmp_path: Path) -> None:
    ad = write_ad(tmp_path, 'HasTriton = false\nTritonFailure = "WN_Resource: no GPU"\n')
    with pytest.raises(
        ServerNotFoundError, match=r"says HasTriton = false \(TritonFailure: WN_Resource: no GPU\)"
    ):
        find_endpoint("http", None, {"_CONDOR_MACHINE_AD": str(ad)})


def test_a_machine_ad_of_a_glidein_without_the_plugin(tmp_path: Path) -> None:
    ad = write_ad(tmp_path, 'Name = "slot1@x"\n')
    with pytest.raises(ServerNotFoundError, match="has no TritonGRPCURL and no HasTriton"):
        find_endpoint("grpc", None, {"_CONDOR_MACHINE_AD": str(ad)})


def test_an_unreadable_machine_ad_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "gone.ad"
    with pytest.raises(ServerNotFoundError, match=rf"{missing} cannot be read \(No such file or directory\)"):
        find_endpoint("grpc", None, {"_CONDOR_MACHINE_AD": str(missing)})


@pytest.mark.parametrize(
    ("protocol", "url", "ssl"), [("grpc", None, True), ("http", None, None), ("grpc", "example.org:1", None)]
)
def test_grpc_tls_follows_the_machine_ad_for_the_glidein_server(
    tmp_path: Path, protocol: str, url: str | None, ssl: bool | None
) -> None:
    ad = write_ad(tmp_path, MACHINE_AD + "TritonGRPCTLS = true\n")
    environment = {"_CONDOR_MACHINE_AD": str(ad)}
    options: dict[str, object] = {}
    client._apply_glidein_hints(find_endpoint(protocol, url, environment), environment, options)
    assert options.get("ssl") is ssl


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with 200 and an empty JSON object, and keeps each request's headers."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append({name.lower(): value for name, value in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_arguments: object) -> None:
        """Quiet: the test reads the headers, not the log."""


def test_no_credential_is_sent_whatever_the_sandbox_and_environment_hold(tmp_path: Path) -> None:
    # What a glidein of an older release left for its jobs: nothing of it may be sent to the server.
    (tmp_path / ".glidein_triton").mkdir()
    (tmp_path / ".glidein_triton" / "token").write_text("old-sandbox-secret")
    (tmp_path / "token").write_text("old-file-secret")
    environment = {
        "TRITON_TOKEN_FILE": str(tmp_path / "token"),
        "TRITON_TOKEN": "old-variable-secret",
        "_CONDOR_SCRATCH_DIR": str(tmp_path),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"127.0.0.1:{server.server_address[1]}"
        connect("http", url, timeout=10, environment=environment).close()
    finally:
        server.shutdown()
        server.server_close()
    assert RecordingHandler.seen, "the client asked the server nothing"
    for headers in RecordingHandler.seen:
        assert not [name for name in headers if "token" in name or name.startswith("triton-")], headers
        assert not [value for value in headers.values() if "secret" in value], headers


def test_fallback_runs_when_no_server_is_found() -> None:
    errors: list[Exception] = []

    def run_locally(error: Exception) -> str:
        errors.append(error)
        return "local result"

    assert connect(environment={}, fallback=run_locally) == "local result"
    assert isinstance(errors[0], ServerNotFoundError)


def test_without_fallback_no_server_raises() -> None:
    with pytest.raises(ServerNotFoundError):
        connect("http", environment={})


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_server_that_never_answers_times_out_with_evidence(protocol: str) -> None:
    port = free_port()  # nothing listens there
    fallback_errors: list[Exception] = []
    variable = client.URL_VARIABLES[protocol]
    with pytest.raises(ServerNotReadyError) as raised:
        connect(protocol, environment={variable: f"127.0.0.1:{port}"}, timeout=0.3)
    message = str(raised.value)
    assert f"127.0.0.1:{port} (from ${variable}) was not ready after 0.3 s" in message
    assert "tries; last:" in message
    connect(
        protocol, environment={variable: f"127.0.0.1:{port}"}, timeout=0.1, fallback=fallback_errors.append
    )
    assert isinstance(fallback_errors[0], ServerNotReadyError)


def test_import_loads_neither_tritonclient_nor_numpy() -> None:
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, glidein_triton.job.client; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tritonclient', 'numpy', 'grpc', 'gevent'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


@pytest.mark.skipif(PYTHON39 is None, reason="no Python 3.9 on this machine to check the client helper with")
def test_discovery_runs_on_python_3_9(tmp_path: Path) -> None:
    """Job images may have an older Python: finding the server and the fallback need only 3.9."""
    assert PYTHON39 is not None
    script = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); from glidein_triton.job import client; "
        "print(client.find_endpoint('http', None, os.environ).url); "
        "print(client.connect(environment={}, fallback=lambda error: type(error).__name__))"
    )
    result = subprocess.run(
        [PYTHON39, "-I", "-c", script, str(Path(client.__file__).parents[2])],
        env={"_CONDOR_MACHINE_AD": str(write_ad(tmp_path))},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["127.0.0.1:40000", "ServerNotFoundError"]


class SlowServer:
    """A tritonclient client double whose server is ready and whose model ``slow`` never is."""

    def is_server_ready(self, **_options: object) -> bool:
        return True

    def is_model_ready(self, model: str, **_options: object) -> bool:
        return False

    def get_model_metadata(self, model: str) -> dict[str, object]:
        errors = importlib.import_module("tritonclient.utils")
        if model == "gone":
            raise errors.InferenceServerException(f"Request for unknown model: '{model}' is not found")
        raise errors.InferenceServerException(
            f"Request for unknown model: '{model}' has no available versions"
        )


def test_a_wait_for_a_model_says_what_it_waits_for_and_a_model_that_cannot_come_fails_at_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [100.0]
    monkeypatch.setattr(client.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(client.time, "sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))
    endpoint = client.Endpoint("http", "127.0.0.1:8000", "$TRITON_HTTP_URL")
    with caplog.at_level(logging.WARNING, logger=client.LOG.name), pytest.raises(ServerNotReadyError):
        client.wait_until_ready(SlowServer(), endpoint, 60, ["slow"], glidein=True)  # loading: it may come
    progress = [record.getMessage() for record in caplog.records]
    assert progress[0].startswith(
        "waiting for the Triton HTTP server at 127.0.0.1:8000 (from $TRITON_HTTP_URL) (7 of 60 s): "
    )
    assert progress[0].endswith("model(s) not ready: slow")
    assert len(progress) == 3  # after 5 s, then 10 and 20 s more (polls every 2 s at most)
    now[0] = 100.0
    with pytest.raises(
        client.ModelsUnavailableError, match=r"has no model\(s\) gone and nothing is loading them"
    ):
        client.wait_until_ready(SlowServer(), endpoint, 60, ["slow", "gone"], glidein=True)
    assert now[0] == 100.0  # at once
    with pytest.raises(ServerNotReadyError):  # a server of the job's own choice: its models may come
        client.wait_until_ready(SlowServer(), endpoint, 1, ["gone"], glidein=False)
