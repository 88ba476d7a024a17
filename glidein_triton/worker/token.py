"""The per-glidein access token: a random secret in a file only the glidein user can read.

The server restricts every API but health to requests that carry it (Triton's ``--http-restricted-api`` /
``--grpc-restricted-protocol``, header ``triton-token``). Jobs read it from
the file named by ``TRITON_TOKEN_FILE``. It is never published, logged or reported (see logs.redact).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

TOKEN_FILE_NAME = "token"  # noqa: S105 (the name of the token's file in the plugin directory)

#: The header key of the restricted APIs: HTTP clients send ``triton-token: <token>``, gRPC clients the
#: metadata ``triton-grpc-protocol-triton-token: <token>``.
HEADER = "triton-token"
#: Triton's API categories (``src/restricted_features.h``, all there since 2.40). Only health stays open:
#: without the token a local user could otherwise register or unregister shared memory, raise log verbosity,
#: start traces, read model configurations and statistics. The one place that lists what the token guards.
API_CATEGORIES = (
    "health",
    "metadata",
    "inference",
    "shared-memory",
    "model-config",
    "model-repository",
    "statistics",
    "trace",
    "logging",
)
OPEN_APIS = ("health",)
RESTRICTED_APIS = ",".join(category for category in API_CATEGORIES if category not in OPEN_APIS)


def create(directory: Path) -> tuple[str, Path]:
    """A new token in ``directory/token``, mode 0600 from the start (no window where others can read it)."""
    token = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    path = directory / TOKEN_FILE_NAME
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as token_file:
        os.fchmod(token_file.fileno(), 0o600)
        token_file.write(token)
    return token, path


def read(path: Path) -> str:
    return path.read_text().strip()


#: Where the hooks' own copy of the worker code keeps a copy of the token (``.gwms.d/lib/glidein_triton``):
#: GlideinWMS copies ``.gwms.d`` into a containerised job's sandbox, where the glidein directory is not seen.
BUNDLED_TOKEN = Path(__file__).resolve().parents[2] / TOKEN_FILE_NAME


def headers(*paths: Path) -> dict[str, str]:
    """The token header, from the first of ``paths`` that exists; none when the token is off."""
    for path in paths:
        try:
            return {HEADER: read(path)}
        except OSError:
            continue
    return {}


def copy(source: Path, target: Path) -> None:
    """A private copy of the token file (mode 0600 from the start)."""
    target.unlink(missing_ok=True)
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as token_file:
        token_file.write(read(source))


def server_options(token: str) -> list[str]:
    """tritonserver options that restrict every API but health to requests with the token."""
    restriction = f"{RESTRICTED_APIS}:{HEADER}={token}"
    return [f"--http-restricted-api={restriction}", f"--grpc-restricted-protocol={restriction}"]
