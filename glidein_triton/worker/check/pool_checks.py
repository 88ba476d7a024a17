"""The node check's rows for a pool server (GLIDEIN_TRITON_POOL=server): openssl, the Triton release, a
routable address."""

from __future__ import annotations

import ipaddress
import shutil

from glidein_triton.worker import access, pool_server, triton_release
from glidein_triton.worker.check.container_checks import ServerRuntime, run_command
from glidein_triton.worker.check.findings import FAIL, OK, WARN, Finding
from glidein_triton.worker.check.node_checks import NodeContext

#: The container release of Triton 2.51.0 (build.py's TRITON_VERSION_MAP at v2.51.0).
MIN_CONTAINER = "24.10"


def check_openssl(context: NodeContext) -> Finding:
    """A pool server makes its CA and certificates with the ``openssl`` command."""
    found = shutil.which("openssl", path=context.environment.get("PATH"))
    if found is None:
        return Finding(
            "pool openssl", FAIL, "no openssl on PATH: a pool server makes its certificates with it"
        )
    code, output = run_command([found, "version"])
    if code != 0:
        return Finding("pool openssl", FAIL, f"{found} version failed (exit {code}): {output.strip()[:200]}")
    return Finding("pool openssl", OK, f"{output.strip()} at {found}")


def check_pool_release(context: NodeContext, server: ServerRuntime) -> Finding:
    """Triton 2.51 or newer (the startup refuses an older server once its metadata names its version)."""
    minimum = ".".join(map(str, pool_server.MIN_VERSION))
    if server.kind == "process" and server.executable:
        release = triton_release.from_help([server.executable], dict(context.environment))
    elif server.kind != "process" and context.settings.image:
        release = triton_release.from_image(context.settings.image)
    else:
        return Finding("pool triton", WARN, f"no server to check: a pool server needs Triton {minimum}")
    if release.version is not None:
        new_enough = release.version >= pool_server.MIN_VERSION
    elif release.container:
        new_enough = release.container >= MIN_CONTAINER
    else:
        return Finding(
            "pool triton",
            WARN,
            f"{release.describe()}: version unknown here; the startup refuses one older than {minimum}",
        )
    if not new_enough:
        return Finding("pool triton", FAIL, f"{release.describe()}: a pool server needs Triton {minimum}")
    return Finding("pool triton", OK, f"{release.describe()}: at least Triton {minimum}")


def check_address(context: NodeContext) -> Finding:
    """The address gRPC would listen on and be published with: not loopback; a private one is reachable
    from the same site at most."""
    try:
        address = context.settings.address or access.node_address()
    except access.NoAddressError as error:
        return Finding("pool address", FAIL, error.message)
    parsed = ipaddress.IPv4Address(address)
    if parsed.is_loopback:
        return Finding("pool address", FAIL, f"{address} is a loopback address: no other node reaches it")
    if parsed.is_private:
        return Finding(
            "pool address",
            WARN,
            f"{address} is a private address: jobs of other sites cannot reach it (same-site jobs may)",
        )
    return Finding("pool address", OK, f"gRPC would listen on {address}")


def check_pool(context: NodeContext, server: ServerRuntime) -> list[Finding]:
    """A pool server's rows (none for other glideins)."""
    if not pool_server.is_pool_server(context.settings):
        return []
    return [check_openssl(context), check_pool_release(context, server), check_address(context)]
