#!/usr/bin/env python3
"""gRPC keepalive check: does a channel with these keepalive settings stay usable across idle periods?

A site runs it with the keepalive settings its jobs use. It opens one gRPC channel with those settings,
then sends ``--requests`` add/sub requests to the ``simple`` model with ``--pause`` seconds of silence
between them. Pings sent more often than the server allows (tritonserver's default: at most one every
5 minutes without data, ``--grpc-http2-min-recv-ping-interval-without-data``) make the server close the
connection with GOAWAY "too_many_pings". gRPC reconnects on the next request, so requests often still
succeed; the check therefore also watches the channel's connectivity and fails (exit 1) when the connection
left READY while idle, or when a request failed.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from glidein_triton.job.client import connect

MODEL = "simple"


class ConnectionWatch:
    """The connectivity states of the client's gRPC channel (tritonclient keeps it in ``_channel``)."""

    def __init__(self, client) -> None:
        self.channel = getattr(client, "_channel", None)
        self.states: list[str] = []
        if self.channel is not None:
            self.channel.subscribe(self.changed, try_to_connect=False)

    def changed(self, state) -> None:
        self.states.append(state.name)

    def drops(self) -> int:
        """How many times the connection left READY."""
        return sum(1 for before, after in zip(self.states, self.states[1:]) if before == "READY" != after)

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.unsubscribe(self.changed)


def one_request(client) -> float:
    """Milliseconds for one add/sub request; raises when the answer is wrong."""
    first = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = [grpcclient.InferInput(name, [1, 16], "INT32") for name in ("INPUT0", "INPUT1")]
    for tensor in inputs:
        tensor.set_data_from_numpy(first)
    started = time.perf_counter()
    result = client.infer(MODEL, inputs)
    elapsed = (time.perf_counter() - started) * 1000
    if not np.array_equal(result.as_numpy("OUTPUT0"), first * 2):
        raise ValueError("wrong sum from the simple model")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="host:port of the gRPC server (default: found from the job)")
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--pause", type=float, default=2.0, help="idle seconds between requests")
    parser.add_argument("--keepalive-time-ms", type=int, default=2**31 - 1, help="ping period (default: off)")
    parser.add_argument("--keepalive-timeout-ms", type=int, default=20000, help="wait for a ping's answer")
    parser.add_argument(
        "--permit-without-calls", action="store_true", help="ping even when no request is in flight"
    )
    parser.add_argument(
        "--max-pings-without-data", type=int, default=2, help="pings allowed without data (0: no limit)"
    )
    args = parser.parse_args()
    keepalive = grpcclient.KeepAliveOptions(
        keepalive_time_ms=args.keepalive_time_ms,
        keepalive_timeout_ms=args.keepalive_timeout_ms,
        keepalive_permit_without_calls=args.permit_without_calls,
        http2_max_pings_without_data=args.max_pings_without_data,
    )
    client = connect("grpc", args.url, models=[MODEL], keepalive_options=keepalive)
    print(
        f"keepalive: ping every {args.keepalive_time_ms} ms (timeout {args.keepalive_timeout_ms} ms, "
        f"without calls: {args.permit_without_calls}, max pings without data: {args.max_pings_without_data})"
    )
    watch = ConnectionWatch(client)
    failures = 0
    for number in range(1, args.requests + 1):
        if number > 1:
            time.sleep(args.pause)
        try:
            print(f"request {number}: ok, {one_request(client):.2f} ms")
        except InferenceServerException as error:
            failures += 1
            print(f"request {number}: FAILED: {error}")
    watch.stop()
    client.close()
    drops = watch.drops()
    if watch.channel is None:
        print("connection: not watched (this tritonclient keeps no _channel); requests only")
    else:
        print(f"connection: states {' -> '.join(watch.states)}; dropped {drops} time(s)")
    passed = failures == 0 and drops == 0
    print(
        f"{'PASS' if passed else 'FAIL'}: {args.requests - failures} of {args.requests} requests succeeded, "
        f"{args.pause:g} s apart; connection dropped {drops} time(s)"
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
