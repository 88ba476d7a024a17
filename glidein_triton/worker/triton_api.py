"""Triton's HTTP/REST API (health, repository, statistics, metrics) over a plain socket.

The pre-job hook runs before every job, so this module imports only ``json``, ``socket`` and ``urllib.parse``
(about 1.5 ms): ``http.client`` and ``urllib.request`` cost 20-40 ms to import. One request per connection
(HTTP/1.1, ``Connection: close``); every call has a timeout, for the whole exchange. Model names come from
jobs: they go into request paths percent-encoded (:func:`model_path`), never as they are.
"""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import quote

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

#: Loopback, where the plugin binds every endpoint (the value of ports.LOOPBACK, not imported to keep this
#: module's imports light).
LOOPBACK = "127.0.0.1"
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


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
    """One Triton server's HTTP endpoint (and metrics port), with headers sent on every request."""

    def __init__(
        self,
        http_port: int,
        metrics_port: int = 0,
        host: str = LOOPBACK,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.http_port = http_port
        self.metrics_port = metrics_port
        self.headers = dict(headers or {})

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
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if body or method == "POST":
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            with socket.create_connection((self.host, port or self.http_port), timeout=timeout) as connection:
                connection.sendall(request)
                return _read_response(connection, deadline)
        except OSError:
            return 0, b""

    def json(self, method: str, path: str, payload: Any = None, timeout: float = 2.0, port: int = 0) -> Any:
        """The JSON answer of a request; TritonAPIError with Triton's own message when it fails."""
        body = b"" if payload is None else json.dumps(payload).encode()
        status, answer = self.exchange(method, path, body, timeout, port)
        if status == 0:
            where = f"{self.host}:{port or self.http_port}"
            raise TritonAPIError(f"{method} {path}: no answer from {where} within {timeout:g} s")
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


def _read_response(connection: socket.socket, deadline: float) -> tuple[int, bytes]:
    """Read one HTTP/1.1 answer: to its Content-Length, else (chunked, or neither) until the server closes.

    Triton answers some requests (a model load) without closing the connection, so the length counts.
    """

    def receive() -> bytes:
        connection.settimeout(max(0.001, deadline - time.monotonic()))
        return connection.recv(65536)

    data = b""
    while b"\r\n\r\n" not in data:
        chunk = receive()
        if not chunk or len(data) > MAX_RESPONSE_BYTES:
            return 0, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    words = status_line.split()
    if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
        return 0, b""
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "")
    expected = int(length) if length.isdigit() else MAX_RESPONSE_BYTES
    while len(body) < expected:
        chunk = receive()
        if not chunk:
            break
        body += chunk
    if length.isdigit():
        return (int(words[1]), body[:expected]) if len(body) >= expected else (0, b"")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return int(words[1]), body


def _dechunk(data: bytes) -> bytes:
    """The payload of a chunked transfer encoding."""
    payload = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        payload += rest[:size]
        data = rest[size + 2 :]
    return payload


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
