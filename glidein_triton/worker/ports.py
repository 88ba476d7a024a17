"""Choosing the server's three ports on the loopback address."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int


def free_port(host: str = LOOPBACK) -> int:
    """A port the kernel says is free now: a hint only, another process may take it before we bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def allocate(requested: Ports, probe: Callable[[], int] = free_port) -> Ports:
    """Fill each 0 in ``requested`` with a distinct free port; fixed ports are kept."""
    taken = {port for port in (requested.http, requested.grpc, requested.metrics) if port}
    chosen = []
    for fixed in (requested.http, requested.grpc, requested.metrics):
        port = fixed
        while not port:
            candidate = probe()
            if candidate not in taken:
                port = candidate
                taken.add(port)
        chosen.append(port)
    return Ports(*chosen)


def is_listening(port: int, host: str = LOOPBACK, timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
