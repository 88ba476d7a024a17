"""The front door's HTTP filter (glidein_triton.worker.http_filter): routes, strict framing, 403s in order;
then real traffic through a filtered forwarder to the real tritonserver."""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from glidein_triton.local import demo, pytriton
from glidein_triton.worker import http_filter
from glidein_triton.worker.http_filter import HttpFilter
from glidein_triton.worker.ports import Ports, allocate
from glidein_triton.worker.runtime import server_options

from .support import filtered_forwarder, wait_until

OK_EMPTY = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
OK_BODY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def get(path: str, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode()


def post(path: str, body: bytes = b"{}", headers: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    return head.encode() + body


def chunked(path: str, chunks: list[bytes], trailer: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    return head + body + b"0\r\n" + trailer + b"\r\n"


def answers(data: bytes) -> list[int]:
    """The status codes of the responses in ``data``, in order."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 ([0-9]{3}) ", data)]


def error_of(answer: bytes) -> str:
    return str(json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"])


ALLOWED = [
    get("/v2/health/live"),
    get("/v2/health/ready"),
    get("/v2"),
    get("/v2/models/simple"),
    get("/v2/models/simple/versions/1"),
    get("/v2/models/simple/ready"),
    get("/v2/models/simple/versions/3/ready"),
    get("/v2/models/simple/config"),
    get("/v2/models/simple/stats"),
    get("/v2/models/stats"),
    get("/v2/models/simple?x=1"),
    post("/v2/models/simple/infer"),
    post("/v2/models/simple/versions/1/infer"),
    post("/v2/models/llm/generate"),
    post("/v2/models/llm/generate_stream"),
    post("/v2/repository/index"),
    chunked("/v2/models/simple/infer", [b"{", b'"inputs": []}']),
]


@pytest.mark.parametrize("request_bytes", ALLOWED, ids=lambda r: r.split(b"\r\n")[0].decode())
def test_allowed_requests_pass_unchanged(request_bytes: bytes) -> None:
    connection = HttpFilter()
    assert connection.client_bytes(request_bytes) == (request_bytes, b"")
    assert (connection.refused, connection.ended) == (0, "")
    assert connection.server_bytes(OK_BODY) == OK_BODY


REFUSED = [
    (post("/v2/repository/models/simple/load"), "model load"),
    (post("/v2/repository/models/simple/unload"), "model unload"),
    (post("/v2/repository/other/models/simple/load"), "model load"),
    (post("/v2/repository/other/index"), "the index of a named repository"),
    (post("/v2/systemsharedmemory/region/r/register"), "system shared memory"),
    (get("/v2/systemsharedmemory/status"), "system shared memory"),
    (post("/v2/cudasharedmemory/region/r/register"), "CUDA shared memory"),
    (post("/v2/trace/setting"), "a trace setting"),
    (get("/v2/trace/setting"), "a trace setting"),
    (post("/v2/models/simple/trace/setting"), "a trace setting"),
    (post("/v2/logging"), "a logging setting"),
    (get("/v2/logging"), "a logging setting"),
    (get("/v2/models/simple/infer"), "GET /v2/models/simple/infer"),
    (post("/v2/models/simple/config"), "POST /v2/models/simple/config"),
    (post("/v2/health/ready"), "POST /v2/health/ready"),
    (get("/v2/repository/index"), "GET /v2/repository/index"),
    (get("/v2/unknown"), "GET /v2/unknown"),
    (get("/metrics"), "GET /metrics"),
    (b"HEAD /v2/health/ready HTTP/1.1\r\n\r\n", "HEAD /v2/health/ready"),
    (b"DELETE /v2/models/simple HTTP/1.1\r\n\r\n", "DELETE /v2/models/simple"),
    (get("/v2/models/../repository/models/x/load"), "a path with '..'"),
    (get("/v2//health/ready"), "a path with '//'"),
    (get("/v2/models/a%2e%2e/ready"), "a path with '%2e'"),
    (get("/v2/models/a%2Fb/ready"), "a path with '%2F'"),
    (get("/v2/models/a%5c/ready"), "a path with '%5c'"),
    (get("/v2/models/a%25/ready"), "a path with '%25'"),
    (get("/v2/models/a%zz/ready"), "a path with a stray '%'"),
    (get("/v2/models/a\\b/ready"), "a path with a backslash"),
    (get("/v2/health/ready#x"), "a request target with '#'"),
    (get("/v2/health/ready", "Connection: Upgrade\r\nUpgrade: h2c\r\n"), "a protocol upgrade"),
]


@pytest.mark.parametrize(("request_bytes", "what"), REFUSED, ids=[what for _, what in REFUSED])
def test_refused_requests_get_a_403_and_never_reach_the_server(request_bytes: bytes, what: str) -> None:
    connection = HttpFilter()
    forward, answer = connection.client_bytes(request_bytes)
    assert forward == b""
    assert answers(answer) == [403]
    assert error_of(answer).startswith(f"glidein-triton: {what}")
    assert "is not allowed for jobs; jobs may use health, metadata, inference" in error_of(answer)
    assert b"Connection: close" not in answer  # keep-alive: the client goes on
    assert (connection.refused, connection.ended) == (1, "")
    assert what in connection.last_refusal
    # The connection goes on: the next request passes.
    assert connection.client_bytes(get("/v2")) == (get("/v2"), b"")


@pytest.mark.parametrize("seed", range(20))
def test_a_stream_cut_anywhere_is_forwarded_and_refused_the_same(seed: int) -> None:
    stream = b"".join(ALLOWED + [request for request, _ in REFUSED[:8]])
    whole = HttpFilter()
    expected = whole.client_bytes(stream)
    cuts = sorted(random.Random(seed).sample(range(1, len(stream)), 40))  # noqa: S311 (cut points)
    pieces = [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)])]
    cut = HttpFilter()
    forwarded = b"".join(cut.client_bytes(piece)[0] for piece in pieces)
    assert forwarded == expected[0] == b"".join(ALLOWED)
    assert (cut.refused, whole.refused, cut.ended) == (8, 8, "")


def test_the_403_has_triton_s_error_shape_and_a_length() -> None:
    _, answer = HttpFilter().client_bytes(post("/v2/repository/models/simple/load"))
    head, body = answer.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 403 Forbidden"
    assert f"Content-Length: {len(body)}".encode() in lines
    assert b"Content-Type: application/json" in lines
    assert list(json.loads(body)) == ["error"]


def test_the_metrics_filter_serves_metrics_only() -> None:
    connection = HttpFilter(http_filter.metrics_route, http_filter.METRICS_MAY)
    assert connection.client_bytes(get("/metrics")) == (get("/metrics"), b"")
    assert connection.server_bytes(OK_BODY) == OK_BODY
    forward, answer = connection.client_bytes(get("/v2/health/ready"))
    assert forward == b""
    assert (
        "GET /v2/health/ready is not allowed for jobs; the metrics port serves GET /metrics only"
        in error_of(answer)
    )


@pytest.mark.parametrize(
    "body_request",
    [
        post("/v2/repository/models/simple/load", b'{"parameters": {"file:1/model.py": "aW1wb3J0IG9z"}}'),
        chunked("/v2/repository/models/simple/load", [b'{"parameters":', b' {"file:1/model.py": "eA=="}}']),
    ],
    ids=["content-length", "chunked"],
)
def test_a_refused_request_s_body_is_skipped_not_forwarded(body_request: bytes) -> None:
    connection = HttpFilter()
    after = get("/v2/health/ready")
    forward, answer = connection.client_bytes(body_request + after)
    assert forward == after
    assert answers(answer) == [403]


def test_a_refused_body_split_over_many_reads_is_skipped() -> None:
    connection = HttpFilter()
    stream = chunked("/v2/repository/models/x/load", [b"a" * 100, b"b" * 7]) + get("/v2")
    forwarded = answered = b""
    for index in range(len(stream)):
        forward, answer = connection.client_bytes(stream[index : index + 1])
        forwarded += forward
        answered += answer
    assert forwarded == get("/v2")
    assert answers(answered) == [403]


def test_pipelined_refusals_come_in_order_after_the_responses_before_them() -> None:
    connection = HttpFilter()
    first, refused, last = get("/v2/health/ready"), post("/v2/repository/models/x/load"), get("/v2")
    forward, answer = connection.client_bytes(first + refused + last)
    assert forward == first + last
    assert answer == b""  # the server still owes the first response
    # The first response in two parts: the 403 comes right after its last byte, before the next one.
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert connection.server_bytes(response[:30]) == response[:30]
    out = connection.server_bytes(response[30:] + OK_BODY)
    assert out.startswith(response[30:] + b"HTTP/1.1 403 Forbidden")
    assert out.endswith(OK_BODY)
    assert answers(out) == [403, 200]
    # Nothing outstanding: the next refusal is answered at once.
    forward, answer = connection.client_bytes(refused)
    assert (forward, answers(answer)) == (b"", [403])


def test_a_refusal_waits_for_the_response_being_sent() -> None:
    connection = HttpFilter()
    connection.client_bytes(get("/v2/models/m"))
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert connection.server_bytes(response[:52]) == response[:52]  # head and part of the body
    assert connection.client_bytes(post("/v2/logging")) == (b"", b"")
    out = connection.server_bytes(response[52:])
    assert out.startswith(response[52:])
    assert answers(out) == [403]


def test_a_refusal_behind_a_response_that_ends_with_the_connection_is_never_sent() -> None:
    connection = HttpFilter()
    connection.client_bytes(get("/metrics"))
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    assert connection.server_bytes(head + b"nv_") == head + b"nv_"
    assert connection.client_bytes(post("/v2/logging")) == (b"", b"")
    assert (
        connection.server_bytes(b"HTTP/1.1 403 Forbidden\r\n") == b"HTTP/1.1 403 Forbidden\r\n"
    )  # body bytes


def test_a_response_of_the_server_s_own_does_not_take_a_refusal_s_place() -> None:
    connection = HttpFilter()
    timeout = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    assert connection.server_bytes(timeout[:20]) == timeout[:20]
    assert connection.client_bytes(post("/v2/logging")) == (b"", b"")  # behind the 408 being sent
    out = connection.server_bytes(timeout[20:])
    assert answers(out) == [403]


def test_responses_are_followed_through_chunks_interim_answers_and_bodiless_codes() -> None:
    connection = HttpFilter()
    refused = post("/v2/repository/models/x/load")
    requests = [
        post("/v2/models/m/infer", headers="Expect: 100-continue\r\n"),
        get("/v2"),
        get("/v2/models/m"),
    ]
    forward, answer = connection.client_bytes(b"".join(requests) + refused)
    assert (forward, answer) == (b"".join(requests), b"")
    responses = [
        b"HTTP/1.1 100 Continue\r\n\r\n"
        + b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\n\r\n",
    ]
    stream = b"".join(responses)
    out = b"".join(connection.server_bytes(stream[index : index + 1]) for index in range(len(stream)))
    assert out.startswith(stream)
    assert answers(out) == [100, 200, 204, 304, 403]


def test_a_response_that_ends_with_the_connection_takes_the_queued_refusals_with_it() -> None:
    connection = HttpFilter()
    connection.client_bytes(get("/v2") + post("/v2/repository/models/x/load"))
    response = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"
    assert connection.server_bytes(response) == response


@pytest.mark.parametrize(
    "closing",
    [
        post("/v2/repository/models/x/load", headers="Connection: close\r\n"),
        b"POST /v2/repository/models/x/load HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
        post("/v2/repository/models/x/load", headers="Expect: 100-continue\r\n")[:-2],
    ],
    ids=["connection-close", "http-1.0", "expect-100-continue"],
)
def test_a_refused_request_that_ends_the_connection_ends_it_after_its_403(closing: bytes) -> None:
    connection = HttpFilter()
    forward, answer = connection.client_bytes(closing + get("/v2"))
    assert forward == b""
    assert answers(answer) == [403]
    assert b"Connection: close\r\n" in answer
    assert connection.ended.startswith("the client asked to close after a refused request")


def test_a_closing_refusal_behind_a_pending_response_ends_the_connection_when_sent() -> None:
    connection = HttpFilter()
    connection.client_bytes(
        get("/v2") + post("/v2/repository/models/x/load", headers="Connection: close\r\n")
    )
    assert connection.ended == ""
    out = connection.server_bytes(OK_BODY)
    assert answers(out) == [200, 403]
    assert connection.ended


def test_http_1_0_keep_alive_is_kept() -> None:
    connection = HttpFilter()
    _, answer = connection.client_bytes(b"GET /v2/logging HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"Connection: keep-alive\r\n" in answer
    assert connection.ended == ""


def test_equal_duplicate_lengths_pass() -> None:
    request = b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 02\r\n\r\n{}"
    assert HttpFilter().client_bytes(request) == (request, b"")


LOAD = post("/v2/repository/models/x/load")
SMUGGLING = {
    "length-and-chunked": b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    + LOAD,
    "two-lengths": b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 120\r\n\r\n"
    + LOAD,
    "length-list": b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 0, 120\r\n\r\n" + LOAD,
    "length-sign": b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: +0\r\n\r\n" + LOAD,
    "length-tab": b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length:\t0\r\n\r\n" + LOAD,
    "length-trailing-space": b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 0 \r\n\r\n" + LOAD,
    "length-too-long": b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
    "name-space": b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length : 120\r\n\r\n" + LOAD,
    "other-coding": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n" + LOAD,
    "coding-list": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "two-codings": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    "coding-tab": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n",
    "coding-in-capitals": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
    % (len(LOAD), LOAD),
    "coding-trailing-space": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n",
    "xchunked": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "obs-fold": b"POST /v2/models/m/infer HTTP/1.1\r\nX: a\r\n Content-Length: 120\r\n\r\n" + LOAD,
    "obs-fold-tab": b"POST /v2/models/m/infer HTTP/1.1\r\nX: a\r\n\tTransfer-Encoding: chunked\r\n\r\n",
    "bare-lf": b"POST /v2/models/m/infer HTTP/1.1\r\nX: a\nContent-Length: 120\r\n\r\n" + LOAD,
    "bare-cr": b"POST /v2/models/m/infer HTTP/1.1\r\nX: a\rContent-Length: 120\r\n\r\n" + LOAD,
    "lf-lf": b"POST /v2/models/m/infer HTTP/1.1\n\n" + LOAD,
    "nul": b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 0\x00120\r\n\r\n" + LOAD,
    "chunk-extension": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\n{}\r\n0\r\n\r\n",
    "chunk-size-not-hex": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n",
    "chunk-size-space": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\n{}\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"1" * 17
    + b"\r\n",
    "chunk-without-crlf": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
    "trailer": b"POST /v2/models/m/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\n\r\n"
    + LOAD,
    "two-spaces": b"GET  /v2 HTTP/1.1\r\n\r\n",
    "absolute-form": b"GET http://localhost/v2/repository/index HTTP/1.1\r\n\r\n",
    "http-2": b"GET /v2 HTTP/2.0\r\n\r\n",
    "http-0.9": b"GET /v2\r\n\r\n",
    "lowercase-method": b"post /v2/repository/models/x/load HTTP/1.1\r\n\r\n",
    "space-in-target": b"GET /v2/models/a b/ready HTTP/1.1\r\n\r\n",
    "leading-empty-line": b"\r\nGET /v2 HTTP/1.1\r\n\r\n",
    "h2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "huge-head": b"GET /v2 HTTP/1.1\r\nX: " + b"a" * http_filter.MAX_HEAD,
}


@pytest.mark.parametrize("attempt", list(SMUGGLING.values()), ids=list(SMUGGLING))
def test_smuggling_and_framing_tricks_end_the_connection_with_nothing_forwarded(attempt: bytes) -> None:
    for pieces in ([attempt], [attempt[index : index + 1] for index in range(len(attempt))]):
        connection = HttpFilter()
        forwarded = b""
        for piece in pieces:
            forwarded += connection.client_bytes(piece)[0]
            if connection.ended:
                break
        assert connection.ended.startswith("protocol violation from the client: "), connection.ended
        # What went to the server is at most what it was allowed (the head of a chunked infer, whose
        # body then never ends), never the load request behind it.
        assert b"load" not in forwarded
        assert connection.client_bytes(get("/v2")) == (b"", b"")


def test_too_many_pipelined_requests_end_the_connection() -> None:
    connection = HttpFilter()
    connection.client_bytes(get("/v2") * http_filter.MAX_PIPELINED)
    assert connection.ended == ""
    connection.client_bytes(get("/v2"))
    assert "requests waiting for their answers" in connection.ended


def test_a_protocol_switch_from_the_server_ends_the_connection() -> None:
    connection = HttpFilter()
    connection.client_bytes(get("/v2"))
    connection.server_bytes(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n")
    assert connection.ended == "protocol violation from the server: a protocol switch"


def test_bodies_pass_by_slicing_without_copies() -> None:
    connection = HttpFilter()
    body = b"x" * (1 << 20)
    head = post("/v2/models/m/infer", body)[: -len(body)]
    first = head + body[: 1 << 18]
    assert connection.client_bytes(first)[0] is first
    rest = body[1 << 18 :]
    assert connection.client_bytes(rest)[0] is rest
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    assert connection.server_bytes(response) is response


# Real traffic: the real tritonserver behind a filtered forwarder; what was refused is checked directly.


@dataclass
class Served:
    direct: httpclient.InferenceServerClient
    filtered: httpclient.InferenceServerClient
    filtered_port: int
    metrics_port: int
    log: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """tritonserver with ``simple`` loaded and ``spare`` in its repository, its HTTP port behind a job
    filter and its metrics port behind a metrics filter."""
    home = tmp_path_factory.mktemp("http-filter")
    launcher = pytriton.prepare(home / "server")
    repository = shutil.copytree(demo.MODELS_DIR, home / "repository")
    spare = shutil.copytree(repository / "simple", repository / "spare")
    config = spare / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "simple"', 'name: "spare"'))
    ports = allocate(Ports(0, 0, 0))
    log = home / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(launcher), *server_options(str(repository), ports, ["simple"], [])],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    direct = httpclient.InferenceServerClient(f"127.0.0.1:{ports.http}")
    try:
        assert wait_until(lambda: process.poll() is not None or ready(direct), timeout=60), log.read_text()
        assert process.poll() is None, log.read_text()
        metrics = http_filter.metrics_route, http_filter.METRICS_MAY
        with (
            filtered_forwarder(("127.0.0.1", ports.http), HttpFilter) as port,
            filtered_forwarder(("127.0.0.1", ports.metrics), lambda: HttpFilter(*metrics)) as metrics_port,
        ):
            filtered = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
            yield Served(direct, filtered, port, metrics_port, log)
            filtered.close()
    finally:
        direct.close()
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ready(client: httpclient.InferenceServerClient) -> bool:
    try:
        return bool(client.is_server_ready())
    except (OSError, InferenceServerException):
        return False


def add(client: httpclient.InferenceServerClient, values: list[int]) -> list[int]:
    inputs = [httpclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.array([values], dtype=np.int32))
    result = client.infer("simple", inputs)
    return [int(value) for value in result.as_numpy("OUTPUT0")[0]]


@pytest.mark.server
def test_tritonclient_works_through_the_filter(served: Served) -> None:
    client = served.filtered
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata()["name"] == "triton"
    assert client.is_model_ready("simple")
    assert client.get_model_metadata("simple")["name"] == "simple"
    assert client.get_model_config("simple")["max_batch_size"] == 8
    assert {entry["name"] for entry in client.get_model_repository_index()} == {"simple", "spare"}
    assert add(client, list(range(16))) == [2 * value for value in range(16)]
    # Triton counts a request once its response is out: the count may come a moment after the answer.
    assert wait_until(
        lambda: (
            client.get_inference_statistics("simple")["model_stats"][0]["inference_stats"]["success"]["count"]
            >= 1
        )
    )


@pytest.mark.server
def test_the_metrics_port_serves_metrics_only(served: Served) -> None:
    base = f"http://127.0.0.1:{served.metrics_port}"
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:  # noqa: S310 (http)
        assert b"nv_inference_request_success" in response.read()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{base}/v2/health/ready", timeout=10)  # noqa: S310 (http)
    assert refused.value.code == 403
    refused.value.close()


def refused_message(call: object) -> str:
    assert callable(call)
    with pytest.raises(InferenceServerException) as refused:
        call()
    assert refused.value.status() == "403", refused.value
    return str(refused.value.message())


@pytest.mark.server
def test_load_unload_shared_memory_trace_and_logging_are_refused_and_not_done(served: Served) -> None:
    client, direct = served.filtered, served.direct
    trace, logging = direct.get_trace_settings(), direct.get_log_settings()
    calls = [
        ("model load", lambda: client.load_model("spare")),
        (
            "model load",
            lambda: client.load_model("spare", config="{}", files={"file:1/model.py": b"import os"}),
        ),
        ("model unload", lambda: client.unload_model("simple")),
        ("system shared memory", lambda: client.register_system_shared_memory("region", "/glidein-shm", 64)),
        ("CUDA shared memory", lambda: client.register_cuda_shared_memory("region", b"00", 0, 64)),
        ("a trace setting", lambda: client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]})),
        ("a logging setting", lambda: client.update_log_settings({"log_verbose_level": 3})),
    ]
    for what, call in calls:
        message = refused_message(call)
        assert message.startswith(f"glidein-triton: {what}"), message
        assert "is not allowed for jobs" in message
    # Not done: checked through the direct connection. The filtered connection still serves.
    assert direct.is_model_ready("simple")
    assert not direct.is_model_ready("spare")
    assert direct.get_system_shared_memory_status() == []
    assert direct.get_cuda_shared_memory_status() == []
    assert direct.get_trace_settings() == trace
    assert direct.get_log_settings() == logging
    assert add(client, [1] * 16) == [2] * 16


@pytest.mark.server
@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_on_one_connection(served: Served, tmp_path: Path) -> None:
    """curl (what the DiCOS scripts and people use) through the filter, one connection for all requests;
    the infer body is large enough that curl asks for 100 Continue first."""
    base = f"http://127.0.0.1:{served.filtered_port}"
    values = list(range(16))
    tensors = [
        {"name": n, "shape": [1, 16], "datatype": "INT32", "data": values} for n in ("INPUT0", "INPUT1")
    ]
    body = tmp_path / "infer.json"
    body.write_text(json.dumps({"inputs": tensors}) + " " * (2 << 20))
    answer = tmp_path / "answer.json"
    each = ["-s", "-w", "%{http_code} %{num_connects}\n"]
    argv = [
        "curl",
        *each,
        "-o",
        "/dev/null",
        f"{base}/v2/health/ready",
        "-o",
        "/dev/null",
        f"{base}/v2/models/simple",
    ]
    argv += ["--next", *each, "-o", "/dev/null", "-d", "{}", f"{base}/v2/repository/models/spare/load"]
    argv += [
        "--next",
        *each,
        "-o",
        str(answer),
        "--data-binary",
        f"@{body}",
        f"{base}/v2/models/simple/infer",
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.split("\n")[:4] == ["200 1", "200 0", "403 0", "200 0"], result
    outputs = {output["name"]: output["data"] for output in json.loads(answer.read_text())["outputs"]}
    assert outputs["OUTPUT0"] == [2 * value for value in values]
    assert not served.direct.is_model_ready("spare")


def exchange(port: int, pieces: list[bytes], responses: int) -> bytes:
    """Send ``pieces`` on one raw connection (a moment apart); what came back until ``responses``
    answers or the end."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        for piece in pieces:
            raw.sendall(piece)
            time.sleep(0.2)
        while len(re.findall(rb"HTTP/1\.1 [0-9]{3} ", received)) < responses or not complete(received):
            try:
                chunk = raw.recv(1 << 16)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
    return received


def complete(received: bytes) -> bool:
    """Whether the last response of ``received`` has all its Content-Length bytes."""
    head, _, body = received.rpartition(b"\r\n\r\n")
    length = re.search(rb"Content-Length: ([0-9]+)", head.rsplit(b"HTTP/1.1 ", 1)[-1], re.IGNORECASE)
    return length is not None and len(body) >= int(length.group(1))


@pytest.mark.server
def test_pipelined_requests_are_answered_in_order_and_the_refused_one_not_done(served: Served) -> None:
    requests = [
        get("/v2/health/ready"),
        post("/v2/repository/models/spare/load", b'{"parameters": {"config": "{}"}}'),
        get("/v2/models/simple/config"),
        post("/v2/repository/models/simple/unload"),
        post("/v2/repository/index"),
    ]
    # Triton's HTTP (libevhtp) answers only the first of several requests that reach it in one segment
    # (seen on 2.51, directly too), so the client sends them a moment apart, never waiting for answers.
    received = exchange(served.filtered_port, requests, 5)
    assert answers(received) == [200, 403, 200, 403, 200]
    assert b'"name":"simple"' in received
    assert served.direct.is_model_ready("simple")
    assert not served.direct.is_model_ready("spare")


SERVER_SMUGGLING = {
    # Content-Length for the door, chunked for a server that preferred it: the load would be a request.
    "length-and-chunked": b"POST /v2/models/simple/infer HTTP/1.1\r\nContent-Length: %d\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s",
    # htparse ends a chunked request at its first trailer line: the rest would be the next request.
    "trailer": b"POST /v2/models/simple/infer HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\nX: %d\r\n%s\r\n",
    # A bare LF ends a header line for htparse.
    "bare-lf": b"POST /v2/models/simple/infer HTTP/1.1\r\nX: y\nContent-Length: %d\r\n\r\n%s",
}


@pytest.mark.server
@pytest.mark.parametrize("template", list(SERVER_SMUGGLING.values()), ids=list(SERVER_SMUGGLING))
def test_smuggled_loads_never_reach_the_server(served: Served, template: bytes) -> None:
    load = post("/v2/repository/models/spare/load")
    received = exchange(served.filtered_port, [template % (len(load), load) + get("/v2")], 2)
    assert 403 not in answers(received)
    assert not served.direct.is_model_ready("spare")
    assert "spare" not in served.log.read_text()
