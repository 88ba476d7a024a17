"""What the gRPC filter of the front door costs.

* its CPU time per call on traffic shaped as ModelInfer is (pure logic, no sockets): a small call, and a
  1 MiB request with its 1 MiB answer, in the frames and reads a real connection has;
* inference through a forwarder (tests/support.py's, threads as the door has) with the filter and without
  it, side by side with a direct connection to the same real tritonserver, alternating, at 1 and 8 jobs
  (one process and one connection each), small and 1 MiB requests.

    python -m benchmarks.grpc_filter [--seconds S] [--rounds R]

Ratios are what to read (these machines are shared): throughput of each side over the direct one.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from glidein_triton.local import demo
from glidein_triton.local import pytriton as local_server
from glidein_triton.worker import hpack, runtime, server
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
from glidein_triton.worker.ports import Ports, allocate
from tests.support import FilteringForwarder  # the forwarder the tests use (threads, as the door has)

MAX_FRAME = 1 << 14
READ = 1 << 18
INFER_PATH = b"/inference.GRPCInferenceService/ModelInfer"
BLOB_CONFIG = """backend: "python"
max_batch_size: 0
input [ { name: "INPUT0", data_type: TYPE_INT32, dims: [ -1 ] } ]
output [ { name: "OUTPUT0", data_type: TYPE_INT32, dims: [ -1 ] } ]
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""
BLOB_MODEL = """
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())])
            for r in requests
        ]
"""
JOB = """
import sys, time
import numpy as np
import tritonclient.grpc as grpcclient
address, size, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
client = grpcclient.InferenceServerClient(address, channel_args=[("grpc.use_local_subchannel_pool", 1)])
if size:
    model, tensors = "blob", [grpcclient.InferInput("INPUT0", [size // 4], "INT32")]
    tensors[0].set_data_from_numpy(np.zeros(size // 4, dtype=np.int32))
else:
    model, tensors = "simple", [grpcclient.InferInput(n, [1, 16], "INT32") for n in ("INPUT0", "INPUT1")]
    for tensor in tensors:
        tensor.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
client.infer(model, tensors)
print("ready", flush=True)
sys.stdin.readline()
calls, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    client.infer(model, tensors)
    calls += 1
print(calls / seconds, flush=True)
"""


def call_frames(stream: int, first: bool, message: int) -> tuple[bytes, bytes]:
    """(client bytes, server bytes) of one ModelInfer call with a request and an answer of ``message``
    bytes: the first call's headers are literals the table keeps, later calls name them by index."""
    if first:
        request = b"\x83\x86" + b"\x44" + hpack.encode_integer(len(INFER_PATH), 7) + INFER_PATH
        request += b"\x40\x0ccontent-type\x10application/grpc"
    else:
        request = b"\x83\x86\xbf\xbe"
    client = frame(HEADERS, END_HEADERS, stream, request) + message_frames(stream, message, END_STREAM)
    answer = frame(HEADERS, END_HEADERS, stream, b"\x88\xc0") + message_frames(stream, message, 0)
    answer += frame(HEADERS, END_HEADERS | END_STREAM, stream, b"\xc1")
    return client, answer


def message_frames(stream: int, size: int, last_flags: int) -> bytes:
    chunks = [b"\x00" * min(MAX_FRAME, size - offset) for offset in range(0, size, MAX_FRAME)] or [b""]
    return b"".join(
        frame(DATA, last_flags if index == len(chunks) - 1 else 0, stream, chunk)
        for index, chunk in enumerate(chunks)
    )


def reads(data: bytes) -> list[bytes]:
    return [data[offset : offset + READ] for offset in range(0, len(data), READ)]


