"""Pool mode's files on a glidein: ``<plugin dir>/pool`` (0700), each file 0600 (docs: pool_contract).

The names are fixed by the pool contract; the server, enrolment and client parts all read them from here.
"""

from __future__ import annotations

from pathlib import Path

from glidein_triton.worker import glidein_paths

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


def pool_dir(work_dir: Path) -> Path:
    """The glidein's pool directory."""
    return glidein_paths.plugin_dir(work_dir) / POOL_DIR_NAME


def client_cert_path(work_dir: Path, ca_fingerprint: str) -> Path:
    """Where a client glidein keeps its certificate from the server whose CA has ``ca_fingerprint``
    (``sha256:<hex>``)."""
    return pool_dir(work_dir) / CLIENT_CERTS_DIR / f"{ca_fingerprint.partition(':')[2]}.pem"
