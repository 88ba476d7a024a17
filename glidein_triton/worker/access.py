"""Who may reach the server: loopback or the node's address, gRPC TLS."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path

from glidein_triton.worker.errors import ConfigError, TritonSetupError
from glidein_triton.worker.ports import LOOPBACK
from glidein_triton.worker.settings import Settings
from glidein_triton.worker.triton_release import METRICS_OFF

#: Triton's metrics port has no restriction option: it is off unless the operator asks for it.


class NoAddressError(TritonSetupError):
    failure_type = "Network"


@dataclass(frozen=True)
class Access:
    """The listening address of gRPC, and the server options and files that protect the server."""

    grpc_address: str = LOOPBACK
    options: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    tls: bool = False


def node_address(hostname: str | None = None) -> str:
    """The node's first non-loopback IPv4 address, as its host name resolves."""
    name = hostname or socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as error:
        raise NoAddressError(
            f"cannot resolve this node's name {name}: {error}; set GLIDEIN_TRITON_ADDRESS"
        ) from error
    for info in infos:
        address = str(info[4][0])
        if not ipaddress.IPv4Address(address).is_loopback:
            return address
    raise NoAddressError(f"{name} resolves to loopback addresses only; set GLIDEIN_TRITON_ADDRESS")


def tls_options(settings: Settings) -> tuple[list[str], list[str]]:
    """(options, files) for gRPC TLS, mutual when a root certificate is configured."""
    if not settings.tls_cert:
        return [], []
    files = [
        settings.tls_cert,
        settings.tls_key,
        *([settings.tls_root_cert] if settings.tls_root_cert else []),
    ]
    for path in files:
        if not Path(path).is_file():
            raise ConfigError(f"TLS file {path} does not exist (GLIDEIN_TRITON_TLS_*)")
    options = [
        "--grpc-use-ssl=true",
        f"--grpc-server-cert={settings.tls_cert}",
        f"--grpc-server-key={settings.tls_key}",
    ]
    if settings.tls_root_cert:
        options += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={settings.tls_root_cert}"]
    return options, files


#: What jobs may not do, which remote mode's gRPC (forwarded as it is, past the door's filter) restricts.
REMOTE_RESTRICTED = "model-repository,shared-memory,logging,trace"
#: A metadata key no client can send: HTTP/2 and gRPC allow lower-case field names only, and Triton compares
#: the name as given (sent in capitals by hand, the call is reset by gRPC before Triton sees it). So the
#: restricted categories are closed to every remote client, with any certificate.
UNSENDABLE_KEY = "Closed-To-Every-Client"


def prepare(settings: Settings) -> Access:
    """The address and the options (metrics off unless asked; in remote mode, the gRPC categories jobs may
    not use closed)."""
    options, files = tls_options(settings)
    if settings.remote:
        options.append(f"--grpc-restricted-protocol={REMOTE_RESTRICTED}:{UNSENDABLE_KEY}=1")
    if not settings.metrics:
        options.append(METRICS_OFF)
    address = (settings.address or node_address()) if settings.remote else LOOPBACK
    return Access(address, options, files, bool(settings.tls_cert))
