"""The socket-level HTTP client, against canned answers from a local socket server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from glidein_triton.worker.triton_api import Server, TritonAPIError, gauge_values


class CannedServer:
    """Accepts connections on loopback and answers each with ``answer`` (then keeps it open, or closes it)."""

    def __init__(self, answer: bytes, close: bool) -> None:
        self.answer = answer
        self.close = close
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.open.append(connection)
            self.requests.append(read_request(connection))
            if self.answer:
                connection.sendall(self.answer)
            if self.close:
                connection.close()

    def stop(self) -> None:
        """Stop accepting (shutdown wakes the thread's accept), then close every connection; once."""
        if self.listener.fileno() == -1:
            return
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)
        for connection in self.open:
            connection.close()


def read_request(connection: socket.socket) -> bytes:
    """One request: its head, and its body when it has a Content-Length (it may come in a second send)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [
        line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    ]
    while lengths and len(body) < int(lengths[0]):
        body += connection.recv(65536)
    return head + b"\r\n\r\n" + body


@pytest.fixture
def canned() -> Iterator[list[CannedServer]]:
    servers: list[CannedServer] = []
    yield servers
    for server in servers:
        server.stop()


def serve(canned: list[CannedServer], answer: bytes, close: bool = True) -> CannedServer:
    server = CannedServer(answer, close)
    canned.append(server)
    return server


def test_answer_with_length_on_a_connection_left_open(canned: list[CannedServer]) -> None:
    # Triton answers a model load this way: the length says it is complete, the connection stays open.
    server = serve(canned, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", close=False)
    started = time.monotonic()
    assert Server(server.port).exchange("POST", "/v2/repository/models/m/load", b"{}", timeout=5) == (
        200,
        b"",
    )
    assert time.monotonic() - started < 2
    request = server.requests[0].decode()
    assert request.startswith("POST /v2/repository/models/m/load HTTP/1.1\r\n")
    assert "Content-Length: 2\r\n" in request
    assert request.endswith("\r\n\r\n{}")


def test_chunked_and_unsized_answers(canned: list[CannedServer]) -> None:
    chunked = serve(
        canned, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n"
    )
    assert Server(chunked.port).exchange("GET", "/") == (200, b"abcdef")
    unsized = serve(canned, b"HTTP/1.0 404 Not Found\r\n\r\nno such thing")
    assert Server(unsized.port).exchange("GET", "/") == (404, b"no such thing")


def test_no_answer_in_time_and_nothing_listening(canned: list[CannedServer]) -> None:
    silent = serve(canned, b"", close=False)
    started = time.monotonic()
    assert Server(silent.port).exchange("GET", "/v2/health/ready", timeout=0.3) == (0, b"")
    assert time.monotonic() - started < 2
    truncated = serve(canned, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert Server(truncated.port).exchange("GET", "/") == (0, b"")
    closed_port = silent.port
    silent.stop()
    assert not Server(closed_port).is_ready(timeout=0.3)
    garbage = serve(canned, b"SSH-2.0-OpenSSH\r\n\r\n")
    assert Server(garbage.port).exchange("GET", "/") == (0, b"")


def test_json_errors_carry_the_server_message(canned: list[CannedServer]) -> None:
    body = b'{"error":"failed to load \'m\', failed to poll from model repository"}'
    failing = serve(canned, b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    with pytest.raises(TritonAPIError, match="HTTP 400: failed to load 'm'") as raised:
        Server(failing.port).load("m", timeout=2)
    assert raised.value.status == 400
    silent = serve(canned, b"", close=False)
    with pytest.raises(TritonAPIError, match=r"no answer from 127\.0\.0\.1"):
        Server(silent.port).index(timeout=0.2)


def test_headers_are_sent_with_every_request(canned: list[CannedServer]) -> None:
    server = serve(canned, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
    assert Server(server.port, headers={"x-example": "value"}).index() == []
    assert "x-example: value\r\n" in server.requests[0].decode()


def test_model_names_are_encoded_in_the_request_line(canned: list[CannedServer]) -> None:
    server = serve(canned, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    api = Server(server.port)
    api.is_model_ready("../x/y\r\nHost: evil")
    api.load("a b/../c", timeout=2)
    api.unload("%2e", timeout=2)
    api.model_statistics("m?x#y")
    lines = [request.decode().split("\r\n")[:2] for request in server.requests]
    assert lines == [
        ["GET /v2/models/..%2Fx%2Fy%0D%0AHost%3A%20evil/ready HTTP/1.1", f"Host: 127.0.0.1:{server.port}"],
        ["POST /v2/repository/models/a%20b%2F..%2Fc/load HTTP/1.1", f"Host: 127.0.0.1:{server.port}"],
        ["POST /v2/repository/models/%252e/unload HTTP/1.1", f"Host: 127.0.0.1:{server.port}"],
        ["GET /v2/models/m%3Fx%23y/stats HTTP/1.1", f"Host: 127.0.0.1:{server.port}"],
    ]


def test_server_from_published_url() -> None:
    assert Server.from_url("127.0.0.1:8000").http_port == 8000
    server = Server.from_url("http://[::1]:9000/")
    assert (server.host, server.http_port) == ("::1", 9000)
    with pytest.raises(TritonAPIError, match="not a host:port"):
        Server.from_url("localhost")


def test_gauge_values_of_one_metric() -> None:
    text = (
        "# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)\n"
        'nv_gpu_utilization{gpu_uuid="GPU-a"} 0.25\n'
        'nv_gpu_utilization{gpu_uuid="GPU-b"} 0.75\n'
        'nv_gpu_utilization_other{gpu_uuid="GPU-b"} 9\n'
        "nv_gpu_power_usage 100\n"
    )
    assert gauge_values(text, "nv_gpu_utilization") == [0.25, 0.75]
    assert gauge_values(text, "nv_cpu_utilization") == []
