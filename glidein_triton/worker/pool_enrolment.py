"""Pool mode's enrolment (GlideinWMS 3.10: no secret from the frontend): a client glidein's key gets a
short-lived client certificate from a pool server's CA when the pool's collector holds an authenticated
client ad naming that key.

Server side (a pool server glidein's agent): :class:`EnrolmentService`, an HTTPS service (TLS server-auth
with the server certificate) answering ``POST /enrol`` with a CSR (PEM, at most :data:`MAX_CSR` bytes; 413
over it). The CSR's public key fingerprint must be the ``TritonPoolClientKey`` of a client ad of the pool
that the glidein's own ``condor_status`` finds, with an ``AuthenticatedIdentity`` (the collector sets it
from the advertiser's token) matching GLIDEIN_TRITON_POOL_IDENTITIES: then 200 with the certificate the
signer makes (lifetime GLIDEIN_TRITON_POOL_CERT_HOURS), else 403 with a one-line reason. At most
:data:`CONCURRENCY` connections at once (more are closed unanswered), each cut after :data:`REQUEST_LIMIT`
seconds, TLS handshake included; one log line per decision, naming the key's fingerprint, never key bytes.

Client side: :func:`enrol` checks the CA of the server's ad against the ad's fingerprint, then POSTs a CSR
made from its key over TLS verified against that CA only: to a server that cannot prove it holds that CA's
certificate it sends nothing. The key never leaves its node: only the CSR (its public half) does.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import http.client
import http.server
import logging
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.worker import files, pool_files
from glidein_triton.worker.classad import quoted
from glidein_triton.worker.commands import run_quietly
from glidein_triton.worker.ports import free_port

LOG = logging.getLogger(__name__)

PATH = "/enrol"
#: The largest CSR body read (an EC P-256 CSR is ~500 bytes in PEM).
MAX_CSR = 8192
#: Connections served at once; further ones are closed at once.
CONCURRENCY = 4
#: Seconds one connection may take, TLS handshake included (a slow client cannot hold a slot longer).
REQUEST_LIMIT = 10.0
#: After an answer, how long and how much of the rest of a request is read before the connection closes.
LINGER = 1.0
MAX_LINGER = 1 << 20
#: Seconds a condor_status lookup may take.
LOOKUP_TIMEOUT = 30.0
#: Seconds a lookup's answer is reused for the same key (a client retrying costs one query).
CACHE_SECONDS = 5.0
#: A client enrols again when its certificate has less than this left (seconds).
RENEW_MARGIN = 1800.0
#: The largest answer (certificate) a client reads.
MAX_ANSWER = 65536
HEX = "0123456789abcdef"
#: The glidein_config key of the enrolment URL that the pool server publishes (TritonPoolEnrolURL).
ENROL_URL_KEY = "TRITON_POOL_ENROL_URL"
#: The glidein_config key of a pool client's key fingerprint (TritonPoolClientKey, publish.ATTRIBUTES).
CLIENT_KEY_KEY = "TRITON_POOL_CLIENT_KEY"
PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
OPENSSL_TIMEOUT = 30.0

#: ``sign(csr_pem, hours)``: the client certificate (PEM) for the CSR's key (pool_files.sign_client_csr).
Signer = Callable[[bytes, float], bytes]
#: ``fingerprint(csr_pem)``: ``sha256:<hex>`` of the CSR's public key, its signature verified.
CsrFingerprint = Callable[[bytes], str]
#: ``lookup(fingerprint)``: the (AuthenticatedIdentity or "", Name) of each client ad naming the key.
Lookup = Callable[[str], list[tuple[str, str]]]


class EnrolmentError(Exception):
    """A client's enrolment failed: the message names the server and the cause, never key bytes."""


class CollectorError(Exception):
    """condor_status could not answer."""


@dataclass(frozen=True)
class Decision:
    """An answer to one request: the HTTP status, the body, and the log line's reason."""

    status: int
    body: bytes
    reason: str


# ---------------------------------------------------------------------------------------------- server side


def constraint(pool_name: str, fingerprint: str) -> str:
    """The client ads of ``pool_name`` that name the key ``fingerprint`` (``=?=``: exact, case-sensitive)."""
    return (
        f'TritonPoolRole =?= "client" && TritonPoolName =?= {quoted(pool_name)}'
        f" && TritonPoolClientKey =?= {quoted(fingerprint)}"
    )


