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


def server_runner(url: str, model: str = "mlp", protocol: str = "grpc"):  # type: ignore[no-untyped-def]
    """Inference on the server over ``protocol`` (grpc or http), with the model's first input and output."""
    if protocol == "http":
        import tritonclient.http as client_module  # noqa: PLC0415 (in-process jobs must not pay for the client)

        client = client_module.InferenceServerClient(url)
        metadata = client.get_model_metadata(model)
    else:
        import tritonclient.grpc as client_module  # noqa: PLC0415

        client = client_module.InferenceServerClient(url)
        metadata = client.get_model_metadata(model, as_json=True)
    input_name, output_name = metadata["inputs"][0]["name"], metadata["outputs"][0]["name"]

    def infer(batch: np.ndarray) -> np.ndarray:
        tensor = client_module.InferInput(input_name, list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        return client.infer(model, [tensor]).as_numpy(output_name)

    return infer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("in-process", "server"), required=True)
    parser.add_argument("--url", default="")
    parser.add_argument("--model", default="mlp", help="the server's model (mlp, or mlp_gpu on a GPU)")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--shape", default="1,1024", help="the float32 event's shape (comma-separated)")
    args = parser.parse_args()
    if args.mode == "in-process":
        infer = in_process_runner()
    else:
        infer = server_runner(args.url, args.model, args.protocol)
    shape = tuple(int(size) for size in args.shape.split(","))
    event = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
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
