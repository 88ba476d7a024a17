"""Pool mode's enrolment (GlideinWMS 3.10 trust): real openssl, real TLS on 127.0.0.1 and a rogue on
127.0.0.4, the stand-in condor_status over an ads file (which sets AuthenticatedIdentity as a collector)."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from glidein_triton.local import demo
from glidein_triton.local.glidein import SimulatedGlidein
from glidein_triton.local.standin_collector import ADS_VARIABLE, COLLECTOR_VARIABLE, install_condor_dir
from glidein_triton.worker import agent, pool_enrolment, pool_files, publish, startup
from glidein_triton.worker.glidein_config import GlideinConfig
from glidein_triton.worker.glidein_config import publish as publish_config
from glidein_triton.worker.pool_enrolment import (
    EnrolmentError,
    EnrolmentService,
    Gatekeeper,
    client_key,
    condor_lookup,
    enrol,
)
from tests import pool_pki
from tests.support import AS_ROOT, OTHER_UID, PILOT_UID, run_as, user_directory

POOL = "cms-gpu"
COLLECTOR = "collector.example.org:9618"
IDENTITY = "T2_US_Example@frontend.example.org"


@dataclass
class Pool:
    """A pool server's enrolment service on 127.0.0.1, its collector's ads file, and a client's key."""

    ca: pool_pki.TestCA
    url: str
    ads: Path
    client_dir: Path
    fingerprint: str
    service: EnrolmentService

    def advertise(self, ad: str, identity: str | None = IDENTITY) -> None:
        """Add an ad to the collector, as advertised by ``identity`` (None: unauthenticated)."""
        header = f"# advertised by: {identity}\n" if identity else ""
        with self.ads.open("a") as ads:
            ads.write(f"\n{header}{ad.strip()}\n")

    def client_ad(self, key: str = "", name: str = POOL, role: str = "client") -> str:
        return (
            f'MyType = "Machine"\nName = "slot1@glidein_42@wn1.example.org"\n'
            f'TritonPoolRole = "{role}"\nTritonPoolName = "{name}"\n'
            f'TritonPoolClientKey = "{key or self.fingerprint}"\n'
        )

    def enrol(self, **changes: object) -> bytes:
        arguments: dict[str, object] = {
            "url": self.url,
            "ca_der": self.ca.der(),
            "ca_fingerprint": pool_files.der_fingerprint(self.ca.der()),
            "key_path": self.client_dir / pool_files.CLIENT_KEY,
            "csr_subject": "slot1@glidein_42@wn1.example.org",
            "timeout": 10.0,
        }
        arguments.update(changes)
        return enrol(**arguments)  # type: ignore[arg-type]


def serve(ca: pool_pki.TestCA, gatekeeper: Gatekeeper, hours: float = 2) -> EnrolmentService:
    cert, key = pool_pki.server_certificate(ca, "127.0.0.1")
    service = EnrolmentService(
        ("127.0.0.1", 0), cert, key, gatekeeper, pool_files.csr_fingerprint, ca.sign_client_csr, hours
    )
    pool_enrolment.start(service)
    return service


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pool]:
    condor_dir = install_condor_dir(tmp_path / "condor")
    condor_config = tmp_path / "condor_config"
    condor_config.write_text("COLLECTOR_HOST = collector.example.org\n")
    ads = tmp_path / "ads"
    ads.write_text("")
    environment = {**os.environ, ADS_VARIABLE: str(ads), COLLECTOR_VARIABLE: COLLECTOR}
    lookup = condor_lookup(condor_dir, condor_config, COLLECTOR, POOL, environment)
    ca = pool_pki.make_ca(tmp_path / "server")
    service = serve(ca, Gatekeeper(lookup, ["*@frontend.example.org"]))
    client_dir = tmp_path / "client" / "pool"
    fingerprint = client_key(client_dir)
    try:
        yield Pool(ca, f"https://127.0.0.1:{service.port}/enrol", ads, client_dir, fingerprint, service)
    finally:
        service.shutdown()
        service.server_close()


