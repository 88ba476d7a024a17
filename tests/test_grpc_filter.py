"""The gRPC filter of the front door (glidein_triton.worker.grpc_filter): on synthetic HTTP/2 frames, then
with tritonclient against a real tritonserver through a forwarder that applies it."""

from __future__ import annotations

import shutil
import struct
import subprocess
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from glidein_triton.local import demo
from glidein_triton.local import pytriton as local_server
from glidein_triton.worker import hpack, runtime
from glidein_triton.worker.grpc_filter import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PADDED,
    PING,
    PREFACE,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    GrpcFilter,
    frame,
    percent_encoded,
    reset,
)
from glidein_triton.worker.ports import Ports, allocate
from glidein_triton.worker.triton_api import Server

from .support import PYTHON39, REPO, FilteringForwarder, add_model, wait_until

SERVICE = "/inference.GRPCInferenceService/"
INFER = (SERVICE + "ModelInfer").encode()
LOAD = (SERVICE + "RepositoryModelLoad").encode()
SERVER_SETTINGS = frame(SETTINGS, 0, 0, b"")


def request(path: bytes, indexed: bool = False) -> bytes:
    """A gRPC request's header block (:path a literal, added to the table when ``indexed``)."""
    fields = [b"\x83", b"\x86"]  # :method POST, :scheme http
    fields.append(
        (b"\x44" + hpack.encode_integer(len(path), 7) + path)
        if indexed
        else hpack.literal_without_indexing(4, path)
    )
    fields.append(hpack.literal_without_indexing(b"content-type", b"application/grpc"))
    return b"".join(fields)


def started() -> GrpcFilter:
    """A filter past the connection preface and the server's SETTINGS."""
    found = GrpcFilter()
    assert found.client_bytes(PREFACE + frame(SETTINGS, 0, 0, b"")) == (
        PREFACE + frame(SETTINGS, 0, 0, b""),
        b"",
    )
    assert found.server_bytes(SERVER_SETTINGS) == SERVER_SETTINGS
    return found


def frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream, payload) of each frame in ``data``."""
    found = []
    while data:
        length = int.from_bytes(data[:3], "big")
        kind, flags, stream = data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        found.append((kind, flags, stream, data[9 : 9 + length]))
        data = data[9 + length :]
    return found


def refusal_of(answer: bytes) -> tuple[int, dict[str, str]]:
    """The stream and the fields of the one trailers-only answer in ``answer``."""
    [(kind, flags, stream, payload)] = frames(answer)
    assert (kind, flags) == (HEADERS, END_STREAM | END_HEADERS)
    decoder = hpack.Decoder()
    fields = {name.decode(): value.decode() for name, value in decoder.decode(payload)}
    assert decoder.size == 0  # literals without indexing: the client's table is untouched
    return stream, fields


def test_an_allowed_call_goes_through_untouched_and_uncopied() -> None:
    found = started()
    data = frame(HEADERS, END_HEADERS, 1, request(INFER)) + frame(DATA, END_STREAM, 1, b"\x00" * 1000)
    forward, answer = found.client_bytes(data)
    assert forward is data
    assert answer == b""
    reply = frame(HEADERS, END_HEADERS, 1, b"\x88") + frame(DATA, 0, 1, b"x" * 100)
    assert found.server_bytes(reply) is reply
    assert (found.refused, found.ended) == (0, "")


def test_a_refused_call_is_reset_at_the_server_and_answered_permission_denied() -> None:
    found = started()
    block = frame(HEADERS, END_HEADERS, 1, request(LOAD))
    message = frame(DATA, END_STREAM, 1, b"\x00\x00\x00\x00\x05\x0a\x03bad")
    forward, answer = found.client_bytes(block + message)
    assert forward == block + reset(1) + message  # header block unchanged, then RST_STREAM(CANCEL) at once
    assert frames(reset(1)) == [(RST_STREAM, 0, 1, struct.pack(">I", 8))]
    stream, fields = refusal_of(answer)
    assert stream == 1
    assert fields[":status"] == "200"
    assert fields["content-type"] == "application/grpc"
    assert fields["grpc-status"] == "7"
    assert urllib.parse.unquote(fields["grpc-message"]) == (
        "glidein-triton: RepositoryModelLoad is not allowed for jobs; jobs get health, inference, metadata, "
        "model configuration, statistics and the repository index"
    )
    assert found.refused == 1
    assert found.last_refusal == "refused RepositoryModelLoad on gRPC stream 1: not a call for jobs"
    assert found.ended == ""


@pytest.mark.parametrize(
    "path",
    [
        SERVICE + "RepositoryModelUnload",
        SERVICE + "SystemSharedMemoryRegister",
        SERVICE + "SystemSharedMemoryStatus",
        SERVICE + "CudaSharedMemoryRegister",
        SERVICE + "TraceSetting",
        SERVICE + "LogSettings",
        SERVICE + "modelinfer",
        SERVICE + "ModelInfer/",
        "/inference.GRPCInferenceService//ModelInfer",
        "/grpc.health.v1.Health/Other",
        "/other.Service/ModelInfer",
        "",
    ],
)
def test_anything_off_the_allow_list_is_refused(path: str) -> None:
    found = started()
    found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, 1, request(path.encode())))
    assert found.refused == 1


@pytest.mark.parametrize(
    "method",
    [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
        "RepositoryIndex",
    ],
)
def test_the_job_methods_pass(method: str) -> None:
    found = started()
    found.client_bytes(frame(HEADERS, END_HEADERS, 1, request((SERVICE + method).encode())))
    for health in (b"/grpc.health.v1.Health/Check", b"/grpc.health.v1.Health/Watch"):
        found.client_bytes(
            frame(HEADERS, END_HEADERS, 3 if health.endswith(b"Check") else 5, request(health))
        )
    assert found.refused == 0


@pytest.mark.parametrize(
    ("block", "why"),
    [
        (request(INFER) + request(INFER), "2 :path fields"),
        (b"\x83\x86", "0 :path fields"),
    ],
)
def test_a_call_without_exactly_one_path_is_refused(block: bytes, why: str) -> None:
    found = started()
    found.client_bytes(frame(HEADERS, END_HEADERS, 1, block))
    assert found.refused == 1
    assert why in found.last_refusal


def test_the_answer_waits_for_the_servers_first_frame() -> None:
    found = GrpcFilter()
    _, answer = found.client_bytes(PREFACE + frame(HEADERS, END_HEADERS | END_STREAM, 1, request(LOAD)))
    assert answer == b""  # the server's SETTINGS must reach the client first
    out = found.server_bytes(SERVER_SETTINGS + frame(SETTINGS, 1, 0, b""))
    assert out.startswith(SERVER_SETTINGS)
    assert refusal_of(out[len(SERVER_SETTINGS) : -9])[0] == 1
    assert out.endswith(frame(SETTINGS, 1, 0, b""))


def test_the_answer_waits_for_the_end_of_a_server_frame() -> None:
    found = started()
    data = frame(DATA, 0, 3, b"y" * 100)
    assert found.server_bytes(data[:50]) == data[:50]
    _, answer = found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, 1, request(LOAD)))
    assert answer == b""
    out = found.server_bytes(data[50:] + frame(PING, 0, 0, b"\x00" * 8))
    assert out.startswith(data[50:])
    assert refusal_of(out[len(data) - 50 : -17])[0] == 1


def test_the_answer_waits_for_the_end_of_a_header_block_run() -> None:
    found = started()
    first = frame(HEADERS, 0, 3, b"\x88")
    assert found.server_bytes(first) == first
    _, answer = found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, 1, request(LOAD)))
    assert answer == b""
    middle = frame(CONTINUATION, 0, 3, b"")
    assert found.server_bytes(middle) == middle  # still inside the run
    last = frame(CONTINUATION, END_HEADERS, 3, b"")
    out = found.server_bytes(last)
    assert out.startswith(last)
    assert refusal_of(out[len(last) :])[0] == 1


def test_refusals_cannot_pile_up_while_the_server_is_inside_a_frame() -> None:
    found = started()
    found.server_bytes(frame(DATA, 0, 3, b"y" * 100)[:50])  # the client reads nothing more
    for stream in range(1, 2 * 256, 2):
        found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, stream, request(LOAD)))
    assert found.ended == ""
    assert found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, 513, request(LOAD))) == (b"", b"")
    assert found.ended == "gRPC connection closed: more than 256 refused calls waiting for their answer"


def test_a_frame_header_split_between_reads_is_held_until_whole() -> None:
    found = started()
    data = frame(DATA, 0, 3, b"z" * 10)
    assert found.server_bytes(data[:4]) == b""
    assert found.server_bytes(data[4:]) == data


def test_the_servers_frames_for_a_refused_stream_are_dropped_but_its_header_blocks_kept() -> None:
    found = started()
    found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, 1, request(LOAD)))
    kept_before = frame(DATA, 0, 3, b"a" * 20)
    dropped = [
        frame(DATA, 0, 1, b"b" * 30),
        frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 100)),
        frame(RST_STREAM, 0, 1, struct.pack(">I", 5)),
    ]
    headers = frame(HEADERS, END_HEADERS | END_STREAM, 1, b"\x88")
    kept_after = frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 100)) + frame(DATA, 0, 3, b"c")
    out = found.server_bytes(kept_before + b"".join(dropped) + headers + kept_after)
    assert out == kept_before + headers + kept_after


def test_the_client_frames_of_a_refused_stream_still_go_to_the_server() -> None:
    found = started()
    found.client_bytes(frame(HEADERS, END_HEADERS, 1, request(LOAD)))
    later = (
        frame(DATA, 0, 1, b"d" * 500) + frame(DATA, END_STREAM, 1, b"") + frame(RST_STREAM, 0, 1, b"\x00" * 4)
    )
    assert found.client_bytes(later) == (later, b"")


def test_a_header_block_over_continuation_frames_with_padding_and_priority() -> None:
    block = request(LOAD)
    payload = bytes([7]) + b"\x00\x00\x00\x03\x10" + block[:5] + b"\x00" * 7  # pad length, priority, padding
    data = (
        frame(HEADERS, PADDED | PRIORITY_FLAG, 1, payload)
        + frame(CONTINUATION, 0, 1, block[5:12])
        + frame(CONTINUATION, END_HEADERS, 1, block[12:])
    )
    found = started()
    forward, answer = found.client_bytes(data)
    assert forward == data + reset(1)
    assert refusal_of(answer)[0] == 1


def test_one_byte_at_a_time_is_the_same_as_all_at_once() -> None:
    client = (
        PREFACE
        + frame(SETTINGS, 0, 0, b"\x00\x04\x00\x01\x00\x00")
        + frame(HEADERS, END_HEADERS, 1, request(INFER, indexed=True))
        + frame(DATA, END_STREAM, 1, b"e" * 40)
        + frame(HEADERS, END_HEADERS, 3, request(LOAD))
        + frame(DATA, END_STREAM, 3, b"f" * 40)
        + frame(HEADERS, END_HEADERS | END_STREAM, 5, b"\x83\x86\xbe")  # ModelInfer, from the dynamic table
    )
    server = (
        SERVER_SETTINGS
        + frame(HEADERS, END_HEADERS, 1, b"\x88")
        + frame(DATA, 0, 3, b"g" * 30)
        + frame(DATA, 0, 1, b"h")
    )
    whole = GrpcFilter()
    whole_forward, whole_answer = whole.client_bytes(client)
    whole_received = whole_answer + whole.server_bytes(server)
    piecewise = GrpcFilter()
    forwarded, received = b"", b""
    cut = client.index(frame(DATA, END_STREAM, 3, b"f" * 40))
    lag = cut - 14  # the refusal comes while the server's HEADERS frame is half through
    for index in range(max(len(client), lag + len(server))):
        forward, answer = piecewise.client_bytes(client[index : index + 1])
        forwarded, received = forwarded + forward, received + answer
        received += piecewise.server_bytes(server[index - lag : index - lag + 1] if index >= lag else b"")
    assert forwarded == whole_forward == client[:cut] + reset(3) + client[cut:]
    assert piecewise.refused == whole.refused == 1
    for got in (frames(received), frames(whole_received)):
        assert got[0] == frames(SERVER_SETTINGS)[0]
        [answer_frame] = [f for f in got if f[2] == 3]  # the server's DATA of stream 3 was dropped
        assert refusal_of(frame(HEADERS, answer_frame[1], 3, answer_frame[3]))[1]["grpc-status"] == "7"
        assert [f for f in got if f[2] != 3] == frames(server)[:2] + frames(server)[3:]


def test_every_header_block_is_decoded_so_an_indexed_path_is_seen() -> None:
    """A refused call's block and trailers change the table too: calls that name paths by index are
    read right."""
    found = started()
    found.client_bytes(frame(HEADERS, END_HEADERS, 1, request(LOAD, indexed=True)))  # refused; table: LOAD
    assert found.refused == 1
    found.client_bytes(frame(HEADERS, END_HEADERS, 3, request(INFER, indexed=True)))  # table: INFER, LOAD
    trailers = b"\x40\x03x-a\x01b"  # table: x-a, INFER, LOAD
    found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, 3, trailers))
    assert found.refused == 1
    found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, 5, b"\x83\x86\xbf"))  # 63: INFER
    assert found.refused == 1
    found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, 7, b"\x83\x86\xc0"))  # 64: LOAD
    assert found.refused == 2
    assert found.last_refusal == "refused RepositoryModelLoad on gRPC stream 7: not a call for jobs"


def test_a_path_on_a_stream_that_is_not_new_is_checked_too() -> None:
    """The server must ignore a new call on an old stream number; the filter does not count on it."""
    found = started()
    found.client_bytes(frame(HEADERS, END_HEADERS, 5, request(INFER)))
    forward, answer = found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, 3, request(LOAD)))
    assert forward.endswith(reset(3))
    assert refusal_of(answer)[0] == 3
    assert found.client_bytes(frame(HEADERS, END_HEADERS | END_STREAM, 5, b"\x40\x03x-a\x01b"))[0].endswith(
        b"b"
    )
    assert found.refused == 1


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "connection preface"),
        (frame(HEADERS, END_HEADERS, 2, request(INFER)), "HEADERS on stream 2"),
        (frame(HEADERS, END_HEADERS, 0, request(INFER)), "HEADERS on stream 0"),
        (frame(PUSH_PROMISE, END_HEADERS, 1, b"\x00\x00\x00\x02"), "PUSH_PROMISE"),
        (frame(CONTINUATION, END_HEADERS, 1, b""), "CONTINUATION outside"),
        (
            frame(HEADERS, 0, 1, request(INFER)) + frame(DATA, 0, 1, b""),
            "inside the header block of stream 1",
        ),
        (
            frame(HEADERS, 0, 1, b"") + frame(CONTINUATION, END_HEADERS, 3, b""),
            "inside the header block of stream 1",
        ),
        (frame(HEADERS, END_HEADERS, 1, b"\x3f\xe2\xff\x03"), "size update to 65537"),
        (frame(HEADERS, END_HEADERS, 1, b"\xc0"), "undecodable header block"),
        (frame(HEADERS, END_HEADERS | PADDED, 1, b"\x09abc"), "padding and priority are longer"),
        (frame(HEADERS, END_HEADERS | PADDED, 1, b""), "without its pad length"),
        (frame(HEADERS, END_HEADERS, 1, b"\x00" * ((1 << 16) + 300)), "more than 65536 bytes"),
        (
            frame(HEADERS, 0, 1, b"\x00" * 40000) + frame(CONTINUATION, END_HEADERS, 1, b"\x00" * 30000),
            "more than 65536 bytes",
        ),
    ],
)
def test_protocol_violations_end_the_connection(data: bytes, why: str) -> None:
    found = GrpcFilter()
    if not data.startswith(b"GET"):
        found.client_bytes(PREFACE)
    assert found.client_bytes(data) == (b"", b"")
    assert why in found.ended
    assert found.ended.startswith("gRPC connection closed: ")
    assert found.client_bytes(frame(PING, 0, 0, b"\x00" * 8)) == (b"", b"")
    assert found.server_bytes(SERVER_SETTINGS) == b""


def test_a_refused_method_name_is_shown_printable_and_short() -> None:
    found = started()
    _, answer = found.client_bytes(frame(HEADERS, END_HEADERS, 1, request(b"/x\n\x1b[31m\xff" + b"A" * 500)))
    assert found.last_refusal.startswith("refused /x\\n\\x1b[31m\\xffAAA")
    assert found.last_refusal.endswith("A... on gRPC stream 1: not a call for jobs")
    assert len(found.last_refusal) < 200
    _, fields = refusal_of(answer)
    assert fields["grpc-message"].startswith("glidein-triton: /x\\n\\x1b[31m\\xffAAA")


def test_grpc_message_is_percent_encoded_as_grpc_says() -> None:
    assert percent_encoded("a%b \u00e9\n~") == b"a%25b %C3%A9%0A~"


ON_PYTHON39 = """
import sys
sys.path.insert(0, sys.argv[1])
from glidein_triton.worker import grpc_filter as g, hpack
found = g.GrpcFilter()
path = hpack.literal_without_indexing(4, b"/inference.GRPCInferenceService/LogSettings")
forward, answer = found.client_bytes(g.PREFACE + g.frame(g.HEADERS, g.END_HEADERS, 1, path))
back = found.server_bytes(g.frame(g.SETTINGS, 0, 0, b""))
print(found.refused, forward.endswith(g.reset(1)), len(back) > 9)
"""


@pytest.mark.skipif(PYTHON39 is None, reason="no Python 3.9 on this machine to run the worker code with")
def test_the_filter_runs_on_the_oldest_python_of_worker_nodes() -> None:
    assert PYTHON39 is not None
    result = subprocess.run(
        [PYTHON39, "-I", "-S", "-c", ON_PYTHON39, str(REPO)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "1 True True"), result.stderr


# Real traffic: tritonclient through a forwarder that applies the filter, to a real tritonserver.

ANY_LENGTH = """backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_INT32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""


