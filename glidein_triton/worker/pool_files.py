"""Pool mode's keys and certificates: their names in ``triton/pool`` and the ``openssl`` commands making them.

Keys are EC P-256, made by ``openssl genpkey`` under umask 077; no key ever goes through an argv or an
environment (only file paths do). A pool server glidein makes its own CA (self-signed, living until the
glidein's end and at most :data:`MAX_CA_DAYS`) and a server certificate signed by it; the enrolment service
signs clients' CSRs with :func:`sign_client_csr`. ``openssl ca`` with a generated minimal configuration signs
everything, because its ``-startdate``/``-enddate`` give lifetimes to the second (``openssl x509 -req -days``
counts whole days in OpenSSL 3.0).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from glidein_triton.worker import files, glidein_paths
from glidein_triton.worker.errors import TritonSetupError

POOL_DIR_NAME = "pool"
CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
CLIENT_KEY = "client.key"
CLIENT_CERT = "client.pem"
CANDIDATES = "candidates.json"
#: A client glidein's certificates, one per server CA: ``clients/<CA fingerprint hex>.pem``.
CLIENT_CERTS_DIR = "clients"

#: The longest a pool CA lives (a glidein lives days, not weeks).
MAX_CA_DAYS = 7
#: How far back a certificate's validity starts, for clocks of other nodes a little behind ours.
CLOCK_SKEW = 300
OPENSSL_TIMEOUT = 30
#: The largest certificate request signed (the enrolment's limit: a P-256 CSR is under 1 KiB).
MAX_CSR = 8192
FINGERPRINT_PREFIX = "sha256:"
PEM_CERTIFICATE = "CERTIFICATE"
CLIENT_AUTH = "clientAuth"
SERVER_AUTH = "serverAuth"


class PoolFilesError(TritonSetupError):
    failure_type = "Config"


def pool_dir(work_dir: Path) -> Path:
    """Where pool mode keeps its keys and certificates: ``triton/pool`` (0700)."""
    return glidein_paths.plugin_dir(work_dir) / POOL_DIR_NAME


def client_cert_path(work_dir: Path, ca_fingerprint: str) -> Path:
    """Where a client glidein keeps its certificate from the server whose CA has ``ca_fingerprint``
    (``sha256:<hex>``, checked against the CA by whoever read it from an ad)."""
    return pool_dir(work_dir) / CLIENT_CERTS_DIR / f"{ca_fingerprint.partition(':')[2]}.pem"


def openssl(arguments: Sequence[str], stdin: bytes = b"") -> bytes:
    """Run ``openssl`` with ``arguments`` (paths and options, never a key) under umask 077; its stdout."""
    return _openssl(arguments, stdin).stdout


def _openssl(arguments: Sequence[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    old_mask = os.umask(0o077)
    try:
        done = subprocess.run(
            ["openssl", *arguments],
            input=stdin,
            capture_output=True,
            timeout=OPENSSL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PoolFilesError(f"openssl {arguments[0]} failed: {error}") from error
    finally:
        os.umask(old_mask)
    if done.returncode != 0:
        lines = [
            line
            for line in done.stderr.decode(errors="replace").splitlines()
            if line.strip() and not line.startswith("Using configuration")
        ]
        raise PoolFilesError(
            f"openssl {arguments[0]} failed (exit {done.returncode}): {lines[0] if lines else 'no message'}"
        )
    return done


def make_key(path: Path) -> None:
    """A new EC P-256 private key in ``path`` (0600)."""
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)])
    path.chmod(0o600)


def der_fingerprint(der: bytes) -> str:
    """``sha256:<hex>`` over DER bytes (a certificate's, a public key's)."""
    return FINGERPRINT_PREFIX + hashlib.sha256(der).hexdigest()


def key_fingerprint(private_key: Path) -> str:
    """``sha256:<hex>`` over the DER SubjectPublicKeyInfo of the key in ``private_key``."""
    return der_fingerprint(openssl(["pkey", "-in", str(private_key), "-pubout", "-outform", "DER"]))


def csr_fingerprint(csr_pem: bytes) -> str:
    """The fingerprint of the public key of a CSR, whose signature must verify (else PoolFilesError)."""
    checked = _openssl(["req", "-noout", "-verify", "-pubkey"], stdin=csr_pem)
    if b"verify OK" not in checked.stderr:  # OpenSSL 3.0 exits 0 after "...verify failure"
        raise PoolFilesError("the certificate request's signature does not verify")
    public_pem = checked.stdout
    return der_fingerprint(openssl(["pkey", "-pubin", "-pubout", "-outform", "DER"], stdin=public_pem))


def certificate_der(certificate_pem: bytes) -> bytes:
    """The DER of the first certificate of a PEM text."""
    text = certificate_pem.decode("ascii", errors="replace")
    begin, end = f"-----BEGIN {PEM_CERTIFICATE}-----", f"-----END {PEM_CERTIFICATE}-----"
    if begin not in text or end not in text.split(begin, 1)[1]:
        raise PoolFilesError("not a PEM certificate")
    body = text.split(begin, 1)[1].split(end, 1)[0]
    return base64.b64decode("".join(body.split()), validate=True)


def certificate_fingerprint(certificate_pem: bytes) -> str:
    """``sha256:<hex>`` over the certificate's DER."""
    return der_fingerprint(certificate_der(certificate_pem))


