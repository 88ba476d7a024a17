"""A pool server glidein (GLIDEIN_TRITON_POOL=server): its own CA, mutual TLS on the node's address, model
control off, and the TritonPool* attributes it publishes at startup and in each periodic run."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from glidein_triton.local import demo
from glidein_triton.local.gwms_hooks import run_periodic
from glidein_triton.worker import glidein_paths, pool_files, pool_server, runtime
from glidein_triton.worker.errors import ConfigError
from glidein_triton.worker.ports import Ports
from glidein_triton.worker.settings import Settings
from glidein_triton.worker.triton_api import Server, TritonAPIError

from .support import assert_nothing_left, recorded_state
from .test_pool_files import openssl, request
from .test_security import listening_addresses

ADDRESS = "127.0.0.2"  # a second loopback address stands in for the node's address


def test_model_control_is_off_and_nothing_is_loaded_by_name() -> None:
    options = runtime.server_options("/m", Ports(1, 2, 3), ["simple"], [], ADDRESS, control_mode="none")
    assert "--model-control-mode=none" in options
    assert not [word for word in options if word.startswith("--load-model")]
    explicit = runtime.server_options("/m", Ports(1, 2, 3), ["simple"], [])
    assert "--model-control-mode=explicit" in explicit
    assert "--load-model=simple" in explicit


def test_connection_ageing_options_in_milliseconds() -> None:
    settings = Settings.from_config(
        {"GLIDEIN_TRITON_POOL": "server", "GLIDEIN_TRITON_POOL_CONNECTION_AGE": "90"}
    )
    assert pool_server.triton_options(settings) == [
        "--grpc-max-connection-age=90000",
        "--grpc-max-connection-age-grace=30000",
    ]


@pytest.mark.parametrize(
    ("version", "allowed"),
    [("2.51.0", True), ("2.73.1", True), ("2.50.0", False), ("3.0", True), ("", False)],
)
def test_the_minimum_release(version: str, allowed: bool) -> None:
    if allowed:
        pool_server.check_version(version)
        return
    with pytest.raises(ConfigError, match=r"needs Triton 2\.51 or newer"):
        pool_server.check_version(version)


def test_end_of_life_and_drain_time(tmp_path: Path) -> None:
    now = 1_000_000.0
    assert pool_server.end_of_life({"GLIDEIN_ToDie": "1005000"}, now) == 1_005_000
    assert pool_server.end_of_life({"GLIDEIN_Max_Walltime": "3600"}, now) == now + 3600
    assert pool_server.end_of_life({}, now) == now + 7 * 86400
    condor_config = tmp_path / "condor_config"
    condor_config.write_text("GLIDEIN_TORETIRE = 1700000000\nGLIDEIN_ToDie = 1700003600\n")
    assert pool_server.drain_time({}, {"CONDOR_CONFIG": str(condor_config)}) == 1_700_003_600
    assert pool_server.drain_time({"GLIDEIN_ToDie": "42"}, {"CONDOR_CONFIG": str(condor_config)}) == 42
    assert pool_server.drain_time({}, {}) == 0
    assert pool_server.accepting(True, 0, now)
    assert pool_server.accepting(True, int(now) + 301, now)
    assert not pool_server.accepting(True, int(now) + 299, now)
    assert not pool_server.accepting(False, 0, now)


def test_queue_time_is_the_mean_since_the_last_run(tmp_path: Path) -> None:
    assert pool_server.queue_time_ms(tmp_path, 4_000_000, 2) == 2.0  # first run: since the start
    assert pool_server.queue_time_ms(tmp_path, 10_000_000, 5) == 2.0  # 6 ms over 3 requests
    assert pool_server.queue_time_ms(tmp_path, 10_000_000, 5) == 0.0  # nothing since
    assert pool_server.queue_time_ms(tmp_path, 1_000_000, 1) == 1.0  # a restarted server counts from 0
    saved = pool_files.pool_dir(tmp_path) / pool_server.QUEUE_FILE
    assert saved.stat().st_mode & 0o077 == 0


def test_models_without_a_queue_limit_are_named(tmp_path: Path) -> None:
    for name, config in (
        ("bounded", "dynamic_batching { default_queue_policy { max_queue_size: 8 } }"),
        ("unbounded", 'backend: "python"'),
        ("zero", "max_queue_size: 0"),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text(config)
    (tmp_path / "no_config").mkdir()
    assert pool_server.models_without_queue_limit(str(tmp_path)) == ["no_config", "unbounded", "zero"]


def simple_inputs() -> list[grpcclient.InferInput]:
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = grpcclient.InferInput(name, [1, 16], "INT32")
        tensor.set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
        inputs.append(tensor)
    return inputs


def client_files(directory: Path, pem: bytes, name: str) -> tuple[Path, Path]:
    """A client's key (made with its CSR by the caller) and the certificate ``pem`` next to it."""
    certificate = directory / f"{name}.pem"
    certificate.write_bytes(pem)
    return directory / f"{name}.key", certificate