#: A channel that does not share the connection of the others (gRPC shares one per target by default).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


@dataclass
class Served:
    """A real server, a direct gRPC client and one through the filtering forwarder."""

    forwarder: FilteringForwarder[GrpcFilter]
    direct: grpcclient.InferenceServerClient
    filtered: grpcclient.InferenceServerClient


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("grpc-filter")
    repository = root / "models"
    shutil.copytree(demo.MODELS_DIR, repository)
    add_model(repository, "echo")  # never loaded: a job's load request must not load it
    add_model(repository, "blob", config=ANY_LENGTH)
    ports = allocate(Ports(0, 0, 0))
    plan = runtime.process_plan(
        str(local_server.prepare(root / "home")), str(repository), ports, ["simple", "blob"], [], []
    )
    # The server alone, not behind the door (whose own gRPC route is this filter): "direct" is direct.
    with (root / "server.log").open("w") as log:
        bare = subprocess.Popen(
            plan.server, stdout=log, stderr=subprocess.STDOUT, env={"PATH": "/usr/bin:/bin"}
        )
    forwarder = FilteringForwarder(("127.0.0.1", ports.grpc), GrpcFilter)
    try:
        assert wait_until(lambda: Server(ports.http).is_ready(), 120), (root / "server.log").read_text()
        direct = grpcclient.InferenceServerClient(f"127.0.0.1:{ports.grpc}")
        filtered = grpcclient.InferenceServerClient(forwarder.address)
        yield Served(forwarder, direct, filtered)
        filtered.close()
        direct.close()
    finally:
        forwarder.stop()
        bare.terminate()
        bare.wait(30)