def openssl_text(certificate: bytes) -> str:
    return pool_pki.openssl(["x509", "-noout", "-text"], certificate).decode()


def key_body(path: Path) -> str:
    """The base64 of a PEM key, the bytes that must appear nowhere else."""
    lines = path.read_text().splitlines()
    return "".join(line for line in lines if not line.startswith("-----"))


def test_a_key_in_an_authenticated_client_ad_gets_a_client_certificate(
    pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pool.advertise(pool.client_ad())
    before = time.time()
    certificate = pool.enrol()
    chain = pool.ca.directory / "client.pem"
    chain.write_bytes(certificate)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pool.ca.cert), "-purpose", "sslclient", str(chain)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert "TLS Web Client Authentication" in openssl_text(certificate)
    _start, end = pool_pki.dates(certificate)
    assert abs(end - (before + 2 * 3600)) < 60  # the lifetime the service asked for
    # the certificate is for the client's own key
    public = pool_pki.openssl(["x509", "-noout", "-pubkey"], certificate)
    der = pool_pki.openssl(["pkey", "-pubin", "-outform", "DER"], public)
    assert pool_files.der_fingerprint(der) == pool.fingerprint
    stored = pool_enrolment.store(pool.client_dir, pool_files.der_fingerprint(pool.ca.der()), certificate)
    assert stored == pool.client_dir / "clients" / f"{pool_files.der_fingerprint(pool.ca.der())[7:]}.pem"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE((pool.client_dir / "client.key").stat().st_mode) == 0o600
    decisions = [r.getMessage() for r in caplog.records if "enrolment from" in r.getMessage()]
    assert decisions == [f"enrolment from 127.0.0.1: 200: key {pool.fingerprint} signed for 2 h"]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no ad", "no client ad of this pool names this key"),
        ("another key's ad", "no client ad of this pool names this key"),
        ("unauthenticated ad", "have no AuthenticatedIdentity"),
        ("another pool's ad", "no client ad of this pool names this key"),
        ("a server ad", "no client ad of this pool names this key"),
        ("identity of another frontend", "identity T2_X@rogue.example.org matches no"),
    ],
)
def test_a_key_without_an_authenticated_client_ad_of_the_pool_is_refused(
    pool: Pool, caplog: pytest.LogCaptureFixture, case: str, reason: str
) -> None:
    caplog.set_level(logging.INFO)
    if case == "another key's ad":
        pool.advertise(pool.client_ad(key="sha256:" + "0" * 64))
    elif case == "unauthenticated ad":
        pool.advertise(pool.client_ad(), identity=None)
    elif case == "another pool's ad":
        pool.advertise(pool.client_ad(name="atlas-gpu"))
    elif case == "a server ad":
        pool.advertise(pool.client_ad(role="server"))
    elif case == "identity of another frontend":
        pool.advertise(pool.client_ad(), identity="T2_X@rogue.example.org")
    with pytest.raises(EnrolmentError, match=r"refused the enrolment \(403\)") as refused:
        pool.enrol()
    assert reason in str(refused.value)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"403: key {pool.fingerprint} refused: " in logged
    assert reason in logged
    body = key_body(pool.client_dir / "client.key")
    assert body not in logged
    assert body not in str(refused.value)


def test_a_pool_name_with_quotes_cannot_widen_the_lookup(tmp_path: Path) -> None:
    """The constraint's strings are ClassAd literals: a name that tries to close one matches no ad."""
    condor_dir = install_condor_dir(tmp_path / "condor")
    config = tmp_path / "condor_config"
    config.write_text("")
    ads = tmp_path / "ads"
    ads.write_text(
        '# advertised by: a@b\nMyType = "Machine"\nName = "x"\nTritonPoolRole = "client"\n'
        'TritonPoolName = "other"\nTritonPoolClientKey = "sha256:ab"\n'
    )
    environment = {**os.environ, ADS_VARIABLE: str(ads)}
    assert condor_lookup(condor_dir, config, "", "other", environment)("sha256:ab") == [("a@b", "x")]
    widened = condor_lookup(condor_dir, config, "", '" || true || "', environment)
    assert widened("sha256:ab") == []