def new_key(directory: Path, name: str) -> Path:
    key = directory / f"{name}.key"
    pool_files.make_key(key)
    return key


def refused(url: str, ca: Path, key: Path | None = None, certificate: Path | None = None) -> None:
    """A readiness call with this client certificate (none: none presented) fails at the TLS handshake
    (gRPC reports the closed socket as UNAVAILABLE, before any request reaches Triton)."""
    client = grpcclient.InferenceServerClient(
        url,
        ssl=True,
        root_certificates=str(ca),
        private_key=str(key) if key else None,
        certificate_chain=str(certificate) if certificate else None,
    )
    try:
        with pytest.raises(InferenceServerException, match="failed to connect to all addresses"):
            client.is_server_ready(client_timeout=10)
    finally:
        client.close()


@pytest.mark.server
def test_a_pool_server_glidein(tmp_path: Path) -> None:
    todie = int(time.time()) + 6 * 3600
    prepared = demo.prepare(
        tmp_path / "glidein",
        settings={
            "GLIDEIN_TRITON_POOL": "server",
            "GLIDEIN_TRITON_POOL_NAME": "cms-gpu",
            "GLIDEIN_TRITON_ADDRESS": ADDRESS,
            "GLIDEIN_Site": "T2_Test",
            "GLIDEIN_ToDie": str(todie),
        },
    )
    glidein = prepared.glidein
    result = glidein.run_startup(prepared.environment)
    assert result.returncode == 0, result.stderr
    assert "GLIDEIN_TRITON_MODELS=simple is not a choice" in result.stderr  # the demo names its one model
    assert "models without max_queue_size in their config.pbtxt" in result.stderr
    state = recorded_state(glidein)
    assert state is not None
    assert "--exit-on-error=false" in state.argv  # every model loads, as for *
    pool = pool_files.pool_dir(glidein.root)
    ca = pool / pool_files.CA_CERT
    assert abs(pool_files.not_after(ca) - todie) <= 1  # the CA ends with the glidein
    ca_pem = ca.read_bytes()
    url = f"{ADDRESS}:{state.grpc_port}"
    attributes, _ = glidein.published()
    pool_attributes = {name: value for name, value in attributes.items() if name.startswith("TritonPool")}
    enrol = pool_attributes.pop("TritonPoolEnrolURL")  # the agent's enrolment service, on a free port
    assert re.fullmatch(rf'"https://{re.escape(ADDRESS)}:[0-9]+/enrol"', enrol)
    assert pool_attributes == {
        "TritonPoolRole": '"server"',
        "TritonPoolName": '"cms-gpu"',
        "TritonPoolURL": f'"{url}"',
        "TritonPoolSite": '"T2_Test"',
        "TritonPoolCA": f'"{base64.b64encode(openssl("x509", "-outform", "DER", stdin=ca_pem)).decode()}"',
        "TritonPoolCAFingerprint": f'"{pool_files.certificate_fingerprint(ca_pem)}"',
        "TritonPoolModels": '"simple"',
        "TritonPoolQueueTimeMs": "0",
        "TritonPoolAccepting": "True",
        "TritonPoolDrainTime": str(todie),
    }
    assert listening_addresses(state.grpc_port) == {ADDRESS}
    assert listening_addresses(state.http_port) == {"127.0.0.1"}
    # A job of another glidein with a certificate this glidein's CA signed infers.
    good_key = new_key(tmp_path, "good")
    _, good_cert = client_files(tmp_path, pool_files.sign_client_csr(request(good_key), 1, pool), "good")
    client = grpcclient.InferenceServerClient(
        url, ssl=True, root_certificates=str(ca), private_key=str(good_key), certificate_chain=str(good_cert)
    )
    assert client.is_server_ready()
    assert client.infer("simple", simple_inputs()).as_numpy("OUTPUT0") is not None
    # Remote clients may not load or unload; model control is off even on the plugin's own route.
    for forbidden in (lambda: client.load_model("simple"), lambda: client.unload_model("simple")):
        with pytest.raises(InferenceServerException, match="This protocol is restricted"):
            forbidden()
    client.close()
    assert "--model-control-mode=none" in state.argv
    assert [word for word in state.argv if word.startswith("--grpc-max-connection-age")] == [
        "--grpc-max-connection-age=600000",
        "--grpc-max-connection-age-grace=30000",
    ]
    own_route = Server(state.http_port, unix_socket=state.plugin_socket)
    for action in (lambda: own_route.load("simple", 10), lambda: own_route.unload("simple", 10)):
        with pytest.raises(TritonAPIError, match="not allowed"):
            action()
    assert own_route.is_model_ready("simple")
    # Refused: no certificate, one of another CA, an expired one, a serverAuth-only one.
    refused(url, ca)
    other = tmp_path / "other"
    pool_files.make_ca(other, time.time() + 3600)
    other_key = new_key(tmp_path, "other")
    refused(
        url, ca, *client_files(tmp_path, pool_files.sign_client_csr(request(other_key), 1, other), "other")
    )
    old_key = new_key(tmp_path, "old")
    now = time.time()
    expired = pool_files._sign(
        request(old_key),
        pool / pool_files.CA_KEY,
        ca,
        "/CN=old",
        now - 7200,
        now - 3600,
        "extendedKeyUsage = clientAuth\n",
    )
    refused(url, ca, *client_files(tmp_path, expired, "old"))
    server_key = new_key(tmp_path, "serveronly")
    server_only = pool_files.sign(pool, request(server_key), 1, pool_files.SERVER_AUTH, "/CN=x")
    refused(url, ca, *client_files(tmp_path, server_only, "serveronly"))
    # The periodic run refreshes what changes: the queue time is the mean since the last run.
    code, printed, stderr = run_periodic(glidein, prepared.environment)
    assert code == 0, stderr
    assert printed["TritonPoolModels"] == '"simple"'
    assert printed["TritonPoolAccepting"] == "True"
    assert printed["TritonPoolDrainTime"] == str(todie)
    assert float(printed["TritonPoolQueueTimeMs"]) > 0  # the request above waited in the queue
    code, printed, stderr = run_periodic(glidein, prepared.environment)
    assert code == 0, stderr
    assert printed["TritonPoolQueueTimeMs"] == "0.0"  # none since
    # No key bytes anywhere the glidein writes for others to read.
    keys = [pool / pool_files.CA_KEY, pool / pool_files.SERVER_KEY]
    secrets = ["".join(path.read_text().splitlines()[1:-1]) for path in keys]
    written = [
        glidein.config_path.read_text(),
        *(path.read_text(errors="replace") for path in glidein_paths.plugin_dir(glidein.root).rglob("*.log")),
        result.stdout,
        result.stderr,
        str(attributes),
    ]
    assert str(glidein.root) not in str(pool_attributes)  # no private path either
    for secret in secrets:
        for half in (secret[:40], secret[40:80]):
            assert all(half not in text for text in written)
    glidein.run_cleanup(prepared.environment)
    assert_nothing_left(glidein, state)


