#!/usr/bin/env python3
"""Add and subtract two INT32 vectors with the glidein's ``simple`` model, over gRPC and HTTP.

The server is found by glidein_triton.job.client (job environment, then the machine ad); prints each
result and the mean latency, and exits 1 when a result is wrong.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

import numpy as np

from glidein_triton.job.client import connect

MODEL = "simple"


def add_sub(client, module, first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OUTPUT0 (sum) and OUTPUT1 (difference) of one request."""
    inputs = [
        module.InferInput("INPUT0", list(first.shape), "INT32"),
        module.InferInput("INPUT1", list(second.shape), "INT32"),
    ]
    inputs[0].set_data_from_numpy(first)
    inputs[1].set_data_from_numpy(second)
    result = client.infer(MODEL, inputs)
    return result.as_numpy("OUTPUT0"), result.as_numpy("OUTPUT1")


def run(protocol: str, url: str | None, requests: int) -> bool:
    module = importlib.import_module(f"tritonclient.{protocol}")
    client = connect(protocol, url, models=[MODEL])
    first = np.arange(16, dtype=np.int32).reshape(1, 16)
    second = np.full((1, 16), 3, dtype=np.int32)
    started = time.perf_counter()
    for _ in range(requests):
        total, difference = add_sub(client, module, first, second)
    milliseconds = (time.perf_counter() - started) / requests * 1000
    client.close()
    correct = np.array_equal(total, first + second) and np.array_equal(difference, first - second)
    print(f"{protocol}: {first[0].tolist()} + 3 = {total[0].tolist()}")
    print(f"{protocol}: {first[0].tolist()} - 3 = {difference[0].tolist()}")
    verdict = "correct" if correct else "WRONG"
    print(f"{protocol}: {requests} requests, {milliseconds:.2f} ms per request, {verdict}")
    return correct


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=("grpc", "http", "both"), default="both")
    parser.add_argument("--url", help="host:port of the server (default: found from the job)")
    parser.add_argument("--requests", type=int, default=10)
    args = parser.parse_args()
    protocols = ("grpc", "http") if args.protocol == "both" else (args.protocol,)
    results = [run(protocol, args.url, args.requests) for protocol in protocols]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