def main_collector(collectors: str) -> str:
    """The first collector of glidein_config's ``GLIDEIN_Collector`` (groups by ``;``, lists by ``,``; a
    port range's first port), the pool's main one; "" when there is none."""
    for item in collectors.replace(";", ",").split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon:
            host, port = port, ""
        if host:
            return f"{host}:{port.split('-', 1)[0]}" if colon else host
    return ""


def condor_lookup(
    condor_dir: Path, condor_config: Path, collector: str, pool_name: str, environment: Mapping[str, str]
) -> Lookup:
    """A lookup through the glidein's own ``condor_status`` (its configuration and so its token; only the
    main collector when named: a site collector's ads are not the pool's)."""
    command_environment = {key: value for key, value in environment.items() if not key.startswith("_CONDOR_")}
    command_environment["CONDOR_CONFIG"] = str(condor_config)

    def lookup(fingerprint: str) -> list[tuple[str, str]]:
        argv = [str(condor_dir / "bin" / "condor_status"), *(["-pool", collector] if collector else [])]
        argv += ["-constraint", constraint(pool_name, fingerprint), "-af", "AuthenticatedIdentity", "Name"]
        try:
            done = run_quietly(argv, LOOKUP_TIMEOUT, command_environment)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise CollectorError(f"condor_status failed: {error}") from error
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise CollectorError(f"condor_status failed (exit {done.returncode}): {last}")
        found = []
        for line in done.stdout.splitlines():
            identity, _, name = line.partition(" ")
            if identity:  # -af prints an undefined identity as "undefined": an unauthenticated update
                found.append(("" if identity == "undefined" else identity, name))
        return found

    return lookup


class Gatekeeper:
    """Who may enrol: a key named by an authenticated client ad of the pool, of an allowed identity."""

    def __init__(self, lookup: Lookup, patterns: Sequence[str], clock: Callable[[], float] = time.monotonic):
        self.lookup = lookup
        self.patterns = tuple(patterns)
        self.clock = clock
        self.cache: dict[str, tuple[float, list[tuple[str, str]]]] = {}
        self.lock = threading.Lock()

    def ads(self, fingerprint: str) -> list[tuple[str, str]]:
        """The ads naming ``fingerprint``, from the cache when looked up less than CACHE_SECONDS ago."""
        now = self.clock()
        with self.lock:
            cached = self.cache.get(fingerprint)
            if cached and now - cached[0] < CACHE_SECONDS:
                return cached[1]
            self.cache = {key: value for key, value in self.cache.items() if now - value[0] < CACHE_SECONDS}
        found = self.lookup(fingerprint)
        with self.lock:
            self.cache[fingerprint] = (now, found)
        return found

    def refusal(self, fingerprint: str) -> str:
        """Why ``fingerprint`` may not enrol ("" when it may)."""
        ads = self.ads(fingerprint)
        if not ads:
            return "no client ad of this pool names this key"
        identities = [identity for identity, _name in ads if identity]
        if not identities:
            return "the client ads naming this key have no AuthenticatedIdentity (unauthenticated updates)"
        if not any(fnmatch.fnmatchcase(i, p) for i in identities for p in self.patterns):
            return f"identity {identities[0]} matches no GLIDEIN_TRITON_POOL_IDENTITIES pattern"
        return ""


def decide(
    body: bytes, gatekeeper: Gatekeeper, fingerprint_of: CsrFingerprint, sign: Signer, hours: float
) -> Decision:
    """The answer to one CSR (the size is checked before the body is read: :class:`Handler`)."""
    try:
        fingerprint = fingerprint_of(body)
    except Exception as error:
        return Decision(400, b"not a CSR with a valid signature\n", f"not a CSR ({type(error).__name__})")
    try:
        refusal = gatekeeper.refusal(fingerprint)
    except CollectorError as error:
        return Decision(503, b"cannot query the collector now\n", f"key {fingerprint}: {error}")
    if refusal:
        return Decision(403, f"{refusal}\n".encode(), f"key {fingerprint} refused: {refusal}")
    try:
        certificate = sign(body, hours)
    except Exception as error:
        return Decision(500, b"cannot sign now\n", f"key {fingerprint}: signing failed: {error}")
    return Decision(200, certificate, f"key {fingerprint} signed for {hours:g} h")


