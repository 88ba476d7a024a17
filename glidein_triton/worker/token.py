"""The glidein's two access tokens: random secrets in files only the glidein user can read.

* The **inference token** (file ``token``, header ``triton-token``) opens Triton's ``inference`` and
  ``metadata`` API categories. Jobs get it: the agent writes a copy into each job's sandbox
  (:func:`copy`, ``<sandbox>/.glidein_triton/token``).
* The **admin token** (file ``admin_token``, header ``triton-admin-token``) opens every other category but
  ``health``: model repository, shared memory, logging, trace, statistics, model configuration. Only the
  host-side programs (startup, agent, periodic, cleanup) read it; it never goes to a job's sandbox, to
  ``.gwms.d`` or to the job environment.

The server enforces both with ``--http-restricted-api`` and ``--grpc-restricted-protocol`` (gRPC clients
send the header as metadata with the prefix ``triton-grpc-protocol-``). Neither value is published, logged
or reported (see logs.redact).
"""

from __future__ import annotations

import base64
import contextlib
import os
from pathlib import Path

TOKEN_FILE_NAME = "token"  # noqa: S105 (the name of the inference token's file)
ADMIN_TOKEN_FILE_NAME = "admin_token"  # noqa: S105 (the name of the admin token's file)

HEADER = "triton-token"
ADMIN_HEADER = "triton-admin-token"
#: Triton's API categories (src/restricted_features.h) by token; ``health`` stays open (readiness checks).
INFERENCE_APIS = ("inference", "metadata")
ADMIN_APIS = ("model-repository", "shared-memory", "logging", "trace", "statistics", "model-config")


def create(directory: Path, name: str = TOKEN_FILE_NAME) -> tuple[str, Path]:
    """A new token in ``directory/name``, mode 0600 from the start (no window where others can read it)."""
    token = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    path = directory / name
    write_private(path, token)
    return token, path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file ``path`` of mode 0600 (an old file or link there is replaced)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as token_file:
        os.fchmod(token_file.fileno(), 0o600)
        token_file.write(text)


def read(path: Path) -> str:
    return path.read_text().strip()


def headers(*paths: Path) -> dict[str, str]:
    """The inference token header, from the first of ``paths`` that exists; none when the token is off."""
    for path in paths:
        try:
            return {HEADER: read(path)}
        except OSError:
            continue
    return {}


def host_headers(directory: Path) -> dict[str, str]:
    """Both token headers, for the host-side programs (empty when the tokens are off)."""
    found = headers(directory / TOKEN_FILE_NAME)
    with contextlib.suppress(OSError):
        found[ADMIN_HEADER] = read(directory / ADMIN_TOKEN_FILE_NAME)
    return found


def copy(source: Path, target: Path) -> None:
    """A private copy of the token file (mode 0600 from the start)."""
    write_private(target, read(source))


def server_options(inference: str, admin: str) -> list[str]:
    """tritonserver options: inference and metadata need the inference token, the rest but health the
    admin token (one option per group; a category may be in one group only)."""
    groups = [(INFERENCE_APIS, HEADER, inference), (ADMIN_APIS, ADMIN_HEADER, admin)]
    options = []
    for option in ("--http-restricted-api", "--grpc-restricted-protocol"):
        options += [f"{option}={','.join(apis)}:{header}={value}" for apis, header, value in groups]
    return options
