"""The socket HTTP client of the health checks (triton_api.Server), against a small local HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from glidein_triton.worker.ports import free_port
from glidein_triton.worker.triton_api import Server


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = {"/v2/health/ready": (200, b""), "/v2": (200, b'{"version": "2.51.0"}')}.get(
            self.path, (400, b"{}")
        )
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        del args


@pytest.fixture
def port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_status_and_body(port: int) -> None:
    assert Server(port).is_ready()
    assert not Server(port).is_live()
    assert Server(port).metadata() == {"version": "2.51.0"}


def test_nothing_listening() -> None:
    closed = free_port()
    assert Server(closed).exchange("GET", "/v2") == (0, b"")
    assert not Server(closed).is_ready()
    assert Server(closed).metadata() == {}


def test_proxy_settings_do_not_apply(port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert Server(port).is_ready()