class Handler(http.server.BaseHTTPRequestHandler):
    """``POST /enrol``; everything else 404/405. Logs one line per decision (the server's ``decide``)."""

    server: EnrolmentService
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        if self.path != PATH:
            self.answer(Decision(404, b"not found\n", f"POST {self.path[:100]!r}: not found"))
            return
        length = self.headers.get("Content-Length", "")
        if not (length.isascii() and length.isdigit()):  # int() refuses "²", which isdigit takes
            self.answer(Decision(411, b"a Content-Length is required\n", "no Content-Length"))
            return
        if int(length) > MAX_CSR:
            self.answer(Decision(413, f"a CSR is at most {MAX_CSR} bytes\n".encode(), f"{length} bytes"))
            return
        body = self.rfile.read(int(length))
        service = self.server
        self.answer(decide(body, service.gatekeeper, service.fingerprint_of, service.sign, service.hours))

    def do_GET(self) -> None:
        self.answer(Decision(405, b"POST a CSR to /enrol\n", f"GET {self.path[:100]!r}"))

    def answer(self, decision: Decision) -> None:
        LOG.info("enrolment from %s: %d: %s", self.client_address[0], decision.status, decision.reason)
        self.send_response(decision.status)
        kind = "application/x-pem-file" if decision.status == 200 else "text/plain"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(decision.body)))
        self.end_headers()
        self.wfile.write(decision.body)

    def log_message(self, format: str, *args: object) -> None:
        """http.server's own access lines are not logged: :meth:`answer` logs each decision."""


class EnrolmentService(http.server.ThreadingHTTPServer):
    """The HTTPS enrolment service, TLS done in each connection's thread under a time limit."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        certificate: Path,
        key: Path,
        gatekeeper: Gatekeeper,
        fingerprint_of: CsrFingerprint,
        sign: Signer,
        hours: float,
    ) -> None:
        super().__init__(address, Handler)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.load_cert_chain(certificate, key)
        self.gatekeeper = gatekeeper
        self.fingerprint_of = fingerprint_of
        self.sign = sign
        self.hours = hours
        self.slots = threading.BoundedSemaphore(CONCURRENCY)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if not self.slots.acquire(blocking=False):
            LOG.warning("enrolment from %s: %d connections already: closed", client_address, CONCURRENCY)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        limit = TimeLimit(request.fileno())
        try:
            request.settimeout(REQUEST_LIMIT)
            with self.context.wrap_socket(request, server_side=True) as secured:
                self.finish_request(secured, client_address)
                linger(secured)
        except OSError as error:  # ssl.SSLError too: a handshake that fails, or a cut connection
            LOG.info("enrolment from %s: connection ended: %s", client_address, error)
        finally:
            limit.end()
            self.shutdown_request(request)
            self.slots.release()


def linger(secured: ssl.SSLSocket) -> None:
    """End the answer, then read (and drop) what the client still sends, up to MAX_LINGER bytes for at most
    LINGER seconds: closing with a body unread (a 413) resets the connection, which can lose the answer."""
    secured.shutdown(socket.SHUT_WR)  # TLS ends here: what follows is read from the plain socket
    secured.settimeout(LINGER)
    dropped = 0
    with contextlib.suppress(OSError):
        while dropped < MAX_LINGER:
            data = secured.recv(65536)
            if not data:
                break
            dropped += len(data)


class TimeLimit:
    """Shuts a connection down (its socket, by descriptor: TLS takes the socket object over) after
    REQUEST_LIMIT seconds, so that its thread's read or write fails; never once it has ended."""

    def __init__(self, descriptor: int) -> None:
        self.descriptor = descriptor
        self.lock = threading.Lock()
        self.ended = False
        self.timer = threading.Timer(REQUEST_LIMIT, self.cut)
        self.timer.start()

    def cut(self) -> None:
        with self.lock:
            if self.ended:
                return
            with contextlib.suppress(OSError), socket.socket(fileno=os.dup(self.descriptor)) as duplicate:
                duplicate.shutdown(socket.SHUT_RDWR)

    def end(self) -> None:
        """Before the descriptor is closed (and could be another connection's)."""
        with self.lock:
            self.ended = True
        self.timer.cancel()


