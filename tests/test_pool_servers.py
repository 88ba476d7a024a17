"""Pool mode end to end on one machine: two real CPU tritonservers with mutual TLS on 127.0.0.2 and
127.0.0.3, a rogue TLS server on 127.0.0.4, the client glidein's discovery through the stand-in
condor_status, pool.json in a job's sandbox, and connect(pool=True) from 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from glidein_triton.job import client as job_client
from glidein_triton.job import pool
from glidein_triton.local import demo, pytriton
from glidein_triton.local import gwms_hooks as hooks_sim
from glidein_triton.local import standin_collector as collector
from glidein_triton.worker import glidein_paths, pool_discovery, pool_files, sandbox_protocol
from glidein_triton.worker.state import ServerState

from .pool_authority import Authority, make_authority, make_key, pool_server_options, server_ad
from .support import MODEL_CONFIG, add_model, assert_nothing_left, wait_until

pytestmark = pytest.mark.server

MODEL = "echo"
#: A model that takes a while, with room for one request in its queue: requests past it (and the one the
#: batcher holds) are refused at once. QUEUED: how many a test sends first to fill it.
SLOW = "slow"
QUEUED = 4
SLOW_SOURCE = """
import time

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(2)
        outputs = [pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy() for request in requests]
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", values)]) for values in outputs]
"""
SLOW_CONFIG = MODEL_CONFIG.replace("max_batch_size: 0", "max_batch_size: 1") + (
    "dynamic_batching { default_queue_policy { max_queue_size: 1 } }\n"
)
SITE = "Near"


@dataclass
class Server:
    address: str
    authority: Authority
    grpc_port: int
    http_port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"{self.address}:{self.grpc_port}"


def start_server(root: Path, launcher: Path, repository: Path, address: str, authority: Authority) -> Server:
    """A tritonserver as a pool server runs: gRPC on ``address`` with mutual TLS (its CA signs both sides),
    HTTP on loopback, model control off."""
    options, grpc_port, http_port = pool_server_options(root, address, authority)
    argv = [str(launcher), f"--model-repository={repository}", "--model-control-mode=none", *options]
    with (root / f"{address}.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Server(address, authority, grpc_port, http_port, process)


def ready(server: Server) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.http_port}/v2/health/ready", timeout=1
        ) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@dataclass
class Rogue:
    """A TLS server with a certificate of another CA, that records what it receives."""

    address: str
    port: int
    connections: int = 0
    received: bytearray = field(default_factory=bytearray)
    errors: list[str] = field(default_factory=list)


def start_rogue(root: Path, address: str) -> tuple[Rogue, socket.socket]:
    authority = make_authority(root / "rogue-ca", "rogue CA")
    key = make_key(root / "rogue.key")
    cert = authority.issue(key, root / "rogue.pem", usage="serverAuth", address=address)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["h2"])
    listener = socket.create_server((address, 0))
    rogue = Rogue(address, listener.getsockname()[1])

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            rogue.connections += 1
            connection.settimeout(5)
            try:
                with context.wrap_socket(connection, server_side=True) as secured:
                    while chunk := secured.recv(65536):
                        rogue.received += chunk
            except OSError as error:  # the client refuses the handshake
                rogue.errors.append(str(error))

    threading.Thread(target=serve, daemon=True).start()
    return rogue, listener


def ad(name: str, url: str, authority: Authority, queue: float = 1.0, **overrides: str) -> str:
    attributes = {
        "TritonPoolURL": f'"{url}"',
        "TritonPoolSite": f'"{SITE}"',
        "TritonPoolModels": f'"{MODEL}"',
        "TritonPoolQueueTimeMs": repr(queue),
        **overrides,
    }
    return server_ad(name, authority, f"{SITE}@frontend", **attributes)


@dataclass
class Pool:
    work: Path
    config: dict[str, str]
    ads: Path
    a: Server
    b: Server
    rogue: Rogue
    sandboxes: Path
    count: int = 0

    def advertise(self, *ads: str) -> None:
        self.ads.write_text("\n".join(ads))

    def job(self) -> Path:
        """A new job's sandbox, its pool files written by the client glidein's discovery."""
        self.count += 1
        sandbox = self.sandboxes / f"dir_{self.count}"
        sandbox.mkdir()
        client_pool = pool_discovery.ClientPool(self.work, self.config, os.environ, "")
        client_pool.refresh()
        client_pool.write_for(str(sandbox))
        return sandbox


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    root = tmp_path_factory.mktemp("pool")
    launcher = pytriton.prepare(root / "triton")
    repository = root / "models"
    add_model(repository, MODEL)
    add_model(repository, SLOW, SLOW_SOURCE, SLOW_CONFIG)
    a_ca, b_ca = make_authority(root / "ca-a", "server a"), make_authority(root / "ca-b", "server b")
    servers = [
        start_server(root, launcher, repository, address, ca)
        for address, ca in (("127.0.0.2", a_ca), ("127.0.0.3", b_ca))
    ]
    rogue, listener = start_rogue(root, "127.0.0.4")
    work = root / "client-glidein"
    work.mkdir()
    (work / "condor_config").write_text("COLLECTOR_HOST = cm.example\n")
    pool_dir = pool_files.pool_dir(work)
    (pool_dir / pool_files.CLIENT_CERTS_DIR).mkdir(parents=True)
    key = make_key(pool_dir / pool_files.CLIENT_KEY)
    for ca in (a_ca, b_ca):  # what enrolment gave the client glidein at each server
        ca.issue(key, pool_files.client_cert_path(work, ca.fingerprint))
    ads = root / "collector.ads"
    config = {
        "CONDOR_DIR": str(collector.install_condor_dir(work / "condor")),
        "GLIDEIN_Collector": "cm.example:9618",
        "GLIDEIN_Site": SITE,
        "GLIDEIN_TRITON_POOL": "client",
        "GLIDEIN_TRITON_POOL_NAME": "cms",
    }
    variables = {collector.ADS_VARIABLE: str(ads), collector.COLLECTOR_VARIABLE: "cm.example:9618"}
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    sandboxes = root / "execute"
    sandboxes.mkdir()
    try:
        assert wait_until(lambda: all(ready(server) for server in servers), timeout=120), "servers not ready"
        yield Pool(work, config, ads, servers[0], servers[1], rogue, sandboxes)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        listener.close()
        for server in servers:
            if server.process.poll() is None:
                os.killpg(server.process.pid, signal.SIGTERM)
            server.process.wait(30)


def inputs() -> list[grpcclient.InferInput]:
    tensor = grpcclient.InferInput("INPUT0", [4], "INT32")
    tensor.set_data_from_numpy(np.array([1, 2, 3, 4], dtype=np.int32))
    return [tensor]


def connect(sandbox: Path) -> pool.PoolClient:
    found = job_client.connect(pool=True, models=[MODEL], environment={"_CONDOR_SCRATCH_DIR": str(sandbox)})
    assert isinstance(found, pool.PoolClient)
    return found


def used(found: pool.PoolClient, calls: int = 10) -> list[str]:
    """The servers ``calls`` inferences went to."""
    urls = []
    for _ in range(calls):
        assert found.infer(MODEL, inputs()).as_numpy("OUTPUT0").tolist() == [1, 2, 3, 4]
        assert found.current is not None
        urls.append(found.current.url)
    return urls


def test_discovery_and_inference_over_mutual_tls_with_pool_json_0600_in_the_sandbox_only(
    cluster: Pool,
) -> None:
    cluster.advertise(
        ad("a", cluster.a.url, cluster.a.authority), ad("b", cluster.b.url, cluster.b.authority)
    )
    sandbox = cluster.job()
    job_dir = sandbox / sandbox_protocol.JOB_DIR
    document = json.loads((job_dir / sandbox_protocol.POOL_FILE).read_text())
    assert sorted(server["url"] for server in document["servers"]) == [cluster.a.url, cluster.b.url]
    for name in (sandbox_protocol.POOL_FILE, sandbox_protocol.POOL_KEY_FILE):
        assert stat.S_IMODE((job_dir / name).stat().st_mode) == 0o600
    key = (pool_files.pool_dir(cluster.work) / pool_files.CLIENT_KEY).read_text()
    assert "PRIVATE KEY" not in (job_dir / sandbox_protocol.POOL_FILE).read_text()
    assert (job_dir / sandbox_protocol.POOL_KEY_FILE).read_text() == key
    assert list(cluster.work.rglob(sandbox_protocol.POOL_FILE)) == []  # only in jobs' sandboxes
    found = connect(sandbox)
    assert set(used(found, 20)) == {cluster.a.url, cluster.b.url}  # two choices spread equal servers
    found.close()


def test_a_high_published_queue_time_steers_new_work_away(cluster: Pool) -> None:
    cluster.advertise(
        ad("a", cluster.a.url, cluster.a.authority, queue=5000.0), ad("b", cluster.b.url, cluster.b.authority)
    )
    found = connect(cluster.job())
    assert set(used(found)) == {cluster.b.url}
    found.close()


def test_draining_and_not_accepting_servers_are_skipped(cluster: Pool) -> None:
    soon = str(int(time.time()) + 30)
    cluster.advertise(
        ad("a", cluster.a.url, cluster.a.authority, TritonPoolDrainTime=soon),
        ad("b", cluster.b.url, cluster.b.authority),
    )
    found = connect(cluster.job())
    assert set(used(found)) == {cluster.b.url}
    found.close()
    cluster.advertise(
        ad("a", cluster.a.url, cluster.a.authority),
        ad("b", cluster.b.url, cluster.b.authority, TritonPoolAccepting="false"),
    )
    sandbox = cluster.job()
    listed = json.loads((sandbox / sandbox_protocol.JOB_DIR / sandbox_protocol.POOL_FILE).read_text())[
        "servers"
    ]
    assert [server["url"] for server in listed] == [cluster.a.url]
    found = connect(sandbox)
    assert set(used(found)) == {cluster.a.url}
    found.close()


def test_a_forged_ad_pointing_to_a_rogue_server_gets_no_data(cluster: Pool) -> None:
    # The forger copies server a's CA (the only way to be listed: the glidein holds a certificate for it)
    # but points the URL at its own TLS server, whose certificate another CA signed.
    rogue_url = f"{cluster.rogue.address}:{cluster.rogue.port}"
    cluster.advertise(
        ad("forged", rogue_url, cluster.a.authority, queue=0.0),
        ad("b", cluster.b.url, cluster.b.authority, queue=5000.0),
    )
    sandbox = cluster.job()
    listed = json.loads((sandbox / sandbox_protocol.JOB_DIR / sandbox_protocol.POOL_FILE).read_text())[
        "servers"
    ]
    assert rogue_url in [server["url"] for server in listed]
    found = connect(sandbox)
    assert set(used(found)) == {cluster.b.url}  # the rogue, cheapest by its ad, failed its handshake
    found.close()
    assert wait_until(lambda: cluster.rogue.errors, timeout=10)
    assert cluster.rogue.connections >= 1
    assert bytes(cluster.rogue.received) == b""  # not even the HTTP/2 preface: no request, no tensor


def test_a_full_queue_moves_the_call_to_another_server(cluster: Pool) -> None:
    both = {"TritonPoolModels": f'"{MODEL},{SLOW}"'}
    cluster.advertise(
        ad("a", cluster.a.url, cluster.a.authority, **both),
        ad("b", cluster.b.url, cluster.b.authority, queue=5000.0, **both),
    )
    found = job_client.connect(
        pool=True, models=[SLOW], environment={"_CONDOR_SCRATCH_DIR": str(cluster.job())}
    )
    assert found.current.url == cluster.a.url
    pool_dir = pool_files.pool_dir(cluster.work)
    direct = grpcclient.InferenceServerClient(
        cluster.a.url,
        ssl=True,
        root_certificates=str(cluster.a.authority.cert),
        private_key=str(pool_dir / pool_files.CLIENT_KEY),
        certificate_chain=str(pool_files.client_cert_path(cluster.work, cluster.a.authority.fingerprint)),
    )
    tensor = grpcclient.InferInput("INPUT0", [1, 4], "INT32")
    tensor.set_data_from_numpy(np.array([[1, 2, 3, 4]], dtype=np.int32))
    refused: list[str] = []
    stop = threading.Event()

    def occupy() -> None:  # keeps the model busy and its queue full: each refusal is sent again at once
        while not stop.is_set():
            try:
                direct.infer(SLOW, [tensor])
            except grpcclient.InferenceServerException as error:
                refused.append(str(error))

    threads = [threading.Thread(target=occupy) for _ in range(QUEUED)]
    for thread in threads:
        thread.start()
    try:
        assert wait_until(
            lambda: any("Exceeds maximum queue size" in answer for answer in refused), timeout=20
        )
        # Triton's queue is full nearly all the time now; a call that lands in a moment it is not just waits
        for _ in range(5):
            result = found.infer(SLOW, [tensor])  # a refusal that did not fail over would raise here
            if found.current.url == cluster.b.url:
                break
        assert found.current.url == cluster.b.url
        assert result.as_numpy("OUTPUT0").tolist() == [[1, 2, 3, 4]]
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    server_a = next(server for server in found.chooser.servers if server.url == cluster.a.url)
    assert "Exceeds maximum queue size" in server_a.failures[-1]  # Triton's own words
    direct.close()
    found.close()


#: The job of the client glidein: waits until its pool file lists servers (the agent's first query may come
#: after the job starts), then infers through the pool and prints the server of the call.
POOL_JOB = """
import json, os, sys, time
import numpy as np
import tritonclient.grpc as grpcclient
from glidein_triton.job.client import connect
path = os.path.join(os.environ["_CONDOR_SCRATCH_DIR"], ".glidein_triton", "pool.json")
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not json.load(open(path))["servers"]:
    time.sleep(0.1)