def test_a_pool_server_serves_every_model_of_its_repository(caplog: pytest.LogCaptureFixture) -> None:
    named = Settings.from_config({"GLIDEIN_TRITON_POOL": "server", "GLIDEIN_TRITON_MODELS": "a,b"})
    assert pool_server.serving_every_model(named).models == ("*",)
    assert "GLIDEIN_TRITON_MODELS=a,b is not a choice" in caplog.text
    plain = Settings.from_config({"GLIDEIN_TRITON_MODELS": "a,b"})
    assert pool_server.serving_every_model(plain) is plain


def test_the_periodic_lines_of_a_pool_server(tmp_path: Path) -> None:
    config = {"GLIDEIN_ToDie": "2000"}
    assert pool_server.periodic_lines(tmp_path, config, True, ["b", "a"], 3_000_000, 2, 1000.0) == [
        'TritonPoolModels = "a,b"',
        "TritonPoolQueueTimeMs = 1.5",
        "TritonPoolAccepting = True",
        "TritonPoolDrainTime = 2000",
    ]
    down = pool_server.periodic_lines(tmp_path, config, False, [], 0, 0, 1000.0)
    assert down[2] == "TritonPoolAccepting = False"
    draining = pool_server.periodic_lines(tmp_path, config, True, ["a"], 0, 0, 1800.0)
    assert draining[2] == "TritonPoolAccepting = False"  # within DRAIN_MARGIN of its end