def certificate_base64(certificate_pem: bytes) -> str:
    """The certificate's DER in base64, one line (``TritonPoolCA``)."""
    return base64.b64encode(certificate_der(certificate_pem)).decode("ascii")


def not_after(certificate: Path) -> float:
    """When the certificate in the file ``certificate`` expires (unix time)."""
    return not_after_of(certificate.read_bytes())


def not_after_of(certificate_pem: bytes) -> float:
    """When the PEM certificate ``certificate_pem`` expires (unix time)."""
    line = openssl(["x509", "-noout", "-enddate"], stdin=certificate_pem).decode().strip()
    stamp = line.split("=", 1)[1]  # "Dec  7 23:00:00 2026 GMT"
    import calendar  # noqa: PLC0415 (only certificates need it)

    return float(calendar.timegm(time.strptime(" ".join(stamp.split()), "%b %d %H:%M:%S %Y %Z")))


def _stamp(moment: float) -> str:
    """``YYYYMMDDHHMMSSZ`` (GeneralizedTime, UTC) as ``openssl ca -startdate/-enddate`` take it."""
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(moment))


def subject_alt_name(address: str) -> str:
    """``IP:<address>`` for an IP address, else ``DNS:<name>``."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return f"DNS:{address}"
    return f"IP:{address}"


def _config(directory: Path, extensions: str) -> str:
    """A minimal ``openssl ca`` configuration: its database in ``directory``, any subject, random serials,
    the given extensions."""
    return (
        "[ca]\ndefault_ca = pool\n"
        f"[pool]\nserial = {directory}/serial\ndatabase = {directory}/index.txt\n"
        f"new_certs_dir = {directory}\n"
        "default_md = sha256\npolicy = any\n"
        "unique_subject = no\nemail_in_dn = no\ncopy_extensions = none\n"
        "[any]\ncommonName = supplied\n"
        f"[extensions]\n{extensions}"
    )


@contextmanager
def _signing_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="glidein-triton-ca-") as name:
        directory = Path(name)
        (directory / "index.txt").write_bytes(b"")
        yield directory


def _sign(
    csr_pem: bytes,
    ca_key: Path,
    ca_cert: Path | None,
    subject: str,
    start: float,
    end: float,
    extensions: str,
) -> bytes:
    """A certificate for ``csr_pem``'s key with ``subject`` and ``extensions``, valid from ``start`` to
    ``end``, signed by ``ca_key`` (self-signed when ``ca_cert`` is None)."""
    with _signing_dir() as directory:
        config = directory / "ca.cnf"
        config.write_text(_config(directory, extensions))
        (directory / "request.pem").write_bytes(csr_pem)
        out = directory / "certificate.pem"
        arguments = [
            "ca",
            "-batch",
            "-notext",
            "-rand_serial",
            "-config",
            str(config),
            "-extensions",
            "extensions",
            "-keyfile",
            str(ca_key),
            "-subj",
            subject,
            "-startdate",
            _stamp(start),
            "-enddate",
            _stamp(end),
            "-in",
            str(directory / "request.pem"),
            "-out",
            str(out),
        ]
        arguments += ["-selfsign"] if ca_cert is None else ["-cert", str(ca_cert)]
        openssl(arguments)
        if not out.is_file():  # openssl ca exits 0 after some refusals
            raise PoolFilesError("openssl ca signed nothing (an invalid certificate request?)")
        return out.read_bytes()


def _request(key: Path, subject: str) -> bytes:
    return openssl(["req", "-new", "-key", str(key), "-subj", subject])


def make_ca(directory: Path, end: float, now: float | None = None) -> Path:
    """A new CA key and self-signed certificate in ``directory`` (0700; files 0600) living until ``end``,
    at most :data:`MAX_CA_DAYS` days; returns the certificate's path."""
    files.private_directory(directory)
    start = time.time() if now is None else now
    end = min(end, start + MAX_CA_DAYS * 86400)
    if end <= start:
        raise PoolFilesError("the pool CA would have expired already (the glidein's end is past)")
    key = directory / CA_KEY
    make_key(key)
    extensions = (
        "basicConstraints = critical,CA:true,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
    )
    subject = "/CN=glidein-triton pool CA"
    pem = _sign(_request(key, subject), key, None, subject, start - CLOCK_SKEW, end, extensions)
    certificate = directory / CA_CERT
    files.write_atomically(certificate, pem)
    return certificate


