"""Triton's HTTP health and metadata endpoints, spoken over a plain socket.

A few lines of HTTP/1.0 instead of urllib: no proxy settings apply (grid nodes often set http_proxy,
which must not catch loopback requests), nothing heavy to import, and each poll costs well under a
millisecond.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from .ports import LOOPBACK


def http_request(
    port: int, path: str, method: str = "GET", host: str = LOOPBACK, timeout: float = 2.0, headers: str = ""
) -> tuple[int, bytes]:
    """Status and body of one request; status 0 when nothing answered or the answer was not HTTP."""
    request = f"{method} {path} HTTP/1.0\r\nHost: {host}:{port}\r\nContent-Length: 0\r\n{headers}\r\n"
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(request.encode())
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
    except OSError:
        return 0, b""
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        return 0, b""
    return int(status_line[1]), body


def is_ready(http_port: int, timeout: float = 2.0) -> bool:
    return http_request(http_port, "/v2/health/ready", timeout=timeout)[0] == 200


def is_live(http_port: int, timeout: float = 2.0) -> bool:
    return http_request(http_port, "/v2/health/live", timeout=timeout)[0] == 200


def server_metadata(http_port: int, timeout: float = 5.0) -> dict[str, Any]:
    """``GET /v2``: name, version and extensions of the server; empty when it does not answer."""
    status, body = http_request(http_port, "/v2", timeout=timeout)
    if status != 200:
        return {}
    try:
        metadata = json.loads(body)
    except ValueError:
        return {}
    return metadata if isinstance(metadata, dict) else {}