def start(service: EnrolmentService) -> threading.Thread:
    """Serve in a daemon thread of the agent."""
    thread = threading.Thread(target=service.serve_forever, name="pool-enrolment", daemon=True)
    thread.start()
    return thread


def pool_setting(config: Mapping[str, str], key: str, default: str) -> str:
    """GLIDEIN_TRITON_POOL / _POOL_NAME as glidein_config has them (the pool server part owns their rows
    in the settings table)."""
    return config.get(key, "").strip() or default


def enrol_url(address: str) -> str:
    """A ``TritonPoolEnrolURL`` for a pool server's startup to publish: a port free now on ``address``
    (the agent binds it later: :func:`service_for`)."""
    return f"https://{address}:{free_port(address)}{PATH}"


def service_for(
    work_dir: Path, config: Mapping[str, str], environment: Mapping[str, str], sign: Signer
) -> EnrolmentService | None:
    """The enrolment service of a pool server glidein (None for any other glidein), on the address and port
    of its published ``TritonPoolEnrolURL``, with the pool's server certificate, the glidein's own
    condor_status and the settings GLIDEIN_TRITON_POOL_IDENTITIES and _CERT_HOURS. Raises OSError or
    ValueError when it cannot be set up (the agent logs it and runs on without enrolment)."""
    if pool_setting(config, "GLIDEIN_TRITON_POOL", "off").lower() != "server":
        return None
    from glidein_triton.worker.settings import Settings  # noqa: PLC0415 (only a pool server needs it)

    settings = Settings.from_config(config)
    url = urllib.parse.urlsplit(config.get(ENROL_URL_KEY, ""))
    if url.scheme != "https" or not url.hostname or url.port is None:
        raise ValueError(f"no https://address:port/enrol in glidein_config's {ENROL_URL_KEY}")
    if not config.get("CONDOR_DIR", "").startswith("/"):
        raise ValueError("no CONDOR_DIR (the glidein's HTCondor, with bin/condor_status) in glidein_config")
    pool_dir = pool_files.pool_dir(work_dir)
    lookup = condor_lookup(
        Path(config["CONDOR_DIR"]),
        work_dir / "condor_config",
        main_collector(config.get("GLIDEIN_Collector", "")),
        pool_setting(config, "GLIDEIN_TRITON_POOL_NAME", "default"),
        environment,
    )
    return EnrolmentService(
        (url.hostname, url.port),
        pool_dir / pool_files.SERVER_CERT,
        pool_dir / pool_files.SERVER_KEY,
        Gatekeeper(lookup, settings.pool_identities),
        pool_files.csr_fingerprint,
        sign,
        settings.pool_cert_hours,
    )


# ---------------------------------------------------------------------------------------------- client side


def certificate_path(pool_dir: Path, ca_fingerprint: str) -> Path:
    """Where a client keeps the certificate a server's CA signed: ``clients/<CA fingerprint hex>.pem``;
    EnrolmentError for anything but ``sha256:`` and 64 lowercase hex digits (an ad's text makes no path)."""
    digest = ca_fingerprint[len(pool_files.FINGERPRINT_PREFIX) :]
    if not ca_fingerprint.startswith(pool_files.FINGERPRINT_PREFIX) or len(digest) != 64 or digest.strip(HEX):
        raise EnrolmentError(f"not a sha256: fingerprint: {ca_fingerprint[:80]!r}")
    return pool_dir / pool_files.CLIENT_CERTS_DIR / f"{digest}.pem"