def sign(
    directory: Path, csr_pem: bytes, hours: float, usage: str, subject: str, alt_name: str = ""
) -> bytes:
    """``csr_pem`` signed by the CA of ``directory`` for ``hours`` (never past the CA's own end), with the
    extended key usage ``usage`` (:data:`CLIENT_AUTH` or :data:`SERVER_AUTH`) and, if given, ``alt_name``."""
    if usage not in (CLIENT_AUTH, SERVER_AUTH):
        raise PoolFilesError(f"unknown key usage {usage}")
    ca_cert = directory / CA_CERT
    now = time.time()
    end = min(now + hours * 3600, not_after(ca_cert))
    if end <= now:
        raise PoolFilesError(f"the pool CA {ca_cert} has expired")
    extensions = (
        "basicConstraints = critical,CA:false\nkeyUsage = critical,digitalSignature\n"
        f"extendedKeyUsage = {usage}\nauthorityKeyIdentifier = keyid\n"
    )
    if alt_name:
        extensions += f"subjectAltName = {alt_name}\n"
    return _sign(csr_pem, directory / CA_KEY, ca_cert, subject, now - CLOCK_SKEW, end, extensions)


def sign_client_csr(csr_pem: bytes, hours: float, directory: Path) -> bytes:
    """A client certificate (EKU clientAuth) for the key of ``csr_pem``, for ``hours`` at most, signed by
    the pool CA of ``directory``; the CSR's subject is ignored (the certificate names the key's
    fingerprint)."""
    if len(csr_pem) > MAX_CSR:
        raise PoolFilesError(f"a certificate request of {len(csr_pem)} bytes (at most {MAX_CSR})")
    fingerprint = csr_fingerprint(csr_pem)
    subject = "/CN=glidein-triton pool client " + fingerprint[len(FINGERPRINT_PREFIX) :][:32]
    return sign(directory, csr_pem, hours, CLIENT_AUTH, subject)


def make_server_certificate(directory: Path, address: str) -> Path:
    """A new server key and a certificate (EKU serverAuth, SAN ``address``) signed by the CA of
    ``directory``, living as long as the CA; returns the certificate's path."""
    key = directory / SERVER_KEY
    make_key(key)
    hours = (not_after(directory / CA_CERT) - time.time()) / 3600
    pem = sign(
        directory,
        _request(key, "/CN=server"),
        hours,
        SERVER_AUTH,
        f"/CN={address}",
        subject_alt_name(address),
    )
    certificate = directory / SERVER_CERT
    files.write_atomically(certificate, pem)
    return certificate
