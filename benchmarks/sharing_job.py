"""One benchmark job: infers one event at a time, in-process or through the glidein's Triton server.

Protocol with the parent: print ``ready``; wait for a line ``go <seconds>``; run that long; print one JSON
line with the number of inferences and their latencies.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

MODEL_FILE = Path(__file__).resolve().parent / "models" / "mlp" / "1" / "model.py"


def load_model_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("benchmark_mlp", MODEL_FILE)
    if spec is None or spec.loader is None:
        raise ImportError(MODEL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_process_runner():  # type: ignore[no-untyped-def]
    model = load_model_module()
    weights = model.build_weights()
    return lambda batch: model.forward(weights, batch)


def server_runner(url: str, model: str = "mlp"):  # type: ignore[no-untyped-def]
    import tritonclient.grpc as grpcclient  # noqa: PLC0415 (in-process jobs must not pay for the client)

    client = grpcclient.InferenceServerClient(url)

    def infer(batch: np.ndarray) -> np.ndarray:
        tensor = grpcclient.InferInput("INPUT", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        return client.infer(model, [tensor]).as_numpy("SCORES")

    return infer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("in-process", "server"), required=True)
    parser.add_argument("--url", default="")
    parser.add_argument("--model", default="mlp", help="the server's model (mlp, or mlp_gpu on a GPU)")
    args = parser.parse_args()
    infer = in_process_runner() if args.mode == "in-process" else server_runner(args.url, args.model)
    event = np.random.default_rng(1).standard_normal((1, 1024), dtype=np.float32)
    infer(event)  # warm up
    print("ready", flush=True)
    seconds = float(sys.stdin.readline().split()[1])
    latencies = []
    end = time.perf_counter() + seconds
    while (now := time.perf_counter()) < end:
        infer(event)
        latencies.append(time.perf_counter() - now)
    print(json.dumps({"count": len(latencies), "latencies": latencies}), flush=True)


if __name__ == "__main__":
    main()