def test_only_the_main_collector_is_asked(pool: Pool, tmp_path: Path) -> None:
    """A collector the glidein cannot reach (here: another than the stand-in's) answers 503, not 403."""
    pool.advertise(pool.client_ad())
    lookup = condor_lookup(
        tmp_path / "condor", tmp_path / "condor_config", "site-ce.example.org:9619", POOL, dict(os.environ)
    )
    pool.service.gatekeeper = Gatekeeper(lookup, ["*"])
    with pytest.raises(EnrolmentError, match=r"\(503\): cannot query the collector now"):
        pool.enrol()
    assert pool_enrolment.main_collector("c1.example.org:9618,c2:9618;c3") == "c1.example.org:9618"
    assert pool_enrolment.main_collector(" ; c1.example.org:9620-9660") == "c1.example.org:9620"
    assert pool_enrolment.main_collector("") == ""
    assert pool_enrolment.main_collector("cms-gwms.example-lab.org") == "cms-gwms.example-lab.org"
    assert (
        pool_enrolment.main_collector("cms-gwms.example-lab.org:9620-9660") == "cms-gwms.example-lab.org:9620"
    )


def post(pool: Pool, body: bytes, path: str = "/enrol") -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(pool.ca.cert))
    connection = http.client.HTTPSConnection("127.0.0.1", pool.service.port, context=context, timeout=10)
    try:
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_an_oversized_body_gets_413_and_garbage_400(pool: Pool) -> None:
    status, body = post(pool, b"A" * (pool_enrolment.MAX_CSR + 1))
    assert (status, body) == (413, b"a CSR is at most 8192 bytes\n")
    assert post(pool, b"-----BEGIN CERTIFICATE REQUEST-----\nnot one\n")[0] == 400
    assert post(pool, b"x", path="/other")[0] == 404
    context = ssl.create_default_context(cafile=str(pool.ca.cert))
    connection = http.client.HTTPSConnection("127.0.0.1", pool.service.port, context=context, timeout=10)
    try:
        connection.putrequest("POST", "/enrol")
        connection.putheader("Content-Length", "\u00b2")
        connection.endheaders()
        assert connection.getresponse().status == 411
    finally:
        connection.close()


@pytest.fixture
def rogue(tmp_path: Path) -> Iterator[tuple[int, list[bytes]]]:
    """A TLS server on 127.0.0.4 with a certificate of another CA, recording what it decrypts."""
    ca = pool_pki.make_ca(tmp_path / "rogue", "rogue CA")
    cert, key = pool_pki.server_certificate(ca, "127.0.0.4")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.4", 0))
    received: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(connection, server_side=True) as secured:
                    secured.settimeout(5)
                    received.append(secured.recv(65536))
            except OSError:
                received.append(b"")  # the handshake failed: nothing decrypted

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], received
    finally:
        listener.close()


def test_a_rogue_server_with_another_ca_receives_no_csr(pool: Pool, rogue: tuple[int, list[bytes]]) -> None:
    port, received = rogue
    pool.advertise(pool.client_ad())
    with pytest.raises(EnrolmentError, match="CERTIFICATE_VERIFY_FAILED"):
        pool.enrol(url=f"https://127.0.0.4:{port}/enrol")
    assert wait_for(lambda: received)
    assert received == [b""]  # it got a handshake, no CSR byte


def test_a_ca_that_does_not_match_the_ad_fingerprint_is_refused_before_connecting(pool: Pool) -> None:
    other = pool_pki.make_ca(pool.ca.directory.parent / "other", "other CA")
    with pytest.raises(EnrolmentError, match="does not match its fingerprint"):
        pool.enrol(ca_der=other.der())
    with pytest.raises(EnrolmentError, match="does not match its fingerprint"):
        pool.enrol(ca_fingerprint="md5:" + pool_files.der_fingerprint(pool.ca.der())[7:])
    with pytest.raises(EnrolmentError, match="not an https://host:port/ URL"):
        pool.enrol(url=f"http://127.0.0.1:{pool.service.port}/enrol")