def enrol(
    url: str, ca_der: bytes, ca_fingerprint: str, key_path: Path, csr_subject: str, timeout: float = 30.0
) -> bytes:
    """The client certificate (PEM) the server at ``url`` (``TritonPoolEnrolURL``) signs for the key in
    ``key_path``; EnrolmentError when the ad's CA does not match its fingerprint, the server's TLS does not
    verify against that CA (nothing is sent then), or the server refuses."""
    if (
        not ca_fingerprint.startswith(pool_files.FINGERPRINT_PREFIX)
        or pool_files.der_fingerprint(ca_der) != ca_fingerprint
    ):
        raise EnrolmentError(
            f"the CA in the ad of {url} does not match its fingerprint {ca_fingerprint[:80]}"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.port is None:
        raise EnrolmentError(f"not an https://host:port/ URL: {url[:200]}")
    try:
        context = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(ca_der))
    except (ssl.SSLError, ValueError) as error:
        raise EnrolmentError(f"the CA in the ad of {url} is not a certificate: {error}") from error
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    csr = make_csr(key_path, csr_subject)
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
    try:
        connection.connect()  # the handshake, verified, before a byte of the request
        connection.request(
            "POST", parts.path or PATH, body=csr, headers={"Content-Type": "application/pkcs10"}
        )
        response = connection.getresponse()
        answer = response.read(MAX_ANSWER)
    except (OSError, http.client.HTTPException) as error:
        raise EnrolmentError(f"enrolment at {url} failed: {error}") from error
    finally:
        connection.close()
    if response.status != 200:
        reason = answer.decode("utf-8", errors="replace").strip().splitlines()[:1] or [response.reason]
        raise EnrolmentError(f"{url} refused the enrolment ({response.status}): {reason[0][:300]}")
    if not answer.lstrip().startswith(PEM_CERTIFICATE.encode()):
        raise EnrolmentError(f"{url} answered something other than a PEM certificate")
    return answer


def store(pool_dir: Path, ca_fingerprint: str, certificate_pem: bytes) -> Path:
    """Keep the certificate a server's CA signed (0600, in 0700 directories)."""
    path = certificate_path(pool_dir, ca_fingerprint)
    files.private_directory(path.parent)
    files.write_atomically(path, certificate_pem)
    return path


def client_key(pool_dir: Path) -> str:
    """The client glidein's key (``client.key``, made once, 0600) and its fingerprint for its ad
    (``TritonPoolClientKey``)."""
    files.private_directory(pool_dir)
    key = pool_dir / pool_files.CLIENT_KEY
    if not key.exists():
        pool_files.make_key(key)
    return pool_files.key_fingerprint(key)


def certificate_for(
    pool_dir: Path,
    url: str,
    ca_base64: str,
    ca_fingerprint: str,
    csr_subject: str,
    margin: float = RENEW_MARGIN,
) -> Path:
    """The path of a client certificate from the server of an ad (its ``TritonPoolEnrolURL``,
    ``TritonPoolCA``, ``TritonPoolCAFingerprint``): the one kept for that CA while it has more than
    ``margin`` seconds left, else a new one enrolled for and kept; EnrolmentError when none can be had."""
    path = certificate_path(pool_dir, ca_fingerprint)
    if path.is_file() and _valid_for(path, margin):
        return path
    try:
        ca_der = base64.b64decode(ca_base64, validate=True)
    except ValueError as error:
        raise EnrolmentError(f"the CA in the ad of {url} is not base64") from error
    return store(
        pool_dir,
        ca_fingerprint,
        enrol(url, ca_der, ca_fingerprint, pool_dir / pool_files.CLIENT_KEY, csr_subject),
    )


def _valid_for(certificate: Path, seconds: float) -> bool:
    """Whether the certificate is still valid ``seconds`` from now."""
    try:
        return pool_files.not_after(certificate) > time.time() + seconds
    except (OSError, ValueError, pool_files.PoolFilesError):
        return False


def client_values(work_dir: Path, config: Mapping[str, str]) -> list[tuple[str, str]]:
    """What a pool client glidein publishes at startup: its key's fingerprint (``TritonPoolClientKey``),
    the key made if needed; nothing for other glideins, or when openssl fails (logged: the glidein then
    cannot enrol, its own server still serves its jobs)."""
    if pool_setting(config, "GLIDEIN_TRITON_POOL", "off").lower() != "client":
        return []
    try:
        fingerprint = client_key(pool_files.pool_dir(work_dir))
    except (OSError, pool_files.PoolFilesError) as error:
        LOG.warning("pool client: cannot make its key, so it cannot enrol: %s", error)
        return []
    return [(CLIENT_KEY_KEY, fingerprint)]


def make_csr(key_path: Path, subject: str) -> bytes:
    """A CSR (PEM) for the key in ``key_path`` (a path only goes into openssl's argv); the subject is any
    text, which the server replaces."""
    name = "".join(c for c in subject if c.isalnum() or c in "@._-:")[:64] or "glidein"
    try:
        return pool_files.openssl(["req", "-new", "-key", str(key_path), "-subj", f"/CN={name}"])
    except pool_files.PoolFilesError as error:
        raise EnrolmentError(str(error)) from error