def filter_cost(calls: int, message: int) -> float:
    """Microseconds of filter time per call (both directions), ``message`` bytes each way."""
    found = GrpcFilter()
    found.client_bytes(PREFACE + frame(SETTINGS, 0, 0, b""))
    found.server_bytes(frame(SETTINGS, 0, 0, b""))
    calls_frames = [call_frames(1 + 2 * index, index == 0, message) for index in range(calls)]
    traffic = [(reads(client), reads(answer)) for client, answer in calls_frames]
    start = time.perf_counter()
    for client, answer in traffic:
        for data in client:
            found.client_bytes(data)
        for data in answer:
            found.server_bytes(data)
    elapsed = time.perf_counter() - start
    if found.ended or found.refused:
        raise RuntimeError(f"the synthetic traffic was refused: {found.ended or found.last_refusal}")
    return elapsed / calls * 1e6


class Passthrough:
    """A filter that lets everything through (the forwarder's own cost)."""

    ended = ""
    refused = 0
    last_refusal = ""

    def client_bytes(self, data: bytes) -> tuple[bytes, bytes]:
        return data, b""

    def server_bytes(self, data: bytes) -> bytes:
        return data


@contextmanager
def real_server(root: Path) -> Iterator[int]:
    """A tritonserver with ``simple`` and ``blob`` (any length of INT32, echoed); its gRPC port."""
    repository = root / "models"
    shutil.copytree(demo.MODELS_DIR, repository)
    (repository / "blob" / "1").mkdir(parents=True)
    (repository / "blob" / "config.pbtxt").write_text(f'name: "blob"\n{BLOB_CONFIG}')
    (repository / "blob" / "1" / "model.py").write_text(BLOB_MODEL)
    ports = allocate(Ports(0, 0, 0))
    launcher = local_server.prepare(root / "home")
    plan = runtime.process_plan(str(launcher), str(repository), ports, ["simple", "blob"], [], [])
    state = server.launch(plan, root / "server.log", {"PATH": "/usr/bin:/bin"}, stop_grace=5)
    try:
        state.http_port, state.grpc_port, state.metrics_port = ports.http, ports.grpc, ports.metrics
        server.wait_ready(state, 120)
        yield ports.grpc
    finally:
        server.stop(state, {})


def throughput(address: str, jobs: int, size: int, seconds: float) -> float:
    """Calls per second of ``jobs`` job processes together, each on a connection of its own."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", JOB, address, str(size), str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(jobs)
    ]
    for process in processes:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("a benchmark job did not start")
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    rates = [float(process.communicate(timeout=seconds + 60)[0]) for process in processes]
    return sum(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.grpc_filter", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per case")
    args = parser.parse_args(argv)
    print(f"filter alone: {filter_cost(20000, 200):.1f} us per small call (200-byte request and answer)")
    print(f"filter alone: {filter_cost(30, 1 << 20):.1f} us per 1 MiB call (1 MiB request and answer)")
    with tempfile.TemporaryDirectory() as directory, real_server(Path(directory)) as port:
        target = ("127.0.0.1", port)
        forwarded = FilteringForwarder(target, Passthrough)
        filtered = FilteringForwarder(target, GrpcFilter)
        sides = {"direct": f"127.0.0.1:{port}", "forwarder": forwarded.address, "filtered": filtered.address}
        for jobs, size in ((1, 0), (8, 0), (1, 1 << 20), (8, 1 << 20)):
            rates: dict[str, list[float]] = {side: [] for side in sides}
            for _ in range(args.rounds):
                for side, address in sides.items():
                    rates[side].append(throughput(address, jobs, size, args.seconds))
            direct = statistics.median(rates["direct"])
            shown = ", ".join(
                f"{side} {statistics.median(values):.0f}/s ({direct / statistics.median(values):.2f}x time)"
                for side, values in rates.items()
            )
            print(f"{jobs} jobs, {'1 MiB' if size else 'small'} requests: {shown}", flush=True)
        if any(f.ended or (isinstance(f, GrpcFilter) and f.refused) for f in filtered.filters):
            raise RuntimeError("the filter refused or ended a benchmark connection")
        forwarded.stop()
        filtered.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
