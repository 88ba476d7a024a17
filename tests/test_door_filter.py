"""The filters as the door calls them: on views of one buffer that the door reads into again after each
call (a filter that kept a view instead of a copy would pass on what came later)."""

from __future__ import annotations

import pytest

from glidein_triton.worker.door_filter import Chunk, ConnectionFilter
from glidein_triton.worker.grpc_filter import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PREFACE,
    SETTINGS,
    GrpcFilter,
    frame,
)
from glidein_triton.worker.http_filter import HttpFilter

from .test_grpc_filter import INFER, LOAD, SERVER_SETTINGS, request
from .test_http_filter import OK_BODY, chunked, get, post

GRPC_CLIENT = (
    PREFACE
    + frame(SETTINGS, 0, 0, b"")
    + frame(HEADERS, END_HEADERS, 1, request(INFER, indexed=True))
    + frame(DATA, END_STREAM, 1, b"e" * 40)
    + frame(HEADERS, END_HEADERS, 3, request(LOAD))
    + frame(DATA, END_STREAM, 3, b"f" * 40)
)
GRPC_SERVER = SERVER_SETTINGS + frame(HEADERS, END_HEADERS, 1, b"\x88") + frame(DATA, 0, 1, b"h" * 30)
HTTP_CLIENT = (
    get("/v2/health/ready")
    + chunked("/v2/models/simple/infer", [b"a" * 30, b"b" * 5])
    + post("/v2/repository/models/x/load")
    + get("/v2")
)
CHUNKED_RESPONSE = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
HTTP_SERVER = OK_BODY + CHUNKED_RESPONSE + OK_BODY


def handed_over(
    made: ConnectionFilter, client: bytes, server: bytes, size: int, views: bool
) -> tuple[bytes, bytes]:
    """(to the server, to the client) with the data handed over ``size`` bytes at a time, client then
    server: as bytes, or (``views``) in views of one buffer overwritten after each call once its results
    are taken, as the door sends them."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    to_server, to_client = b"", b""

    def handed(data: bytes) -> Chunk:
        if not views:
            return data
        buffer[: len(data)] = data
        return view[: len(data)]

    for start in range(0, max(len(client), len(server)), size):
        forward, answer = made.client_bytes(handed(client[start : start + size]))
        to_server, to_client = to_server + bytes(forward), to_client + answer
        buffer[:] = b"\xff" * size
        to_client += bytes(made.server_bytes(handed(server[start : start + size])))
        buffer[:] = b"\xff" * size
    return to_server, to_client


@pytest.mark.parametrize("size", [1, 2, 5, 9, 64, 4096])
@pytest.mark.parametrize(
    ("kind", "client", "server"),
    [(GrpcFilter, GRPC_CLIENT, GRPC_SERVER), (HttpFilter, HTTP_CLIENT, HTTP_SERVER)],
    ids=["grpc", "http"],
)
def test_views_of_a_buffer_read_into_again_give_what_bytes_give(
    kind: type[GrpcFilter] | type[HttpFilter], client: bytes, server: bytes, size: int
) -> None:
    as_bytes, as_views = kind(), kind()
    expected = handed_over(as_bytes, client, server, size, views=False)
    assert handed_over(as_views, client, server, size, views=True) == expected
    assert as_views.refused == as_bytes.refused == 1
    assert not as_views.ended
    assert b"\xff" not in expected[0] + expected[1]
