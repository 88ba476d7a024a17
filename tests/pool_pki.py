"""A tiny openssl CA for the enrolment tests: a pool server's CA, its server certificate, and a signer with
lifetimes to the second (``openssl ca -enddate``), standing in for pool_files (the pool server's part)."""

from __future__ import annotations

import calendar
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SKEW = 300


def openssl(arguments: Sequence[str], stdin: bytes = b"") -> bytes:
    done = subprocess.run(["openssl", *arguments], input=stdin, capture_output=True, check=True, timeout=60)
    return done.stdout


def stamp(moment: float) -> str:
    return time.strftime("%Y%m%d%H%M%SZ", time.gmtime(moment))


def dates(certificate_pem: bytes) -> tuple[float, float]:
    """(notBefore, notAfter) of a certificate, unix time."""
    text = openssl(["x509", "-noout", "-startdate", "-enddate"], certificate_pem).decode()
    values = dict(line.split("=", 1) for line in text.splitlines())

    def parse(value):
        return float(calendar.timegm(time.strptime(" ".join(value.split()), "%b %d %H:%M:%S %Y %Z")))

    return parse(values["notBefore"]), parse(values["notAfter"])


@dataclass
class TestCA:
    directory: Path
    name: str

    @property
    def cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key(self) -> Path:
        return self.directory / "ca.key"

    def der(self) -> bytes:
        return openssl(["x509", "-in", str(self.cert), "-outform", "DER"])

    def config(self, extensions: str) -> Path:
        (self.directory / "index.txt").touch()
        path = self.directory / "ca.cnf"
        path.write_text(
            "[ca]\ndefault_ca = pool\n"
            f"[pool]\nserial = {self.directory}/serial\ndatabase = {self.directory}/index.txt\nnew_certs_dir = {self.directory}\n"
            "default_md = sha256\npolicy = any\nunique_subject = no\ncopy_extensions = none\n"
            f"[any]\ncommonName = supplied\n[extensions]\n{extensions}"
        )
        return path

    def sign(self, csr_pem: bytes, hours: float, extensions: str, subject: str = "/CN=client") -> bytes:
        request, out = self.directory / "request.pem", self.directory / "out.pem"
        request.write_bytes(csr_pem)
        now = time.time()
        openssl(
            [
                "ca", "-batch", "-notext", "-rand_serial", "-config", str(self.config(extensions)),
                "-extensions", "extensions", "-cert", str(self.cert), "-keyfile", str(self.key),
                "-subj", subject, "-startdate", stamp(now - SKEW), "-enddate", stamp(now + hours * 3600),
                "-in", str(request), "-out", str(out),
            ]
        )  # fmt: skip
        return out.read_bytes()

    def sign_client_csr(self, csr_pem: bytes, hours: float) -> bytes:
        """As pool_files.sign_client_csr: EKU clientAuth, the CSR's subject ignored."""
        return self.sign(
            csr_pem, hours, "basicConstraints = critical,CA:false\nextendedKeyUsage = clientAuth\n"
        )


def make_ca(directory: Path, name: str = "pool CA") -> TestCA:
    directory.mkdir(parents=True, exist_ok=True)
    ca = TestCA(directory, name)
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(ca.key)])
    openssl(
        [
            "req", "-x509", "-new", "-key", str(ca.key), "-subj", f"/CN={name}", "-days", "1",
            "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign",
            "-out", str(ca.cert),
        ]
    )  # fmt: skip
    return ca


def server_certificate(ca: TestCA, address: str) -> tuple[Path, Path]:
    """A server key and certificate (serverAuth, SAN IP ``address``) signed by ``ca``."""
    key, cert = ca.directory / "server.key", ca.directory / "server.pem"
    openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)])
    csr = openssl(["req", "-new", "-key", str(key), "-subj", "/CN=server"])
    extensions = f"extendedKeyUsage = serverAuth\nsubjectAltName = IP:{address}\n"
    cert.write_bytes(ca.sign(csr, 2, extensions, f"/CN={address}"))
    return cert, key