def test_connections_are_bounded_and_cut_after_the_time_limit(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool_enrolment, "REQUEST_LIMIT", 1.0)
    pool.advertise(pool.client_ad())
    idle = [
        socket.create_connection(("127.0.0.1", pool.service.port)) for _ in range(pool_enrolment.CONCURRENCY)
    ]
    try:
        time.sleep(0.2)
        with pytest.raises(EnrolmentError, match=r"enrolment at .* failed"):
            pool.enrol()  # every slot is held by a connection that never sends its handshake
        started = time.monotonic()
        for connection in idle:
            connection.settimeout(5)
            assert connection.recv(1) == b""  # cut by the server
        assert time.monotonic() - started < 3
    finally:
        for connection in idle:
            connection.close()
    assert wait_for(pool.enrol)


def test_lookups_are_cached_for_a_few_seconds() -> None:
    calls: list[str] = []
    now = [100.0]

    def lookup(fingerprint: str) -> list[tuple[str, str]]:
        calls.append(fingerprint)
        return [("a@fe.example.org", "glidein")]

    gate = Gatekeeper(lookup, ["*@fe.example.org"], clock=lambda: now[0])
    assert gate.refusal("sha256:1") == gate.refusal("sha256:1") == ""
    assert calls == ["sha256:1"]
    now[0] += pool_enrolment.CACHE_SECONDS
    assert gate.refusal("sha256:1") == ""
    assert calls == ["sha256:1", "sha256:1"]
    assert Gatekeeper(lookup, ["a@*.org", "x"]).refusal("k") == ""
    assert "matches no" in Gatekeeper(lookup, ["A@FE.EXAMPLE.ORG"]).refusal("k")  # case counts


def test_the_client_key_is_made_once_and_its_fingerprint_is_its_public_key(tmp_path: Path) -> None:
    directory = tmp_path / "pool"
    fingerprint = client_key(directory)
    assert fingerprint == client_key(directory)
    der = pool_pki.openssl(["pkey", "-in", str(directory / "client.key"), "-pubout", "-outform", "DER"])
    assert fingerprint == "sha256:" + __import__("hashlib").sha256(der).hexdigest()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    csr = pool_enrolment.make_csr(directory / "client.key", 'slot1@x "; rm -rf /')
    assert pool_files.csr_fingerprint(csr) == fingerprint
    assert base64.b64decode(key_body(directory / "client.key")) not in csr


