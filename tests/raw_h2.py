"""A raw HTTP/2 gRPC client for attacks no gRPC library lets a client make (header names in upper case).

One call per connection over TLS (ALPN h2): the connection preface, SETTINGS, one HEADERS block of
literals without indexing exactly as given, one DATA frame with the gRPC message, then the server's frames
until the stream ends. Nothing is normalised: what the caller passes is what goes on the wire.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from glidein_triton.worker import hpack
from glidein_triton.worker.grpc_filter import (
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PING,
    PREFACE,
    RST_STREAM,
    SETTINGS,
    frame,
)

SETTINGS_ACK = 0x1
STREAM = 1


@dataclass
class Answer:
    """What came back on the call's stream: its header fields (initial and trailers), or how it was cut."""

    fields: dict[str, str] = field(default_factory=dict)
    reset: int | None = None  # RST_STREAM's error code
    goaway: int | None = None  # GOAWAY's error code
    data: bytes = b""

    @property
    def grpc_status(self) -> str:
        return self.fields.get("grpc-status", "")


def tls_connection(host: str, port: int, cert: Path, key: Path, root: Path) -> ssl.SSLSocket:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(root))
    context.check_hostname = False  # the address is what the test connects to; the root is what it trusts
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["h2"])
    connection = context.wrap_socket(socket.create_connection((host, port), timeout=20))
    assert connection.selected_alpn_protocol() == "h2"
    return connection


def call(
    connection: ssl.SSLSocket, authority: str, path: str, message: bytes, extra: list[tuple[bytes, bytes]]
) -> Answer:
    """One unary gRPC call of ``path`` with the serialized ``message`` and the ``extra`` header fields."""
    fields = [
        b"\x83",  # :method POST
        b"\x87",  # :scheme https
        hpack.literal_without_indexing(4, path.encode()),
        hpack.literal_without_indexing(1, authority.encode()),
        hpack.literal_without_indexing(b"content-type", b"application/grpc"),
        hpack.literal_without_indexing(b"te", b"trailers"),
        *(hpack.literal_without_indexing(name, value) for name, value in extra),
    ]
    body = b"\x00" + len(message).to_bytes(4, "big") + message
    connection.sendall(
        PREFACE
        + frame(SETTINGS, 0, 0, b"")
        + frame(HEADERS, END_HEADERS, STREAM, b"".join(fields))
        + frame(DATA, END_STREAM, STREAM, body)
    )
    return read_answer(connection)


def read_answer(connection: ssl.SSLSocket) -> Answer:
    answer, decoder, pending = Answer(), hpack.Decoder(), b""
    while True:
        while len(pending) < 9 or len(pending) < 9 + int.from_bytes(pending[:3], "big"):
            chunk = connection.recv(65536)
            if not chunk:
                return answer
            pending += chunk
        length = int.from_bytes(pending[:3], "big")
        kind, flags, stream = pending[3], pending[4], int.from_bytes(pending[5:9], "big") & 0x7FFFFFFF
        payload, pending = pending[9 : 9 + length], pending[9 + length :]
        if kind == SETTINGS and not flags & SETTINGS_ACK:
            connection.sendall(frame(SETTINGS, SETTINGS_ACK, 0, b""))
        elif kind == PING and not flags & SETTINGS_ACK:
            connection.sendall(frame(PING, SETTINGS_ACK, 0, payload))
        elif kind == GOAWAY:
            answer.goaway = int.from_bytes(payload[4:8], "big")
            return answer
        elif stream == STREAM and kind == RST_STREAM:
            answer.reset = int.from_bytes(payload[:4], "big")
            return answer
        elif stream == STREAM and kind == HEADERS:  # no padding or priority from gRPC servers
            answer.fields.update((n.decode(), v.decode()) for n, v in decoder.decode(payload))
            if flags & END_STREAM:
                return answer
        elif stream == STREAM and kind == DATA:
            answer.data += payload
            if flags & END_STREAM:
                return answer
