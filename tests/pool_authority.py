"""Pool mode's test parts: certificates made with the openssl command line (a CA per server, server and
client certificates signed by it, EC P-256 keys), a pool server's tritonserver options, and server ads."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from glidein_triton.worker.ports import free_port


def openssl(*arguments: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *arguments], check=True, capture_output=True, input=stdin).stdout


def make_key(path: Path) -> Path:
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class Authority:
    cert: Path
    key: Path

    @property
    def der(self) -> bytes:
        return openssl("x509", "-in", str(self.cert), "-outform", "DER")

    @property
    def fingerprint(self) -> str:
        return "sha256:" + hashlib.sha256(self.der).hexdigest()

    @property
    def base64(self) -> str:
        return base64.b64encode(self.der).decode("ascii")

    def issue(
        self, key: Path, out: Path, *, usage: str = "clientAuth", address: str = "", days: int = 1
    ) -> Path:
        """A certificate for ``key`` signed by this CA: EKU ``usage``, an IP SAN for ``address``."""
        csr = openssl("req", "-new", "-key", str(key), "-subj", f"/CN={address or 'client'}")
        extensions = out.with_suffix(".ext")
        lines = ["basicConstraints=CA:FALSE", f"extendedKeyUsage={usage}"]
        if address:
            lines.append(f"subjectAltName=IP:{address}")
        extensions.write_text("\n".join(lines) + "\n")
        openssl(
            "x509", "-req", "-CA", str(self.cert), "-CAkey", str(self.key), "-CAcreateserial",
            "-days", str(days), "-extfile", str(extensions), "-out", str(out), stdin=csr,
        )  # fmt: skip
        return out


def make_authority(directory: Path, name: str = "pool CA") -> Authority:
    directory.mkdir(parents=True, exist_ok=True)
    key = make_key(directory / "ca.key")
    cert = directory / "ca.pem"
    openssl(
        "req", "-x509", "-new", "-key", str(key), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", str(cert),
    )  # fmt: skip
    return Authority(cert, key)


def pool_server_options(root: Path, address: str, authority: Authority) -> tuple[list[str], int, int]:
    """The tritonserver options of a pool server on ``address``: gRPC with mutual TLS (a server certificate
    of ``authority``, which signs the clients' too), HTTP on loopback, no metrics; and its gRPC and HTTP
    ports."""
    key = make_key(root / f"{address}.key")
    cert = authority.issue(key, root / f"{address}.pem", usage="serverAuth", address=address)
    grpc_port, http_port = free_port(address), free_port()
    options = [
        f"--grpc-address={address}",
        f"--grpc-port={grpc_port}",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--allow-metrics=false",
        "--grpc-use-ssl-mutual=true",
        f"--grpc-server-cert={cert}",
        f"--grpc-server-key={key}",
        f"--grpc-root-cert={authority.cert}",
    ]
    return options, grpc_port, http_port


def server_ad(name: str, authority: Authority, identity: str = "Far@frontend", **overrides: str) -> str:
    """A pool server's ad for the stand-in collector's ads file (attribute values in ClassAd syntax), as
    advertised by ``identity`` (empty: an unauthenticated update); ``overrides`` replace or add attributes."""
    attributes = {
        "MyType": '"Machine"',
        "Name": f'"{name}"',
        "Machine": f'"{name}"',
        "TritonPoolRole": '"server"',
        "TritonPoolName": '"cms"',
        "TritonPoolURL": '"127.0.0.2:8001"',
        "TritonPoolSite": '"Far"',
        "TritonPoolCA": f'"{authority.base64}"',
        "TritonPoolCAFingerprint": f'"{authority.fingerprint}"',
        "TritonPoolModels": '"simple"',
        "TritonPoolQueueTimeMs": "0.0",
        "TritonPoolAccepting": "true",
        "TritonPoolDrainTime": "0",
        **overrides,
    }
    head = f"# advertised by: {identity}\n" if identity else ""
    return head + "".join(f"{k} = {v}\n" for k, v in attributes.items())
