#!/usr/bin/env python3
"""Health and metadata check of a Triton server, over gRPC and HTTP, as a site runs it.

For each protocol: liveness and readiness, the server's name, version and extensions, and for each model
(``--model``, else every model of the repository index, else, on a server that refuses the index, every
model directory of ``$TRITON_MODEL_REPOSITORY``) its readiness, versions, inputs and outputs.
With a metrics URL (``--metrics-url`` or ``$TRITON_METRICS_URL``) it also counts the inference counters there.
Exits 1 when the server or a model is not ready. The server is found by glidein_triton.job.client.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from pathlib import Path

from tritonclient.utils import InferenceServerException

from glidein_triton.job.client import NoServerError, connect


def shape(tensor: dict) -> str:
    return "x".join(str(int(dimension)) for dimension in tensor.get("shape", []))


def tensors(metadata: dict, kind: str) -> str:
    return ", ".join(f"{t['name']} {t['datatype']}[{shape(t)}]" for t in metadata.get(kind, []))


def listed_models(client: object, protocol: str) -> list[str]:
    """The ready models of the repository index; on a server that refuses it, the model directories of the
    glidein's repository, when the job sees it."""
    as_json = {"as_json": True} if protocol == "grpc" else {}
    try:
        index = client.get_model_repository_index(**as_json)
    except InferenceServerException as error:
        repository = os.environ.get("TRITON_MODEL_REPOSITORY", "")
        print(f"[{protocol}] repository index: {error.message()}; models of {repository or 'no repository'}")
        if not repository or not Path(repository).is_dir():
            return []
        return sorted(path.name for path in Path(repository).iterdir() if path.is_dir())
    entries = index.get("models", []) if protocol == "grpc" else index
    return [entry["name"] for entry in entries if entry.get("state") == "READY"]


def check(protocol: str, url: str | None, models: list[str], timeout: float) -> bool:
    """Print the report for one protocol; True when the server and every model are ready."""
    as_json = {"as_json": True} if protocol == "grpc" else {}
    try:
        client = connect(protocol, url, timeout=timeout)
    except NoServerError as error:
        print(f"[{protocol}] FAIL: {error}")
        return False
    server = client.get_server_metadata(**as_json)
    print(f"[{protocol}] live: {client.is_server_live()}, ready: {client.is_server_ready()}")
    print(f"[{protocol}] server: {server['name']} {server['version']}")
    print(f"[{protocol}] extensions: {' '.join(server.get('extensions', []))}")
    if not models:
        models = listed_models(client, protocol)
    healthy = True
    for model in models:
        ready = client.is_model_ready(model)
        healthy = healthy and ready
        if not ready:
            print(f"[{protocol}] model {model}: NOT READY")
            continue
        metadata = client.get_model_metadata(model, **as_json)
        print(
            f"[{protocol}] model {model}: ready, versions {','.join(metadata.get('versions', []))}, "
            f"platform {metadata.get('platform', '?')}"
        )
        print(f"[{protocol}]     inputs: {tensors(metadata, 'inputs')}")
        print(f"[{protocol}]     outputs: {tensors(metadata, 'outputs')}")
    client.close()
    return healthy


def check_metrics(url: str) -> bool:
    """Whether the metrics endpoint answers with Triton's metrics (``nv_*``)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (the server's own metrics URL)
            text = response.read().decode()
    except OSError as error:
        print(f"[metrics] FAIL: {url}: {error}")
        return False
    counts = [line for line in text.splitlines() if line.startswith("nv_inference_count{")]
    print(f"[metrics] {url}: {len(counts)} nv_inference_count series")
    return any(line.startswith("nv_") for line in text.splitlines())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=("grpc", "http", "both"), default="both")
    parser.add_argument("--url", help="host:port (only with one --protocol; default: found from the job)")
    parser.add_argument("--model", action="append", default=[], help="model to check (default: all ready)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server")
    parser.add_argument("--metrics-url", default=os.environ.get("TRITON_METRICS_URL", ""))
    args = parser.parse_args()
    if args.url and args.protocol == "both":
        parser.error("--url needs --protocol grpc or --protocol http")
    protocols = ("grpc", "http") if args.protocol == "both" else (args.protocol,)
    results = [check(protocol, args.url, args.model, args.timeout) for protocol in protocols]  # each one runs
    healthy = all(results)
    if args.metrics_url:
        healthy = check_metrics(args.metrics_url) and healthy
    print("PASS" if healthy else "FAIL")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
