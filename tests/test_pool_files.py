"""Pool mode's keys and certificates (worker/pool_files.py), checked against the openssl command itself."""

from __future__ import annotations

import base64
import hashlib
import stat
import subprocess
import time
from pathlib import Path

import pytest

from glidein_triton.worker import pool_files
from glidein_triton.worker.pool_files import PoolFilesError


def openssl(*arguments: str, stdin: bytes = b"") -> bytes:
    return subprocess.run(["openssl", *arguments], input=stdin, capture_output=True, check=True).stdout


def text(certificate: Path | bytes) -> str:
    data = certificate.read_bytes() if isinstance(certificate, Path) else certificate
    return openssl("x509", "-noout", "-text", stdin=data).decode()


def request(key: Path, subject: str = "/CN=slot1@node") -> bytes:
    return openssl("req", "-new", "-key", str(key), "-subj", subject)


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    directory = tmp_path / "pool"
    pool_files.make_ca(directory, time.time() + 30 * 3600)
    return directory


def test_fingerprints_are_those_openssl_computes(ca: Path, tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    pool_files.make_key(key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "ASN1 OID: prime256v1" in openssl("pkey", "-in", str(key), "-noout", "-text").decode()
    spki = openssl("pkey", "-in", str(key), "-pubout", "-outform", "DER")
    expected = "sha256:" + hashlib.sha256(spki).hexdigest()
    assert pool_files.key_fingerprint(key) == expected
    assert pool_files.csr_fingerprint(request(key)) == expected
    ca_pem = (ca / pool_files.CA_CERT).read_bytes()
    der = openssl("x509", "-outform", "DER", stdin=ca_pem)
    assert pool_files.certificate_fingerprint(ca_pem) == "sha256:" + hashlib.sha256(der).hexdigest()
    assert pool_files.certificate_base64(ca_pem) == "".join(ca_pem.decode().splitlines()[1:-1])


def test_the_ca_lives_until_the_glideins_end_at_most_seven_days(tmp_path: Path) -> None:
    now = time.time()
    short = pool_files.make_ca(tmp_path / "short", now + 5 * 3600, now=now)
    assert abs(pool_files.not_after(short) - (now + 5 * 3600)) <= 1
    long = pool_files.make_ca(tmp_path / "long", now + 30 * 86400, now=now)
    assert abs(pool_files.not_after(long) - (now + 7 * 86400)) <= 1
    described = text(long)
    assert "CA:TRUE" in described
    assert "Certificate Sign" in described
    for directory in (tmp_path / "short", tmp_path / "long"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert {stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()} == {0o600}
    with pytest.raises(PoolFilesError, match="expired already"):
        pool_files.make_ca(tmp_path / "past", now - 1, now=now)


def test_a_client_certificate_is_client_auth_for_hours_and_never_past_the_ca(
    ca: Path, tmp_path: Path
) -> None:
    key = tmp_path / "client.key"
    pool_files.make_key(key)
    before = time.time()
    pem = pool_files.sign_client_csr(request(key, "/CN=whatever the client says"), 1.5, ca)
    described = text(pem)
    assert "TLS Web Client Authentication" in described
    assert "Server Authentication" not in described
    assert "whatever" not in described  # the server writes its own subject
    end = pool_files.not_after_of(pem)
    assert before + 1.5 * 3600 - 2 <= end <= time.time() + 1.5 * 3600
    verified = subprocess.run(
        ["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(ca / pool_files.CA_CERT)],
        input=pem,
        capture_output=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    capped = pool_files.sign_client_csr(request(key), 1000, ca)
    assert pool_files.not_after_of(capped) == pool_files.not_after(ca / pool_files.CA_CERT)


def test_a_csr_whose_signature_fails_is_refused(ca: Path, tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    pool_files.make_key(key)
    csr = bytearray(openssl("req", "-new", "-key", str(key), "-subj", "/CN=x", "-outform", "DER"))
    csr[-3] ^= 0xFF  # inside the signature
    forged = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(csr))
    forged += b"-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(PoolFilesError, match="signature does not verify"):
        pool_files.sign_client_csr(forged, 1, ca)
    with pytest.raises(PoolFilesError):
        pool_files.sign_client_csr(b"not a request", 1, ca)
    genuine = request(key)  # ECDSA signatures vary in length: one request
    with pytest.raises(PoolFilesError, match="of 8193 bytes"):
        pool_files.sign_client_csr(genuine + b" " * (8193 - len(genuine)), 1, ca)


def test_the_server_certificate_names_its_address(ca: Path) -> None:
    certificate = pool_files.make_server_certificate(ca, "127.0.0.2")
    described = text(certificate)
    assert "IP Address:127.0.0.2" in described
    assert "TLS Web Server Authentication" in described
    assert stat.S_IMODE((ca / pool_files.SERVER_KEY).stat().st_mode) == 0o600
    named = pool_files.make_server_certificate(ca, "node1.example.org")
    assert "DNS:node1.example.org" in text(named)
    verified = subprocess.run(
        ["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(ca / pool_files.CA_CERT), str(named)],
        capture_output=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
