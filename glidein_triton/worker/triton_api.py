"""Triton's HTTP/REST API (health, repository, statistics, metrics), over TCP or the door's Unix socket.

The plugin's own programs reach the server through the door's plugin route, a Unix socket in the plugin's
directory (:mod:`door`); jobs' clients use the loopback ports. One request per connection; every call has a
timeout. Model names come from jobs: they go into request paths percent-encoded (:func:`model_path`).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from glidein_triton.worker.files import short_unix_path

#: Loopback, where the plugin binds every endpoint (the value of ports.LOOPBACK, not imported to keep this
#: module's imports light).
LOOPBACK = "127.0.0.1"
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (a long path is reached through ``/proc/self/fd`` of its directory)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.settimeout(self.timeout)
        try:
            with short_unix_path(self.path) as address:
                unix.connect(address)
        except OSError:
            unix.close()
            raise
        self.sock = unix


def model_path(model: str, *rest: str) -> str:
    """``/v2/models/<model>[/rest...]`` with the name percent-encoded (``/``, blanks, CR/LF included)."""
    return "/".join(("/v2/models", quote(model, safe=""), *rest))


def repository_path(model: str, action: str) -> str:
    """``/v2/repository/models/<model>/<action>`` with the name percent-encoded."""
    return f"/v2/repository/models/{quote(model, safe='')}/{action}"


class TritonAPIError(Exception):
    """A request failed: nothing answered (status 0), or Triton answered with an error status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Server:
    """One Triton server's HTTP endpoint (a TCP port, or ``unix_socket``) and metrics port, with headers
    sent on every request."""

    def __init__(
        self,
        http_port: int,
        metrics_port: int = 0,
        host: str = LOOPBACK,
        headers: Mapping[str, str] | None = None,
        unix_socket: str = "",
    ) -> None:
        self.host = host
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.headers = dict(headers or {})
        self.unix_socket = unix_socket

    @classmethod
    def from_url(cls, url: str, headers: Mapping[str, str] | None = None) -> Server:
        """From a published ``host:port`` (TRITON_HTTP_URL), with or without ``http://``."""
        address = url.strip().split("://", 1)[-1].rstrip("/")
        host, separator, port = address.rpartition(":")
        if not separator or not port.isdigit():
            raise TritonAPIError(f"not a host:port address: {url!r}")
        return cls(int(port), host=host.strip("[]"), headers=headers)

    def exchange(
        self, method: str, path: str, body: bytes = b"", timeout: float = 2.0, port: int = 0
    ) -> tuple[int, bytes]:
        """Status and body of one request; status 0 when nothing (or no complete answer) came in time."""
        deadline = time.monotonic() + timeout
        headers = {"Connection": "close", **self.headers}
        if body or method == "POST":
            headers["Content-Type"] = "application/json"
        connection = self.connection(timeout, port)
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            answer = read_within(response, deadline)
        except (OSError, http.client.HTTPException, ValueError):
            return 0, b""
        finally:
            connection.close()
        return (response.status, answer) if answer is not None else (0, b"")

    def connection(self, timeout: float, port: int = 0) -> http.client.HTTPConnection:
        """A connection to the HTTP endpoint (``port``: another port of the same host, the metrics')."""
        if self.unix_socket and not port:
            return UnixConnection(self.unix_socket, timeout)
        return http.client.HTTPConnection(self.host, port or self.http_port, timeout=timeout)

    def where(self, port: int = 0) -> str:
        return self.unix_socket if self.unix_socket and not port else f"{self.host}:{port or self.http_port}"

    def json(self, method: str, path: str, payload: Any = None, timeout: float = 2.0, port: int = 0) -> Any:
        """The JSON answer of a request; TritonAPIError with Triton's own message when it fails."""
        body = b"" if payload is None else json.dumps(payload).encode()
        status, answer = self.exchange(method, path, body, timeout, port)
        if status == 0:
            raise TritonAPIError(f"{method} {path}: no answer from {self.where(port)} within {timeout:g} s")
        try:
            decoded = json.loads(answer) if answer.strip() else {}
        except ValueError:
            decoded = {"error": answer.decode(errors="replace").strip()[:500]}
        if status != 200:
            message = decoded.get("error", "") if isinstance(decoded, dict) else ""
            raise TritonAPIError(f"{method} {path}: HTTP {status}: {message or 'no detail'}", status)
        return decoded

    def is_ready(self, timeout: float = 2.0) -> bool:
        return self.exchange("GET", "/v2/health/ready", timeout=timeout)[0] == 200

    def is_live(self, timeout: float = 2.0) -> bool:
        return self.exchange("GET", "/v2/health/live", timeout=timeout)[0] == 200

    def metadata(self, timeout: float = 5.0) -> dict[str, Any]:
        """``GET /v2``: name, version and extensions of the server; empty when it does not answer."""
        try:
            answer = self.json("GET", "/v2", timeout=timeout)
        except TritonAPIError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def is_model_ready(self, model: str, timeout: float = 2.0) -> bool:
        return self.exchange("GET", model_path(model, "ready"), timeout=timeout)[0] == 200

    def load(self, model: str, timeout: float) -> None:
        """Load (or, when it is loaded already, reload) ``model``; returns when it is ready."""
        self.json("POST", repository_path(model, "load"), {}, timeout)

    def unload(self, model: str, timeout: float = 30.0) -> None:
        self.json("POST", repository_path(model, "unload"), {}, timeout)

    def index(self, ready_only: bool = False, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The models of every repository the server serves, with their state."""
        models = self.json("POST", "/v2/repository/index", {"ready": ready_only}, timeout)
        return [model for model in models if isinstance(model, dict)] if isinstance(models, list) else []

    def model_statistics(self, model: str = "", timeout: float = 2.0) -> list[dict[str, Any]]:
        """``GET /v2/models[/<model>]/stats``: the statistics of the loaded models (of one model)."""
        path = model_path(model, "stats") if model else "/v2/models/stats"
        answer = self.json("GET", path, timeout=timeout)
        statistics = answer.get("model_stats", []) if isinstance(answer, dict) else []
        return [entry for entry in statistics if isinstance(entry, dict)]

    def metrics(self, timeout: float = 2.0) -> str:
        """The Prometheus text of the metrics port; empty when it does not answer."""
        if not self.metrics_port:
            return ""
        status, body = self.exchange("GET", "/metrics", timeout=timeout, port=self.metrics_port)
        return body.decode(errors="replace") if status == 200 else ""


def read_within(response: http.client.HTTPResponse, deadline: float) -> bytes | None:
    """The body of ``response`` (None: not all of it came by ``deadline``, or too much); each read waits at
    most the connection's timeout."""
    parts: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline or size > MAX_RESPONSE_BYTES:
            return None
        part = response.read1(65536)
        if not part:
            return None if response.length else b"".join(parts)  # length: what the server still owed
        parts.append(part)
        size += len(part)


def gauge_values(metrics_text: str, name: str) -> list[float]:
    """The samples of one Prometheus metric (``name{labels} value`` lines) in a metrics text."""
    values = []
    for line in metrics_text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            try:
                values.append(float(line.rsplit(None, 1)[-1]))
            except ValueError:
                continue
    return values