def simple_inputs() -> list[grpcclient.InferInput]:
    inputs = [grpcclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(np.arange(16, dtype=np.int32).reshape(1, 16))
    return inputs


def infer(client: grpcclient.InferenceServerClient) -> list[int]:
    result = client.infer("simple", simple_inputs()).as_numpy("OUTPUT0")
    assert result is not None
    return [int(value) for value in result[0]]


def one_connection(served: Served) -> None:
    """The filtered client still works, on the connection it had (the refusals did not end it)."""
    connections = len(served.forwarder.filters)
    assert infer(served.filtered) == [2 * value for value in range(16)]
    assert len(served.forwarder.filters) == connections
    assert served.forwarder.filters[0].ended == ""


@pytest.mark.server
def test_what_jobs_do_works_through_the_filter(served: Served) -> None:
    client = served.filtered
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("simple")
    assert client.get_server_metadata().version
    assert [tensor.name for tensor in client.get_model_metadata("simple").inputs] == ["INPUT0", "INPUT1"]
    assert client.get_model_config("simple").config.name == "simple"
    assert client.get_inference_statistics("simple").model_stats[0].name == "simple"
    assert {model.name for model in client.get_model_repository_index().models} == {"simple", "echo", "blob"}
    health = grpc.insecure_channel(served.forwarder.address)
    check = health.unary_unary("/grpc.health.v1.Health/Check")
    assert check(b"", timeout=30) == b"\x08\x01"  # HealthCheckResponse{status: SERVING}
    health.close()
    one_connection(served)


REFUSED_CALLS: dict[str, Callable[[grpcclient.InferenceServerClient], object]] = {
    "RepositoryModelLoad": lambda client: client.load_model("echo"),
    "RepositoryModelUnload": lambda client: client.unload_model("simple"),
    "SystemSharedMemoryRegister": lambda client: client.register_system_shared_memory(
        "region", "/region", 64
    ),
    "SystemSharedMemoryUnregister": lambda client: client.unregister_system_shared_memory(),
    "SystemSharedMemoryStatus": lambda client: client.get_system_shared_memory_status(),
    "CudaSharedMemoryRegister": lambda client: client.register_cuda_shared_memory(
        "region", b"\x00" * 64, 0, 64
    ),
    "TraceSetting": lambda client: client.update_trace_settings(settings={"trace_rate": "1"}),
    "LogSettings": lambda client: client.update_log_settings({"log_verbose_level": 3}),
}


@pytest.mark.server
@pytest.mark.parametrize("method", REFUSED_CALLS)
def test_what_jobs_may_not_do_is_refused_and_the_connection_goes_on(served: Served, method: str) -> None:
    with pytest.raises(InferenceServerException) as refused:
        REFUSED_CALLS[method](served.filtered)
    assert refused.value.status() == "StatusCode.PERMISSION_DENIED"
    assert refused.value.message() == (
        f"glidein-triton: {method} is not allowed for jobs; jobs get health, inference, metadata, "
        "model configuration, statistics and the repository index"
    )
    assert served.forwarder.filters[0].last_refusal.startswith(f"refused {method} on gRPC stream ")
    assert not served.direct.is_model_ready("echo")  # nothing was loaded or unloaded
    assert served.direct.is_model_ready("simple")
    assert served.direct.get_system_shared_memory_status().regions == {}
    assert served.direct.get_log_settings().settings["log_verbose_level"].uint32_param == 0
    one_connection(served)


@pytest.mark.server
def test_an_unknown_method_is_refused_too(served: Served) -> None:
    channel = grpc.insecure_channel(served.forwarder.address)
    with pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary("/inference.GRPCInferenceService/RepositoryModelLoadX")(b"", timeout=30)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "RepositoryModelLoadX is not allowed for jobs" in refused.value.details()
    channel.close()


@pytest.mark.server
def test_many_calls_on_one_channel_from_many_threads(served: Served) -> None:
    """Allowed and refused calls interleaved on one connection: the HPACK tables stay in step, every answer
    comes at a frame boundary."""
    client = grpcclient.InferenceServerClient(served.forwarder.address, channel_args=OWN_CONNECTION)
    before = len(served.forwarder.filters)

    def work(worker: int) -> list[str]:
        seen = []
        for call in range(40):
            if call % 5 == worker % 5:
                try:
                    client.load_model("echo")
                except InferenceServerException as error:
                    seen.append(str(error.status()))
            else:
                assert infer(client) == [2 * value for value in range(16)]
                assert client.get_model_metadata("simple").name == "simple"
        return seen

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    assert [len(seen) for seen in results] == [8] * 8
    assert {status for seen in results for status in seen} == {"StatusCode.PERMISSION_DENIED"}
    assert len(served.forwarder.filters) == before + 1
    assert served.forwarder.filters[-1].refused == 64
    assert served.forwarder.filters[-1].ended == ""
    assert not served.direct.is_model_ready("echo")
    client.close()


@pytest.mark.server
def test_streaming_inference_goes_through(served: Served) -> None:
    answers: Queue[object] = Queue()
    client = grpcclient.InferenceServerClient(served.forwarder.address)
    client.start_stream(callback=lambda result, error: answers.put(error or result))
    for index in range(10):
        client.async_stream_infer("simple", simple_inputs(), request_id=str(index))
    got = [answers.get(timeout=30) for _ in range(10)]
    client.stop_stream()
    client.close()
    assert all(isinstance(answer, grpcclient.InferResult) for answer in got), got
    assert sorted(answer.get_response().id for answer in got) == sorted(str(index) for index in range(10))  # type: ignore[attr-defined]


@pytest.mark.server
def test_a_large_request_goes_through_whole(served: Served) -> None:
    values = np.arange(1 << 18, dtype=np.int32)  # 1 MiB
    tensor = grpcclient.InferInput("INPUT0", [values.size], "INT32")
    tensor.set_data_from_numpy(values)
    result = served.filtered.infer("blob", [tensor]).as_numpy("OUTPUT0")
    assert result is not None
    assert np.array_equal(result, values)


def curl_speaks_http2() -> bool:
    curl = shutil.which("curl")
    if curl is None:
        return False
    version = subprocess.run([curl, "--version"], capture_output=True, text=True, check=False).stdout
    return "HTTP2" in version


@pytest.mark.server
@pytest.mark.skipif(not curl_speaks_http2(), reason="no curl with HTTP/2 on this machine")
@pytest.mark.parametrize(("method", "status"), [("ServerLive", "0"), ("RepositoryModelLoad", "7")])
def test_another_http2_implementation_reads_the_answers(
    served: Served, method: str, status: str, tmp_path: Path
) -> None:
    """curl (nghttp2), on a new connection each time: the refusal comes after the server's SETTINGS."""
    message = tmp_path / "message"
    message.write_bytes(b"\x00\x00\x00\x00\x00")  # an empty request message, in gRPC's framing
    curl = ["curl", "-sS", "--http2-prior-knowledge", "-X", "POST", "-H", "content-type: application/grpc"]
    curl += ["-H", "te: trailers", "--data-binary", f"@{message}", "-D", "-", "-o", "/dev/null"]
    result = subprocess.run(
        [*curl, f"http://{served.forwarder.address}/inference.GRPCInferenceService/{method}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    fields = dict(
        line.split(": ", 1) for line in result.stdout.replace("\r", "").splitlines() if ": " in line
    )
    assert fields["grpc-status"] == status
    assert not served.direct.is_model_ready("echo")