client = connect(pool=True, models=["echo"])
tensor = grpcclient.InferInput("INPUT0", [4], "INT32")
tensor.set_data_from_numpy(np.array([5, 6, 7, 8], dtype=np.int32))
print(client.infer("echo", [tensor]).as_numpy("OUTPUT0").tolist(), client.current.url)
"""


def test_a_job_of_a_client_glidein_infers_on_the_pool_through_its_agent(
    cluster: Pool, tmp_path: Path
) -> None:
    cluster.advertise(
        ad("a", cluster.a.url, cluster.a.authority), ad("b", cluster.b.url, cluster.b.authority, queue=5000.0)
    )
    prepared = demo.prepare(
        tmp_path / "glidein", settings={**cluster.config, "GLIDEIN_TRITON_MODELS": "simple"}
    )
    glidein = prepared.glidein
    (glidein.root / "condor_config").write_text("COLLECTOR_HOST = cm.example\n")
    shutil.copytree(pool_files.pool_dir(cluster.work), pool_files.pool_dir(glidein.root))  # enrolled
    assert glidein.run_startup(prepared.environment).returncode == 0
    recorded = ServerState.load(glidein_paths.state_file(glidein.root))
    try:
        job = hooks_sim.start_job(
            glidein, [sys.executable, "-c", POOL_JOB], {**prepared.environment, **glidein.published()[1]}
        )
        code, stdout, stderr = job.finish(timeout=120)
        assert code == 0, stderr
        assert stdout.split("] ")[0] == "[5, 6, 7, 8"
        assert stdout.split()[-1] == cluster.a.url  # the pool server, not the glidein's own
        job_dir = job.sandbox / sandbox_protocol.JOB_DIR
        assert stat.S_IMODE((job_dir / sandbox_protocol.POOL_FILE).stat().st_mode) == 0o600
        job.end()
    finally:
        glidein.run_cleanup(prepared.environment)
    assert_nothing_left(glidein, recorded)


def test_killing_a_server_moves_the_work_to_the_other_within_five_seconds(cluster: Pool) -> None:
    cluster.advertise(
        ad("a", cluster.a.url, cluster.a.authority, queue=0.0),
        ad("b", cluster.b.url, cluster.b.authority, queue=5000.0),
    )
    found = connect(cluster.job())
    assert set(used(found, 5)) == {cluster.a.url}
    os.killpg(cluster.a.process.pid, signal.SIGKILL)
    cluster.a.process.wait(10)
    started = time.monotonic()
    assert used(found, 1) == [cluster.b.url]
    moved = time.monotonic() - started
    print(f"failover after killing a pool server: {moved * 1000:.0f} ms")
    assert moved < 5.0
    assert set(used(found, 5)) == {cluster.b.url}
    found.close()