def wait_for(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():  # type: ignore[operator]
                return True
        except EnrolmentError:
            pass
        time.sleep(0.1)
    return False


def test_a_pool_server_glidein_serves_enrolment_on_its_published_url(tmp_path: Path) -> None:
    """The agent's enrolment (agent.start_enrolment, service_for): the address and port of
    TRITON_POOL_ENROL_URL, the pool's server certificate and CA, the glidein's own condor_status (CONDOR_DIR,
    its condor_config, -pool its main collector), the settings; a client's key in an ad gets its certificate."""
    work_dir = tmp_path / "glidein"
    pool_dir = work_dir / "triton" / "pool"
    ca = pool_pki.make_ca(pool_dir)
    pool_pki.server_certificate(ca, "127.0.0.1")
    (work_dir / "condor_config").write_text("")
    ads = tmp_path / "ads"
    url = pool_enrolment.enrol_url("127.0.0.1")
    config = {
        "GLIDEIN_TRITON_POOL": "server",
        "GLIDEIN_TRITON_POOL_NAME": POOL,
        "GLIDEIN_TRITON_POOL_IDENTITIES": "*@frontend.example.org",
        "GLIDEIN_TRITON_POOL_CERT_HOURS": "3",
        "TRITON_POOL_ENROL_URL": url,
        "CONDOR_DIR": str(install_condor_dir(tmp_path / "condor")),
        "GLIDEIN_Collector": f"{COLLECTOR},backup.example.org:9618",
    }
    environment = {**os.environ, ADS_VARIABLE: str(ads), COLLECTOR_VARIABLE: COLLECTOR}
    glidein_config = work_dir / "glidein_config"
    glidein_config.write_text("".join(f"{key} {value}\n" for key, value in config.items()))
    service = agent.start_enrolment(work_dir, environment)
    assert service is not None
    try:
        client_dir = tmp_path / "client"
        values = pool_enrolment.client_values(client_dir, {"GLIDEIN_TRITON_POOL": "client"})
        assert values == [("TRITON_POOL_CLIENT_KEY", client_key(client_dir / "triton" / "pool"))]
        assert pool_enrolment.client_values(client_dir, {}) == []
        ad = f'MyType = "Machine"\nName = "c"\nTritonPoolRole = "client"\nTritonPoolName = "{POOL}"\n'
        ads.write_text(f'# advertised by: {IDENTITY}\n{ad}TritonPoolClientKey = "{values[0][1]}"\n')
        key = client_dir / "triton" / "pool" / "client.key"
        certificate = enrol(url, ca.der(), pool_files.der_fingerprint(ca.der()), key, "c")
        _start, end = pool_pki.dates(certificate)
        assert abs(end - (time.time() + 3 * 3600)) < 60
        assert "TLS Web Client Authentication" in openssl_text(certificate)
        assert "TLS Web Server Authentication" not in openssl_text(certificate)
    finally:
        service.shutdown()
        service.server_close()
    glidein_config.write_text("GLIDEIN_TRITON_POOL client\n")
    assert agent.start_enrolment(work_dir, environment) is None
    with pytest.raises(ValueError, match="no CONDOR_DIR"):
        pool_enrolment.service_for(work_dir, {**config, "CONDOR_DIR": ""}, environment, ca.sign_client_csr)
    with pytest.raises(ValueError, match="TRITON_POOL_ENROL_URL"):
        pool_enrolment.service_for(
            work_dir, {**config, "TRITON_POOL_ENROL_URL": ""}, environment, ca.sign_client_csr
        )


def test_a_client_certificate_never_outlives_the_ca(tmp_path: Path) -> None:
    ca = pool_pki.make_ca(tmp_path / "ca")  # a CA of one day
    client_key(tmp_path / "client")
    csr = pool_enrolment.make_csr(tmp_path / "client" / "client.key", "c")
    _start, ca_end = pool_pki.dates(ca.cert.read_bytes())
    _start, end = pool_pki.dates(pool_files.sign_client_csr(csr, 48, ca.directory))
    assert end == ca_end


def test_a_pool_client_glidein_publishes_its_key_fingerprint_and_no_key_bytes(tmp_path: Path) -> None:
    """startup.pool_client_values as announce publishes it: glidein_config and condor_vars.lst through the
    glidein's own add_config_line.source; the key 0600 in triton/pool, its bytes nowhere else."""
    glidein = SimulatedGlidein(tmp_path / "glidein").layout()
    assert startup.pool_client_values(GlideinConfig.read(glidein.config_path)) == []
    glidein.set("GLIDEIN_TRITON_POOL", "client")
    config = GlideinConfig.read(glidein.config_path)
    values = startup.pool_client_values(config)
    publish_config(config, values, publish.condor_vars(values))
    key = glidein.config_path.parent / "triton" / "pool" / "client.key"
    fingerprint = client_key(key.parent)
    assert values == [("TRITON_POOL_CLIENT_KEY", fingerprint)]
    assert glidein.config()["TRITON_POOL_CLIENT_KEY"] == fingerprint
    assert ["TRITON_POOL_CLIENT_KEY", "S", "-", "TritonPoolClientKey", "N", "Y", "-"] in glidein.condor_vars()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    body = key_body(key)
    for path in glidein.config_path.parent.rglob("*"):
        if path.is_file() and path != key:
            assert body not in path.read_text(errors="replace"), path


def test_a_kept_certificate_is_reused_until_it_is_near_its_end(pool: Pool) -> None:
    pool.advertise(pool.client_ad())
    ca_base64 = base64.b64encode(pool.ca.der()).decode()
    ca_fingerprint = pool_files.der_fingerprint(pool.ca.der())
    first = pool_enrolment.certificate_for(pool.client_dir, pool.url, ca_base64, ca_fingerprint, "c")
    assert first == pool.client_dir / "clients" / f"{ca_fingerprint[7:]}.pem"
    kept = first.read_bytes()
    assert pool_enrolment.certificate_for(pool.client_dir, pool.url, ca_base64, ca_fingerprint, "c") == first
    assert first.read_bytes() == kept  # reused: 2 h left is more than the margin
    renewed = pool_enrolment.certificate_for(
        pool.client_dir, pool.url, ca_base64, ca_fingerprint, "c", 3 * 3600
    )
    assert renewed.read_bytes() != kept
    with pytest.raises(EnrolmentError, match="not base64"):
        pool_enrolment.certificate_for(pool.client_dir, pool.url, "!!", "sha256:" + "0" * 64, "c")
    for forged in (
        "sha256:../../../etc/passwd",
        "sha256:" + "0" * 63,
        "sha256:" + "A" * 64,
        "md5:" + "0" * 64,
    ):
        with pytest.raises(EnrolmentError, match="not a sha256: fingerprint"):
            pool_enrolment.certificate_for(pool.client_dir, pool.url, ca_base64, forged, "c")


@pytest.mark.server
def test_a_pool_client_glidein_startup_publishes_its_key_in_the_ad(served_glidein: demo.DemoGlidein) -> None:
    """The whole startup on the real server: TritonPoolClientKey in the startd ad (condor_startup.sh's
    view), the key's bytes in no file the glidein writes outside triton/pool/client.key."""
    glidein, environment = served_glidein.glidein, served_glidein.environment
    glidein.set("GLIDEIN_TRITON_POOL", "client")
    result = glidein.run_startup(environment)
    assert result.returncode == 0, result.stderr
    key = glidein.config_path.parent / "triton" / "pool" / "client.key"
    attributes, _job_environment = glidein.published()
    assert attributes["TritonPoolClientKey"] == f'"{client_key(key.parent)}"'
    body = key_body(key)
    for path in glidein.root.rglob("*"):
        if path.is_file() and path != key and path.stat().st_size < 1 << 24:
            assert body not in path.read_bytes().decode(errors="replace"), path


@pytest.mark.skipif(not AS_ROOT, reason="switching users needs root")
def test_the_client_key_made_as_the_pilot_is_closed_to_another_local_user() -> None:
    """As deployed: the pool account makes its key under a umask of 0 (the glidein's may be anything);
    another local user can read neither the key nor the kept certificates' directory."""
    home = user_directory(PILOT_UID, 0o755)
    try:
        made = run_as(
            PILOT_UID,
            [sys.executable, "-c", CLIENT_KEY_AS_PILOT, str(home / "triton" / "pool")],
            cwd=home,
            umask=0,
        )
        assert made.returncode == 0, made.stderr
        assert made.stdout.startswith("sha256:")
        key = home / "triton" / "pool" / "client.key"
        assert key.stat().st_uid == PILOT_UID
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
        other = run_as(OTHER_UID, [sys.executable, "-c", f"open({str(key)!r}).read()"], cwd="/")
        assert other.returncode != 0
        assert "Permission denied" in other.stderr
    finally:
        shutil.rmtree(home)


CLIENT_KEY_AS_PILOT = (
    "import sys; from pathlib import Path; from glidein_triton.worker import pool_enrolment; "
    "print(pool_enrolment.client_key(Path(sys.argv[1])))"
)
